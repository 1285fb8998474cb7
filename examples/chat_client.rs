//! Run with: cargo run --example chat_client --features tls -- --nick alice --room lobby
//!
//! A terminal client for the chat example. Lines typed on stdin are said to
//! the room; `/join ROOM`, `/invite NICK`, `/leave` and `/quit` do the rest.
//! Messages, joins and leaves are printed as they arrive. An invite is
//! answered at a prompt (`y` or `n`), or always accepted with `--accept-invites`.
//!
//! It reconnects when the connection is lost (the server restarted, say),
//! with backoff, and re-joins its room.
//!
//! Flags: `--url URL` (default ws://127.0.0.1:8080/ws), `--nick NICK`,
//! `--room ROOM` (default lobby), `--accept-invites`, `--token SECRET` (sent
//! as `Authorization: Bearer SECRET`, for a server started with `--token`),
//! `--ca-cert FILE` (a PEM root to trust for a `wss://` URL, besides the
//! system's).

#[path = "shared/chat_contract.rs"]
mod chat_contract;

use std::sync::{Arc, Mutex};

use chat_contract::{ChatClient, ChatEvents};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// A terminal chat client.
#[derive(clap::Parser)]
struct Options {
    /// The chat server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// The nick to join as.
    #[arg(long)]
    nick: String,
    /// The room to join.
    #[arg(long, default_value = "lobby")]
    room: String,
    /// Accept every invite without asking.
    #[arg(long)]
    accept_invites: bool,
    /// The server's token, if it asks for one.
    #[arg(long)]
    token: Option<String>,
    /// A PEM certificate to trust for `wss://` (a self-signed server's).
    #[arg(long)]
    ca_cert: Option<String>,
}

/// Prints what the server says, and answers invites.
struct Terminal {
    accept_invites: bool,
    /// The pending invite's answer, filled by the next line typed.
    invite_answer: Arc<Mutex<Option<oneshot::Sender<bool>>>>,
}

impl ChatEvents for Terminal {
    async fn joined(&self, room: String, nick: String) {
        println!("* {nick} joined {room}");
    }

    async fn left(&self, room: String, nick: String) {
        println!("* {nick} left {room}");
    }

    async fn message(&self, room: String, from: String, text: String) {
        println!("[{room}] <{from}> {text}");
    }

    async fn invited(&self, from: String, room: String) -> bool {
        if self.accept_invites {
            println!("* {from} invited you to {room}: accepted");
            return true;
        }
        println!("* {from} invites you to {room}. Accept? [y/N]");
        let (answer, answered) = oneshot::channel();
        *self.invite_answer.lock().unwrap() = Some(answer);
        // The server gives up after its callback timeout; so does an unanswered prompt.
        answered.await.unwrap_or(false)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = <Options as clap::Parser>::parse();
    let invite_answer = Arc::new(Mutex::new(None));
    let terminal = Terminal { accept_invites: options.accept_invites, invite_answer: invite_answer.clone() };
    let mut builder = wsduplex::Client::builder();
    if let Some(token) = &options.token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    }
    if let Some(file) = &options.ca_cert {
        builder = builder.root_certificates(wsduplex::tls::RootCertificates::from_pem_file(file)?);
    }
    // After a lost connection: dial again, and re-join the room we were in
    // (the server forgot us with the old connection).
    let room = Arc::new(Mutex::new(options.room.clone()));
    let (rejoin, nick) = (room.clone(), options.nick.clone());
    let builder = builder.reconnect(wsduplex::client::ReconnectPolicy::default()).on_reconnect(move |client| {
        let (room, nick) = (rejoin.lock().unwrap().clone(), nick.clone());
        async move {
            match ChatClient::new(client).join(room.clone(), nick).await {
                Ok(members) => println!("* reconnected, back in {room}: {}", members.join(", ")),
                Err(e) => println!("! reconnected, but could not re-join {room}: {e}"),
            }
        }
    });
    let chat = ChatClient::connect_with(builder, &options.url, terminal).await?;
    let members = chat.join(options.room.clone(), options.nick.clone()).await?;
    println!("* joined {} as {}: {}", options.room, options.nick, members.join(", "));
    let mut state = chat.caller().state();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = state.borrow_and_update().clone();
            if let wsduplex::client::ConnectionState::Reconnecting { attempt, last_error } = now {
                println!("* connection lost ({last_error}); reconnecting, attempt {attempt}");
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            reason = chat.caller().closed() => {
                println!("* disconnected: {reason:?}");
                return Ok(());
            }
        };
        let Some(line) = line else { return Ok(()) };
        let line = line.trim();
        // An invite the server gave up on (its callback timed out) takes no answer.
        let pending = invite_answer.lock().unwrap().take().filter(|answer| !answer.is_closed());
        if let Some(answer) = pending {
            let _ = answer.send(matches!(line, "y" | "Y" | "yes"));
            continue;
        }
        let outcome = match line.split_once(' ').unwrap_or((line, "")) {
            ("", _) => continue,
            ("/quit", _) => return Ok(()),
            ("/join", new_room) => chat.join(new_room.into(), options.nick.clone()).await.map(|members| {
                *room.lock().unwrap() = new_room.to_owned();
                println!("* joined {new_room}: {}", members.join(", "));
            }),
            ("/invite", nick) => chat.invite(nick.into()).await.map(|accepted| {
                println!("* {nick} {}", if accepted { "accepted" } else { "declined" });
            }),
            ("/leave", _) => chat.leave().await,
            // `say` is one-way: only sending it can fail.
            _ => chat.say(line.into()).await.map_err(Into::into),
        };
        if let Err(e) = outcome {
            println!("! {e}");
        }
    }
}
