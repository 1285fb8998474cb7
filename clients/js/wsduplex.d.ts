// Typings for wsduplex.js.

/** Error codes the module itself produces. */
export declare const codes: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_ERROR: -32603;
  NO_SUCH_STREAM: -32001;
  SERVER_BUSY: -32009;
  TIMED_OUT: -32020;
  PEER_CLOSED: -32021;
  REQUEST_CANCELLED: -32022;
}>;

/** A JSON-RPC error object, as a JavaScript error. */
export declare class RpcError extends Error {
  constructor(code: number, message: string, data?: unknown);
  readonly code: number;
  readonly data?: unknown;
}

/** Parameters by name (an object) or by position (an array). */
export type Params = Record<string, unknown> | unknown[];

/** What a handler gets besides the parameters. */
export interface HandlerContext {
  /** Aborted when the caller sends `$/cancelRequest` or the connection closes. */
  signal: AbortSignal;
  peer: Peer;
}

/** Answers one incoming method: its return value (or promise) is the reply. */
export type Handler = (params: any, context: HandlerContext) => unknown;

export interface CallOptions {
  /** Milliseconds before the call fails with code -32020 (default: the peer's). */
  timeout?: number;
  /** Aborting it fails the call and sends `$/cancelRequest`. */
  signal?: AbortSignal;
}

/**
 * How to reconnect: `delays` (ms before each attempt, the last repeated;
 * no jitter unless given), or `initial` doubling up to `max` (250 and
 * 30000 ms, jitter 0.5). `jitter` is the fraction a delay may be shortened
 * by, at random; `maxAttempts` (no end by default) the attempts after each
 * drop before the peer closes for good.
 */
export interface ReconnectOptions {
  delays?: readonly number[];
  initial?: number;
  max?: number;
  jitter?: number;
  maxAttempts?: number;
}

export interface PeerOptions {
  /** Wire method names to handlers. */
  handlers?: Record<string, Handler>;
  /** Default call timeout in milliseconds (30000). */
  timeout?: number;
  /** Streams this side sends at once (1000); past it, -32009. */
  maxOpenStreams?: number;
  /** Reconnect after a connection drops (off by default; `true` for the defaults). */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Runs on each new connection after a drop, before the calls that waited
   * go out (to re-join rooms); calls made while it runs go out at once. If
   * it throws, "error" carries `{ error }` and the waiting calls go out all
   * the same; nothing times it out but its own calls' timeouts.
   */
  onReconnect?: ((peer: Peer) => unknown) | null;
  /** Where "online" is heard (the global scope by default). */
  window?: EventTarget | null;
  /** Where "visibilitychange" is heard (the global document by default). */
  document?: (EventTarget & { visibilityState?: string }) | null;
  /** Random numbers in [0, 1) for the jitter (Math.random). */
  random?: () => number;
}

export interface ConnectOptions extends PeerOptions {
  /** A WebSocket implementation (the global one by default). */
  WebSocket?: new (url: string) => WebSocketLike;
}

/** Where a peer is: the property `state`, and an event of each name but "connecting" (where it starts). */
export type PeerState = "connecting" | "connected" | "reconnecting" | "closed";

export interface ReconnectingDetail {
  /** 1 for the first attempt after a drop. */
  attempt: number;
  /** How the last connection (or attempt) ended. */
  error: CloseDetail;
}

export interface ResolvedReconnect {
  delays: number[] | null;
  initial: number;
  max: number;
  jitter: number;
  maxAttempts: number;
}

/** The policy `reconnect` stands for; null when off. */
export declare function reconnectPolicy(option: boolean | ReconnectOptions | undefined): ResolvedReconnect | null;

/** The wait before attempt `attempt` (from 1), for `random` in [0, 1). */
export declare function reconnectDelay(policy: ResolvedReconnect, attempt: number, random: number): number;

/** The part of a WebSocket the module uses. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
}

export interface CloseDetail {
  code: number;
  reason: string;
}

/** Values to be sent as a stream (made by `Peer.outgoing`). */
export interface Outgoing<T> {
  readonly iterable: Iterable<T> | AsyncIterable<T>;
}

/**
 * A connection, or with `reconnect` one after another. Events: "connected",
 * "reconnecting" (a ReconnectingDetail) and "closed" (a CloseDetail) as the
 * state changes, "open" for each connection that opens, "close" once with
 * "closed", and "error".
 */
export declare class Peer extends EventTarget {
  /** `socket` is a WebSocket, or a function that makes one (what reconnecting needs). */
  constructor(socket: WebSocketLike | (() => WebSocketLike), options?: PeerOptions);
  /** Resolves when the first connection is open; rejects if it closes first. */
  readonly ready: Promise<Peer>;
  readonly state: PeerState;
  /** True once the peer has closed for good. */
  readonly closed: boolean;
  addEventListener(
    type: "close" | "closed",
    listener: (event: CustomEvent<CloseDetail>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: "reconnecting",
    listener: (event: CustomEvent<ReconnectingDetail>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: "open" | "error" | "connected",
    listener: (event: Event) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener(
    type: "close" | "closed",
    listener: (event: CustomEvent<CloseDetail>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: "reconnecting",
    listener: (event: CustomEvent<ReconnectingDetail>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: "open" | "error" | "connected",
    listener: (event: Event) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
  /**
   * Rejects with an RpcError: the peer's error object, -32020 on timeout,
   * -32021 once closed (or when the connection that carried it dropped:
   * a call is never sent twice), -32022 when aborted. Made while
   * reconnecting, it waits for the next connection, within its timeout.
   */
  call<T = unknown>(method: string, params?: Params, options?: CallOptions): Promise<T>;
  /** Throws an RpcError -32602 if `params` holds a stream: notifications carry none. */
  notify(method: string, params?: Params): void;
  /**
   * Marks `iterable` to be sent as a stream, as a call's parameter or a
   * handler's result (an async iterable is sent as one without it).
   */
  outgoing<T>(iterable: Iterable<T> | AsyncIterable<T>): Outgoing<T>;
  /**
   * The stream the other side sent in `carried` (a result or a parameter):
   * its values are asked for as it is read; leaving a `for await` early tells
   * the other side to stop.
   */
  incoming<T = unknown>(carried: unknown): AsyncIterable<T>;
  /** Streams this side sends that are still open. */
  readonly openStreams: number;
  /** Closes for good (code 1000 by default), reconnecting or not. */
  close(code?: number, reason?: string): void;
}

export declare function connect(url: string, options?: ConnectOptions): Peer;

/**
 * A handler's parameters in `names`' order, sent by name or by position; a
 * missing name not in `optional` throws an RpcError -32602 naming it.
 */
export declare function argumentsOf(params: unknown, names: readonly string[], optional?: readonly string[]): unknown[];

/** `args` with the values at `positions` read as streams the other side sends. */
export declare function incomingAt(args: unknown[], positions: readonly number[], peer: Peer): unknown[];
