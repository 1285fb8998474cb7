//! Run with: cargo run --example ticker -- --demo
//!
//! Server-initiated callbacks from a background task: clients subscribe to
//! symbols (one hub group per symbol) and a publisher sends each group
//! one-way `ticker.price(symbol, price, seq)` callbacks, serialized once per
//! tick whatever the number of subscribers.
//!
//! Streams both ways: `ticker.history(symbol, count)` returns a stream of
//! `count` ticks `{"symbol", "seq", "price"}` (`seq` 0 to count-1), read as
//! the caller asks for them; `ticker.total(values)` takes a stream of
//! numbers and returns their sum.
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:8081) serves until Ctrl-C;
//! `--demo` also starts three reconnecting clients in-process, prints what
//! they receive, restarts the server on the same port (the clients reconnect
//! and subscribe again), checks what they received before and after, and exits.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use wsduplex::{
    CallError, Client, Connection, Hub, Incoming, Outgoing, Server, client::ReconnectPolicy, server::ServerHandle,
};

/// Live prices by subscription.
#[wsduplex::service(namespace = "ticker", callback = Prices)]
pub trait Ticker {
    /// Adds symbols to this connection's subscriptions; returns them all.
    async fn subscribe(&self, symbols: Vec<String>) -> Result<Vec<String>, TickerError>;
    /// Removes symbols from this connection's subscriptions; returns those left.
    async fn unsubscribe(&self, symbols: Vec<String>) -> Vec<String>;
    /// The first `count` ticks of `symbol`, oldest first, as a stream: the
    /// ticker makes them as the caller reads them.
    async fn history(&self, symbol: String, count: u64) -> Result<Outgoing<Tick>, TickerError>;
    /// The sum of the numbers the caller streams in.
    async fn total(&self, values: Incoming<f64>) -> Result<f64, wsduplex::Error>;
}

/// One tick of a symbol's history.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Tick {
    pub symbol: String,
    /// Counts the symbol's ticks from 0.
    pub seq: u64,
    pub price: f64,
}

/// What subscribers receive.
#[wsduplex::callback(namespace = "ticker")]
pub trait Prices {
    /// The latest price of `symbol`; `seq` counts ticks.
    #[oneway]
    async fn price(&self, symbol: String, price: f64, seq: u64);
}

const SYMBOLS: [&str; 4] = ["ACME", "GLOBEX", "INITECH", "UMBRELLA"];

/// What the ticker refuses.
#[derive(Debug, wsduplex::RpcError)]
pub enum TickerError {
    /// A symbol the ticker does not quote; `data` is the symbol.
    #[rpc(code = 2001)]
    UnknownSymbol(String),
}

impl std::fmt::Display for TickerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TickerError::UnknownSymbol(_) => f.write_str("unknown symbol"),
        }
    }
}

impl std::error::Error for TickerError {}

struct TickerSession {
    conn: Connection<PricesClient>,
}

impl Ticker for TickerSession {
    async fn subscribe(&self, symbols: Vec<String>) -> Result<Vec<String>, TickerError> {
        if let Some(unknown) = symbols.iter().find(|s| !SYMBOLS.contains(&s.as_str())) {
            return Err(TickerError::UnknownSymbol(unknown.clone()));
        }
        for symbol in &symbols {
            self.conn.join_group(symbol).await;
        }
        Ok(self.subscriptions())
    }

    async fn unsubscribe(&self, symbols: Vec<String>) -> Vec<String> {
        for symbol in &symbols {
            self.conn.leave_group(symbol).await;
        }
        self.subscriptions()
    }

    async fn history(&self, symbol: String, count: u64) -> Result<Outgoing<Tick>, TickerError> {
        if !SYMBOLS.contains(&symbol.as_str()) {
            return Err(TickerError::UnknownSymbol(symbol));
        }
        let mut walk = PriceWalk::new();
        Ok(Outgoing::iter((0..count).map(move |seq| Tick { symbol: symbol.clone(), seq, price: walk.step() })))
    }

