//! wsduplex as a contender: a typed service with a callback contract.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use wsduplex::{Connection, Hub, Server};

use crate::broadcast::Deliveries;
use crate::calls::{EchoClient, Window};
use crate::stats::{Latencies, Measurement};

/// What clients call.
#[wsduplex::service(namespace = "bench", callback = BenchEvents)]
pub trait Bench {
    async fn echo(&self, text: String) -> String;
    /// `count` copies of `text`, as a stream.
    async fn items(&self, text: String, count: u64) -> wsduplex::Outgoing<String>;
    /// Copies of `text` from a live feed, as a stream.
    async fn feed(&self, text: String) -> wsduplex::Outgoing<String>;
}

/// What the server calls on clients.
#[wsduplex::callback(namespace = "bench")]
pub trait BenchEvents {
    async fn echo_back(&self, text: String) -> String;
    #[oneway]
    async fn tick(&self, seq: u64, data: String);
}

pub struct Session;

impl Bench for Session {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn items(&self, text: String, count: u64) -> wsduplex::Outgoing<String> {
        wsduplex::Outgoing::iter(std::iter::repeat_n(text, count as usize))
    }

    async fn feed(&self, text: String) -> wsduplex::Outgoing<String> {
        crate::streams::feed(&text).into()
    }
}

/// The client side: answers callbacks and counts broadcasts.
#[derive(Clone)]
pub struct Handler {
    deliveries: Arc<Deliveries>,
}

impl BenchEvents for Handler {
    async fn echo_back(&self, text: String) -> String {
        text
    }

    async fn tick(&self, _seq: u64, data: String) {
        debug_assert!(!data.is_empty());
        self.deliveries.delivered();
    }
}

pub struct Running {
    pub url: String,
    pub hub: Hub<BenchEventsClient>,
    pub connections: mpsc::UnboundedReceiver<Connection<BenchEventsClient>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the bench contract; `keep_connections` hands each connection's
/// handle to the bench (the callback scenario needs one; the idle-memory
/// server must not hold them).
pub async fn serve(addr: &str, keep_connections: bool) -> Running {
    serve_with(addr, keep_connections, Around::Nothing).await
}

/// What a bench server runs each call through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Around {
    Nothing,
    /// A filter that looks at each call's method and lets it through, and
    /// one that times each call.
    FilterAndTimer,
    /// The filter alone (with the metrics recorded around it).
    Filter,
}

/// Like [`serve`], with `around` each call.
pub async fn serve_with(addr: &str, keep_connections: bool, around: Around) -> Running {
    let hub = Hub::<BenchEventsClient>::new();
    let mut builder = Server::builder().hub(&hub);
    match around {
        Around::Nothing => {}
        Around::FilterAndTimer => builder = builder.middleware(filter()).middleware(timer()),
        Around::Filter => builder = builder.middleware(filter()),
    }
    let server = builder.build(addr).await.expect("bind");
    let url = format!("ws://{}/", server.local_addr().expect("address"));
    let (tx, connections) = mpsc::unbounded_channel();
    let task = tokio::spawn(server.serve(move |conn: Connection<BenchEventsClient>| {
        if keep_connections {
            let _ = tx.send(conn);
        }
        Session.into_service()
    }));
    Running { url, hub, connections, task }
}

impl EchoClient for BenchClient {
    async fn echo(&self, text: String) -> String {
        BenchClient::echo(self, text).await.expect("echo")
    }
}

pub async fn connect(url: &str, deliveries: &Arc<Deliveries>) -> BenchClient {
    BenchClient::connect(url, Handler { deliveries: deliveries.clone() }).await.expect("connect")
}

/// The server calls one client back, one call at a time, from a task of its
/// own (as the call scenarios' callers are).
pub async fn callbacks(payload: &str, window: Window) -> Measurement {
    let mut server = serve("127.0.0.1:0", true).await;
    let deliveries = Arc::new(Deliveries::default());
    let _client = connect(&server.url, &deliveries).await;
    let conn = server.connections.recv().await.expect("a connection");
    time_callbacks(payload, window, move |payload| {
        let conn = conn.clone();
        async move { conn.callback().echo_back(payload).await.expect("callback") }
    })
    .await
}

