// Reconnecting, on fake sockets and node:test's mocked setTimeout (a paused
// clock): `node --test clients/js/*.test.mjs`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Peer, codes, connect, reconnectDelay, reconnectPolicy } from "./wsduplex.js";
import { FakeSocket } from "./fake-socket.mjs";

/** A dialer of fake sockets, each connecting (readyState 0) until the test opens it. */
function dialer() {
  const sockets = [];
  const dial = () => {
    const socket = new FakeSocket();
    socket.readyState = 0;
    sockets.push(socket);
    return socket;
  };
  return { sockets, dial };
}

const open = (socket) => {
  socket.readyState = 1;
  socket.open();
};

/** The other end (or the network) drops the connection. */
const drop = (socket, code = 1006) => {
  socket.readyState = 3;
  socket.onclose?.({ code, reason: "" });
};

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Every state change of `peer`, with its detail. */
function states(peer) {
  const seen = [];
  for (const state of ["connecting", "connected", "reconnecting", "closed"]) {
    peer.addEventListener(state, (e) => seen.push(e.detail ? [state, e.detail] : [state]));
  }
  return seen;
}

test("delays double up to the maximum; jitter only shortens them; a list repeats its last", () => {
  const doubling = reconnectPolicy({ initial: 1000, max: 4000, jitter: 0.5 });
  assert.deepEqual([1, 2, 3, 4].map((n) => reconnectDelay(doubling, n, 0)), [1000, 2000, 4000, 4000]);
  assert.equal(reconnectDelay(doubling, 3, 0.999), 4000 * (1 - 0.5 * 0.999));
  const listed = reconnectPolicy({ delays: [0, 2000, 10000, 30000] });
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => reconnectDelay(listed, n, 0.7)), [0, 2000, 10000, 30000, 30000, 30000]);
  const defaults = reconnectPolicy(true);
  assert.deepEqual([defaults.initial, defaults.max, defaults.jitter, defaults.maxAttempts], [250, 30000, 0.5, Infinity]);
  assert.equal(reconnectPolicy(false), null);
});

test("a dropped connection is dialled again after each delay, until maxAttempts", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const reconnect = { initial: 1000, max: 4000, maxAttempts: 3 };
  const peer = new Peer(dial, { reconnect, random: () => 0.5 });
  const seen = states(peer);
  open(sockets[0]);
  assert.equal(peer.state, "connected");
  drop(sockets[0]);
  // Jitter 0.5 at random 0.5: each delay three quarters of its step.
  for (const [attempt, delay] of [[1, 750], [2, 1500], [3, 3000]]) {
    assert.equal(peer.state, "reconnecting");
    t.mock.timers.tick(delay - 1);
    assert.equal(sockets.length, attempt, `not before ${delay} ms`);
    t.mock.timers.tick(1);
    assert.equal(sockets.length, attempt + 1, `attempt ${attempt} after ${delay} ms`);
    drop(sockets[attempt]);
  }
  assert.equal(peer.state, "closed");
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 4);
  const error = { code: 1006, reason: "" };
  assert.deepEqual(seen, [
    ["connected"],
    ["reconnecting", { attempt: 1, error }],
    ["reconnecting", { attempt: 2, error }],
    ["reconnecting", { attempt: 3, error }],
    ["closed", error],
  ]);
});

test("calls in flight fail with -32021; calls made meanwhile go out after onReconnect", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const hooked = [];
  const onReconnect = async (peer) => {
    hooked.push(peer.state);
    await peer.call("room.rejoin", { nick: "ada" });
  };
  const peer = new Peer(dial, { reconnect: { delays: [100] }, onReconnect });
  open(sockets[0]);
  const inFlight = peer.call("slow");
  drop(sockets[0]);
  await assert.rejects(inFlight, (e) => e.code === codes.PEER_CLOSED);
  const waiting = peer.call("later", [1]);
  peer.notify("later.note");
  t.mock.timers.tick(100);
  open(sockets[1]);
  // The hook's call goes first; what waited, only once it is done.
  assert.deepEqual(hooked, ["reconnecting"]);
  assert.deepEqual(sockets[1].sent.map((m) => m.method), ["room.rejoin"]);
  sockets[1].deliver({ jsonrpc: "2.0", id: sockets[1].sent[0].id, result: null });
  await settle();
  assert.deepEqual(sockets[1].sent.map((m) => m.method), ["room.rejoin", "later", "later.note"]);
  assert.equal(peer.state, "connected");
  sockets[1].deliver({ jsonrpc: "2.0", id: sockets[1].sent[1].id, result: "done" });
  assert.equal(await waiting, "done");
  // Never sent again: "slow" went out once, on the first connection.
  assert.deepEqual(sockets[0].sent.map((m) => m.method), ["slow"]);
});

