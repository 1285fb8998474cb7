// What the chat page does, in TypeScript: the generated client and callback
// interface type-check under --strict.
import { ChatClient, ChatErrors, type ChatEvents, isChatError } from "../chat.js";

const events: ChatEvents = {
  message: (room, from, text) => console.log(`[${room}] ${from}: ${text}`),
  joined: (room, nick) => console.log(`${nick} joined ${room}`),
  left: (room, nick) => console.log(`${nick} left ${room}`),
  invited: async (from, room, { signal }) => !signal.aborted && confirm(`${from} invites you to ${room}`),
};

export async function chat(url: string): Promise<void> {
  const chat = ChatClient.connect(url, events, {
    timeout: 5000,
    reconnect: { delays: [0, 2000, 10000, 30000], maxAttempts: 10 },
    onReconnect: (peer) => peer.call("chat.join", { room: "lobby", nick: "ada" }),
  });
  chat.peer.addEventListener("reconnecting", (event) => console.log(`attempt ${event.detail.attempt}: ${event.detail.error.code}`));
  chat.peer.addEventListener("closed", (event) => console.log(`closed (${event.detail.code})`));
  const state: "connecting" | "connected" | "reconnecting" | "closed" = chat.peer.state;
  console.log(state);
  await chat.peer.ready;
  const members: string[] = await chat.join("lobby", "ada");
  chat.say(`hello, ${members.join(" and ")}`);
  try {
    const accepted: boolean = await chat.invite("bob", { timeout: 15000 });
    console.log(accepted ? "bob is coming" : "bob said no");
  } catch (error) {
    // The documented errors narrow by code, with their data typed.
    if (isChatError(error) && error.code === ChatErrors.NoSuchUser) {
      const nick: string = error.data;
      console.log(`no ${nick} here`);
    }
  }
  await chat.leave();
  chat.peer.close();
}
