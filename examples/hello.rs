//! Run with: cargo run --example hello -- --name ada
//!
//! A call and a callback over one WebSocket: the client calls `greet.hello`,
//! and the server, before answering, calls the client back to ask a question
//! and waits for its answer. Server and client run in this one process, on a
//! free port, and the program exits when the exchange is done.

use clap::Parser;
use wsduplex::{Connection, Server};

/// What clients call on the server.
#[wsduplex::service(namespace = "greet", callback = Listener)]
pub trait Greeter {
    /// Greets `name`, after asking the caller whether it is really them.
    async fn hello(&self, name: String) -> Result<String, wsduplex::ErrorObjectOwned>;
}

/// What the server calls back on each client.
#[wsduplex::callback(namespace = "greet")]
pub trait Listener {
    /// Answers a yes-or-no question.
    async fn confirm(&self, question: String) -> bool;
}

/// One per connection, made from the connection's handle.
struct Session {
    conn: Connection<ListenerClient>,
}

impl Greeter for Session {
    async fn hello(&self, name: String) -> Result<String, wsduplex::ErrorObjectOwned> {
        // A callback with a reply: this client's answer, awaited.
        let sure = self.conn.callback().confirm(format!("are you {name}?")).await?;
        Ok(if sure { format!("hello, {name}") } else { "hello, stranger".into() })
    }
}

/// The client's side of the callback contract.
struct Me;

impl Listener for Me {
    async fn confirm(&self, question: String) -> bool {
        println!("server asks: {question} yes");
        true
    }
}

#[derive(Parser)]
struct Options {
    /// Who says hello.
    #[arg(long, default_value = "ada")]
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let server = Server::builder().build("127.0.0.1:0").await?;
    let url = format!("ws://{}/", server.local_addr()?);
    tokio::spawn(server.serve(|conn| Session { conn }.into_service()));

    let greeter = GreeterClient::connect(&url, Me).await?;
    println!("server says: {}", greeter.hello(options.name).await?);
    Ok(())
}
