// Unit tests for wsduplex.js, without a browser: `node --test clients/js/*.test.mjs`.
// A fake socket records what the module sends and lets a test deliver frames.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Peer, RpcError, argumentsOf, codes, connect } from "./wsduplex.js";
import { FakeSocket } from "./fake-socket.mjs";

function pair(handlers = {}, timeout = 30000) {
  const socket = new FakeSocket();
  const peer = new Peer(socket, { handlers, timeout });
  socket.open();
  return { socket, peer };
}

test("calls go out as requests by name and resolve with the result", async () => {
  const { socket, peer } = pair();
  await peer.ready;
  const reply = peer.call("chat.join", { room: "lobby", nick: "ada" });
  assert.deepEqual(socket.sent[0], { jsonrpc: "2.0", id: 1, method: "chat.join", params: { room: "lobby", nick: "ada" } });
  socket.deliver({ jsonrpc: "2.0", id: 1, result: ["ada"] });
  assert.deepEqual(await reply, ["ada"]);
});

test("an error reply rejects with its code, message and data", async () => {
  const { socket, peer } = pair();
  const reply = peer.call("nope");
  socket.deliver({ jsonrpc: "2.0", id: 1, error: { code: -32601, message: "Method not found", data: "nope" } });
  await assert.rejects(reply, (e) => e instanceof RpcError && e.code === -32601 && e.data === "nope");
});

test("a timeout or an abort fails the call and sends $/cancelRequest", async () => {
  const { socket, peer } = pair({}, 10);
  await assert.rejects(peer.call("slow"), (e) => e.code === codes.TIMED_OUT);
  assert.deepEqual(socket.sent[1], { jsonrpc: "2.0", method: "$/cancelRequest", params: { id: 1 } });
  const controller = new AbortController();
  const aborted = peer.call("slow", [], { signal: controller.signal, timeout: 0 });
  controller.abort();
  await assert.rejects(aborted, (e) => e instanceof RpcError && e.code === codes.REQUEST_CANCELLED);
  assert.deepEqual(socket.sent[3], { jsonrpc: "2.0", method: "$/cancelRequest", params: { id: 2 } });
  // A late reply to a call given up on is ignored, and answered with nothing.
  socket.deliver({ jsonrpc: "2.0", id: 2, result: 1 });
  await new Promise((r) => setImmediate(r));
  assert.equal(socket.sent.length, 4);
});

test("what is sent before the socket opens goes out when it does", async () => {
  const socket = new FakeSocket();
  socket.readyState = 0;
  const peer = new Peer(socket);
  const reply = peer.call("early", { n: 1 });
  peer.notify("early.note");
  assert.equal(socket.sent.length, 0);
  socket.readyState = 1;
  socket.open();
  assert.deepEqual(socket.sent.map((m) => m.method), ["early", "early.note"]);
  socket.deliver({ jsonrpc: "2.0", id: 1, result: "late but fine" });
  assert.equal(await reply, "late but fine");
});

test("invalid requests, malformed responses and all-notification batches", async () => {
  const { socket } = pair({ "t.note": () => {}, "t.big": () => 10n });
  socket.deliver({ jsonrpc: "2.0", id: 1 });
  socket.deliver([{ foo: "boo" }]);
  socket.deliver({ jsonrpc: "2.0", id: 9, result: 1, error: { code: 1, message: "both" } });
  socket.deliver([{ jsonrpc: "2.0", method: "t.note" }, { jsonrpc: "2.0", method: "t.note" }]);
  socket.deliver({ jsonrpc: "2.0", id: 2, method: "t.big" });
  const sent = await socket.sentAtLeast(3);
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.length, 3, JSON.stringify(sent));
  assert.deepEqual([sent[0].id, sent[0].error.code], [1, -32600]);
  assert.ok(Array.isArray(sent[1]) && sent[1][0].id === null && sent[1][0].error.code === -32600);
  assert.deepEqual([sent[2].id, sent[2].error.code], [2, codes.INTERNAL_ERROR]);
});

