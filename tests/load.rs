//! Two wsduplex peers under two-way load, over real loopback sockets: bulk
//! calls and callbacks crossing at once, a peer at its call limit, slow links
//! through a throttling proxy, and timeouts too long for the clock.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{within, within_for};
use futures_util::future::try_join_all;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsduplex::{
    Client, CloseReason, Connection, Error, Server, client::ClientBuilder, contract::TwoWay, server::ServerBuilder,
    server::ServerHandle,
};

/// What the server serves.
#[wsduplex::service(namespace = "load", callback = LoadEvents)]
pub trait Load {
    /// Returns its argument.
    async fn echo(&self, text: String) -> String;
    /// Returns `bytes` bytes of text.
    async fn bulk(&self, bytes: usize) -> String;
    /// Sleeps, then returns how long; `padding` only makes the request large.
    async fn slow(&self, millis: u64, padding: String) -> u64;
    /// Asks the caller back and returns its answer.
    async fn ask(&self, text: String) -> Result<String, Error>;
}

/// What the client serves.
#[wsduplex::callback(namespace = "load")]
pub trait LoadEvents {
    /// Returns its argument.
    async fn echo_back(&self, text: String) -> String;
}

struct Session {
    conn: Connection<LoadEventsClient>,
}

impl Load for Session {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn bulk(&self, bytes: usize) -> String {
        "b".repeat(bytes)
    }

    async fn slow(&self, millis: u64, _padding: String) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn ask(&self, text: String) -> Result<String, Error> {
        self.conn.callback().echo_back(text).await
    }
}

#[derive(Clone)]
struct Mirror;

impl LoadEvents for Mirror {
    async fn echo_back(&self, text: String) -> String {
        text
    }
}

struct LoadServer {
    addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<Connection<LoadEventsClient>>,
    _handle: ServerHandle,
}

impl LoadServer {
    async fn start(builder: ServerBuilder) -> LoadServer {
        let server = within(builder.build("127.0.0.1:0".parse::<SocketAddr>().unwrap())).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, connections) = mpsc::unbounded_channel();
        let handle = server.start(move |conn: Connection<LoadEventsClient>| {
            let _ = tx.send(conn.clone());
            Session { conn }.into_service()
        });
        LoadServer { addr, connections, _handle: handle }
    }

    fn url_at(addr: SocketAddr) -> String {
        format!("ws://{addr}/")
    }

    async fn connect(&mut self, builder: ClientBuilder) -> (LoadClient, Connection<LoadEventsClient>) {
        let client = within(LoadClient::connect_with(builder, &Self::url_at(self.addr), Mirror)).await.unwrap();
        let conn = within(self.connections.recv()).await.unwrap();
        (client, conn)
    }
}

