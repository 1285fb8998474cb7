// wsduplex.js: a dependency-free ES module that speaks wsduplex's wire
// (JSON-RPC 2.0 over one WebSocket, both directions) from a browser or Node.
//
//   import { connect } from "/wsduplex.js";
//   const peer = connect("ws://" + location.host + "/ws", {
//     handlers: { "chat.message": ({ from, text }) => show(from, text) },
//   });
//   await peer.ready;
//   const members = await peer.call("chat.join", { room: "lobby", nick: "ada" });
//
// Reconnecting, as the Rust client does (off by default):
//   const peer = connect(url, { reconnect: true, onReconnect: (peer) => peer.call("chat.join", me) });
//   peer.addEventListener("reconnecting", (e) => show(`Reconnecting (attempt ${e.detail.attempt})`));
//
// Streams (StreamJsonRpc's IAsyncEnumerable protocol, as the Rust side):
//   for await (const tick of peer.incoming(await peer.call("ticker.history", ["ACME", 10]))) show(tick);
//   const sum = await peer.call("ticker.total", { values: peer.outgoing([1, 2, 3]) });

/** Error codes the module itself produces (the same as the Rust side's). */
export const codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  NO_SUCH_STREAM: -32001,
  SERVER_BUSY: -32009,
  TIMED_OUT: -32020,
  PEER_CLOSED: -32021,
  REQUEST_CANCELLED: -32022,
});

const CANCEL = "$/cancelRequest";
const NEXT = "$/enumerator/next";
const DISPOSE = "$/enumerator/dispose";
// StreamJsonRpc's name for dispose.
const ABORT = "$/enumerator/abort";
/** The most bytes of values (as JSON) one answer to `$/enumerator/next` carries, past its first value. */
const MAX_BATCH_BYTES = 64 * 1024;
/** Streams one connection sends at once by default. */
const MAX_OPEN_STREAMS = 1000;
/** A connection that lasts this long (ms) starts the reconnect attempts over. */
const STABLE = 10000;

/** An iterable to be sent as a stream: what `Peer.outgoing` returns. */
class Outgoing {
  constructor(iterable) {
    this.iterable = iterable;
  }
}

const isAsyncIterable = (value) =>
  value !== null && typeof value === "object" && typeof value[Symbol.asyncIterator] === "function";

/** Values sent as a stream: an `Outgoing`, or any async iterable. */
const isStream = (value) => value instanceof Outgoing || isAsyncIterable(value);