    async fn total(&self, mut values: Incoming<f64>) -> Result<f64, wsduplex::Error> {
        let mut sum = 0.0;
        while let Some(value) = values.next().await {
            sum += value?;
        }
        Ok(sum)
    }
}

impl TickerSession {
    fn subscriptions(&self) -> Vec<String> {
        let mut groups = self.conn.groups();
        groups.sort();
        groups
    }
}

/// A price's random walk from 100, in cents.
struct PriceWalk {
    price: f64,
    seed: u64,
}

impl PriceWalk {
    fn new() -> Self {
        PriceWalk { price: 100.0, seed: 0x2545_f491_4f6c_dd1d }
    }

    /// The next price.
    fn step(&mut self) -> f64 {
        // xorshift: a cheap deterministic walk, no dependency needed.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = (self.seed % 201) as f64 / 100.0 - 1.0;
        self.price = (self.price + step).max(1.0);
        (self.price * 100.0).round() / 100.0
    }
}

/// Publishes a random walk for every symbol, every `period`, to its subscribers.
async fn publish(hub: Hub<PricesClient>, period: Duration) {
    let mut walks: Vec<PriceWalk> = SYMBOLS.iter().map(|_| PriceWalk::new()).collect();
    let mut ticks = tokio::time::interval(period);
    for seq in 1.. {
        ticks.tick().await;
        for (symbol, walk) in SYMBOLS.iter().zip(&mut walks) {
            let price = walk.step();
            if !hub.group_members(symbol).is_empty() {
                let _ = hub.group(symbol).price(symbol.to_string(), price, seq).await;
            }
        }
    }
}

/// A demo subscriber that prints what it receives.
#[derive(Clone)]
struct Screen {
    name: &'static str,
    received: Arc<Mutex<BTreeSet<String>>>,
}

impl Prices for Screen {
    async fn price(&self, symbol: String, price: f64, seq: u64) {
        println!("{:>6} got {symbol:<8} {price:>8.2} (tick {seq})", self.name);
        self.received.lock().unwrap().insert(symbol);
    }
}

/// A demo subscriber's connection: it reconnects, and then subscribes again
/// to what it followed (the new server knows nothing of it).
async fn subscriber(url: &str, screen: Screen, symbols: &[&str]) -> Result<Subscriber, wsduplex::Error> {
    let following: Following = Arc::new(Mutex::new(symbols.iter().map(|s| s.to_string()).collect()));
    let resubscribed = Arc::new(tokio::sync::Notify::new());
    let (again, done) = (following.clone(), resubscribed.clone());
    let name = screen.name;
    let builder = Client::builder()
        .reconnect(ReconnectPolicy::exponential(Duration::from_millis(50), Duration::from_secs(1)))
        .on_reconnect(move |client| {
            let (symbols, done) = (again.lock().unwrap().clone(), done.clone());
            async move {
                match TickerClient::new(client).subscribe(symbols).await {
                    Ok(subscribed) => println!("{name:>6} reconnected, subscribed again to {}", subscribed.join(", ")),
                    Err(e) => println!("{name:>6} reconnected, but subscribing again failed: {e}"),
                }
                done.notify_one();
            }
        });
    let client = TickerClient::connect_with(builder, url, screen.clone()).await?;
    let symbols = following.lock().unwrap().clone();
    let subscribed = client.subscribe(symbols).await?;
    println!("{name:>6} subscribed to {}", subscribed.join(", "));
    Ok(Subscriber { client, screen, following, resubscribed })
}

/// A demo client, what it shows, what it follows, and word of its re-subscription.
struct Subscriber {
    client: TickerClient,
    screen: Screen,
    following: Following,
    resubscribed: Arc<tokio::sync::Notify>,
}

/// The symbols a demo client follows now.
type Following = Arc<Mutex<Vec<String>>>;

/// Forgets what the screens received so far.
fn clear(clients: &[Subscriber]) {
    for client in clients {
        client.screen.received.lock().unwrap().clear();
    }
}

