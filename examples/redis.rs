//! Run with: cargo run --example redis --features redis -- --redis redis://127.0.0.1:6379/
//!
//! Needs a running `redis-server`. Two server nodes share one hub through the
//! Redis backplane: a broadcast on one node reaches the clients of both, and
//! each node tells apart its own connections from the other's.

use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use wsduplex::redis::{RedisBackplane, RedisOptions};
use wsduplex::{Connection, Hub, Server};

#[wsduplex::service(namespace = "news", callback = Reader)]
pub trait Newsroom {
    /// Publishes `headline` to every reader on every node.
    async fn publish(&self, headline: String);
}

#[wsduplex::callback(namespace = "news")]
pub trait Reader {
    #[oneway]
    async fn headline(&self, text: String);
}

struct Desk(Hub<ReaderClient>);

impl Newsroom for Desk {
    async fn publish(&self, headline: String) {
        let _ = self.0.all().headline(headline).await;
    }
}

struct Subscriber(&'static str, mpsc::UnboundedSender<String>);

impl Reader for Subscriber {
    async fn headline(&self, text: String) {
        let _ = self.1.send(format!("{} reads: {text}", self.0));
    }
}

#[derive(Parser)]
struct Options {
    /// The Redis server the nodes share.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
}

/// One server node on the shared Redis; its URL.
async fn node(redis: &str) -> Result<String, Box<dyn std::error::Error>> {
    let backplane = RedisBackplane::connect(redis, RedisOptions::new().prefix("wsduplex-example")).await?;
    let hub = Hub::<ReaderClient>::with_backplane(backplane);
    let server = Server::builder().hub(&hub).build("127.0.0.1:0").await?;
    let url = format!("ws://{}/", server.local_addr()?);
    tokio::spawn(server.serve(move |_conn: Connection<ReaderClient>| Desk(hub.clone()).into_service()));
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let (first, second) = (node(&options.redis).await?, node(&options.redis).await?);
    let (read, mut printed) = mpsc::unbounded_channel();
    let on_first = NewsroomClient::connect(&first, Subscriber("a reader on node 1", read.clone())).await?;
    let _on_second = NewsroomClient::connect(&second, Subscriber("a reader on node 2", read)).await?;
    on_first.publish("one hub, two nodes".into()).await?;
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(5), printed.recv()).await {
            Ok(Some(line)) => println!("{line}"),
            _ => return Err("a reader heard nothing within 5 s".into()),
        }
    }
    Ok(())
}
