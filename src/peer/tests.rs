//! The engine driven in-process over channels, on tokio's paused clock.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::*;
use crate::caller::TwoWay;
use crate::dispatch::{Handler, HandlerFuture, IncomingCall, handle};
use crate::socket::Activity;

/// One end of an in-memory WebSocket.
struct ChannelTransport {
    tx: Option<mpsc::UnboundedSender<Message>>,
    rx: mpsc::UnboundedReceiver<Message>,
    activity: Activity,
}

fn transport_pair() -> (ChannelTransport, ChannelTransport) {
    let (a_tx, b_rx) = mpsc::unbounded_channel();
    let (b_tx, a_rx) = mpsc::unbounded_channel();
    let end = |tx, rx| ChannelTransport { tx: Some(tx), rx, activity: Activity::default() };
    (end(a_tx, a_rx), end(b_tx, b_rx))
}

impl Transport for ChannelTransport {
    fn take_activity(&mut self) -> Activity {
        std::mem::take(&mut self.activity)
    }
}

impl Stream for ChannelTransport {
    type Item = Result<Message, WsError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let received = ready!(self.rx.poll_recv(cx));
        self.activity.read |= received.is_some();
        Poll::Ready(received.map(Ok))
    }
}

impl Sink<Message> for ChannelTransport {
    type Error = WsError;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(if self.tx.is_some() { Ok(()) } else { Err(WsError::AlreadyClosed) })
    }
    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        // A channel takes a ping at once.
        self.activity.ping_flushed |= matches!(message, Message::Ping(_));
        match &self.tx {
            Some(tx) => tx.send(message).map_err(|_| WsError::ConnectionClosed),
            None => Err(WsError::AlreadyClosed),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.tx = None;
        Poll::Ready(Ok(()))
    }
}

#[derive(Default)]
struct Signals {
    hang_started: Notify,
    hang_dropped: Notify,
    hangs_dropped: AtomicUsize,
}

struct OnDrop(Arc<Signals>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.hangs_dropped.fetch_add(1, Ordering::SeqCst);
        self.0.hang_dropped.notify_one();
    }
}

/// `echo(text)`, `sleep(millis)` and `hang()`; with its own connection's
/// peer, `bounce(text)` (asks the peer's `nested`) and `nested(text)` (asks
/// the peer's `echo`): a call back and forth inside calls.
struct TestHandler(Arc<Signals>, Option<Peer>);

impl Handler for TestHandler {
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        let signals = Arc::new(self.0.clone());
        Ok(match method {
            "echo" => handle(&signals, "echo", call, &[], &["text"], |_, (text,): (String,)| async move {
                Ok::<_, Infallible>(text)
            }),
            "sleep" => handle(&signals, "sleep", call, &[], &["millis"], |_, (millis,): (u64,)| async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                Ok::<_, Infallible>(millis)
            }),
            "hang" => handle(&signals, "hang", call, &[], &[], |signals: Arc<Arc<Signals>>, (): ()| async move {
                let _guard = OnDrop((*signals).clone());
                signals.hang_started.notify_one();
                std::future::pending::<Result<(), Infallible>>().await
            }),
            "bounce" | "nested" => {
                let Some(peer) = self.1.clone() else { return Err(call) };
                let asks = if method == "bounce" { "nested" } else { "echo" };
                handle(
                    &Arc::new(peer),
                    asks,
                    call,
                    &[],
                    &["text"],
                    move |peer: Arc<Peer>, (text,): (String,)| async move {
                        peer.call::<_, String>(asks, Text { text: &text }, None).await
                    },
                )
            }
            _ => return Err(call),
        })
    }
}

struct Pair {
    a: Peer,
    b: Peer,
    signals: Arc<Signals>,
    a_ended: tokio::task::JoinHandle<CloseReason>,
}

