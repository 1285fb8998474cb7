//! Run with: cargo run --example hub_groups
//!
//! A hub tracks connections and groups, and fans one-way callbacks out to
//! them: `hub.group(room)` reaches every member of a room,
//! `hub.group_except(room, id)` every member but one, `hub.all()` everyone.
//! A message is serialized once and the same bytes are queued for every
//! recipient. Three clients join two rooms; each prints what it hears.

use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use wsduplex::{Connection, Hub, Server};

#[wsduplex::service(namespace = "rooms", callback = RoomEvents)]
pub trait Rooms {
    /// Joins `room`; the others in it hear of it.
    async fn join(&self, room: String, nick: String);
    /// Says `text` to the caller's rooms.
    async fn say(&self, room: String, text: String);
}

#[wsduplex::callback(namespace = "rooms")]
pub trait RoomEvents {
    #[oneway]
    async fn joined(&self, room: String, nick: String);
    #[oneway]
    async fn message(&self, room: String, text: String);
}

struct Session {
    conn: Connection<RoomEventsClient>,
    hub: Hub<RoomEventsClient>,
}

impl Rooms for Session {
    async fn join(&self, room: String, nick: String) {
        self.conn.join_group(&room).await;
        // Everyone in the room but the newcomer; a failure is logged, not returned.
        let _ = self.hub.group_except(&room, self.conn.id()).joined(room.clone(), nick).await;
    }

    async fn say(&self, room: String, text: String) {
        let _ = self.hub.group(&room).message(room.clone(), text).await;
    }
}

/// A client that forwards what it hears to the printer.
struct Ear(&'static str, mpsc::UnboundedSender<String>);

impl RoomEvents for Ear {
    async fn joined(&self, room: String, nick: String) {
        let _ = self.1.send(format!("{:>5} hears: {nick} joined {room}", self.0));
    }
    async fn message(&self, room: String, text: String) {
        let _ = self.1.send(format!("{:>5} hears in {room}: {text}", self.0));
    }
}

#[derive(Parser)]
struct Options {
    /// How long to wait for the last messages, in milliseconds.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let hub = Hub::<RoomEventsClient>::new();
    let server = Server::builder().hub(&hub).build("127.0.0.1:0").await?;
    let url = format!("ws://{}/", server.local_addr()?);
    let serving = hub.clone();
    tokio::spawn(server.serve(move |conn| Session { conn, hub: serving.clone() }.into_service()));

    let (heard, mut printer) = mpsc::unbounded_channel();
    let ann = RoomsClient::connect(&url, Ear("ann", heard.clone())).await?;
    let bob = RoomsClient::connect(&url, Ear("bob", heard.clone())).await?;
    let cy = RoomsClient::connect(&url, Ear("cy", heard)).await?;
    ann.join("lobby".into(), "ann".into()).await?;
    bob.join("lobby".into(), "bob".into()).await?;
    cy.join("garden".into(), "cy".into()).await?;
    ann.say("lobby".into(), "hi, lobby".into()).await?;
    cy.say("garden".into(), "anyone here?".into()).await?;
    hub.all().message("everywhere".into(), "the server says goodbye".into()).await?;

    let settle = tokio::time::sleep(Duration::from_millis(options.settle_ms));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            Some(line) = printer.recv() => println!("{line}"),
            () = &mut settle => break,
        }
    }
    Ok(())
}
