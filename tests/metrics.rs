//! The metrics, read from a recorder installed in the test (for its thread:
//! the runtime is single-threaded), after a known sequence over real
//! loopback connections: exact counts per method and outcome, connections,
//! a refused handshake, a slow consumer dropped, the rate limit's refusals
//! and drops, and method labels that stay bounded whatever names a peer sends.

mod common;

use std::collections::BTreeSet;

use common::*;
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::{Value, json};
use wsduplex::hub::Audience;
use wsduplex::middleware::{self, Call, Next};
use wsduplex::rate_limit::RateLimit;
use wsduplex::server::{Handshake, Identity, Refusal};
use wsduplex::{CloseReason, ErrorObjectOwned, Server};

/// A metric's labels, sorted.
type Labels = Vec<(String, String)>;

/// What a snapshot holds: (name, labels) to value.
struct Recorded(Vec<(String, Labels, DebugValue)>);

impl Recorded {
    fn take(snapshotter: &Snapshotter) -> Recorded {
        let all = snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            (key.name().to_owned(), labels, value)
        });
        Recorded(all.collect())
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted: Vec<(String, String)> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        wanted.sort();
        self.0.iter().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, value)| value)
    }

    /// A counter's value; 0 when it was never registered.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str) -> f64 {
        match self.value(name, &[]) {
            Some(DebugValue::Gauge(value)) => value.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.value(name, labels) {
            Some(DebugValue::Histogram(samples)) => samples.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Every value label `label` has in metric `name`.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        let values = self.0.iter().filter(|(n, _, _)| n == name);
        values.flat_map(|(_, labels, _)| labels.iter().filter(|(k, _)| k == label).map(|(_, v)| v.clone())).collect()
    }
}

fn calls(recorded: &Recorded, method: &str, outcome: &str) -> u64 {
    recorded.counter("wsduplex_calls_total", &[("method", method), ("outcome", outcome)])
}

fn with_token(handshake: &Handshake) -> Result<Identity, Refusal> {
    match handshake.query("token").as_deref() {
        Some("ok") => Ok(Identity::anonymous()),
        _ => Err(Refusal::unauthorized("no token")),
    }
}

/// Refuses `t.add`, as an access rule would.
fn no_adding() -> impl middleware::Middleware {
    middleware::from_fn(|call: &Call<'_>, next: Next<'_>| {
        if call.method() == "t.add" {
            return Err(ErrorObjectOwned::owned(-32050, "no adding here", None::<()>));
        }
        Ok(next.run())
    })
}