test("notifications carry no id, and calls fail once the connection is closed", async () => {
  const { socket, peer } = pair();
  peer.notify("chat.say", { text: "hi" });
  assert.deepEqual(socket.sent[0], { jsonrpc: "2.0", method: "chat.say", params: { text: "hi" } });
  const waiting = peer.call("chat.join", {});
  const closed = new Promise((resolve) => peer.addEventListener("close", (e) => resolve(e.detail)));
  socket.onclose({ code: 1001, reason: "server shutting down" });
  assert.deepEqual(await closed, { code: 1001, reason: "server shutting down" });
  await assert.rejects(waiting, (e) => e.code === codes.PEER_CLOSED);
  await assert.rejects(peer.call("again"), (e) => e.code === codes.PEER_CLOSED);
  assert.throws(() => peer.notify("again"), RpcError);
});

test("handlers answer requests, notifications get nothing back, errors become error objects", async () => {
  const seen = [];
  const { socket } = pair({
    "chat.invited": async ({ from, room }) => from === "bob" && room === "lobby",
    "chat.message": (params) => {
      seen.push(params.text);
    },
    "t.fail": () => {
      throw { code: 1002, message: "not in a room", data: { room: "x" } };
    },
    "t.crash": () => {
      throw new Error("boom");
    },
  });
  socket.deliver({ jsonrpc: "2.0", id: 7, method: "chat.invited", params: { from: "bob", room: "lobby" } });
  socket.deliver({ jsonrpc: "2.0", method: "chat.message", params: { text: "hello" } });
  socket.deliver({ jsonrpc: "2.0", id: "a", method: "t.fail" });
  socket.deliver({ jsonrpc: "2.0", id: "b", method: "t.crash" });
  socket.deliver({ jsonrpc: "2.0", id: 9, method: "t.unknown" });
  const sent = await socket.sentAtLeast(4);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, ["hello"]);
  const byId = Object.fromEntries(sent.map((m) => [m.id, m]));
  assert.deepEqual(byId[7], { jsonrpc: "2.0", id: 7, result: true });
  assert.deepEqual(byId.a.error, { code: 1002, message: "not in a room", data: { room: "x" } });
  assert.equal(byId.b.error.code, codes.INTERNAL_ERROR);
  assert.deepEqual(byId[9].error, { code: -32601, message: "Method not found", data: "t.unknown" });
  assert.equal(sent.length, 4, "the notification got no reply");
});