/// `count` calls of `bytes` each from the client while the server makes as
/// many callbacks of as many bytes to the same client, all at once; then a
/// small call. Keep-alive at 5 s / 5 s on both ends, so a stall shows as
/// `Closed` (the peers dropping each other) well within the test's bound.
async fn calls_and_callbacks_cross(count: usize, bytes: usize) {
    let keep_alive = (Duration::from_secs(5), Duration::from_secs(5));
    let mut server = LoadServer::start(Server::builder().keep_alive(keep_alive.0, keep_alive.1)).await;
    let (client, conn) = server.connect(Client::builder().keep_alive(keep_alive.0, keep_alive.1)).await;
    let text = "c".repeat(bytes);
    let calls = try_join_all((0..count).map(|_| client.echo(text.clone())));
    let callbacks = try_join_all((0..count).map(|_| conn.callback().echo_back(text.clone())));
    let (calls, callbacks) = within_for(Duration::from_secs(120), async { tokio::join!(calls, callbacks) }).await;
    let (calls, callbacks) = (calls.expect("a call failed"), callbacks.expect("a callback failed"));
    assert_eq!(calls.len(), count);
    assert_eq!(callbacks.len(), count);
    assert!(calls.iter().chain(&callbacks).all(|reply| reply.len() == bytes && reply.as_bytes()[0] == b'c'));
    assert_eq!(within(client.echo("small".into())).await.unwrap(), "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_calls_and_callbacks_cross_at_once() {
    calls_and_callbacks_cross(32, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_and_callbacks_cross_at_once() {
    calls_and_callbacks_cross(1000, 64 << 10).await;
}

/// Six 3-second calls to a server that runs two at once, from a client
/// that drops a server silent for 2 s after a ping: all are answered.
async fn six_slow_calls_to_a_server_running_two(padding: usize, server: ServerBuilder) {
    let mut server = LoadServer::start(server.max_in_flight(2)).await;
    let builder = Client::builder().keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    let (client, _conn) = server.connect(builder).await;
    let padding = "p".repeat(padding);
    let calls = try_join_all((0..6).map(|_| client.slow(3000, padding.clone())));
    let answers = within_for(Duration::from_secs(60), calls).await.expect("a call failed");
    assert_eq!(answers, [3000; 6]);
    assert!(!client.caller().is_closed());
}

#[tokio::test]
async fn a_server_at_its_call_limit_is_not_taken_for_dead() {
    six_slow_calls_to_a_server_running_two(0, Server::builder()).await;
}

#[tokio::test]
async fn a_server_that_stops_reading_at_its_call_limit_still_shows_it_is_alive() {
    // 3 MiB a call: two parked calls fill the parking, and the server stops
    // reading (the client's pings wait unread); its own pings keep the client
    // from taking it for dead.
    let server = Server::builder().keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    six_slow_calls_to_a_server_running_two(3 << 20, server).await;
}

/// A TCP proxy that forwards each direction at `rate` bytes a second, in
/// small steps, until told to stop forwarding (it then holds both sockets
/// open and moves nothing: a peer vanished without a FIN).
struct Throttle {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Throttle {
    async fn start(target: SocketAddr, rate: usize) -> Throttle {
        let listener = within(TcpListener::bind("127.0.0.1:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = frozen.clone();
        tokio::spawn(async move {
            let Ok((inbound, _)) = listener.accept().await else { return };
            let Ok(outbound) = TcpStream::connect(target).await else { return };
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let up = tokio::spawn(forward(in_read, out_write, rate, stop.clone()));
            let down = tokio::spawn(forward(out_read, in_write, rate, stop));
            let _ = tokio::join!(up, down);
        });
        Throttle { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` at `rate` bytes a second, 1/100 of it every 10 ms.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    rate: usize,
    frozen: Arc<AtomicBool>,
) {
    let step = (rate / 100).max(1);
    let mut buffer = vec![0; step];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if frozen.load(Ordering::SeqCst) {
            // Hold the sockets, move nothing more.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_carries_slow_links_and_drops_vanished_peers() {
    let (interval, timeout) = (Duration::from_secs(2), Duration::from_secs(2));
    let mut server = LoadServer::start(Server::builder().keep_alive(interval, timeout)).await;
    let throttle = Throttle::start(server.addr, 1_000_000).await;
    let builder = Client::builder().keep_alive(interval, timeout).call_timeout(Duration::from_secs(120));
    let client = within(LoadClient::connect_with(builder, &LoadServer::url_at(throttle.addr), Mirror)).await.unwrap();
    let conn = within(server.connections.recv()).await.unwrap();

    // 8 MB down, and at the same time 4 MB up and 4 MB back down: about 12 s
    // through the proxy, six times the keep-alive's interval and timeout.
    let download = client.bulk(8_000_000);
    let upload = client.echo("u".repeat(4_000_000));
    let (download, upload) = within_for(Duration::from_secs(90), async { tokio::join!(download, upload) }).await;
    assert_eq!(download.expect("the download failed").len(), 8_000_000);
    assert_eq!(upload.expect("the upload failed").len(), 4_000_000);
    assert!(!conn.peer().is_closed(), "the server dropped the client: {:?}", within(conn.peer().closed()).await);
    assert_eq!(within(client.echo("still up".into())).await.unwrap(), "still up");

    // The proxy stops forwarding: both ends drop the other within interval + timeout.
    throttle.freeze();
    // (A second's grace for a busy machine.)
    let bound = interval + timeout + Duration::from_secs(1);
    let (server_side, client_side) =
        within_for(bound, async { tokio::join!(conn.peer().closed(), client.caller().closed()) }).await;
    assert_eq!(server_side, CloseReason::Unresponsive);
    assert_eq!(client_side, CloseReason::Unresponsive);
}

#[tokio::test]
async fn timeouts_too_long_for_the_clock_mean_no_deadline() {
    let forever = Duration::MAX;
    let builder = Server::builder()
        .call_timeout(forever)
        .handshake_timeout(forever)
        .shutdown_timeout(forever)
        .keep_alive(forever, forever)
        .idle_timeout(forever);
    let mut server = LoadServer::start(builder).await;
    let client_builder = Client::builder()
        .call_timeout(forever)
        .connect_timeout(forever)
        .keep_alive(forever, forever)
        .idle_timeout(forever);
    let (client, _conn) = server.connect(client_builder).await;
    assert_eq!(within(client.echo("default deadline".into())).await.unwrap(), "default deadline");
    // A server-side callback under the server's default deadline.
    assert_eq!(within(client.ask("callback".into())).await.unwrap(), "callback");
    let reply: String = within(client.caller().call("load.echo", ["per call"], Some(forever))).await.unwrap();
    assert_eq!(reply, "per call");
}