/** 128 random bits, base64url: a token no peer can guess. */
function newToken() {
  if (typeof globalThis.crypto?.getRandomValues !== "function") {
    throw new RpcError(codes.INTERNAL_ERROR, "sending a stream needs crypto.getRandomValues (browsers, Node 19 and later)");
  }
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * A reconnect policy from `connect`'s `reconnect` option: `true` for the
 * Rust client's default (250 ms doubling up to 30 s, jitter 0.5, no end),
 * or `{ delays }` (the wait before each attempt, the last one repeated;
 * no jitter unless asked) or `{ initial, max }`, each with `jitter` (the
 * fraction a delay may be shortened by, at random) and `maxAttempts`.
 */
export function reconnectPolicy(option) {
  if (!option) return null;
  const given = option === true ? {} : option;
  const delays = Array.isArray(given.delays) && given.delays.length > 0 ? given.delays.map(Number) : null;
  const initial = Number(given.initial ?? 250);
  return {
    delays,
    initial,
    max: Math.max(Number(given.max ?? 30000), initial),
    jitter: Math.min(Math.max(Number(given.jitter ?? (delays ? 0 : 0.5)), 0), 1),
    maxAttempts: Number(given.maxAttempts ?? Infinity),
  };
}

/** The wait before reconnect attempt `attempt` (from 1), `random` in [0, 1). */
export function reconnectDelay(policy, attempt, random) {
  const base = policy.delays
    ? policy.delays[Math.min(attempt, policy.delays.length) - 1]
    : Math.min(policy.initial * 2 ** Math.min(attempt - 1, 30), policy.max);
  return base * (1 - policy.jitter * random);
}

/** Resolves with `SOON` once the current task and its microtasks are done. */
const SOON = Symbol("soon");
/** What a stream's `cutShort` resolves with once it is disposed of. */
const CUT = Symbol("cut");
const soon = () => new Promise((resolve) => setTimeout(() => resolve(SOON), 0));

/** A JSON-RPC error object, as a JavaScript error: what a failed call rejects with. */
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

/** The error object a handler's thrown value becomes. */
function errorObject(thrown) {
  if (thrown && typeof thrown === "object" && Number.isInteger(thrown.code)) {
    const object = { code: thrown.code, message: String(thrown.message ?? "error") };
    if (thrown.data !== undefined) object.data = thrown.data;
    return object;
  }
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  return { code: codes.INTERNAL_ERROR, message: `Internal error: ${message}` };
}

/**
 * A handler's parameters as an array in `names`' order, whether the caller
 * sent them by name (an object) or by position (an array). A missing name
 * not in `optional` throws an RpcError -32602 naming it, as the Rust side
 * answers; so do too many positions and params that are neither.
 */
export function argumentsOf(params, names, optional = []) {
  const invalid = (param, reason) =>
    new RpcError(codes.INVALID_PARAMS, `Invalid params: ${param ? `\`${param}\`: ` : ""}${reason}`, { param, reason });
  let values;
  if (Array.isArray(params)) {
    if (params.length > names.length) throw invalid(null, `expected at most ${names.length} parameters`);
    values = names.map((_, i) => params[i]);
  } else if (params === undefined || params === null) {
    values = names.map(() => undefined);
  } else if (typeof params === "object") {
    values = names.map((name) => (Object.hasOwn(params, name) ? params[name] : undefined));
  } else {
    throw invalid(null, "params must be an object or an array");
  }
  names.forEach((name, i) => {
    if (values[i] === undefined && !optional.includes(name)) throw invalid(name, "missing");
  });
  return values;
}

const isId = (id) => typeof id === "string" || (typeof id === "number" && Number.isFinite(id)) || id === null;

/**
 * A connection (or, reconnecting, one connection after another): calls and
 * notifications out, handlers for what comes in.
 *
 * `state` is "connecting" (the first connection), "connected",
 * "reconnecting" or "closed", and each change after the first is an event
 * of that name: "reconnecting" with detail `{ attempt, error: { code,
 * reason } }`, "closed" with `{ code, reason }`. "open" comes with each
 * connection that opens (after `onReconnect`), "close" (detail `{ code,
 * reason }`) once, with "closed"; and "error" (an `onReconnect` that threw
 * with detail `{ error }`).
 */
export class Peer extends EventTarget {
  #socket;
  #handlers;
  #timeout;
  #nextId = 1;
  #pending = new Map(); // our id -> { resolve, reject, cleanup, sent }
  #running = new Map(); // their id (as JSON text) -> AbortController
  #closed = null;
  #queued = []; // { frame, id } made while no connection was open
  #streams = new Map(); // token -> the stream we send under it
  #maxOpenStreams;
  #state = "connecting";
  /** Counts the connections: what belongs to an older one is ignored. */
  #generation = 0;
  /** Makes the next socket; null for a peer made on one socket. */
  #dial = null;
  #reconnect = null;
  #onReconnect = null;
  #random;
  #attempt = 0;
  #retry = null; // the timer of the next attempt
  #opened = false; // any connection has opened
  #closing = false; // close() was called
  #hook = null; // the connection whose onReconnect runs: frames go out on it at once
  #stable = null; // the timer after which an open connection counts as stable
  #forget = () => {}; // removes the browser listeners

  /** Resolves when the (first) connection is open; rejects if it closes first. */
  ready;

  /**
   * `socket` is a WebSocket (one connection), or a function that makes one
   * (what reconnecting needs).
   */
  constructor(
    socket,
    {
      handlers = {},
      timeout = 30000,
      maxOpenStreams = MAX_OPEN_STREAMS,
      reconnect = false,
      onReconnect = null,
      random = Math.random,
      window = globalThis.addEventListener ? globalThis : null,
      document = globalThis.document ?? null,
    } = {},
  ) {
    super();
    this.#handlers = handlers;
    this.#timeout = timeout;
    this.#maxOpenStreams = maxOpenStreams;
    this.#random = random;
    this.ready = new Promise((resolve, reject) => {
      this.addEventListener("open", () => resolve(this), { once: true });
      this.addEventListener("close", (e) => reject(new RpcError(codes.PEER_CLOSED, `closed (${e.detail.code})`)), { once: true });
    });
    this.ready.catch(() => {});
    if (typeof socket === "function") {
      this.#dial = socket;
      this.#reconnect = reconnectPolicy(reconnect);
      this.#onReconnect = onReconnect;
      socket = socket();
      if (this.#reconnect) this.#forget = this.#listen(window, document);
    }
    this.#attach(socket);
  }

  /** "connecting" (the first connection), "connected", "reconnecting" or "closed". */
  get state() {
    return this.#state;
  }

  /** True once the connection has closed for good. */
  get closed() {
    return this.#closed !== null;
  }

  #setState(state, detail) {
    this.#state = state;
    this.dispatchEvent(new CustomEvent(state, { detail }));
  }

  /** Makes `socket` the connection; events of an older one are ignored from now on. */
  #attach(socket) {
    this.#socket = socket;
    const generation = ++this.#generation;
    const current = () => generation === this.#generation;
    if ("binaryType" in socket) socket.binaryType = "arraybuffer";
    socket.onopen = () => current() && this.#onOpen();
    socket.onerror = () => current() && this.dispatchEvent(new Event("error"));
    socket.onclose = (e) => current() && this.#onClose(e.code ?? 1006, e.reason ?? "");
    // Binary frames holding UTF-8 JSON are accepted too.
    socket.onmessage = (e) => {
      if (!current()) return;
      const text = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data);
      // Nothing in handling a frame should throw; if it does, say so rather than lose it quietly.
      this.#onText(text, generation).catch(() => this.dispatchEvent(new Event("error")));
    };
  }

  async #onOpen() {
    const reconnected = this.#opened;
    this.#opened = true;
    const generation = this.#generation;
    // Attempts start over only once a connection has lasted: a server that
    // accepts and closes at once is still subject to maxAttempts.
    clearTimeout(this.#stable);
    this.#stable = setTimeout(() => (this.#attempt = 0), STABLE);
    if (reconnected && this.#onReconnect) {
      // On the new connection, before the calls that waited for it.
      this.#hook = generation;
      try {
        await this.#onReconnect(this);
      } catch (error) {
        this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
      } finally {
        if (this.#hook === generation) this.#hook = null;
      }
      if (generation !== this.#generation || this.#closed) return;
    }
    for (const { frame, id } of this.#queued.splice(0)) this.#write(frame, id);
    this.#setState("connected");
    this.dispatchEvent(new Event("open"));
  }

  /** Tries again at once when the browser says the network is back. */
  #listen(window, document) {
    const now = () => this.#wake();
    const visible = () => document?.visibilityState === "visible" && this.#wake();
    window?.addEventListener("online", now);
    document?.addEventListener("visibilitychange", visible);
    return () => {
      window?.removeEventListener("online", now);
      document?.removeEventListener("visibilitychange", visible);
    };
  }

  /** Cuts the wait before the next attempt short. */
  #wake() {
    if (this.#retry === null) return;
    clearTimeout(this.#retry);
    this.#retry = null;
    this.#redial();
  }

  #redial() {
    if (this.#closed || this.#closing) return;
    let socket;
    try {
      socket = this.#dial();
    } catch (error) {
      return this.#onClose(1006, String(error?.message ?? error));
    }
    this.#attach(socket);
  }

  /**
   * Calls `method` and resolves with its result, or rejects with an RpcError.
   * `params` is an object (by name) or an array (by position). After
   * `timeout` ms (30 s by default), or when `signal` aborts, the call fails
   * and the other side is sent `$/cancelRequest`, so it stops the work.
   *
   * A parameter that is an async iterable, or made with `outgoing`, goes as
   * a stream the other side pulls from, until the call completes.
   */
  call(method, params, { timeout = this.#timeout, signal } = {}) {
    if (this.#closed) return Promise.reject(new RpcError(codes.PEER_CLOSED, "the connection is closed"));
    const cancelled = () => new RpcError(codes.REQUEST_CANCELLED, "Request cancelled", signal?.reason);
    if (signal?.aborted) return Promise.reject(cancelled());
    const id = this.#nextId++;
    let tokens;
    try {
      [params, tokens] = this.#carryStreams(params, id);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const giveUp = (error) => {
        if (!this.#pending.has(id)) return;
        const { sent } = this.#settle(id);
        // Still waiting for a connection, it never went out: nothing to cancel.
        if (sent) this.#send({ jsonrpc: "2.0", method: CANCEL, params: { id } });
        else this.#queued = this.#queued.filter((queued) => queued.id !== id);
        reject(error);
      };
      const onAbort = () => giveUp(cancelled());
      const timer = timeout > 0 && Number.isFinite(timeout)
        ? setTimeout(() => giveUp(new RpcError(codes.TIMED_OUT, `no reply within ${timeout} ms`)), timeout)
        : null;
      signal?.addEventListener("abort", onAbort, { once: true });
      const cleanup = () => {
        if (timer !== null) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        for (const token of tokens) this.#dispose(token);
      };
      this.#pending.set(id, { resolve, reject, cleanup, sent: false });
      const message = { jsonrpc: "2.0", id, method };
      if (params !== undefined) message.params = params;
      this.#send(message, id);
    });
  }

  /** Sends a one-way message: no id, no reply (and so no stream in it). */
  notify(method, params) {
    if (this.#closed) throw new RpcError(codes.PEER_CLOSED, "the connection is closed");
    if (params !== null && typeof params === "object" && Object.values(params).some(isStream)) {
      throw new RpcError(codes.INVALID_PARAMS, "a stream cannot travel in a notification: nothing would say when to release it");
    }
    const message = { jsonrpc: "2.0", method };
    if (params !== undefined) message.params = params;
    this.#send(message);
  }

  /**
   * Marks `iterable` (an async iterable, or an iterable such as an array) to
   * be sent as a stream: as a call's parameter, or as a handler's result.
   * (An async iterable is sent as a stream without it.)
   */
  outgoing(iterable) {
    if (!isAsyncIterable(iterable) && typeof iterable?.[Symbol.iterator] !== "function") {
      throw new TypeError("a stream is made from an iterable or an async iterable");
    }
    return new Outgoing(iterable);
  }

  /**
   * The stream the other side sends in `carried` (a call's result, or a
   * handler's parameter: `{ token, values }`, or a bare token), as an async
   * iterable of its values. Values are asked for as it is read; leaving a
   * `for await` early (or an error) tells the other side to stop. A stream
   * never read is released only when the connection closes.
   */
  incoming(carried) {
    let token = carried;
    let values = [];
    if (carried !== null && typeof carried === "object" && !Array.isArray(carried)) {
      if (Object.hasOwn(carried, "token") || Object.hasOwn(carried, "values")) {
        token = carried.token;
        values = Array.isArray(carried.values) ? carried.values : [];
      }
    }
    token ??= undefined;
    const generator = this.#consume(token, values);
    // A stream lives on the connection it came on.
    const connection = this.#generation;
    const live = () => token !== undefined && !this.#closed && connection === this.#generation;
    let started = false;
    // An async generator never started skips its `finally` on `return()`:
    // dispose of the stream here then, so a loop left at once still tells.
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      next: (value) => {
        started = true;
        return generator.next(value);
      },
      return: (value) => {
        if (!started && live()) this.notify(DISPOSE, { token });
        started = true;
        return generator.return(value);
      },
      throw: (error) => generator.throw(error),
    };
  }

  async *#consume(token, values) {
    const connection = this.#generation;
    let finished = token === undefined;
    try {
      yield* values;
      while (!finished) {
        if (connection !== this.#generation) {
          throw new RpcError(codes.PEER_CLOSED, "the connection that carried the stream closed");
        }
        // A stream may wait for its next value as long as it likes: no timeout.
        const batch = await this.call(NEXT, { token }, { timeout: Infinity });
        const got = Array.isArray(batch?.values) ? batch.values : [];
        // An empty batch that is not the end would have us ask forever.
        finished = batch?.finished === true || got.length === 0;
        yield* got;
      }
    } finally {
      if (token !== undefined && !this.#closed && connection === this.#generation) this.notify(DISPOSE, { token });
    }
  }

  /** Streams this side sends that are still open. */
  get openStreams() {
    return this.#streams.size;
  }

  /** Closes the connection (code 1000 by default), for good. */
  close(code = 1000, reason = "") {
    if (this.#closed) return;
    this.#closing = true;
    // An open connection closes with a handshake; its close event finishes.
    if (this.#state === "connected") return this.#socket.close(code, reason);
    // Still connecting, or between attempts: done now, and what the socket
    // says later is ignored.
    clearTimeout(this.#retry);
    this.#retry = null;
    this.#generation++;
    this.#finish(code, reason);
    try {
      this.#socket.close?.(code, reason);
    } catch {
      // A code a socket refuses: it is dropped all the same.
    }
  }

  /**
   * Registers `stream` under a new token; what travels in its place.
   * `call` is the id of the call whose parameter it is, if it is one.
   */
  #open(stream, call) {
    if (this.#streams.size >= this.#maxOpenStreams) {
      throw new RpcError(codes.SERVER_BUSY, `Too many open streams: at most ${this.#maxOpenStreams} per connection`);
    }
    const iterable = stream instanceof Outgoing ? stream.iterable : stream;
    const sync = !isAsyncIterable(iterable);
    const iterator = sync ? iterable[Symbol.iterator]() : iterable[Symbol.asyncIterator]();
    const token = newToken();
    let cut;
    // Settles when the stream is disposed of, so an ask waiting for a value stops waiting.
    const cutShort = new Promise((resolve) => (cut = () => resolve(CUT)));
    this.#streams.set(token, { iterator, sync, pending: null, failure: null, busy: false, cutShort, cut, call });
    return { token };
  }

  /** `params` of call `id` with each stream in it registered; and their tokens. */
  #carryStreams(params, id) {
    if (params === null || typeof params !== "object") return [params, []];
    const tokens = [];
    const carry = (value) => {
      if (!isStream(value)) return value;
      const carried = this.#open(value, id);
      tokens.push(carried.token);
      return carried;
    };
    try {
      const carried = Array.isArray(params)
        ? params.map(carry)
        : Object.fromEntries(Object.entries(params).map(([name, value]) => [name, carry(value)]));
      return [carried, tokens];
    } catch (error) {
      for (const token of tokens) this.#dispose(token);
      throw error;
    }
  }

  /** Drops the stream sent under `token`; false if there was none. */
  #dispose(token) {
    const stream = this.#streams.get(token);
    if (!stream) return false;
    this.#streams.delete(token);
    stream.cut();
    // An iterator's cleanup must not break ours.
    Promise.resolve()
      .then(() => stream.iterator.return?.())
      .catch(() => {});
    return true;
  }

  /** Answers `$/enumerator/next`, `dispose` and `abort` for the streams we send. */
  async #onStream(method, id, hasId, params) {
    const token = Array.isArray(params) ? params[0] : params?.token;
    const failure = (code, message) => (hasId ? { jsonrpc: "2.0", id, error: { code, message } } : null);
    if (token === undefined) return failure(codes.INVALID_PARAMS, "Invalid params: expected the stream's token");
    if (method !== NEXT) {
      this.#dispose(token);
      return hasId ? { jsonrpc: "2.0", id, result: null } : null;
    }
    if (!hasId) return null;
    const stream = typeof token === "string" ? this.#streams.get(token) : undefined;
    if (!stream) return failure(codes.NO_SUCH_STREAM, "No stream has this token");
    if (stream.busy) return failure(codes.INVALID_REQUEST, "A $/enumerator/next for this token is already waiting");
    stream.busy = true;
    let pulled;
    try {
      pulled = await this.#pull(stream);
    } finally {
      stream.busy = false;
    }
    const { values, finished, error } = pulled;
    const over = finished || error !== undefined;
    // Disposed of meanwhile (released with its call, say): cut short, not finished.
    if (this.#streams.get(token) !== stream) return failure(codes.NO_SUCH_STREAM, "The stream was disposed of");
    if (over) this.#streams.delete(token);
    if (error !== undefined) return { jsonrpc: "2.0", id, error };
    return { jsonrpc: "2.0", id, result: { values, finished } };
  }

  /**
   * The next values of `stream`: at least one (fewer only at the end), then
   * those ready at once (by the end of this task), up to MAX_BATCH_BYTES.
   */
  async #pull(stream) {
    if (stream.failure) return { values: [], finished: true, error: stream.failure };
    const values = [];
    let bytes = 0;
    let deadline = null;
    while (bytes < MAX_BATCH_BYTES) {
      let step;
      try {
        const next = stream.pending ?? stream.iterator.next();
        stream.pending = null;
        if (stream.sync) {
          step = next;
        } else {
          const waits = [next, stream.cutShort];
          if (values.length > 0) waits.push((deadline ??= soon()));
          step = await Promise.race(waits);
          if (step === CUT) return { values, finished: true };
          if (step === SOON) {
            stream.pending = next;
            break;
          }
        }
      } catch (thrown) {
        if (values.length === 0) return { values, finished: true, error: errorObject(thrown) };
        // The values come first; the next ask gets the error.
        stream.failure = errorObject(thrown);
        break;
      }
      if (step.done) return { values, finished: true };
      let json;
      try {
        json = JSON.stringify(step.value) ?? "null";
      } catch (thrown) {
        const error = errorObject(new Error(`a stream value is not JSON: ${thrown.message}`));
        if (values.length === 0) return { values, finished: true, error };
        stream.failure = error;
        break;
      }
      values.push(step.value);
      bytes += json.length + 1;
    }
    return { values, finished: false };
  }

  /** Sends `message` (call `id`'s request, if it is one), or queues it until a connection opens. */
  #send(message, id) {
    if (this.#closed) return;
    const frame = JSON.stringify(message);
    // Still connecting (readyState 0), or reconnecting: the frame goes out on open.
    const waiting = this.#socket.readyState === 0 || this.#state === "reconnecting";
    // onReconnect's calls go out on its connection, ahead of what waited.
    const hooked = this.#hook !== null && this.#hook === this.#generation;
    if (waiting && !hooked) this.#queued.push({ frame, id });
    else this.#write(frame, id);
  }

  #write(frame, id) {
    const pending = this.#pending.get(id);
    if (pending) pending.sent = true;
    // A socket that is closing drops what is sent; the close event follows.
    try {
      this.#socket.send(frame);
    } catch {
      this.dispatchEvent(new Event("error"));
    }
  }

  #settle(id) {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    pending?.cleanup();
    return pending;
  }

  /**
   * A connection ended. Reconnecting, the calls it carried fail with -32021
   * (they are never sent again) and those waiting for a connection wait on;
   * otherwise everything ends. A first connection that closes before it
   * opens ends it too: a browser cannot tell a refused handshake (401, 403)
   * from a server that is not there, and either would fail again.
   */
  #onClose(code, reason) {
    if (this.#closed) return;
    clearTimeout(this.#stable);
    this.#stable = null;
    // Counting on from the last attempt, unless the connection had lasted (then 0).
    const attempt = this.#attempt + 1;
    const retrying = this.#reconnect && !this.#closing && this.#opened && attempt <= this.#reconnect.maxAttempts;
    if (!retrying) return this.#finish(code, reason);
    this.#attempt = attempt;
    // What belonged to the dropped connection is stale from now on: its
    // hook's continuation, its streams, answers to its calls.
    this.#generation++;
    this.#dropConnection(code);
    this.#setState("reconnecting", { attempt, error: { code, reason } });
    // A listener may have closed it.
    if (this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#redial();
    }, reconnectDelay(this.#reconnect, attempt, this.#random()));
  }

  /** What one connection carried ends with it. */
  #dropConnection(code, waiting = false) {
    for (const [id, pending] of [...this.#pending]) {
      if (pending.sent || waiting) this.#settle(id).reject(new RpcError(codes.PEER_CLOSED, `the connection closed (${code})`));
    }
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
    // Streams went with what carried them: a handler's result, or a call
    // that went out. A waiting call's go out with it.
    for (const [token, stream] of [...this.#streams]) {
      if (waiting || stream.call === undefined || !this.#pending.has(stream.call)) this.#dispose(token);
    }
  }

  /** Closed for good. */
  #finish(code, reason) {
    if (this.#closed) return;
    this.#closed = { code, reason };
    this.#dropConnection(code, true);
    this.#queued = [];
    clearTimeout(this.#stable);
    this.#forget();
    this.#setState("closed", { code, reason });
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
  }

  async #onText(text, generation) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return this.#send({ jsonrpc: "2.0", id: null, error: { code: codes.PARSE_ERROR, message: "Parse error" } });
    }
    // An answer goes back on the connection its question came on, or not at all.
    const answer = (reply) => generation === this.#generation && this.#send(reply);
    if (Array.isArray(message)) {
      if (message.length === 0) return answer(this.#invalid(null, "empty batch"));
      const replies = (await Promise.all(message.map((item) => this.#onMessage(item)))).filter(Boolean);
      if (replies.length > 0) answer(replies);
      return;
    }
    const reply = await this.#onMessage(message);
    if (reply) answer(reply);
  }

  #invalid(id, reason) {
    return { jsonrpc: "2.0", id, error: { code: codes.INVALID_REQUEST, message: "Invalid request", data: reason } };
  }

  /** Handles one message; resolves with the reply to send, if any. */
  async #onMessage(message) {
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      return this.#invalid(null, "a message must be a JSON object");
    }
    const hasId = Object.hasOwn(message, "id");
    if (!Object.hasOwn(message, "method")) {
      const hasResult = Object.hasOwn(message, "result");
      const hasError = Object.hasOwn(message, "error");
      // A response: ours or not, it is never answered; one with both members is malformed and dropped.
      if (hasId && hasResult !== hasError) this.#onResponse(message);
      if (hasId && (hasResult || hasError)) return null;
      return this.#invalid(hasId && isId(message.id) ? message.id : null, "a request needs a \"method\"");
    }
    const id = hasId ? message.id : undefined;
    if (hasId && !isId(id)) return this.#invalid(null, "\"id\" must be a string, a number or null");
    if (message.jsonrpc !== "2.0") return hasId ? this.#invalid(id, "\"jsonrpc\" must be \"2.0\"") : null;
    if (typeof message.method !== "string") return hasId ? this.#invalid(id, "\"method\" must be a string") : null;
    const params = message.params;
    if (message.method === NEXT || message.method === DISPOSE || message.method === ABORT) {
      return this.#onStream(message.method, id, hasId, params);
    }
    if (message.method === CANCEL) {
      const target = Array.isArray(params) ? params[0] : params?.id;
      this.#running.get(JSON.stringify(target))?.abort();
      return hasId ? { jsonrpc: "2.0", id, result: null } : null;
    }
    const handler = this.#handlers[message.method];
    if (typeof handler !== "function") {
      return hasId
        ? { jsonrpc: "2.0", id, error: { code: codes.METHOD_NOT_FOUND, message: "Method not found", data: message.method } }
        : null;
    }
    const controller = new AbortController();
    const key = JSON.stringify(id);
    if (hasId) this.#running.set(key, controller);
    try {
      let result = await handler(params, { signal: controller.signal, peer: this });
      if (controller.signal.aborted) {
        return hasId ? { jsonrpc: "2.0", id, error: { code: codes.REQUEST_CANCELLED, message: "Request cancelled" } } : null;
      }
      if (!hasId) return null;
      // A stream result travels as its token; the caller pulls the values.
      if (isStream(result)) result = this.#open(result);
      try {
        JSON.stringify(result);
      } catch (error) {
        return { jsonrpc: "2.0", id, error: errorObject(new Error(`the result is not JSON: ${error.message}`)) };
      }
      return { jsonrpc: "2.0", id, result: result === undefined ? null : result };
    } catch (thrown) {
      return hasId ? { jsonrpc: "2.0", id, error: errorObject(thrown) } : null;
    } finally {
      if (hasId && this.#running.get(key) === controller) this.#running.delete(key);
    }
  }

  #onResponse(message) {
    if (typeof message.id !== "number") return;
    const pending = this.#settle(message.id);
    if (!pending) {
      // Its caller gave up just before it came: a stream in it would never be read.
      const token = message.result?.token;
      const ours = message.id > 0 && message.id < this.#nextId;
      if (ours && token !== undefined && token !== null && !this.#closed) this.notify(DISPOSE, { token });
      return;
    }
    if (Object.hasOwn(message, "error")) {
      const { code, message: text, data } = message.error ?? {};
      pending.reject(new RpcError(Number.isInteger(code) ? code : codes.INTERNAL_ERROR, String(text ?? "error"), data));
    } else {
      pending.resolve(message.result);
    }
  }
}

/**
 * Opens a connection to `url` (ws:// or wss://). `handlers` maps wire method
 * names (`"chat.message"`) to functions of `(params, { signal, peer })`; what
 * they return (or resolve to) is the reply, what they throw is the error
 * (with its `code`, `message` and `data`, if it has them).
 */
export function connect(url, { WebSocket: Socket = globalThis.WebSocket, ...options } = {}) {
  return new Peer(() => new Socket(url), options);
}

/**
 * `args` with the values at `positions` read as streams the other side sends
 * (`peer.incoming`): what generated handlers pass for stream parameters.
 */
export function incomingAt(args, positions, peer) {
  for (const i of positions) args[i] = peer.incoming(args[i]);
  return args;
}