test("batches are answered as one batch; junk gets the wire rules' errors", async () => {
  const { socket } = pair({ "t.echo": ([text]) => text });
  socket.deliver([
    { jsonrpc: "2.0", id: 1, method: "t.echo", params: ["x"] },
    { jsonrpc: "2.0", method: "t.echo", params: ["note"] },
    { jsonrpc: "2.0", id: 2, method: "t.echo", params: ["y"] },
  ]);
  const [batch] = await socket.sentAtLeast(1);
  assert.deepEqual(batch, [
    { jsonrpc: "2.0", id: 1, result: "x" },
    { jsonrpc: "2.0", id: 2, result: "y" },
  ]);
  socket.deliver("{not json");
  socket.deliver([]);
  socket.deliver(42);
  socket.deliver({ jsonrpc: "2.0", id: { no: 1 }, method: "t.echo" });
  socket.deliver({ jsonrpc: "1.0", id: 5, method: "t.echo" });
  const sent = await socket.sentAtLeast(6);
  assert.deepEqual(sent[1], { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
  assert.equal(sent[2].error.code, -32600);
  assert.equal(sent[3].error.code, -32600);
  assert.deepEqual([sent[4].id, sent[4].error.code], [null, -32600]);
  assert.deepEqual([sent[5].id, sent[5].error.code], [5, -32600]);
});

test("$/cancelRequest aborts the running handler's signal", async () => {
  let signal;
  const { socket } = pair({
    "t.hang": (_params, context) => {
      signal = context.signal;
      return new Promise(() => {});
    },
  });
  socket.deliver({ jsonrpc: "2.0", id: 3, method: "t.hang" });
  await new Promise((r) => setImmediate(r));
  socket.deliver({ jsonrpc: "2.0", method: "$/cancelRequest", params: { id: 3 } });
  assert.equal(signal.aborted, true);
});

test("connect uses the WebSocket it is given", async () => {
  let made;
  class Recording extends FakeSocket {
    constructor(url) {
      super();
      made = url;
    }
  }
  const peer = connect("ws://example.invalid/ws", { WebSocket: Recording });
  assert.equal(made, "ws://example.invalid/ws");
  assert.equal(peer.closed, false);
});

test("argumentsOf takes parameters by name or by position and names what is missing", () => {
  assert.deepEqual(argumentsOf({ room: "r", nick: "n", extra: 1 }, ["room", "nick"]), ["r", "n"]);
  assert.deepEqual(argumentsOf(["r", "n"], ["room", "nick"]), ["r", "n"]);
  assert.deepEqual(argumentsOf(["r"], ["room", "limit"], ["limit"]), ["r", undefined]);
  assert.deepEqual(argumentsOf(undefined, []), []);
  const invalid = (param) => (e) =>
    e instanceof RpcError && e.code === codes.INVALID_PARAMS && e.data.param === param;
  assert.throws(() => argumentsOf({ room: "r" }, ["room", "nick"]), invalid("nick"));
  assert.throws(() => argumentsOf(["r", "n", "x"], ["room", "nick"]), invalid(null));
  assert.throws(() => argumentsOf("text", ["room"]), invalid(null));
});

test("a handler that throws argumentsOf's error answers -32602 naming the parameter", async () => {
  const { socket } = pair({ "chat.invited": (params) => argumentsOf(params, ["from", "room"]) });
  socket.deliver({ jsonrpc: "2.0", id: 4, method: "chat.invited", params: { from: "bob" } });
  const [reply] = await socket.sentAtLeast(1);
  assert.equal(reply.error.code, codes.INVALID_PARAMS);
  assert.deepEqual(reply.error.data, { param: "room", reason: "missing" });
});

// ---- Streams (StreamJsonRpc's IAsyncEnumerable protocol) ----

const tick = () => new Promise((r) => setImmediate(r));

/** The last frame sent, once there is a new one. */
async function nextSent(socket, count) {
  const sent = await socket.sentAtLeast(count);
  return sent[count - 1];
}

test("a received stream asks for values as it is read, then disposes of it", async () => {
  const { socket, peer } = pair();
  const read = [];
  const reading = (async () => {
    for await (const value of peer.incoming({ token: "t1", values: [1] })) read.push(value);
  })();
  const ask = await nextSent(socket, 1);
  assert.deepEqual(ask, { jsonrpc: "2.0", id: 1, method: "$/enumerator/next", params: { token: "t1" } });
  socket.deliver({ jsonrpc: "2.0", id: 1, result: { values: [2, 3], finished: false } });
  const again = await nextSent(socket, 2);
  assert.equal(again.method, "$/enumerator/next");
  socket.deliver({ jsonrpc: "2.0", id: again.id, result: { values: [4], finished: true } });
  await reading;
  assert.deepEqual(read, [1, 2, 3, 4]);
  assert.deepEqual(socket.sent[2], { jsonrpc: "2.0", method: "$/enumerator/dispose", params: { token: "t1" } });
  // A sequence that came whole with its carrier needs no token and sends nothing.
  const whole = [];
  for await (const value of peer.incoming({ values: [7, 8] })) whole.push(value);
  assert.deepEqual(whole, [7, 8]);
  assert.equal(socket.sent.length, 3);
});

test("leaving a for-await early disposes; a producer's error is thrown", async () => {
  const { socket, peer } = pair();
  for await (const value of peer.incoming({ token: "t2", values: [1, 2, 3] })) {
    assert.equal(value, 1);
    break;
  }
  assert.deepEqual(socket.sent, [{ jsonrpc: "2.0", method: "$/enumerator/dispose", params: { token: "t2" } }]);

  const failing = (async () => {
    for await (const _ of peer.incoming("bare-token"));
  })();
  const ask = await nextSent(socket, 2);
  assert.deepEqual(ask.params, { token: "bare-token" });
  socket.deliver({ jsonrpc: "2.0", id: ask.id, error: { code: 2002, message: "feed lost" } });
  await assert.rejects(failing, (e) => e instanceof RpcError && e.code === 2002);
  assert.deepEqual(socket.sent[2], { jsonrpc: "2.0", method: "$/enumerator/dispose", params: { token: "bare-token" } });
});

test("a stream parameter is pulled in batches and released when the call completes", async () => {
  const { socket, peer } = pair();
  const reply = peer.call("ticker.total", { values: peer.outgoing([1.5, 2.5, 3]) });
  const request = await nextSent(socket, 1);
  const token = request.params.values.token;
  assert.equal(typeof token, "string");
  assert.equal(token.length, 22);
  assert.equal(peer.openStreams, 1);
  socket.deliver({ jsonrpc: "2.0", id: "a", method: "$/enumerator/next", params: [token] });
  assert.deepEqual(await nextSent(socket, 2), { jsonrpc: "2.0", id: "a", result: { values: [1.5, 2.5, 3], finished: true } });
  socket.deliver({ jsonrpc: "2.0", id: "b", method: "$/enumerator/next", params: { token } });
  assert.deepEqual((await nextSent(socket, 3)).error, { code: codes.NO_SUCH_STREAM, message: "No stream has this token" });

  // An async generator, partly read by the server: released with the call's reply.
  let release;
  const released = new Promise((resolve) => (release = resolve));
  let more;
  const gate = new Promise((resolve) => (more = resolve));
  async function* numbers() {
    try {
      yield 1;
      yield 2;
      await gate;
      yield 3;
    } finally {
      release();
    }
  }
  const second = peer.call("ticker.total", [numbers()]);
  const carried = (await nextSent(socket, 4)).params[0];
  socket.deliver({ jsonrpc: "2.0", id: "c", method: "$/enumerator/next", params: carried });
  assert.deepEqual((await nextSent(socket, 5)).result, { values: [1, 2], finished: false });
  assert.equal(peer.openStreams, 2 - 1);
  socket.deliver({ jsonrpc: "2.0", id: request.id, result: 7 });
  socket.deliver({ jsonrpc: "2.0", id: 2, result: 3 });
  assert.equal(await reply, 7);
  assert.equal(await second, 3);
  assert.equal(peer.openStreams, 0);
  // Returned once the value it was producing is in: its finally runs.
  more();
  await released;
});

test("values ready at once travel together; a slow producer sends what it has", async () => {
  let later;
  const gate = new Promise((resolve) => (later = resolve));
  const { socket } = pair({
    "feed.ready": async function* () {
      for (let i = 0; i < 5; i++) yield i;
    },
    "feed.slow": async function* () {
      yield "first";
      await gate;
      yield "second";
    },
  });
  socket.deliver({ jsonrpc: "2.0", id: 1, method: "feed.ready" });
  const ready = (await nextSent(socket, 1)).result;
  socket.deliver({ jsonrpc: "2.0", id: 2, method: "$/enumerator/next", params: ready });
  assert.deepEqual((await nextSent(socket, 2)).result, { values: [0, 1, 2, 3, 4], finished: true });

  socket.deliver({ jsonrpc: "2.0", id: 3, method: "feed.slow" });
  const slow = (await nextSent(socket, 3)).result;
  socket.deliver({ jsonrpc: "2.0", id: 4, method: "$/enumerator/next", params: slow });
  assert.deepEqual((await nextSent(socket, 4)).result, { values: ["first"], finished: false });
  socket.deliver({ jsonrpc: "2.0", id: 5, method: "$/enumerator/next", params: slow });
  await tick();
  assert.equal(socket.sent.length, 4, "the ask waits for a value");
  later();
  assert.deepEqual((await nextSent(socket, 5)).result, { values: ["second"], finished: true });
});

test("dispose drops a handler's stream; an error mid-stream comes with the next ask", async () => {
  let drop;
  const dropped = new Promise((resolve) => (drop = resolve));
  const { socket, peer } = pair({
    "feed.endless": async function* () {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        drop();
      }
    },
    "feed.failing": async function* () {
      yield 1;
      throw Object.assign(new Error("feed lost"), { code: 2002 });
    },
  });
  socket.deliver({ jsonrpc: "2.0", id: 1, method: "feed.endless" });
  const endless = (await nextSent(socket, 1)).result;
  assert.equal(peer.openStreams, 1);
  // An endless ready stream: one answer holds about 64 KiB of values.
  socket.deliver({ jsonrpc: "2.0", id: 2, method: "$/enumerator/next", params: endless });
  const batch = (await nextSent(socket, 2)).result;
  assert.equal(batch.finished, false);
  assert.ok(batch.values.length > 1000 && JSON.stringify(batch.values).length < 70 * 1024, batch.values.length);
  assert.deepEqual(batch.values.slice(0, 3), [0, 1, 2]);
  socket.deliver({ jsonrpc: "2.0", id: 3, method: "$/enumerator/dispose", params: endless });
  assert.deepEqual(await nextSent(socket, 3), { jsonrpc: "2.0", id: 3, result: null });
  assert.equal(peer.openStreams, 0);
  await dropped;

  socket.deliver({ jsonrpc: "2.0", id: 4, method: "feed.failing" });
  const failing = (await nextSent(socket, 4)).result;
  socket.deliver({ jsonrpc: "2.0", id: 5, method: "$/enumerator/next", params: failing });
  assert.deepEqual((await nextSent(socket, 5)).result, { values: [1], finished: false });
  socket.deliver({ jsonrpc: "2.0", id: 6, method: "$/enumerator/next", params: failing });
  assert.deepEqual((await nextSent(socket, 6)).error, { code: 2002, message: "feed lost" });
  assert.equal(peer.openStreams, 0);
});

test("streams are refused in notifications and past the open-stream limit; closing drops them", async () => {
  const socket = new FakeSocket();
  const peer = new Peer(socket, { maxOpenStreams: 1 });
  socket.open();
  assert.throws(() => peer.notify("feed.push", { values: peer.outgoing([1]) }), (e) => e.code === codes.INVALID_PARAMS);
  let drop;
  const dropped = new Promise((resolve) => (drop = resolve));
  async function* held() {
    try {
      for (;;) yield 1;
    } finally {
      drop();
    }
  }
  const first = peer.call("feed.keep", [held()]);
  await assert.rejects(peer.call("feed.keep", [peer.outgoing([2])]), (e) => e.code === codes.SERVER_BUSY);
  const carried = (await nextSent(socket, 1)).params[0];
  const reading = (async () => {
    for await (const _ of peer.incoming("theirs"));
  })();
  await nextSent(socket, 2);
  socket.deliver({ jsonrpc: "2.0", id: "x", method: "$/enumerator/next", params: carried });
  assert.equal((await nextSent(socket, 3)).result.finished, false);
  socket.close(1001, "going away");
  await assert.rejects(first, (e) => e.code === codes.PEER_CLOSED);
  await assert.rejects(reading, (e) => e.code === codes.PEER_CLOSED);
  assert.equal(peer.openStreams, 0);
  await dropped;
});

test("edge cases: a loop left at once, a value that is not JSON, a result its caller gave up on", async () => {
  const { socket, peer } = pair({ "feed.odd": async function* () {
    yield 1;
    yield 10n;
  } }, 10);
  // Left before its first value: still disposed of.
  await peer.incoming({ token: "t9" }).return();
  assert.deepEqual(socket.sent[0], { jsonrpc: "2.0", method: "$/enumerator/dispose", params: { token: "t9" } });

  // A BigInt is not JSON: the values before it, then the error.
  socket.deliver({ jsonrpc: "2.0", id: 1, method: "feed.odd" });
  const odd = (await nextSent(socket, 2)).result;
  socket.deliver({ jsonrpc: "2.0", id: 2, method: "$/enumerator/next", params: odd });
  assert.deepEqual((await nextSent(socket, 3)).result, { values: [1], finished: false });
  socket.deliver({ jsonrpc: "2.0", id: 3, method: "$/enumerator/next", params: odd });
  assert.equal((await nextSent(socket, 4)).error.code, codes.INTERNAL_ERROR);

  // A stream result that comes after its call timed out is disposed of at once.
  await assert.rejects(peer.call("ticker.history", []), (e) => e.code === codes.TIMED_OUT);
  const callId = socket.sent.find((m) => m.method === "ticker.history").id;
  socket.deliver({ jsonrpc: "2.0", id: callId, result: { token: "late" } });
  const last = (await socket.sentAtLeast(7)).at(-1);
  assert.deepEqual(last, { jsonrpc: "2.0", method: "$/enumerator/dispose", params: { token: "late" } });
});

test("an ask waiting when its stream is released with the call gets -32001, not an end", async () => {
  const { socket, peer } = pair();
  async function* slow() {
    await new Promise(() => {});
  }
  const reply = peer.call("feed.total", [slow()]);
  const carried = (await nextSent(socket, 1)).params[0];
  socket.deliver({ jsonrpc: "2.0", id: "a", method: "$/enumerator/next", params: carried });
  await tick();
  socket.deliver({ jsonrpc: "2.0", id: 1, result: 0 });
  assert.equal(await reply, 0);
  assert.deepEqual((await nextSent(socket, 2)).error, { code: codes.NO_SUCH_STREAM, message: "The stream was disposed of" });
});