#[tokio::test]
async fn a_known_sequence_gives_exact_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);

    let builder = Server::builder().authenticate(with_token).middleware(no_adding()).outbound_capacity(4);
    let mut server = start_server_with(builder).await;
    let url = format!("{}?token=ok", server.url);

    // A handshake without the token: 401.
    let refused = within(upgrade_response(server.addr, "/ws", &[])).await;
    assert!(refused.starts_with("http/1.1 401"), "{refused}");

    let listener = Listener::default();
    let client = within(ServiceClient::connect(&url, listener.clone())).await.unwrap();
    let conn = server.next_connection().await;
    let mut raw = Raw::connect(&url).await;
    let raw_conn = server.next_connection().await;
    // A snapshot takes what was recorded since the last one (counters and gauges start again at 0).
    let opened = Recorded::take(&snapshotter);
    assert_eq!(opened.gauge("wsduplex_connections"), 2.0);
    assert_eq!(opened.counter("wsduplex_handshakes_refused_total", &[("status", "401")]), 1);

    // Three calls answered, one failing in its handler, one refused by the
    // middleware, two to methods that do not exist, one cancelled.
    for n in 0..3 {
        assert_eq!(within(client.echo(format!("e{n}"))).await.unwrap(), format!("e{n}"));
    }
    assert!(within(client.refuse("no".into())).await.is_err());
    assert!(within(client.add(1, 2, None)).await.is_err());
    assert_eq!(raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.nope"}"#).await["error"]["code"], -32601);
    raw.send(r#"{"jsonrpc":"2.0","method":"nothing.here"}"#).await;
    raw.send(r#"{"jsonrpc":"2.0","id":"h","method":"t.hang"}"#).await;
    within(server.observed.hang_started.notified()).await;
    let cancelled = raw.exchange(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"h"}}"#).await;
    assert_eq!(cancelled["error"]["code"], -32022);
    // A callback the client answers.
    assert_eq!(within(conn.callback().answer("why".into())).await.unwrap(), "answer to why");

    // The raw client stops reading: broadcasts to it fill its queue until
    // it is dropped (1013), once.
    let big = "x".repeat(256 << 10);
    let to_raw = server.hub.to(Audience::Connection(raw_conn.id()));
    while !raw_conn.peer().is_closed() {
        to_raw.heard(big.clone()).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(within(raw_conn.closed()).await, CloseReason::ClosedLocally { code: 1013 });
    drop(client);
    server.wait_for_connection_count(0).await;

    let recorded = Recorded::take(&snapshotter);
    assert_eq!(calls(&recorded, "t.echo", "ok"), 3);
    assert_eq!(calls(&recorded, "t.refuse", "error"), 1);
    assert_eq!(calls(&recorded, "t.add", "refused"), 1);
    assert_eq!(calls(&recorded, "_unknown", "error"), 2);
    assert_eq!(calls(&recorded, "t.hang", "cancelled"), 1);
    assert_eq!(calls(&recorded, "t.answer", "ok"), 1, "the client's side of the callback");
    assert_eq!(recorded.samples("wsduplex_call_duration_seconds", &[("method", "t.echo")]), 3);
    let made =
        |method, outcome| recorded.counter("wsduplex_callbacks_total", &[("method", method), ("outcome", outcome)]);
    assert_eq!(made("t.answer", "ok"), 1, "the server's callback");
    assert_eq!(made("t.echo", "ok"), 3, "the client's calls");
    assert_eq!(made("t.refuse", "error"), 1);
    let slow = recorded.counter("wsduplex_notifications_dropped_total", &[("reason", "slow_consumer")]);
    assert_eq!(slow, 1);
    assert_eq!(recorded.gauge("wsduplex_connections"), -2.0, "both closed since");
    assert!(recorded.samples("wsduplex_send_queue_bytes", &[]) > 0);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_s_refusals_and_drops_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let server = start_server_with(Server::builder().rate_limit(RateLimit::messages_per_second(2))).await;
    let mut raw = Raw::connect(&server.url).await;
    for id in 1..=4 {
        raw.send(&json!({"jsonrpc":"2.0","id":id,"method":"t.echo","params":["x"]}).to_string()).await;
    }
    for _ in 1..=4 {
        raw.recv().await;
    }
    for _ in 0..3 {
        raw.send(r#"{"jsonrpc":"2.0","method":"t.note","params":["n"]}"#).await;
    }
    // Ordered behind the notifications: once it is answered, they were handled.
    assert_eq!(
        raw.exchange(r#"{"jsonrpc":"2.0","id":9,"method":"t.echo","params":["y"]}"#).await["error"]["code"],
        -32029
    );
    let recorded = Recorded::take(&snapshotter);
    assert_eq!(calls(&recorded, "t.echo", "ok"), 2);
    assert_eq!(calls(&recorded, "t.echo", "refused"), 3);
    assert_eq!(recorded.counter("wsduplex_notifications_dropped_total", &[("reason", "rate_limit")]), 3);
    assert!(server.observed.notes.lock().unwrap().is_empty());
}

/// Refuses every method under `admin.`, as a read-only filter would.
fn read_only() -> impl middleware::Middleware {
    middleware::from_fn(|call: &Call<'_>, next: Next<'_>| {
        if call.method().starts_with("admin.") {
            return Err(ErrorObjectOwned::owned(-32050, "read-only", None::<()>));
        }
        Ok(next.run())
    })
}

/// Sends 10,000 calls to random method names starting with `prefix`, in
/// batches, and checks each is answered with `code`.
async fn call_random_names(url: &str, prefix: &str, code: i32) {
    let mut raw = Raw::connect(url).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for batch in 0..10 {
        let calls: Vec<Value> = (0..1000)
            .map(|n| {
                // xorshift: a fresh name every time.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                json!({"jsonrpc":"2.0","id":batch * 1000 + n,"method":format!("{prefix}{seed:x}")})
            })
            .collect();
        let replies = raw.exchange(&Value::Array(calls).to_string()).await;
        let replies = replies.as_array().unwrap();
        assert_eq!(replies.len(), 1000);
        assert!(replies.iter().all(|reply| reply["error"]["code"] == code));
    }
    within(raw.socket.close(None)).await.unwrap();
    while within(raw.socket.next()).await.is_some() {}
}

#[tokio::test]
async fn ten_thousand_unknown_methods_add_one_label_value() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    // With middleware, a name is checked once the call is answered; without,
    // when it is dispatched: both ways, and names a middleware refuses.
    let plain = start_server().await;
    let filtered = start_server_with(Server::builder().middleware(read_only())).await;
    let client = within(ServiceClient::connect(&plain.url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("x".into())).await.unwrap(), "x");
    let before = Recorded::take(&snapshotter).label_values("wsduplex_calls_total", "method");

    call_random_names(&plain.url, "m", -32601).await;
    call_random_names(&filtered.url, "m", -32601).await;
    call_random_names(&filtered.url, "admin.", -32050).await;

    let recorded = Recorded::take(&snapshotter);
    let mut expected = before.clone();
    expected.insert("_unknown".to_owned());
    assert_eq!(recorded.label_values("wsduplex_calls_total", "method"), expected);
    assert_eq!(recorded.label_values("wsduplex_call_duration_seconds", "method"), expected);
    assert_eq!(calls(&recorded, "_unknown", "error"), 20_000);
    assert_eq!(calls(&recorded, "_unknown", "refused"), 10_000);
}