test("a call that times out while waiting for a connection is dropped, not cancelled", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: { delays: [1000] } });
  open(sockets[0]);
  drop(sockets[0]);
  const waiting = peer.call("later", [], { timeout: 500 });
  t.mock.timers.tick(500);
  await assert.rejects(waiting, (e) => e.code === codes.TIMED_OUT);
  t.mock.timers.tick(500);
  open(sockets[1]);
  await settle();
  assert.deepEqual(sockets[1].sent, []);
});

test("answers to calls from a dropped connection are not sent on the next one", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  let finish;
  const handlers = { "work.slow": () => new Promise((resolve) => (finish = resolve)) };
  const peer = new Peer(dial, { handlers, reconnect: { delays: [0] } });
  open(sockets[0]);
  sockets[0].deliver({ jsonrpc: "2.0", id: 7, method: "work.slow" });
  drop(sockets[0]);
  t.mock.timers.tick(0);
  open(sockets[1]);
  finish("late");
  await settle();
  assert.deepEqual(sockets[1].sent, []);
  assert.equal(peer.state, "connected");
});

test("online and a page becoming visible retry at once; close() stops it all", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const window = new EventTarget();
  const document = Object.assign(new EventTarget(), { visibilityState: "hidden" });
  const peer = new Peer(dial, { reconnect: { delays: [30000] }, window, document });
  open(sockets[0]);
  drop(sockets[0]);
  window.dispatchEvent(new Event("offline"));
  assert.equal(sockets.length, 1);
  window.dispatchEvent(new Event("online"));
  assert.equal(sockets.length, 2, "the network is back: no need to wait 30 s");
  drop(sockets[1]);
  document.dispatchEvent(new Event("visibilitychange"));
  assert.equal(sockets.length, 2, "still hidden");
  document.visibilityState = "visible";
  document.dispatchEvent(new Event("visibilitychange"));
  assert.equal(sockets.length, 3);
  drop(sockets[2]);
  // Closed while waiting for the next attempt: at once, with the code given.
  const closed = new Promise((resolve) => peer.addEventListener("close", (e) => resolve(e.detail)));
  peer.close(1000, "bye");
  assert.deepEqual(await closed, { code: 1000, reason: "bye" });
  assert.equal(peer.state, "closed");
  window.dispatchEvent(new Event("online"));
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 3);
  await assert.rejects(peer.call("x"), (e) => e.code === codes.PEER_CLOSED);
});

test("a first connection that closes before it opens ends it, as a refused handshake must", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: true });
  drop(sockets[0]);
  assert.equal(peer.state, "closed");
  await assert.rejects(peer.ready, (e) => e.code === codes.PEER_CLOSED);
  t.mock.timers.tick(60000);
  assert.equal(sockets.length, 1);
});

test("connect() dials the url again, and reconnect is off unless asked for", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  class Dialled extends FakeSocket {
    static all = [];
    constructor(url) {
      super(url);
      this.readyState = 0;
      Dialled.all.push(this);
    }
  }
  const once = connect("ws://example.test/ws", { WebSocket: Dialled });
  open(Dialled.all[0]);
  drop(Dialled.all[0]);
  assert.equal(once.state, "closed");
  const again = connect("ws://example.test/ws", { WebSocket: Dialled, reconnect: { delays: [10] } });
  open(Dialled.all[1]);
  drop(Dialled.all[1]);
  t.mock.timers.tick(10);
  assert.deepEqual(Dialled.all.map((s) => s.url), Array(3).fill("ws://example.test/ws"));
  open(Dialled.all[2]);
  await settle();
  assert.equal(again.state, "connected");
});

test("close() from a reconnecting listener stops it there", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: { delays: [0] } });
  peer.addEventListener("reconnecting", () => peer.close(4000, "enough"));
  const seen = states(peer);
  open(sockets[0]);
  drop(sockets[0]);
  t.mock.timers.tick(1000);
  assert.equal(sockets.length, 1, "no attempt after the close");
  assert.deepEqual(seen.filter(([state]) => state === "closed"), [["closed", { code: 4000, reason: "enough" }]]);
  assert.equal(peer.state, "closed");
});

