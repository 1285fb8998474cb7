//! Streams both ways over real loopback connections: stream results and
//! stream parameters in a service and in a callback contract, pull-driven
//! back-pressure, disposal, errors, the connection closing mid-stream, the
//! open-stream limit, and the exact wire (StreamJsonRpc's IAsyncEnumerable
//! protocol) as a third-party peer sees it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use common::{Raw, within};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify as Signal;
use wsduplex::{CallError, Client, Connection, Error, Incoming, Outgoing, Peer, Server, codes};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Tick {
    symbol: String,
    seq: u64,
    price: f64,
}

/// What the ticker fails with.
#[derive(Debug, PartialEq, thiserror::Error, wsduplex::RpcError)]
pub enum TickerError {
    /// No such symbol.
    #[error("unknown symbol {0}")]
    #[rpc(code = 2001)]
    UnknownSymbol(String),
}

#[wsduplex::service(namespace = "ticker", callback = Feed)]
pub trait Ticker {
    /// `count` ticks of `symbol`, `seq` 0..count-1.
    async fn history(&self, symbol: String, count: u64) -> Result<Outgoing<Tick>, TickerError>;
    /// The sum of the values sent.
    async fn total(&self, values: Incoming<f64>) -> Result<f64, Error>;
    /// 0..count, counted as produced.
    async fn numbers(&self, count: u64) -> Outgoing<u64>;
    /// 0..count, then the error 2002.
    async fn failing(&self, count: u64) -> Outgoing<u64>;
    /// Never ends; says when it is dropped.
    async fn endless(&self) -> Outgoing<u64>;
    /// Never yields a value; says when it is dropped.
    async fn silent(&self) -> Outgoing<u64>;
    /// Never ends, produced ahead of the asks in a task of its own.
    async fn ahead(&self) -> Outgoing<u64>;
    /// Keeps the stream sent, unread, past the call.
    async fn keep(&self, values: Incoming<u64>);
    /// Reads the stream kept by `keep`.
    async fn read_kept(&self) -> Vec<i64>;
    /// The first values prefetched with the token.
    async fn prefetched(&self, count: u64, prefetch: u64) -> Outgoing<u64>;
    /// The sum of `series(count)` read from the caller's callback.
    async fn pull_from_caller(&self, count: u64) -> Result<u64, Error>;
    /// How many values `count(values)` on the caller's callback counted, sent 0..count.
    async fn push_to_caller(&self, count: u64) -> Result<u64, Error>;
    async fn ping(&self) -> u8;
}

#[wsduplex::callback(namespace = "feed")]
pub trait Feed {
    async fn series(&self, count: u64) -> Outgoing<u64>;
    async fn count(&self, values: Incoming<u64>) -> u64;
}

/// What the server's streams report.
#[derive(Default)]
struct Probe {
    produced: AtomicU64,
    dropped: AtomicUsize,
    dropped_signal: Signal,
    /// The server side of the last connection.
    peer: std::sync::Mutex<Option<Peer>>,
    kept: tokio::sync::Mutex<Option<Incoming<u64>>>,
}

/// Tells the probe when the stream holding it is dropped.
struct OnDrop(Arc<Probe>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
        self.0.dropped_signal.notify_waiters();
    }
}

impl Probe {
    async fn wait_dropped(&self, count: usize) {
        within(async {
            loop {
                let signal = self.dropped_signal.notified();
                if self.dropped.load(Ordering::SeqCst) >= count {
                    return;
                }
                signal.await;
            }
        })
        .await;
    }

    fn server_peer(&self) -> Peer {
        self.peer.lock().unwrap().clone().expect("a connection")
    }
}

struct Desk {
    conn: Connection<FeedClient>,
    probe: Arc<Probe>,
}

impl Desk {
    /// 0.. counted as produced, dropped observed.
    fn counted(&self, range: std::ops::Range<u64>) -> impl futures_util::Stream<Item = u64> + Send + 'static {
        let probe = self.probe.clone();
        let guard = OnDrop(probe.clone());
        stream::iter(range).map(move |n| {
            let _alive = &guard;
            probe.produced.fetch_add(1, Ordering::SeqCst);
            n
        })
    }
}

