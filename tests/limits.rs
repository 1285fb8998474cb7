//! Limits and policies under load and faults, over real loopback sockets:
//! connection limit, handshake timeout, per-connection backpressure, slow
//! consumers, keep-alive, idle timeout and graceful shutdown. Timeouts run on
//! tokio's paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify as Signal;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsduplex::{Client, CloseReason, Connection, Error, Server, contract::NoCallbacks, server::SlowConsumer};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test]
async fn past_max_connections_an_upgrade_gets_503_with_retry_after() {
    let mut server = start_server_with(Server::builder().max_connections(2)).await;
    let first = Raw::connect(&server.url).await;
    let _second = Raw::connect(&server.url).await;
    server.next_connection().await;
    server.next_connection().await;

    let response = upgrade_response(server.addr, "/ws", &[]).await;
    assert!(response.starts_with("http/1.1 503"), "{response}");
    assert!(response.contains("retry-after: 5"), "{response}");
    assert_eq!(server.handle.connection_count(), 2);

    // A place frees up when a connection ends.
    drop(first);
    server.wait_for_connection_count(1).await;
    let _third = Raw::connect(&server.url).await;
    server.next_connection().await;
}

#[tokio::test]
async fn a_refused_upgrade_spawns_nothing() {
    let endpoint = Server::builder()
        .max_connections(0)
        .endpoint(|conn: Connection<EventsClient>| Session::detached(conn).into_service());
    let mut request = http::Request::get("/ws");
    for line in UPGRADE.lines().skip(1).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(": ").unwrap();
        request = request.header(name, value);
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let response = within(endpoint.handle(request.body(()).unwrap())).await;
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(metrics.num_alive_tasks(), tasks_before);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_does_not_finish_its_upgrade_is_closed() {
    let server = start_server().await;
    for partial in ["", "GET /ws HTTP/1.1\r\nHost: localhost\r\n"] {
        let start = Instant::now();
        let mut stream = within(tokio::net::TcpStream::connect(server.addr)).await.unwrap();
        within(stream.write_all(partial.as_bytes())).await.unwrap();
        let mut buffer = [0; 64];
        // The server hangs up without a word.
        let read = within(stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(start.elapsed() >= Duration::from_secs(10), "closed after {:?}", start.elapsed());
    }
    let mut raw = Raw::connect(&server.url).await;
    assert_eq!(raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.echo","params":["x"]}"#).await["result"], "x");
}

#[tokio::test(start_paused = true)]
async fn past_max_in_flight_the_server_stops_reading_and_tcp_holds_the_client_back() {
    let server = start_server_with(Server::builder().max_in_flight(2)).await;
    let raw = Raw::connect(&server.url).await;
    let (mut sink, mut stream) = raw.socket.split();
    // Far more than the kernel's buffers hold: 64 MiB of calls that never end.
    let padding = "p".repeat(1000);
    let writer = tokio::spawn(async move {
        for n in 0..64 * 1024 {
            let request = format!(r#"{{"jsonrpc":"2.0","id":"{padding}{n}","method":"t.hang"}}"#);
            if sink.send(Message::Text(request.into())).await.is_err() {
                break;
            }
        }
    });
    // Nothing else runs: the clock jumps ahead while the writer is stuck (to
    // less than the keep-alive's 30 s, after which the server would drop a
    // client that reads nothing, pings included).
    let still_writing = tokio::time::timeout(Duration::from_secs(20), writer).await;
    assert!(still_writing.is_err(), "the client wrote everything: the server read without bound");
    assert_eq!(server.observed.hangs_started.load(Ordering::SeqCst), 2);
    // No refusals either: the client is held back, not answered busy. While
    // not reading, the server pings more often than every 30 s, so a client
    // whose own pings wait unread still hears from it.
    let mut pings = 0;
    let replies = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => return other,
            }
        }
    })
    .await;
    assert!(replies.is_err(), "expected nothing but pings, got {replies:?}");
    assert!(pings >= 1, "the server did not ping while it was not reading");
}

