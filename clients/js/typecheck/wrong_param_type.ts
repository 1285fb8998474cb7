// Must NOT type-check: `chat.join` takes a room name, not a number. The
// schema test runs tsc --strict on this file and expects exactly error TS2345.
import { ChatClient, type ChatEvents } from "../chat.js";

declare const events: ChatEvents;
const chat = ChatClient.connect("ws://127.0.0.1:8080/ws", events);
export const joined = chat.join(42, "ada");