test("a connection that opens and closes at once still counts toward maxAttempts", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: { delays: [100], maxAttempts: 3 } });
  open(sockets[0]);
  drop(sockets[0], 1013);
  for (let attempt = 1; attempt <= 3; attempt++) {
    t.mock.timers.tick(100);
    open(sockets[attempt]);
    drop(sockets[attempt], 1013);
  }
  assert.equal(peer.state, "closed");
  assert.equal(sockets.length, 4);
  // One that lasts ten seconds starts the count over.
  const { sockets: more, dial: dialMore } = dialer();
  const lasting = new Peer(dialMore, { reconnect: { delays: [100], maxAttempts: 1 } });
  open(more[0]);
  drop(more[0]);
  t.mock.timers.tick(100);
  open(more[1]);
  t.mock.timers.tick(10000);
  drop(more[1]);
  assert.equal(lasting.state, "reconnecting");
});

test("a drop while onReconnect runs: its calls fail, and the next hook's go out first", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const hooks = [];
  const onReconnect = (peer) => {
    const rejoin = peer.call("room.rejoin");
    hooks.push(rejoin);
    return rejoin;
  };
  const peer = new Peer(dial, { reconnect: { delays: [0] }, onReconnect });
  open(sockets[0]);
  drop(sockets[0]);
  const waiting = peer.call("later");
  t.mock.timers.tick(0);
  open(sockets[1]);
  assert.deepEqual(sockets[1].sent.map((m) => m.method), ["room.rejoin"]);
  drop(sockets[1]);
  await assert.rejects(hooks[0], (e) => e.code === codes.PEER_CLOSED);
  t.mock.timers.tick(0);
  open(sockets[2]);
  assert.deepEqual(sockets[2].sent.map((m) => m.method), ["room.rejoin"], "the new hook's call, at once");
  sockets[2].deliver({ jsonrpc: "2.0", id: sockets[2].sent[0].id, result: null });
  await settle();
  assert.deepEqual(sockets[2].sent.map((m) => m.method), ["room.rejoin", "later"]);
  sockets[2].deliver({ jsonrpc: "2.0", id: sockets[2].sent[1].id, result: 1 });
  assert.equal(await waiting, 1);
  // Nothing of the first hook's call leaked: no cancel of an id the new connection never saw.
  assert.ok(!sockets[2].sent.some((m) => m.method === "$/cancelRequest"));
  assert.equal(peer.state, "connected");
});

test("streams do not cross connections", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: { delays: [0, 100] } });
  open(sockets[0]);
  // A stream the server sent on the first connection, read after the drop.
  const reading = peer.incoming({ token: "T1", values: [1] })[Symbol.asyncIterator]();
  assert.deepEqual(await reading.next(), { value: 1, done: false });
  drop(sockets[0]);
  await assert.rejects(reading.next(), (e) => e.code === codes.PEER_CLOSED);
  // A stream parameter of a call made while reconnecting outlives a failed attempt.
  const sum = peer.call("sum", { values: peer.outgoing([1, 2, 3]) });
  assert.equal(peer.openStreams, 1);
  t.mock.timers.tick(0);
  drop(sockets[1]);
  assert.equal(peer.openStreams, 1, "still waiting to go out with its call");
  t.mock.timers.tick(100);
  open(sockets[2]);
  const [request] = sockets[2].sent;
  assert.equal(request.method, "sum");
  // Nothing about T1 on the new connection.
  assert.ok(!sockets[2].sent.some((m) => JSON.stringify(m).includes("T1")));
  sockets[2].deliver({ jsonrpc: "2.0", id: 9, method: "$/enumerator/next", params: { token: request.params.values.token } });
  await settle();
  const answer = sockets[2].sent.find((m) => m.id === 9);
  assert.deepEqual(answer.result, { values: [1, 2, 3], finished: true });
  sockets[2].deliver({ jsonrpc: "2.0", id: request.id, result: 6 });
  assert.equal(await sum, 6);
});

test("the browser listeners go when the peer closes, and are never left by a failed dial", () => {
  /** A window that keeps count of its listeners. */
  const counting = () => {
    const listeners = new Set();
    return {
      listeners,
      addEventListener: (type, listener) => listeners.add(listener),
      removeEventListener: (type, listener) => listeners.delete(listener),
    };
  };
  const window = counting();
  const document = { ...counting(), visibilityState: "visible" };
  const failing = () => {
    throw new SyntaxError("bad url");
  };
  assert.throws(() => new Peer(failing, { reconnect: true, window, document }), SyntaxError);
  assert.equal(window.listeners.size + document.listeners.size, 0);
  const { sockets, dial } = dialer();
  const peer = new Peer(dial, { reconnect: true, window, document });
  assert.equal(window.listeners.size + document.listeners.size, 2);
  open(sockets[0]);
  peer.close();
  assert.equal(window.listeners.size + document.listeners.size, 0);
});