/// Broadcasts `count` messages of `size` bytes to `group`, pacing on the
/// reader that keeps up (so only the slow one falls behind); calls `check`
/// after each step.
#[tokio::test]
async fn a_batch_takes_a_call_slot_per_call() {
    let server = start_server_with(Server::builder().max_in_flight(2)).await;
    let mut raw = Raw::connect(&server.url).await;
    let hang = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.hang"}}"#);
    raw.send(&format!("[{},{},{}]", hang(1), hang(2), hang(3))).await;
    raw.send(r#"{"jsonrpc":"2.0","id":"next","method":"t.echo","params":["waits"]}"#).await;
    // Needs no slot, so it is answered at once, after anything answered before it.
    raw.send(r#"{"jsonrpc":"2.0","id":"probe","method":"$/cancelRequest","params":{"id":"none"}}"#).await;
    // The batch runs whole, and takes three slots of two: the echo waits.
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":"probe","result":null}));
    assert_eq!(server.observed.hangs_started.load(Ordering::SeqCst), 3);
}

/// Broadcasts per step: well within every queue bound used here.
const STEP: usize = 10;

async fn broadcast_stream(
    server: &TestServer,
    fast: &mut Raw,
    group: &str,
    count: usize,
    size: usize,
    mut check: impl FnMut(),
) {
    let text = "b".repeat(size);
    for _ in 0..count / STEP {
        for _ in 0..STEP {
            server.hub.group(group).heard(text.clone()).await.unwrap();
        }
        for _ in 0..STEP {
            assert_eq!(fast.recv().await["method"], "t.heard");
        }
        check();
    }
}

/// A server with two clients in group "feed": one that stops reading (with a
/// small receive buffer) and one that keeps up.
struct Feed {
    server: TestServer,
    slow: Raw,
    slow_conn: Connection<EventsClient>,
    fast: Raw,
}

impl Feed {
    async fn start(builder: wsduplex::server::ServerBuilder) -> Feed {
        let mut server = start_server_with(builder).await;
        let mut slow = Raw::connect_with_small_buffer(&server).await;
        let slow_conn = server.next_connection().await;
        let mut fast = Raw::connect(&server.url).await;
        server.next_connection().await;
        join(&mut slow, "feed").await;
        join(&mut fast, "feed").await;
        Feed { server, slow, slow_conn, fast }
    }
}

async fn join(raw: &mut Raw, group: &str) {
    let reply = raw.exchange(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":"t.join","params":["{group}"]}}"#)).await;
    assert_eq!(reply["result"], json!(true));
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_with_1013_and_the_others_get_everything() {
    let builder = Server::builder().outbound_bytes(256 * 1024);
    let Feed { server, slow, slow_conn, mut fast } = Feed::start(builder).await;

    // The slow client's reader is paused from here on: 24 MiB to a reader that never reads.
    broadcast_stream(&server, &mut fast, "feed", 6000, 4096, || {
        let queued = slow_conn.peer().queued_bytes();
        assert!(queued < 256 * 1024 + 4096 + 100, "{queued}");
    })
    .await;
    assert_eq!(within(slow_conn.closed()).await, CloseReason::ClosedLocally { code: 1013 });
    assert!(server.hub.group_members("feed").len() == 1);
    drop(slow);
}

#[tokio::test]
async fn with_drop_oldest_a_client_that_never_reads_stays_within_its_bounds() {
    let builder = Server::builder().outbound_bytes(256 * 1024).slow_consumer(SlowConsumer::DropOldest);
    let Feed { server, mut slow, slow_conn, mut fast } = Feed::start(builder).await;

    let mut largest = 0;
    broadcast_stream(&server, &mut fast, "feed", 6000, 4096, || {
        largest = largest.max(slow_conn.peer().queued_bytes());
    })
    .await;
    // The bound is soft by one message (4 KiB and its envelope).
    assert!(largest < 256 * 1024 + 4096 + 100, "the queue grew to {largest} bytes");
    assert!(largest >= 128 * 1024, "the queue never filled ({largest} bytes): the test did not hold the reader back");
    assert!(!slow_conn.peer().is_closed(), "DropOldest keeps the connection");
    // Reading again, the client gets the newest broadcasts (the oldest were dropped), then its reply.
    slow.send(r#"{"jsonrpc":"2.0","id":"late","method":"t.echo","params":["still here"]}"#).await;
    let mut broadcasts = 0;
    let reply = loop {
        let message = slow.recv().await;
        if message.get("id").is_some() {
            break message;
        }
        broadcasts += 1;
    };
    assert_eq!(reply["result"], json!("still here"));
    assert!(broadcasts < 6000, "all {broadcasts} broadcasts were kept");
}

#[tokio::test(start_paused = true)]
async fn the_server_drops_a_client_that_answers_no_ping() {
    let mut server = start_server().await;
    // Connected, then never polled again: it reads no ping and sends no pong.
    let _silent = Raw::connect(&server.url).await;
    let conn = server.next_connection().await;
    let start = Instant::now();
    assert_eq!(within_for(Duration::from_secs(120), conn.closed()).await, CloseReason::Unresponsive);
    // A ping after 30 s, given up on 20 s later.
    assert!(start.elapsed() >= Duration::from_secs(50), "after {:?}", start.elapsed());
    server.wait_for_connection_count(0).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_held_back_by_the_servers_own_call_limit_is_not_taken_for_dead() {
    let mut server = start_server_with(Server::builder().max_in_flight(1)).await;
    let mut raw = Raw::connect(&server.url).await;
    let conn = server.next_connection().await;
    let started = server.observed.hang_started.notified();
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.hang"}"#).await;
    within(started).await;
    // Parked behind the running call: the server stops reading, pongs included.
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"t.hang"}"#).await;
    // The client reads (and so answers every ping) for ten minutes.
    let reading = tokio::spawn(async move { while let Some(Ok(_)) = raw.socket.next().await {} });
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!conn.peer().is_closed(), "closed: {:?}", within(conn.closed()).await);
    reading.abort();
}

#[tokio::test(start_paused = true)]
async fn the_client_drops_a_server_that_answers_no_ping() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // Upgrades, then never reads again.
        let socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        std::future::pending::<()>().await;
        drop(socket);
    });
    let builder = Client::builder().keep_alive(Duration::from_secs(5), Duration::from_secs(5));
    let client = within(builder.connect(&url, NoCallbacks::service())).await.unwrap();
    assert_eq!(within(client.closed()).await, CloseReason::Unresponsive);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn keep_alive_keeps_a_quiet_but_live_connection_open() {
    let mut server = start_server().await;
    let builder = Client::builder().keep_alive(Duration::from_secs(7), Duration::from_secs(3));
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let conn = server.next_connection().await;
    // Ten minutes without a message: pings go both ways and are answered.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!conn.peer().is_closed());
    assert_eq!(within(client.echo("awake".into())).await.unwrap(), "awake");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let mut server = start_server_with(Server::builder().idle_timeout(Duration::from_secs(60))).await;
    let client =
        within(ServiceClient::connect_with(Client::builder(), &server.url, Listener::default())).await.unwrap();
    let conn = server.next_connection().await;
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(within(client.echo("activity".into())).await.unwrap(), "activity");
    let last_activity = Instant::now();
    // Keep-alive pings (every 30 s) do not count as activity.
    assert_eq!(within_for(Duration::from_secs(120), conn.closed()).await, CloseReason::Idle);
    assert!(last_activity.elapsed() >= Duration::from_secs(60), "after {:?}", last_activity.elapsed());
    let seen = within(client.caller().closed()).await;
    assert_eq!(seen, CloseReason::ClosedByPeer { code: 1000, reason: "idle timeout".into() });
}

/// Client callbacks whose `answer` waits until the test opens the gate.
#[derive(Clone, Default)]
struct Gated {
    asked: Arc<Signal>,
    answering: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<Signal>,
}

impl Events for Gated {
    async fn answer(&self, question: String) -> String {
        self.answering.fetch_add(1, Ordering::SeqCst);
        self.asked.notify_one();
        self.gate.notified().await;
        format!("late answer to {question}")
    }

    async fn heard(&self, _: String) {}
}

#[tokio::test]
async fn a_graceful_shutdown_lets_running_calls_finish_refuses_new_ones_and_closes_with_1001() {
    let mut server = start_server().await;
    let gated = Gated::default();
    let client = within(ServiceClient::connect_with(Client::builder(), &server.url, gated.clone())).await.unwrap();
    server.next_connection().await;
    let asked = gated.asked.notified();
    let running = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("ready?".into()).await })
    };
    within(asked).await;

    let handle = server.handle.clone();
    let mut shutdown = Box::pin(async move { handle.shutdown().await });
    // One poll starts the shutdown: every connection is told before this returns.
    assert!(futures_util::poll!(shutdown.as_mut()).is_pending());

    match within(client.echo("too late".into())).await {
        Err(Error::Rpc(error)) => {
            assert_eq!(error.code(), -32009);
            assert_eq!(error.message(), "Server is shutting down");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The running call finishes (its callback is answered), and its reply arrives before the close.
    gated.gate.notify_one();
    assert_eq!(within(running).await.unwrap().unwrap(), "late answer to ready?");
    let reason = within(client.caller().closed()).await;
    assert_eq!(reason, CloseReason::ClosedByPeer { code: 1001, reason: "server shutting down".into() });
    within(shutdown).await;
    assert_eq!(server.handle.connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn at_the_shutdown_deadline_every_pending_call_fails_on_both_sides() {
    let mut server = start_server_with(Server::builder().shutdown_timeout(Duration::from_secs(5))).await;
    let gated = Gated::default();
    let builder = Client::builder().call_timeout(Duration::from_secs(3600));
    let client = within(ServiceClient::connect_with(builder, &server.url, gated.clone())).await.unwrap();
    let conn = server.next_connection().await;

    // The client waits on the server, and the server on the client.
    let started = server.observed.hang_started.notified();
    let hanging = {
        let client = client.clone();
        tokio::spawn(async move { client.hang().await })
    };
    within(started).await;
    let asked = gated.asked.notified();
    let asking = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.callback().with_timeout(Duration::from_secs(3600)).answer("?".into()).await })
    };
    within(asked).await;

    let dropped = server.observed.hang_dropped.notified();
    let start = Instant::now();
    within(server.handle.shutdown()).await;
    assert!(start.elapsed() >= Duration::from_secs(5), "after {:?}", start.elapsed());
    within(dropped).await;
    assert!(matches!(within(hanging).await.unwrap(), Err(Error::Closed)));
    assert!(matches!(within(asking).await.unwrap(), Err(Error::Closed)));
    assert_eq!(within(conn.closed()).await, CloseReason::Shutdown);
    let reason = within(client.caller().closed()).await;
    assert_eq!(reason, CloseReason::ClosedByPeer { code: 1001, reason: "server shutting down".into() });
}

