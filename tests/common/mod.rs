//! A small contract pair and helpers shared by the integration tests.
#![allow(dead_code)]

pub mod example;
#[cfg(feature = "redis")]
pub mod redis;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{Notify as Signal, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsduplex::{Connection, ErrorObjectOwned, Hub, Server, server::ServerHandle};

/// Every await in a test goes through this: a hung test fails instead of hanging CI.
pub async fn within<F: Future>(future: F) -> F::Output {
    within_for(Duration::from_secs(20), future).await
}

/// [`within`] a given time, for waits on the paused clock that are longer by design.
pub async fn within_for<F: Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future).await.expect("timed out")
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("refused: {0}")]
    Refused(String),
}

impl From<TestError> for ErrorObjectOwned {
    fn from(e: TestError) -> Self {
        match e {
            TestError::Refused(why) => ErrorObjectOwned::owned(4001, "refused", Some(why)),
        }
    }
}

/// The server side of the test contract.
#[wsduplex::service(namespace = "t", callback = Events)]
pub trait Service {
    /// Echoes its argument.
    async fn echo(&self, text: String) -> String;
    async fn add(&self, a: i64, b: i64, c: Option<i64>) -> i64;
    async fn refuse(&self, why: String) -> Result<u8, TestError>;
    #[oneway]
    async fn note(&self, text: String);
    /// Asks the caller a question through a callback and returns its answer.
    async fn ask(&self, question: String) -> Result<String, wsduplex::Error>;
    /// Sleeps, then returns its argument: replies come back out of order.
    async fn sleep(&self, millis: u64) -> u64;
    /// Never returns; tells the test when its future is dropped.
    async fn hang(&self);
    #[method(name = "renamed")]
    async fn original(&self) -> String;
    async fn join(&self, group: String) -> bool;
    /// Sends `heard(text)` one-way to every member of the group.
    async fn shout(&self, group: String, text: String);
    async fn panic(&self) -> bool;
    /// Returns a value whose `Serialize` panics.
    async fn explode(&self) -> Exploding;
}

/// A reply that panics while it is serialized.
#[derive(schemars::JsonSchema)]
pub struct Exploding;

impl<'de> serde::Deserialize<'de> for Exploding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Exploding)
    }
}

impl serde::Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value panics when serialized, on purpose")
    }
}

/// The client side of the test contract.
#[wsduplex::callback(namespace = "t")]
pub trait Events {
    async fn answer(&self, question: String) -> String;
    #[oneway]
    async fn heard(&self, text: String);
}

/// What the test server records.
#[derive(Default)]
pub struct Observed {
    pub notes: Mutex<Vec<String>>,
    pub noted: Signal,
    pub hang_started: Signal,
    pub hangs_started: AtomicUsize,
    pub hang_dropped: Signal,
    pub hangs_dropped: AtomicUsize,
}

use std::sync::Mutex;

pub struct Session {
    pub conn: Connection<EventsClient>,
    pub hub: Hub<EventsClient>,
    pub observed: Arc<Observed>,
}

impl Session {
    /// A session on its own, for tests that build their own endpoint.
    pub fn detached(conn: Connection<EventsClient>) -> Session {
        Session { conn, hub: Hub::new(), observed: Arc::default() }
    }
}

struct DropSignal(Arc<Observed>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.hangs_dropped.fetch_add(1, Ordering::SeqCst);
        self.0.hang_dropped.notify_one();
    }
}

impl Service for Session {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn add(&self, a: i64, b: i64, c: Option<i64>) -> i64 {
        a + b + c.unwrap_or(0)
    }

    async fn refuse(&self, why: String) -> Result<u8, TestError> {
        Err(TestError::Refused(why))
    }

    async fn note(&self, text: String) {
        self.observed.notes.lock().unwrap().push(text);
        self.observed.noted.notify_one();
    }

    async fn ask(&self, question: String) -> Result<String, wsduplex::Error> {
        self.conn.callback().answer(question).await
    }

    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn hang(&self) {
        let _signal = DropSignal(self.observed.clone());
        self.observed.hangs_started.fetch_add(1, Ordering::SeqCst);
        self.observed.hang_started.notify_one();
        std::future::pending::<()>().await;
    }

    async fn original(&self) -> String {
        "renamed on the wire".into()
    }

    async fn join(&self, group: String) -> bool {
        self.conn.join_group(&group).await
    }

    async fn shout(&self, group: String, text: String) {
        self.hub.group(&group).heard(text).await.unwrap();
    }

    async fn panic(&self) -> bool {
        panic!("this handler panics on purpose")
    }

    async fn explode(&self) -> Exploding {
        Exploding
    }
}

