//! Run with: cargo run --example reconnect
//!
//! A client that rides through a server restart: with a reconnect policy it
//! dials again with backoff when the connection drops, and its
//! `on_reconnect` hook runs on each new connection before waiting calls go
//! out (the place to re-join rooms). The server here stops and starts again
//! on the same port; the client's next call waits for the new connection.

use std::time::Duration;

use clap::Parser;
use wsduplex::client::ReconnectPolicy;
use wsduplex::{Client, Connection, Server};

#[wsduplex::service(namespace = "count")]
pub trait Counter {
    /// Which server process (start) answers.
    async fn generation(&self) -> u32;
}

struct Generation(u32);

impl Counter for Generation {
    async fn generation(&self) -> u32 {
        self.0
    }
}

#[derive(Parser)]
struct Options {
    /// The first delay before dialling again, in milliseconds (it doubles, to a second).
    #[arg(long, default_value_t = 50)]
    initial_ms: u64,
}

async fn start(addr: std::net::SocketAddr, generation: u32) -> std::io::Result<wsduplex::server::ServerHandle> {
    let server = Server::builder().build(addr).await?;
    Ok(server.start(move |_conn: Connection| Generation(generation).into_service()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let first = start("127.0.0.1:0".parse()?, 1).await?;
    let addr = first.local_addr();

    let policy = ReconnectPolicy::exponential(Duration::from_millis(options.initial_ms), Duration::from_secs(1));
    let builder = Client::builder().reconnect(policy).on_reconnect(|_client| async {
        println!("reconnected; a real client would re-join its rooms here");
    });
    let counter = CounterClient::connect_with(builder, &format!("ws://{addr}/")).await?;
    println!("answered by server {}", counter.generation().await?);

    first.shutdown().await;
    println!("server 1 stopped");
    let _second = start(addr, 2).await?;
    // Waits for the new connection, within the call's deadline.
    println!("answered by server {}", counter.generation().await?);
    Ok(())
}
