// The generated chat client (chat.js, from the Rust contract) on a fake
// socket: its methods send the wire's messages, and the page's ChatEvents
// implementation answers the server's callbacks, by name or by position.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatClient, ChatErrors, chatEventsHandlers, isChatError } from "./chat.js";
import { RpcError } from "./wsduplex.js";
import { FakeSocket } from "./fake-socket.mjs";

function connected(events = {}) {
  const chat = ChatClient.connect("ws://chat.test/ws", events, { WebSocket: FakeSocket, timeout: 1000 });
  const socket = FakeSocket.last;
  socket.open();
  return { chat, socket };
}

test("service methods send requests by name and one-way methods notifications", async () => {
  const { chat, socket } = connected();
  assert.equal(socket.url, "ws://chat.test/ws");
  const joined = chat.join("lobby", "ada");
  chat.say("hello");
  const left = chat.leave();
  const [join, say, leave] = await socket.sentAtLeast(3);
  assert.deepEqual(join, { jsonrpc: "2.0", id: join.id, method: "chat.join", params: { room: "lobby", nick: "ada" } });
  assert.deepEqual(say, { jsonrpc: "2.0", method: "chat.say", params: { text: "hello" } });
  assert.deepEqual(leave, { jsonrpc: "2.0", id: leave.id, method: "chat.leave", params: {} });
  socket.deliver({ jsonrpc: "2.0", id: join.id, result: ["ada", "bob"] });
  socket.deliver({ jsonrpc: "2.0", id: leave.id, error: { code: 1002, message: "not in a room" } });
  assert.deepEqual(await joined, ["ada", "bob"]);
  await assert.rejects(left, (e) => e.code === 1002);
});

test("callbacks reach the page's implementation, by name or by position", async () => {
  const seen = [];
  const { socket } = connected({
    message: (room, from, text) => seen.push(["message", room, from, text]),
    invited: (from, room, { signal }) => {
      assert.ok(signal instanceof AbortSignal);
      return from === "bob" && room === "den";
    },
  });
  socket.deliver({ jsonrpc: "2.0", method: "chat.message", params: { room: "den", from: "bob", text: "hi" } });
  socket.deliver({ jsonrpc: "2.0", id: 7, method: "chat.invited", params: ["bob", "den"] });
  socket.deliver({ jsonrpc: "2.0", id: 8, method: "chat.invited", params: { from: "eve", room: "den" } });
  socket.deliver({ jsonrpc: "2.0", id: 9, method: "chat.invited", params: { from: "eve" } });
  const replies = (await socket.sentAtLeast(3)).filter((m) => "id" in m);
  assert.deepEqual(seen, [["message", "den", "bob", "hi"]]);
  const byId = Object.fromEntries(replies.map((r) => [r.id, r]));
  assert.equal(byId[7].result, true);
  assert.equal(byId[8].result, false);
  assert.equal(byId[9].error.code, -32602);
  assert.equal(byId[9].error.data.param, "room");
});

test("the handlers cover every callback of the contract", () => {
  assert.deepEqual(Object.keys(chatEventsHandlers({})).sort(), ["chat.invited", "chat.joined", "chat.left", "chat.message"]);
});

test("the contract's documented errors have named codes and a guard", async () => {
  const { chat, socket } = connected();
  const invite = chat.invite("bob");
  const [request] = await socket.sentAtLeast(1);
  socket.deliver({ jsonrpc: "2.0", id: request.id, error: { code: 1003, message: "no such user: bob", data: "bob" } });
  const error = await invite.catch((e) => e);
  assert.ok(isChatError(error));
  assert.equal(error.code, ChatErrors.NoSuchUser);
  assert.equal(error.data, "bob");
  assert.equal(ChatErrors.NotAuthorized, -32030, "chat.kick requires a role");
  assert.equal(isChatError(new RpcError(4242, "not one of chat's")), false);
  assert.equal(isChatError({ code: 1003 }), false, "an RpcError only");
  assert.ok(Object.isFrozen(ChatErrors));
});
