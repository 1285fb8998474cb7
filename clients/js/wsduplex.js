// wsduplex.js: a dependency-free ES module that speaks wsduplex's wire
// (JSON-RPC 2.0 over one WebSocket, both directions) from a browser or Node.
//
//   import { connect } from "/wsduplex.js";
//   const peer = connect("ws://" + location.host + "/ws", {
//     handlers: { "chat.message": ({ from, text }) => show(from, text) },
//   });
//   await peer.ready;
//   const members = await peer.call("chat.join", { room: "lobby", nick: "ada" });

/** Error codes the module itself produces (the same as the Rust side's). */
export const codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  TIMED_OUT: -32020,
  PEER_CLOSED: -32021,
  REQUEST_CANCELLED: -32022,
});

const CANCEL = "$/cancelRequest";

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
 * One connection: calls and notifications out, handlers for what comes in.
 * Events: "open", "close" (detail: { code, reason }), "error".
 */
export class Peer extends EventTarget {
  #socket;
  #handlers;
  #timeout;
  #nextId = 1;
  #pending = new Map(); // our id -> { resolve, reject, cleanup }
  #running = new Map(); // their id (as JSON text) -> AbortController
  #closed = null;
  #queued = []; // frames made before the socket opened

  /** Resolves when the connection is open; rejects if it closes first. */
  ready;

  constructor(socket, { handlers = {}, timeout = 30000 } = {}) {
    super();
    this.#socket = socket;
    this.#handlers = handlers;
    this.#timeout = timeout;
    this.ready = new Promise((resolve, reject) => {
      this.addEventListener("open", () => resolve(this), { once: true });
      this.addEventListener("close", (e) => reject(new RpcError(codes.PEER_CLOSED, `closed (${e.detail.code})`)), { once: true });
    });
    this.ready.catch(() => {});
    if ("binaryType" in socket) socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      for (const frame of this.#queued.splice(0)) this.#write(frame);
      this.dispatchEvent(new Event("open"));
    };
    socket.onerror = () => this.dispatchEvent(new Event("error"));
    socket.onclose = (e) => this.#onClose(e.code ?? 1006, e.reason ?? "");
    // Binary frames holding UTF-8 JSON are accepted too.
    socket.onmessage = (e) => this.#onText(typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data));
  }

  /** True once the connection has closed. */
  get closed() {
    return this.#closed !== null;
  }

  /**
   * Calls `method` and resolves with its result, or rejects with an RpcError.
   * `params` is an object (by name) or an array (by position). After
   * `timeout` ms (30 s by default), or when `signal` aborts, the call fails
   * and the other side is sent `$/cancelRequest`, so it stops the work.
   */
  call(method, params, { timeout = this.#timeout, signal } = {}) {
    if (this.#closed) return Promise.reject(new RpcError(codes.PEER_CLOSED, "the connection is closed"));
    const cancelled = () => new RpcError(codes.REQUEST_CANCELLED, "Request cancelled", signal?.reason);
    if (signal?.aborted) return Promise.reject(cancelled());
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const giveUp = (error) => {
        if (!this.#pending.has(id)) return;
        this.#settle(id);
        this.#send({ jsonrpc: "2.0", method: CANCEL, params: { id } });
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
      };
      this.#pending.set(id, { resolve, reject, cleanup });
      const message = { jsonrpc: "2.0", id, method };
      if (params !== undefined) message.params = params;
      this.#send(message);
    });
  }

  /** Sends a one-way message: no id, no reply. */
  notify(method, params) {
    if (this.#closed) throw new RpcError(codes.PEER_CLOSED, "the connection is closed");
    const message = { jsonrpc: "2.0", method };
    if (params !== undefined) message.params = params;
    this.#send(message);
  }

  /** Closes the connection (code 1000 by default). */
  close(code = 1000, reason = "") {
    this.#socket.close(code, reason);
  }

  #send(message) {
    if (this.#closed) return;
    const frame = JSON.stringify(message);
    // Still connecting (readyState 0): the frame goes out on open.
    if (this.#socket.readyState === 0) this.#queued.push(frame);
    else this.#write(frame);
  }

  #write(frame) {
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

  #onClose(code, reason) {
    if (this.#closed) return;
    this.#closed = { code, reason };
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id)?.reject(new RpcError(codes.PEER_CLOSED, `the connection closed (${code})`));
    }
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
  }

  async #onText(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return this.#send({ jsonrpc: "2.0", id: null, error: { code: codes.PARSE_ERROR, message: "Parse error" } });
    }
    if (Array.isArray(message)) {
      if (message.length === 0) return this.#send(this.#invalid(null, "empty batch"));
      const replies = (await Promise.all(message.map((item) => this.#onMessage(item)))).filter(Boolean);
      if (replies.length > 0) this.#send(replies);
      return;
    }
    const reply = await this.#onMessage(message);
    if (reply) this.#send(reply);
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
      const result = await handler(params, { signal: controller.signal, peer: this });
      if (controller.signal.aborted) {
        return hasId ? { jsonrpc: "2.0", id, error: { code: codes.REQUEST_CANCELLED, message: "Request cancelled" } } : null;
      }
      if (!hasId) return null;
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
    if (!pending) return;
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
export function connect(url, { handlers = {}, timeout = 30000, WebSocket: Socket = globalThis.WebSocket } = {}) {
  return new Peer(new Socket(url), { handlers, timeout });
}