impl Ticker for Desk {
    async fn history(&self, symbol: String, count: u64) -> Result<Outgoing<Tick>, TickerError> {
        if symbol != "ACME" {
            return Err(TickerError::UnknownSymbol(symbol));
        }
        Ok(Outgoing::iter((0..count).map(move |seq| Tick { symbol: symbol.clone(), seq, price: 100.0 + seq as f64 })))
    }

    async fn total(&self, mut values: Incoming<f64>) -> Result<f64, Error> {
        let mut sum = 0.0;
        while let Some(value) = values.next().await {
            sum += value?;
        }
        Ok(sum)
    }

    async fn numbers(&self, count: u64) -> Outgoing<u64> {
        Outgoing::new(self.counted(0..count))
    }

    async fn failing(&self, count: u64) -> Outgoing<u64> {
        let values = stream::iter((0..count).map(Ok));
        let error = stream::once(async { Err(wsduplex::ErrorObjectOwned::owned(2002, "feed lost", None::<()>)) });
        Outgoing::from_results(values.chain(error))
    }

    async fn endless(&self) -> Outgoing<u64> {
        Outgoing::new(self.counted(0..u64::MAX))
    }

    async fn silent(&self) -> Outgoing<u64> {
        let guard = OnDrop(self.probe.clone());
        Outgoing::new(stream::pending::<u64>().map(move |n| {
            let _alive = &guard;
            n
        }))
    }

    async fn ahead(&self) -> Outgoing<u64> {
        Outgoing::new(self.counted(0..u64::MAX)).max_read_ahead(16).min_batch_size(4)
    }

    async fn keep(&self, values: Incoming<u64>) {
        *self.probe.kept.lock().await = Some(values);
    }

    async fn read_kept(&self) -> Vec<i64> {
        let Some(mut kept) = self.probe.kept.lock().await.take() else { return vec![] };
        let mut read = Vec::new();
        while let Some(item) = kept.next().await {
            read.push(match item {
                Ok(n) => n as i64,
                Err(e) => e.code().map_or(-1, i64::from),
            });
        }
        read
    }

    async fn prefetched(&self, count: u64, prefetch: u64) -> Outgoing<u64> {
        Outgoing::iter(0..count).prefetch(prefetch as usize).await
    }

    async fn pull_from_caller(&self, count: u64) -> Result<u64, Error> {
        let mut series = self.conn.callback().series(count).await?;
        let mut sum = 0;
        while let Some(value) = series.next().await {
            sum += value?;
        }
        Ok(sum)
    }

    async fn push_to_caller(&self, count: u64) -> Result<u64, Error> {
        self.conn.callback().count(self.counted(0..count)).await
    }

    async fn ping(&self) -> u8 {
        1
    }
}

/// The client's side of the callbacks.
struct Screen;

impl Feed for Screen {
    async fn series(&self, count: u64) -> Outgoing<u64> {
        Outgoing::iter(0..count)
    }

    async fn count(&self, values: Incoming<u64>) -> u64 {
        values.filter_map(|v| async move { v.ok() }).count().await as u64
    }
}

struct Setup {
    url: String,
    probe: Arc<Probe>,
}