/// A running test server.
pub struct TestServer {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub hub: Hub<EventsClient>,
    pub observed: Arc<Observed>,
    pub connections: mpsc::UnboundedReceiver<Connection<EventsClient>>,
    pub handle: ServerHandle,
}

impl TestServer {
    /// The server's handle on the next connection that opens.
    pub async fn next_connection(&mut self) -> Connection<EventsClient> {
        within(self.connections.recv()).await.expect("the server stopped")
    }

    /// Waits until the server holds exactly `count` open connections. The
    /// count drops when a connection's task ends, just after the close
    /// handshake that the client sees, and nothing signals that last step:
    /// this checks every millisecond (on a paused clock too) until it holds.
    pub async fn wait_for_connection_count(&self, count: usize) {
        within(async {
            while self.handle.connection_count() != count {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
    }
}

pub async fn start_server() -> TestServer {
    start_server_with(Server::builder()).await
}

pub async fn start_server_with(builder: wsduplex::server::ServerBuilder) -> TestServer {
    start_server_on(builder, "127.0.0.1:0".parse().unwrap()).await
}

/// A test server on `addr` (a port used before, to restart a server there).
pub async fn start_server_on(builder: wsduplex::server::ServerBuilder, addr: std::net::SocketAddr) -> TestServer {
    let hub = Hub::<EventsClient>::new();
    let observed = Arc::new(Observed::default());
    let server = within(builder.hub(&hub).build(addr)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, connections) = mpsc::unbounded_channel();
    let (hub2, observed2) = (hub.clone(), observed.clone());
    let handle = server.start(move |conn: Connection<EventsClient>| {
        let _ = tx.send(conn.clone());
        Session { conn, hub: hub2.clone(), observed: observed2.clone() }.into_service()
    });
    TestServer { url: format!("ws://{addr}/ws"), addr, hub, observed, connections, handle }
}

/// A client-side implementation of the callbacks that records what it hears.
#[derive(Clone, Default)]
pub struct Listener {
    pub heard: Arc<Mutex<Vec<String>>>,
    pub heard_signal: Arc<Signal>,
}

impl Events for Listener {
    async fn answer(&self, question: String) -> String {
        format!("answer to {question}")
    }

    async fn heard(&self, text: String) {
        self.heard.lock().unwrap().push(text);
        self.heard_signal.notify_one();
    }
}

/// A raw WebSocket client: sends exact text, reads exact JSON.
pub struct Raw {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Raw {
    /// Connects without Nagle's algorithm: on a paused clock, a write held
    /// back for an ACK leaves the runtime idle, and the clock jumps ahead.
    pub async fn connect(url: &str) -> Raw {
        let (socket, _) = within(tokio_tungstenite::connect_async_with_config(url, None, true)).await.unwrap();
        Raw { socket }
    }

    /// Connects with a small, fixed TCP receive buffer (no autotuning), so a
    /// reader that stops reading holds the server back after little data.
    pub async fn connect_with_small_buffer(server: &TestServer) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = within(socket.connect(server.addr)).await.unwrap();
        let connecting = tokio_tungstenite::client_async(server.url.as_str(), MaybeTlsStream::Plain(stream));
        let (socket, _) = within(connecting).await.unwrap();
        Raw { socket }
    }

    pub async fn send(&mut self, text: &str) {
        within(self.socket.send(Message::Text(text.into()))).await.unwrap();
    }

    /// The next text or binary frame, parsed.
    pub async fn recv(&mut self) -> Value {
        loop {
            match within(self.socket.next()).await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                Some(Ok(Message::Binary(data))) => return serde_json::from_slice(&data).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The code of the close frame that ends the connection (pings skipped).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match within(self.socket.next()).await {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Sends `text` and returns the next frame.
    pub async fn exchange(&mut self, text: &str) -> Value {
        self.send(text).await;
        self.recv().await
    }
}

/// Sends a WebSocket upgrade request for `path` with `extra` header lines
/// (`"Name: value"`), and returns the response head, lowercased. The
/// connection is closed after the answer.
pub async fn upgrade_response(addr: std::net::SocketAddr, path: &str, extra: &[&str]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    http_response(addr, &request).await
}

/// Sends `request` as it is and returns the response head (and body), lowercased.
pub async fn http_response(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = within(TcpStream::connect(addr)).await.unwrap();
    within(stream.write_all(request.as_bytes())).await.unwrap();
    // The head, then the body its Content-Length announces (the connection may stay open).
    let mut response = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        match within(stream.read(&mut buffer)).await {
            Ok(0) | Err(_) => return text,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
}
