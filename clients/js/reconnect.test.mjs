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