#[tokio::test]
async fn a_client_runs_at_most_max_in_flight_callbacks_at_once() {
    let mut server = start_server().await;
    let gated = Gated::default();
    let builder = Client::builder().max_in_flight(1);
    let client = within(ServiceClient::connect_with(builder, &server.url, gated.clone())).await.unwrap();
    let conn = server.next_connection().await;
    let callbacks = conn.callback();
    let mut first = std::pin::pin!(callbacks.answer("first".into()));
    let mut second = std::pin::pin!(callbacks.answer("second".into()));
    // One poll each queues both callbacks, in order, ahead of the reply below.
    assert!(futures_util::poll!(first.as_mut()).is_pending());
    assert!(futures_util::poll!(second.as_mut()).is_pending());
    assert_eq!(within(client.echo("probe".into())).await.unwrap(), "probe");
    // Both callbacks reached the client before that reply; one runs, one waits.
    assert_eq!(gated.answering.load(Ordering::SeqCst), 1);
    gated.gate.notify_one();
    assert_eq!(within(first).await.unwrap(), "late answer to first");
    gated.gate.notify_one();
    assert_eq!(within(second).await.unwrap(), "late answer to second");
    assert_eq!(gated.answering.load(Ordering::SeqCst), 2);
}

/// An endpoint with a page beside it, served by `Endpoint::serve` on a port of its own.
#[cfg(feature = "axum")]
async fn serve_app(builder: wsduplex::server::ServerBuilder) -> std::net::SocketAddr {
    let endpoint = builder.endpoint(|conn: Connection<EventsClient>| Session::detached(conn).into_service());
    let app =
        axum::Router::new().route("/", axum::routing::get(|| async { "page" })).route_service("/ws", endpoint.clone());
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Without Nagle's delay, which the paused clock would otherwise jump over.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { endpoint.serve(listener, app).await });
    addr
}