/// Checks that every screen received exactly what its client follows, then
/// clears the screens.
fn check(clients: &[Subscriber]) -> Result<(), String> {
    for Subscriber { screen, following, .. } in clients {
        let received = std::mem::take(&mut *screen.received.lock().unwrap());
        let expected: BTreeSet<String> = following.lock().unwrap().iter().cloned().collect();
        if received != expected {
            return Err(format!("{} received {received:?}, expected {expected:?}", screen.name));
        }
    }
    Ok(())
}

async fn demo(
    addr: SocketAddr,
    hub: Hub<PricesClient>,
    server: ServerHandle,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = format!("ws://{addr}");
    let plan: [(&'static str, &[&str]); 3] =
        [("alice", &["ACME", "GLOBEX"]), ("bob", &["INITECH"]), ("carol", &["ACME", "UMBRELLA"])];
    let mut clients = Vec::new();
    for (name, symbols) in plan {
        let screen = Screen { name, received: Arc::default() };
        clients.push(subscriber(&url, screen, symbols).await?);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    check(&clients)?;
    let alice = &clients[0];
    let left = alice.client.unsubscribe(vec!["GLOBEX".into()]).await?;
    println!(" alice now follows {}", left.join(", "));
    *alice.following.lock().unwrap() = left;
    match alice.client.subscribe(vec!["NOPE".into()]).await {
        Err(CallError::Method(TickerError::UnknownSymbol(symbol))) => println!(" alice: unknown symbol {symbol}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("an unknown symbol was accepted".into()),
    }
    streams(&alice.client).await?;
    // Ticks sent before the change may still arrive: count afresh after them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    clear(&clients);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    check(&clients)?;

    println!("restarting the server on {addr}");
    server.shutdown().await;
    let server = Server::builder().hub(&hub).build(addr).await?;
    let _restarted = server.start(|conn: Connection<PricesClient>| TickerSession { conn }.into_service());
    for client in &clients {
        tokio::time::timeout(Duration::from_secs(30), client.resubscribed.notified()).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    clear(&clients);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    check(&clients)?;
    println!("demo done: every client got exactly its subscriptions, before and after the restart");
    Ok(())
}

/// Reads a stream of history and streams numbers in, checking both.
async fn streams(client: &TickerClient) -> Result<(), Box<dyn std::error::Error>> {
    let mut history = client.history("ACME".into(), 1000).await?;
    let mut last = None;
    while let Some(tick) = history.next().await {
        let tick = tick?;
        if tick.seq != last.as_ref().map_or(0, |t: &Tick| t.seq + 1) {
            return Err(format!("history came out of order at {}", tick.seq).into());
        }
        last = Some(tick);
    }
    let last = last.ok_or("no history")?;
    println!(" alice read {} ticks of ACME history, the last at {:.2}", last.seq + 1, last.price);
    let sum = client.total(futures_util::stream::iter((1..=100).map(f64::from))).await?;
    if sum != 5050.0 {
        return Err(format!("total of 1..=100 came back as {sum}").into());
    }
    println!(" alice streamed 1..=100 in, the ticker summed {sum}");
    Ok(())
}

/// A stock ticker: prices pushed to subscribers as one-way callbacks.
#[derive(clap::Parser)]
struct Options {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Start clients too, check what they get (across a server restart), and exit.
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Options { mut listen, demo: run_demo } = <Options as clap::Parser>::parse();
    if run_demo {
        listen = "127.0.0.1:0".into();
    }

    let hub = Hub::<PricesClient>::new();
    let server = Server::builder().hub(&hub).build(&listen).await?;
    let addr = server.local_addr()?;
    println!("listening on ws://{addr}");
    std::io::stdout().flush()?;
    tokio::spawn(publish(hub.clone(), Duration::from_millis(250)));
    let serving = server.start(|conn: Connection<PricesClient>| TickerSession { conn }.into_service());

    if run_demo {
        demo(addr, hub, serving).await
    } else {
        let _ = tokio::signal::ctrl_c().await;
        serving.shutdown().await;
        Ok(())
    }
}