fn pair(config: PeerConfig) -> Pair {
    let (ta, tb) = transport_pair();
    let signals = Arc::new(Signals::default());
    let a = Peer::new(ConnectionId::next(), &config);
    let b = Peer::new(ConnectionId::next(), &config);
    let a_driver = Driver::new(ta, a.clone(), TestHandler(signals.clone(), Some(a.clone())), &config);
    let b_driver = Driver::new(tb, b.clone(), TestHandler(signals.clone(), Some(b.clone())), &config);
    let a_ended = tokio::spawn(a_driver.run(|_| {}));
    tokio::spawn(b_driver.run(|_| {}));
    Pair { a, b, signals, a_ended }
}

/// Every await in these tests is bounded; on the paused clock a hang fails at once.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(7200), future).await.expect("timed out")
}

#[derive(serde::Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(serde::Serialize)]
struct Millis {
    millis: u64,
}

#[tokio::test(start_paused = true)]
async fn calls_go_both_ways_on_one_connection() {
    within(async {
        let p = pair(PeerConfig::default());
        let from_a: String = p.a.call("echo", Text { text: "to b" }, None).await.unwrap();
        let from_b: String = p.b.call("echo", Text { text: "to a" }, None).await.unwrap();
        assert_eq!((from_a.as_str(), from_b.as_str()), ("to b", "to a"));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn replies_arrive_out_of_order_and_reach_their_own_call() {
    within(async {
        let p = pair(PeerConfig::default());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let slow = {
            let (peer, order) = (p.a.clone(), order.clone());
            tokio::spawn(async move {
                let r: u64 = peer.call("sleep", Millis { millis: 300 }, None).await.unwrap();
                order.lock().unwrap().push(r);
            })
        };
        let fast: u64 = p.a.call("sleep", Millis { millis: 100 }, None).await.unwrap();
        order.lock().unwrap().push(fast);
        slow.await.unwrap();
        assert_eq!(*order.lock().unwrap(), [100, 300]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_times_out_and_stops_the_handler() {
    within(async {
        let p = pair(PeerConfig { call_timeout: Duration::from_secs(5), ..PeerConfig::default() });
        let started = tokio::time::Instant::now();
        let error = p.a.call::<_, ()>("hang", (), None).await.unwrap_err();
        assert!(matches!(error, Error::Timeout(t) if t == Duration::from_secs(5)), "{error:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // The deadline sent $/cancelRequest: the other side drops the handler.
        p.signals.hang_dropped.notified().await;
        assert_eq!(p.signals.hangs_dropped.load(Ordering::SeqCst), 1);
        assert_eq!(p.a.shared().pending.len(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_per_call_deadline_overrides_the_default() {
    within(async {
        let p = pair(PeerConfig::default());
        let started = tokio::time::Instant::now();
        let error = p.a.call::<_, ()>("hang", (), Some(Duration::from_millis(250))).await.unwrap_err();
        assert!(matches!(error, Error::Timeout(_)), "{error:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_cancels_it_on_the_peer() {
    within(async {
        let p = pair(PeerConfig::default());
        let peer = p.a.clone();
        let call = tokio::spawn(async move { peer.call::<_, ()>("hang", (), None).await });
        p.signals.hang_started.notified().await;
        call.abort();
        p.signals.hang_dropped.notified().await;
        assert_eq!(p.a.shared().pending.len(), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn closing_fails_waiting_calls_at_once_and_later_calls_immediately() {
    within(async {
        let p = pair(PeerConfig { call_timeout: Duration::from_secs(3600), ..PeerConfig::default() });
        let peer = p.a.clone();
        let waiting = tokio::spawn(async move { peer.call::<_, ()>("hang", (), None).await });
        p.signals.hang_started.notified().await;
        let started = tokio::time::Instant::now();
        p.b.close(1000, "done");
        let error = waiting.await.unwrap().unwrap_err();
        assert!(matches!(error, Error::Closed), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(p.a.call::<_, String>("echo", Text { text: "x" }, None).await, Err(Error::Closed)));
        assert_eq!(p.a_ended.await.unwrap(), CloseReason::ClosedByPeer { code: 1000, reason: "done".into() });
        assert_eq!(p.a.closed().await, CloseReason::ClosedByPeer { code: 1000, reason: "done".into() });
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn calls_past_the_in_flight_limit_wait_their_turn() {
    within(async {
        let p = pair(PeerConfig { max_in_flight: 2, ..PeerConfig::default() });
        let calls: Vec<_> = (1..=10u64)
            .map(|i| {
                let peer = p.a.clone();
                tokio::spawn(async move { peer.call::<_, u64>("sleep", Millis { millis: i * 10 }, None).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), (i as u64 + 1) * 10);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn past_max_outgoing_calls_a_call_waits_for_a_turn_within_its_deadline() {
    within(async {
        let p = pair(PeerConfig { max_outgoing_calls: 2, ..PeerConfig::default() });
        let hangs: Vec<_> = (0..2)
            .map(|_| {
                let peer = p.a.clone();
                tokio::spawn(async move { peer.call::<_, ()>("hang", (), None).await })
            })
            .collect();
        p.signals.hang_started.notified().await;
        p.signals.hang_started.notified().await;
        // Both turns taken: a third call is not sent, and gives up at its deadline.
        let started = tokio::time::Instant::now();
        let error = p.a.call::<_, String>("echo", Text { text: "x" }, Some(Duration::from_secs(2))).await;
        assert!(matches!(error, Err(Error::Timeout(_))), "{error:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(p.a.shared().pending.len(), 2, "the waiting call was never registered nor sent");
        // A turn frees up when a call ends (here, given up on): the next goes through.
        hangs[0].abort();
        let echoed: String = p.a.call("echo", Text { text: "y" }, None).await.unwrap();
        assert_eq!(echoed, "y");
        // A batch larger than the allowance waits for all of it, then goes out whole.
        hangs[1].abort();
        let batch = [("echo", None), ("echo", None), ("echo", None)];
        let replies = p.a.call_batch(&batch, Duration::from_secs(5)).await.unwrap();
        assert_eq!(replies.len(), 3);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_call_made_inside_a_handler_needs_no_turn_of_its_own() {
    within(async {
        // a's one turn is held by its call to b, which asks a, which asks b:
        // that last call must not wait for the turn the first one holds.
        let p =
            pair(PeerConfig { max_outgoing_calls: 1, call_timeout: Duration::from_secs(5), ..PeerConfig::default() });
        let answer: String = p.a.call("bounce", Text { text: "round trip" }, None).await.unwrap();
        assert_eq!(answer, "round trip");
    })
    .await;
}

/// Records the name and fields of every span created.
#[derive(Clone, Default)]
struct SpanRecorder(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanRecorder {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={:?}", field.name(), value));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.push_str(&format!(" {}={}", field.name(), value));
            }
        }
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[tokio::test(start_paused = true)]
async fn every_call_has_a_span_on_each_side_with_method_id_and_connection() {
    within(async {
        use tracing_subscriber::layer::SubscriberExt;
        let recorder = SpanRecorder::default();
        let _default = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(recorder.clone()).with(tracing_subscriber::filter::LevelFilter::DEBUG),
        );
        let p = pair(PeerConfig::default());
        let _: String = p.a.call("echo", Text { text: "traced" }, None).await.unwrap();
        let spans = recorder.0.lock().unwrap().clone();
        let outgoing = format!("rpc.out conn={} method=echo id=1", p.a.id());
        let incoming = format!("rpc.in conn={} method=echo id=1", p.b.id());
        assert!(spans.contains(&outgoing), "{spans:#?}");
        assert!(spans.contains(&incoming), "{spans:#?}");
    })
    .await;
}

mod fuzz {
    use super::*;
    use crate::arbitrary;
    use proptest::prelude::*;
    use serde_json::Value;

    const METHODS: &[&str] = &[
        "echo",
        "sleep",
        "nope",
        "$/cancelRequest",
        "$/enumerator/next",
        "$/enumerator/dispose",
        "$/enumerator/abort",
    ];

    /// Checks one frame the engine sent back: a JSON-RPC response, or a non-empty batch of them.
    fn check_reply(text: &str) -> Result<(), TestCaseError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
        let replies = match value {
            Value::Array(items) => {
                prop_assert!(!items.is_empty(), "an empty batch reply");
                items
            }
            single => vec![single],
        };
        for reply in replies {
            let Some(object) = reply.as_object() else {
                return Err(TestCaseError::fail(format!("not an object: {reply}")));
            };
            prop_assert_eq!(object.get("jsonrpc"), Some(&Value::from("2.0")), "{}", reply);
            prop_assert!(
                matches!(object.get("id"), Some(Value::Null | Value::Number(_) | Value::String(_))),
                "{}",
                reply
            );
            prop_assert!(object.contains_key("result") != object.contains_key("error"), "{}", reply);
            prop_assert!(
                object.keys().all(|k| ["jsonrpc", "id", "result", "error"].contains(&k.as_str())),
                "{}",
                reply
            );
            if let Some(error) = object.get("error") {
                prop_assert!(error["code"].is_i64() && error["message"].is_string(), "{}", reply);
            }
        }
        Ok(())
    }

    fn frame() -> impl Strategy<Value = Message> {
        prop_oneof![
            4 => arbitrary::frame_text(METHODS).prop_map(|text| Message::Text(text.into())),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Message::Binary(bytes.into())),
        ]
    }

    /// Sends each frame to a live engine, then a call that proves it still
    /// answers; every frame that comes back before that call's reply is checked.
    async fn feed(frames: Vec<Message>) -> Result<(), TestCaseError> {
        let (mut ours, theirs) = transport_pair();
        let config = PeerConfig::default();
        let peer = Peer::new(ConnectionId::next(), &config);
        let driver = Driver::new(theirs, peer, TestHandler(Arc::default(), None), &config);
        tokio::spawn(driver.run(|_| {}));
        let send = |ours: &ChannelTransport, message| ours.tx.as_ref().map(|tx| tx.send(message));
        for (n, frame) in frames.into_iter().enumerate() {
            send(&ours, frame);
            let sentinel = format!("sentinel-{n}");
            let probe = format!(r#"{{"jsonrpc":"2.0","id":"{sentinel}","method":"echo","params":["still here"]}}"#);
            send(&ours, Message::Text(probe.into()));
            loop {
                let reply = within(ours.rx.recv()).await;
                let Some(Message::Text(text)) = reply else {
                    return Err(TestCaseError::fail(format!("expected a reply, got {reply:?}")));
                };
                check_reply(&text)?;
                if serde_json::from_str::<Value>(&text).is_ok_and(|v| v["id"] == sentinel.as_str()) {
                    break;
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_reply_to_any_input_is_valid_json_rpc_and_the_engine_keeps_serving(
            frames in proptest::collection::vec(frame(), 1..8)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
            runtime.block_on(feed(frames))?;
        }
    }
}

/// A stream result whose caller gave up just before it came would never be
/// read: the engine disposes of it at once instead of leaving the producer
/// until the connection ends.
#[tokio::test(start_paused = true)]
async fn a_stream_result_that_comes_too_late_is_disposed_of() {
    within(async {
        let (mut ours, theirs) = transport_pair();
        let config = PeerConfig::default();
        let peer = Peer::new(ConnectionId::next(), &config);
        let driver = Driver::new(theirs, peer.clone(), TestHandler(Arc::default(), None), &config);
        tokio::spawn(driver.run(|_| {}));
        let error = peer.call::<_, u8>("history", (), Some(Duration::from_secs(1))).await.unwrap_err();
        assert!(matches!(error, Error::Timeout(_)), "{error:?}");
        let mut next_text = async || match ours.rx.recv().await {
            Some(Message::Text(text)) => serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        };
        assert_eq!(next_text().await["method"], "history");
        assert_eq!(next_text().await["method"], "$/cancelRequest");
        let late = r#"{"jsonrpc":"2.0","id":1,"result":{"token":"late"}}"#;
        ours.tx.as_ref().unwrap().send(Message::Text(late.into())).unwrap();
        assert_eq!(
            next_text().await,
            serde_json::json!({"jsonrpc":"2.0","method":"$/enumerator/dispose","params":{"token":"late"}})
        );
    })
    .await;
}