#[cfg(feature = "axum")]
const PAGE: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn endpoint_serve_cuts_off_a_connection_that_sends_half_a_request() {
    let addr = serve_app(Server::builder()).await;
    assert!(http_response(addr, PAGE).await.ends_with("page"));
    let url = format!("ws://{addr}/ws");
    let client = within(ServiceClient::connect(&url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("mounted".into())).await.unwrap(), "mounted");
    for partial in ["", "GET / HTTP/1.1\r\nHost: local"] {
        let start = Instant::now();
        let mut stream = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
        within(stream.write_all(partial.as_bytes())).await.unwrap();
        let mut buffer = [0; 64];
        let read = within(stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(start.elapsed() >= Duration::from_secs(10), "closed after {:?}", start.elapsed());
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn endpoint_serve_bounds_the_connections_before_their_upgrade() {
    let addr = serve_app(Server::builder().max_connections(2).handshake_timeout(Duration::from_secs(60))).await;
    let mut halves = Vec::new();
    for _ in 0..2 {
        let mut stream = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
        within(stream.write_all(b"GET / HTTP/1.1\r\nHost: local")).await.unwrap();
        halves.push(stream);
    }
    // A third is closed at once, though it sends a whole request.
    let refused = http_response(addr, PAGE).await;
    assert_eq!(refused, "", "a third connection was served");
    // Places free up as those two go.
    drop(halves);
    within(async {
        while !http_response(addr, PAGE).await.ends_with("page") {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_parked_request_that_is_cancelled_never_runs() {
    let server = start_server_with(Server::builder().max_in_flight(1)).await;
    let mut raw = Raw::connect(&server.url).await;
    let started = server.observed.hang_started.notified();
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.hang"}"#).await;
    within(started).await;
    // Parked behind the first; cancelled before it starts.
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"t.hang"}"#).await;
    let cancel = r#"{"jsonrpc":"2.0","id":"c","method":"$/cancelRequest","params":{"id":2}}"#;
    let cancelled = raw.exchange(cancel).await;
    assert_eq!(
        cancelled,
        json!({"jsonrpc":"2.0","id":2,"error":{"code":wsduplex::codes::REQUEST_CANCELLED,"message":"Request cancelled"}})
    );
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":"c","result":null}));
    // The first ends; the second never starts: the next call runs at once.
    let dropped = server.observed.hang_dropped.notified();
    raw.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#).await;
    assert_eq!(raw.recv().await["id"], 1);
    within(dropped).await;
    assert_eq!(raw.exchange(r#"{"jsonrpc":"2.0","id":3,"method":"t.echo","params":["next"]}"#).await["result"], "next");
    assert_eq!(server.observed.hangs_started.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_vanishes_while_the_server_is_not_reading_is_still_dropped() {
    let mut server = start_server_with(Server::builder().max_in_flight(1)).await;
    let mut raw = Raw::connect(&server.url).await;
    let conn = server.next_connection().await;
    // One call runs for good, and four calls of 1 MiB fill the parking: the
    // server stops reading (nothing on it waits on the client).
    let padding = "p".repeat(1 << 20);
    for id in 0..5 {
        raw.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.hang","params":[],"pad":"{padding}"}}"#)).await;
    }
    // Then the client is gone without a word: it neither reads nor writes.
    let start = Instant::now();
    assert_eq!(within_for(Duration::from_secs(300), conn.closed()).await, CloseReason::Unresponsive);
    // Pings every 10 s while not reading; a ping unanswered for 20 s; one
    // more frame read, and 20 s more for any sign of the client.
    assert!(start.elapsed() <= Duration::from_secs(60), "dropped after {:?}", start.elapsed());
    drop(raw);
}