async fn serve(builder: wsduplex::server::ServerBuilder) -> Setup {
    let server = within(builder.build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    let probe = Arc::new(Probe::default());
    let shared = probe.clone();
    tokio::spawn(server.serve(move |conn: Connection<FeedClient>| {
        *shared.peer.lock().unwrap() = Some(conn.peer().clone());
        Desk { conn, probe: shared.clone() }.into_service()
    }));
    Setup { url, probe }
}

async fn setup() -> (TickerClient, Arc<Probe>) {
    let Setup { url, probe } = serve(Server::builder()).await;
    let client = within(TickerClient::connect_with(Client::builder(), &url, Screen)).await.unwrap();
    (client, probe)
}

async fn collect<T: serde::de::DeserializeOwned>(incoming: Incoming<T>) -> Vec<Result<T, Error>> {
    within(incoming.collect::<Vec<_>>()).await
}

fn client_peer(client: &TickerClient) -> Peer {
    client.caller().peer().expect("connected")
}

#[tokio::test]
async fn a_stream_result_arrives_in_order_and_an_error_before_it_is_the_calls() {
    let (client, _probe) = setup().await;
    let ticks = within(client.history("ACME".into(), 5)).await.unwrap();
    let ticks: Vec<Tick> = collect(ticks).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(ticks.iter().map(|t| t.seq).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(ticks[3], Tick { symbol: "ACME".into(), seq: 3, price: 103.0 });

    match within(client.history("NOPE".into(), 5)).await {
        Err(CallError::Method(TickerError::UnknownSymbol(symbol))) => assert_eq!(symbol, "NOPE"),
        other => panic!("expected the method's error, got {other:?}"),
    }
    // An empty sequence ends at once.
    assert!(collect(within(client.history("ACME".into(), 0)).await.unwrap()).await.is_empty());
}

#[tokio::test]
async fn a_stream_parameter_is_read_by_the_handler() {
    let (client, _probe) = setup().await;
    let values = stream::iter([1.5, 2.5, 3.0]);
    assert_eq!(within(client.total(values)).await.unwrap(), 7.0);
    // An `Outgoing` with settings of its own goes in as it is.
    let values = Outgoing::iter((1..=1000).map(f64::from)).min_batch_size(100);
    assert_eq!(within(client.total(values)).await.unwrap(), 500_500.0);
    assert_eq!(client_peer(&client).open_streams(), 0, "the parameters' streams are released");
}

#[tokio::test]
async fn callbacks_return_and_take_streams_too() {
    let (client, probe) = setup().await;
    // The server reads a stream its client's callback returns...
    assert_eq!(within(client.pull_from_caller(100)).await.unwrap(), 4950);
    // ...and sends one as a callback's parameter.
    assert_eq!(within(client.push_to_caller(250)).await.unwrap(), 250);
    assert_eq!(probe.server_peer().open_streams(), 0);
    assert_eq!(client_peer(&client).open_streams(), 0);
}

#[tokio::test]
async fn a_million_values_arrive_in_order_and_a_paused_consumer_stops_the_producer() {
    let (client, probe) = setup().await;
    let mut numbers = within(client.numbers(1_000_000)).await.unwrap();
    for expected in 0..10 {
        assert_eq!(within(numbers.next()).await.unwrap().unwrap(), expected);
    }
    // Paused: a call's round trip later, the producer has made one batch (at
    // most 64 KiB of values, so fewer than 40,000) and no more.
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    let produced = probe.produced.load(Ordering::SeqCst);
    assert!((10..40_000).contains(&produced), "produced {produced} while paused");
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    assert_eq!(probe.produced.load(Ordering::SeqCst), produced, "nothing more without an ask");

    // Resumed: the rest, in order.
    let mut next = 10;
    while let Some(value) = within(numbers.next()).await {
        assert_eq!(value.unwrap(), next);
        next += 1;
    }
    assert_eq!(next, 1_000_000);
    assert_eq!(probe.produced.load(Ordering::SeqCst), 1_000_000);
    probe.wait_dropped(1).await;
    assert_eq!(probe.server_peer().open_streams(), 0);
}

#[tokio::test]
async fn dropping_the_consumer_disposes_of_the_producer() {
    let (client, probe) = setup().await;
    let mut endless = within(client.endless()).await.unwrap();
    for expected in 0..3 {
        assert_eq!(within(endless.next()).await.unwrap().unwrap(), expected);
    }
    assert_eq!(probe.server_peer().open_streams(), 1);
    drop(endless);
    probe.wait_dropped(1).await;
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    assert_eq!(probe.server_peer().open_streams(), 0);

    // Also while the producer is waiting for a value it does not have: the
    // ask goes out on the first poll, and the server has it once a later
    // call is answered.
    let mut silent = within(client.silent()).await.unwrap();
    assert!(futures_util::poll!(silent.next()).is_pending());
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    drop(silent);
    probe.wait_dropped(2).await;
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    assert_eq!(probe.server_peer().open_streams(), 0);
}

#[tokio::test]
async fn a_producer_error_ends_the_stream_with_its_error_object() {
    let (client, _probe) = setup().await;
    let items = collect(within(client.failing(3)).await.unwrap()).await;
    assert_eq!(items.len(), 4);
    assert_eq!(items[..3].iter().map(|i| *i.as_ref().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    match &items[3] {
        Err(Error::Rpc(object)) => assert_eq!((object.code(), object.message()), (2002, "feed lost")),
        other => panic!("expected the producer's error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_closing_mid_stream_ends_it_with_an_error_on_both_sides() {
    let (client, probe) = setup().await;
    let mut endless = within(client.endless()).await.unwrap();
    assert_eq!(within(endless.next()).await.unwrap().unwrap(), 0);
    // And one whose values are made ahead, in a task of its own.
    let mut ahead = within(client.ahead()).await.unwrap();
    assert_eq!(within(ahead.next()).await.unwrap().unwrap(), 0);
    let server = probe.server_peer();
    server.close(1000, "bye");
    within(server.closed()).await;
    // Drain what arrived; then the error.
    for stream in [endless, ahead] {
        let rest = collect(stream).await;
        assert!(matches!(rest.last(), Some(Err(Error::Closed))), "ends with Closed: {:?}", rest.last());
    }
    // Both producers are dropped: the read-ahead task's too, so it has ended.
    probe.wait_dropped(2).await;
    assert_eq!(server.open_streams(), 0, "no producer left");
}

#[tokio::test]
async fn a_consumer_on_the_server_sees_the_client_go() {
    let Setup { url, probe } = serve(Server::builder()).await;
    let client = within(TickerClient::connect_with(Client::builder(), &url, Screen)).await.unwrap();
    // The client sends a stream that never ends, and the server keeps it.
    let (tx, rx) = tokio::sync::mpsc::channel::<u64>(4);
    tx.send(7).await.unwrap();
    within(client.keep(Outgoing::from(rx))).await.unwrap();
    drop(tx);
    client.caller().close();
    within(probe.server_peer().closed()).await;
    // The kept stream, read after the connection is gone: an error, not a hang.
    let mut kept = probe.kept.lock().await.take().unwrap();
    assert!(matches!(within(kept.next()).await, Some(Err(Error::Closed))));
    assert!(within(kept.next()).await.is_none());
}

#[tokio::test]
async fn a_parameters_stream_is_released_when_its_call_completes() {
    let (client, _probe) = setup().await;
    let dropped = Arc::new(Signal::new());
    let guard = DropNotify(dropped.clone());
    let values = stream::iter(0..10u64).map(move |n| {
        let _alive = &guard;
        n
    });
    let released = dropped.notified();
    // The server keeps the stream unread and answers: the client drops its side.
    within(client.keep(values)).await.unwrap();
    within(released).await;
    assert_eq!(client_peer(&client).open_streams(), 0);
    // Reading it afterwards finds no stream.
    assert_eq!(within(client.read_kept()).await.unwrap(), [i64::from(codes::NO_SUCH_STREAM)]);
}

struct DropNotify(Arc<Signal>);

impl Drop for DropNotify {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn ten_thousand_streams_opened_and_abandoned_leave_nothing_behind() {
    let (client, probe) = setup().await;
    for _ in 0..100 {
        let opened = futures_util::future::join_all((0..100).map(|_| client.numbers(5))).await;
        for incoming in opened {
            drop(incoming.unwrap());
        }
    }
    // The disposals went out before this call; the server handled them first.
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    assert_eq!(probe.server_peer().open_streams(), 0);
    probe.wait_dropped(10_000).await;
    assert_eq!(probe.produced.load(Ordering::SeqCst), 0, "abandoned unasked: nothing produced");
}

#[tokio::test]
async fn past_the_open_stream_limit_a_call_is_refused_with_32009() {
    let Setup { url, probe } = serve(Server::builder().max_open_streams(3)).await;
    let client = within(TickerClient::connect_with(Client::builder(), &url, Screen)).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(within(client.endless()).await.unwrap());
    }
    match within(client.endless()).await {
        Err(Error::Rpc(object)) => assert_eq!(object.code(), codes::SERVER_BUSY),
        other => panic!("expected -32009, got {other:?}"),
    }
    // The refused stream was dropped, not kept.
    probe.wait_dropped(1).await;
    drop(open.pop());
    probe.wait_dropped(2).await;
    assert_eq!(within(client.ping()).await.unwrap(), 1);
    assert!(within(client.endless()).await.is_ok());
}

#[tokio::test]
async fn waiting_streams_hold_back_neither_calls_nor_other_streams() {
    // Two call slots; more streams wait for a value than that.
    let Setup { url, probe: _probe } = serve(Server::builder().max_in_flight(2)).await;
    let client = within(TickerClient::connect_with(Client::builder(), &url, Screen)).await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let mut silent = within(client.silent()).await.unwrap();
        // Polled once here, so its ask is on the wire before the calls below.
        let mut next = Box::pin(async move { silent.next().await.map(|r| r.ok()) });
        assert!(futures_util::poll!(&mut next).is_pending());
        waiting.push(tokio::spawn(next));
    }
    // A paused one too.
    let mut paused = within(client.numbers(1_000)).await.unwrap();
    assert_eq!(within(paused.next()).await.unwrap().unwrap(), 0);

    for _ in 0..10 {
        assert_eq!(within(client.ping()).await.unwrap(), 1);
    }
    let flowing = collect(within(client.numbers(5_000)).await.unwrap()).await;
    assert_eq!(flowing.len(), 5_000);
    assert!(waiting.iter().all(|task| !task.is_finished()));
}

/// The third-party view: exact JSON for each message of the protocol.
#[tokio::test]
async fn the_wire_as_a_raw_peer_sees_it() {
    let Setup { url, probe } = serve(Server::builder()).await;
    let mut raw = Raw::connect(&url).await;

    let opened = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"ticker.history","params":["ACME",3]}"#).await;
    let token = opened["result"]["token"].as_str().expect("a string token").to_owned();
    assert_eq!(opened["result"].as_object().unwrap().len(), 1, "only the token: {opened}");
    assert_eq!(token.len(), 22, "128 random bits");

    // By name, then by position.
    let next = format!(r#"{{"jsonrpc":"2.0","id":2,"method":"$/enumerator/next","params":{{"token":"{token}"}}}}"#);
    assert_eq!(
        raw.exchange(&next).await,
        json!({"jsonrpc":"2.0","id":2,"result":{"values":[
            {"symbol":"ACME","seq":0,"price":100.0},
            {"symbol":"ACME","seq":1,"price":101.0},
            {"symbol":"ACME","seq":2,"price":102.0}
        ],"finished":true}})
    );
    let again = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"$/enumerator/next","params":["{token}"]}}"#);
    assert_eq!(
        raw.exchange(&again).await,
        json!({"jsonrpc":"2.0","id":3,"error":{"code":-32001,"message":"No stream has this token"}})
    );

    // Dispose as a request is answered (null) whether or not the token is known.
    let numbers = raw.exchange(r#"{"jsonrpc":"2.0","id":4,"method":"ticker.numbers","params":{"count":10}}"#).await;
    let token = numbers["result"]["token"].as_str().unwrap().to_owned();
    assert_eq!(probe.server_peer().open_streams(), 1);
    let dispose =
        format!(r#"{{"jsonrpc":"2.0","id":5,"method":"$/enumerator/dispose","params":{{"token":"{token}"}}}}"#);
    assert_eq!(raw.exchange(&dispose).await, json!({"jsonrpc":"2.0","id":5,"result":null}));
    assert_eq!(probe.server_peer().open_streams(), 0);
    let next = format!(r#"{{"jsonrpc":"2.0","id":6,"method":"$/enumerator/next","params":{{"token":"{token}"}}}}"#);
    assert_eq!(raw.exchange(&next).await["error"]["code"], json!(codes::NO_SUCH_STREAM));
    // A token this side never issues, and none at all.
    let foreign = r#"{"jsonrpc":"2.0","id":7,"method":"$/enumerator/next","params":{"token":42}}"#;
    assert_eq!(raw.exchange(foreign).await["error"]["code"], json!(codes::NO_SUCH_STREAM));
    let missing = r#"{"jsonrpc":"2.0","id":8,"method":"$/enumerator/next","params":{}}"#;
    assert_eq!(raw.exchange(missing).await["error"]["code"], json!(codes::INVALID_PARAMS));

    // StreamJsonRpc's own name for dispose, as a notification.
    let numbers = raw.exchange(r#"{"jsonrpc":"2.0","id":9,"method":"ticker.numbers","params":{"count":10}}"#).await;
    let token = numbers["result"]["token"].as_str().unwrap().to_owned();
    raw.send(&format!(r#"{{"jsonrpc":"2.0","method":"$/enumerator/abort","params":{{"token":"{token}"}}}}"#)).await;
    assert_eq!(raw.exchange(r#"{"jsonrpc":"2.0","id":10,"method":"ticker.ping"}"#).await["result"], json!(1));
    assert_eq!(probe.server_peer().open_streams(), 0);

    // Prefetched values travel with the token; a sequence that ends in them has none.
    let prefetched = raw.exchange(r#"{"jsonrpc":"2.0","id":11,"method":"ticker.prefetched","params":[5,2]}"#).await;
    assert_eq!(prefetched["result"]["values"], json!([0, 1]));
    let token = prefetched["result"]["token"].as_str().unwrap().to_owned();
    let next = format!(r#"{{"jsonrpc":"2.0","id":12,"method":"$/enumerator/next","params":{{"token":"{token}"}}}}"#);
    assert_eq!(raw.exchange(&next).await["result"], json!({"values":[2,3,4],"finished":true}));
    let whole = raw.exchange(r#"{"jsonrpc":"2.0","id":13,"method":"ticker.prefetched","params":[2,5]}"#).await;
    assert_eq!(whole, json!({"jsonrpc":"2.0","id":13,"result":{"values":[0,1]}}));
}

/// A raw peer feeds `ticker.total` by hand, answering the server's asks.
#[tokio::test]
async fn a_raw_peer_feeds_a_stream_parameter() {
    let Setup { url, .. } = serve(Server::builder()).await;
    let mut raw = Raw::connect(&url).await;
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"ticker.total","params":{"values":{"token":"t-1","values":[0.5]}}}"#)
        .await;
    let ask = raw.recv().await;
    assert_eq!(ask["method"], json!("$/enumerator/next"));
    assert_eq!(ask["params"], json!({"token":"t-1"}));
    let id = ask["id"].clone();
    raw.send(&json!({"jsonrpc":"2.0","id":id,"result":{"values":[1.5,2.0],"finished":false}}).to_string()).await;
    let ask = raw.recv().await;
    assert_eq!(ask["method"], json!("$/enumerator/next"));
    let id = ask["id"].clone();
    raw.send(&json!({"jsonrpc":"2.0","id":id,"result":{"values":[3.0],"finished":true}}).to_string()).await;
    // The consumer says it is done, then the call answers.
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","method":"$/enumerator/dispose","params":{"token":"t-1"}}));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":1,"result":7.0}));

    // StreamJsonRpc's bare token form, and an error from the producer.
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"ticker.total","params":[99]}"#).await;
    let ask = raw.recv().await;
    assert_eq!(ask["params"], json!({"token":99}));
    let id = ask["id"].clone();
    raw.send(&json!({"jsonrpc":"2.0","id":id,"error":{"code":-32001,"message":"gone"}}).to_string()).await;
    assert_eq!(raw.recv().await["method"], json!("$/enumerator/dispose"));
    let answer = raw.recv().await;
    assert_eq!(answer["id"], json!(2));
    assert_eq!(answer["error"]["code"], json!(codes::PEER_ERROR));
}

/// A peer that asks without reading the answers cannot make the server fill
/// its memory 64 KiB per ask: once the connection's queue is full, each ask
/// gets one value, and past the owed-reply limit the server stops reading.
#[tokio::test]
async fn asking_without_reading_does_not_fill_the_servers_memory() {
    let Setup { url, probe } = serve(Server::builder()).await;
    // A small, fixed receive buffer: the kernel holds little for us.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let stream = within(socket.connect(addr)).await.unwrap();
    let connecting = tokio_tungstenite::client_async(url.as_str(), tokio_tungstenite::MaybeTlsStream::Plain(stream));
    let mut raw = Raw { socket: within(connecting).await.unwrap().0 };

    let opened = raw.exchange(r#"{"jsonrpc":"2.0","id":0,"method":"ticker.numbers","params":[10000000]}"#).await;
    let token = opened["result"]["token"].as_str().unwrap().to_owned();
    const ASKS: u64 = 1000;
    for id in 1..=ASKS {
        raw.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"$/enumerator/next","params":["{token}"]}}"#)).await;
    }
    // Now read every answer: each ask got at least one value, in order.
    let mut values = 0;
    for id in 1..=ASKS {
        let answer = raw.recv().await;
        assert_eq!(answer["id"], json!(id));
        let got = answer["result"]["values"].as_array().unwrap().len();
        assert!(got >= 1);
        values += got;
    }
    assert_eq!(values as u64, probe.produced.load(Ordering::SeqCst));
    eprintln!("{values} values produced for {ASKS} unread asks");
    // 64 KiB per ask would have made about nine million; the queue's 4 MiB
    // and the kernel's buffers hold a small part of that.
    assert!(values < 3_000_000, "{values} values produced for {ASKS} unread asks");
}