/// Times `round_trip` (one callback, answered with `payload` echoed), one at
/// a time, from a task of its own.
pub async fn time_callbacks<F, Fut>(payload: &str, window: Window, round_trip: F) -> Measurement
where
    F: Fn(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let payload = payload.to_owned();
    let caller = tokio::spawn(async move {
        let measuring_from = Instant::now() + window.warmup;
        let until = measuring_from + window.measure;
        let mut latencies = Latencies::default();
        let mut ops = 0;
        loop {
            let sent = Instant::now();
            if sent >= until {
                break;
            }
            let echoed = round_trip(payload.clone()).await;
            assert_eq!(echoed.len(), payload.len());
            if sent >= measuring_from {
                latencies.record(sent.elapsed());
                ops += 1;
            }
        }
        let elapsed = Instant::now().saturating_duration_since(measuring_from);
        Measurement { ops, elapsed, latencies, memory_per_connection: None }
    });
    caller.await.expect("the callback caller panicked")
}

/// Connects `clients` clients and returns them once the server holds every one.
pub async fn broadcast_audience(server: &Running, clients: usize, deliveries: &Arc<Deliveries>) -> Vec<BenchClient> {
    let mut connected = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(64) {
        let batch = chunk.iter().map(|_| connect(&server.url, deliveries));
        connected.extend(futures_util::future::join_all(batch).await);
    }
    while server.hub.connection_ids().len() < clients {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    connected
}

pub async fn publish(hub: &Hub<BenchEventsClient>, seq: u64, data: &str) {
    hub.all().tick(seq, data.to_owned()).await.expect("publish");
}

/// A stream of `payload` copies from a live feed, read as fast as it comes.
pub async fn stream(payload: &str, window: Window) -> Measurement {
    let server = serve("127.0.0.1:0", false).await;
    let client = connect(&server.url, &Arc::new(Deliveries::default())).await;
    let items = client.feed(payload.to_owned()).await.expect("stream");
    crate::streams::run(items.map(|item| item.expect("item")), window).await
}

/// Runs in a process of its own (fresh, so freed memory does not hide
/// growth): server and client there, a consumer of a million-value stream
/// reads ten values and stops asking; prints how much the process grew.
pub async fn paused_stream_main(payload: &str) {
    let server = serve("127.0.0.1:0", false).await;
    let client = connect(&server.url, &Arc::new(Deliveries::default())).await;
    assert_eq!(client.echo(payload.to_owned()).await.expect("echo"), payload);
    let before = crate::streams::resident_bytes();
    let mut items = client.items(payload.to_owned(), 1_000_000).await.expect("stream");
    for _ in 0..10 {
        items.next().await.expect("a value").expect("item");
    }
    // Whatever the producer would do unasked, it has done after a round trip.
    assert_eq!(client.echo(payload.to_owned()).await.expect("echo"), payload);
    let grown = (crate::streams::resident_bytes() - before).max(0.0);
    println!("grown {grown}");
}

/// A filter as an authorization check would be: it looks, and lets the call through.
fn filter() -> impl wsduplex::middleware::Middleware {
    wsduplex::middleware::from_fn(|call, next| {
        if call.method().starts_with("admin.") {
            return Err(wsduplex::ErrorObjectOwned::owned(-32050, "refused", None::<()>));
        }
        Ok(next.run())
    })
}

/// Times every call into a shared total, as a metrics recorder would.
fn timer() -> impl wsduplex::middleware::Middleware {
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    wsduplex::middleware::from_fn(move |_call, next| {
        let started = Instant::now();
        let running = next.run();
        let total = total.clone();
        Ok(wsduplex::middleware::Running::new(async move {
            let answered = running.await;
            total.fetch_add(started.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
            answered
        }))
    })
}
