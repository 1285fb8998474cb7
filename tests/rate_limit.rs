//! Per-connection rate limits over real loopback sockets: a flood gets
//! refusals and its notifications are dropped while cancellations still
//! work, abuse that goes on is closed with 1008, the client's limit holds
//! back a server's callbacks, and one flooding connection does not slow the
//! others. Limits run on tokio's paused clock but for the last test.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsduplex::rate_limit::RateLimit;
use wsduplex::{Client, CloseReason, Error, Server, codes};

fn echo(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"t.echo","params":[format!("m{id}")]}).to_string()
}

/// Sends `count` echo requests from `first` on, then reads their replies:
/// how many were answered, and how many refused as rate limited.
async fn flood(raw: &mut Raw, first: u64, count: u64) -> (usize, usize) {
    for id in first..first + count {
        raw.send(&echo(id)).await;
    }
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..count {
        let reply = raw.recv().await;
        match reply["error"]["code"].as_i64() {
            None => answered += 1,
            Some(code) if code == i64::from(codes::RATE_LIMITED) => refused += 1,
            Some(_) => panic!("unexpected reply {reply}"),
        }
    }
    (answered, refused)
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_calls_are_refused_notifications_dropped_and_cancels_honoured() {
    let limit = RateLimit::messages_per_second(10);
    let server = start_server_with(Server::builder().rate_limit(limit).without_keep_alive()).await;
    let mut raw = Raw::connect(&server.url).await;

    // A call that runs until cancelled takes one token; nine echoes the rest.
    raw.send(r#"{"jsonrpc":"2.0","id":"hang","method":"t.hang"}"#).await;
    within(server.observed.hang_started.notified()).await;
    // The clock stands still: no token comes back while the flood is read.
    assert_eq!(flood(&mut raw, 1, 50).await, (9, 41));
    let refused = raw.exchange(&echo(51)).await;
    assert_eq!(refused["error"], json!({"code": -32029, "message": "Rate limit exceeded"}));

    // Over the limit, notifications are dropped: their handler never runs.
    for n in 0..20 {
        raw.send(&json!({"jsonrpc":"2.0","method":"t.note","params":[format!("dropped {n}")]}).to_string()).await;
    }
    // A cancellation still stops the call.
    let cancelled = raw.exchange(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":"hang"}}"#).await;
    assert_eq!(cancelled["id"], "hang");
    assert_eq!(cancelled["error"]["code"], codes::REQUEST_CANCELLED);

    // A second later the bucket is full again.
    tokio::time::advance(Duration::from_secs(1)).await;
    raw.send(r#"{"jsonrpc":"2.0","method":"t.note","params":["after"]}"#).await;
    within(server.observed.noted.notified()).await;
    assert_eq!(*server.observed.notes.lock().unwrap(), ["after"]);
    assert_eq!(raw.exchange(&echo(52)).await["result"], "m52");
}

/// A batch of the `ids`' echo requests; the error codes of its replies (null when answered).
async fn batch(raw: &mut Raw, ids: std::ops::Range<u64>) -> Vec<Value> {
    let batch: Vec<Value> = ids.map(|id| serde_json::from_str(&echo(id)).unwrap()).collect();
    let replies = raw.exchange(&Value::Array(batch).to_string()).await;
    replies.as_array().unwrap().iter().map(|r| r["error"]["code"].clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_batch_takes_a_token_per_message_all_or_none() {
    let server = start_server_with(Server::builder().rate_limit(RateLimit::messages_per_second(10))).await;
    let mut raw = Raw::connect(&server.url).await;
    assert_eq!(batch(&mut raw, 1..7).await, vec![Value::Null; 6]);
    // Four tokens left: not enough for six.
    assert_eq!(batch(&mut raw, 7..13).await, vec![json!(codes::RATE_LIMITED); 6]);
    assert_eq!(batch(&mut raw, 13..17).await, vec![Value::Null; 4]);
}

#[tokio::test(start_paused = true)]
async fn answers_to_this_side_s_calls_take_no_token() {
    let server = start_server_with(Server::builder().rate_limit(RateLimit::messages_per_second(2))).await;
    let mut raw = Raw::connect(&server.url).await;
    for id in 1..=2 {
        // Each ask makes the server call back; the answer is no message of ours.
        raw.send(&json!({"jsonrpc":"2.0","id":id,"method":"t.ask","params":["q"]}).to_string()).await;
        let asked = raw.recv().await;
        assert_eq!(asked["method"], "t.answer");
        let answer = json!({"jsonrpc":"2.0","id":asked["id"],"result":"a"});
        assert_eq!(raw.exchange(&answer.to_string()).await, json!({"jsonrpc":"2.0","id":id,"result":"a"}));
    }
    assert_eq!(raw.exchange(&echo(3)).await["error"]["code"], codes::RATE_LIMITED);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_keeps_flooding_is_closed_with_1008() {
    let limit = RateLimit::messages_per_second(10).close_after(Duration::from_secs(3));
    let mut server = start_server_with(Server::builder().rate_limit(limit).without_keep_alive()).await;
    let mut raw = Raw::connect(&server.url).await;
    let conn = server.next_connection().await;
    let start = Instant::now();
    let mut next = 1;
    // Twice the limit, every half second: refused all along.
    assert_eq!(flood(&mut raw, next, 20).await, (10, 10));
    next += 20;
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(flood(&mut raw, next, 10).await, (5, 5));
        next += 10;
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    // Three seconds into the spell: the next refusal closes instead.
    for id in next..next + 10 {
        raw.send(&echo(id)).await;
    }
    let code = within(async {
        loop {
            match raw.socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(code, 1008);
    assert_eq!(within(conn.closed()).await, CloseReason::ClosedLocally { code: 1008 });
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_client_s_limit_holds_back_the_server_s_callbacks() {
    let mut server = start_server().await;
    let builder = Client::builder().rate_limit(RateLimit::messages_per_second(5));
    let _client = within(builder.connect(&server.url, Listener::default().into_service())).await.unwrap();
    let conn = server.next_connection().await;
    let asks = (0..20).map(|n| conn.callback().answer(format!("q{n}")));
    let answers = within(join_all(asks)).await;
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    let refused =
        answers.iter().filter(|a| matches!(a, Err(Error::Rpc(object)) if object.code() == codes::RATE_LIMITED)).count();
    assert_eq!((answered, refused), (5, 15), "{answers:?}");
}

/// What a flood got.
struct Flooded {
    sent: usize,
    refused: usize,
    /// From its first message to its last reply.
    took: Duration,
}

/// Floods `url` with five times `limit` for a second, from a thread of its
/// own, in bursts every 2 ms, reading the replies as they come.
fn flood_for_a_second(url: String, limit: u32) -> std::thread::JoinHandle<Flooded> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (mut sink, mut stream) = Raw::connect(&url).await.socket.split();
            let total = u64::from(limit) * 5;
            let started = std::time::Instant::now();
            let per_burst = total / 500;
            let writer = async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(2));
                for burst in 0..500 {
                    ticks.tick().await;
                    for n in 0..per_burst {
                        within(sink.send(Message::text(echo(burst * per_burst + n)))).await.unwrap();
                    }
                }
                sink
            };
            let reader = async move {
                let mut refused = 0;
                for _ in 0..total {
                    let Some(Ok(Message::Text(text))) = within(stream.next()).await else { break };
                    let reply: Value = serde_json::from_str(&text).unwrap();
                    refused += usize::from(reply["error"]["code"] == json!(codes::RATE_LIMITED));
                }
                refused
            };
            let refused = tokio::join!(writer, reader).1;
            Flooded { sent: total as usize, refused, took: started.elapsed() }
        })
    })
}

/// The 99th percentile of the round trips of echo calls made every 2 ms
/// (half the limit) until `flood` ends, at least 200 of them; and what
/// `flood` returned.
async fn p99_during(client: &ServiceClient, flood: std::thread::JoinHandle<Flooded>) -> (Duration, Flooded) {
    let mut times = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(2));
    while !flood.is_finished() || times.len() < 200 {
        ticks.tick().await;
        let start = std::time::Instant::now();
        assert_eq!(within(client.echo("c".into())).await.unwrap(), "c");
        times.push(start.elapsed());
    }
    times.sort();
    (times[times.len() * 99 / 100], flood.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_connection_does_not_slow_the_others() {
    const LIMIT: u32 = 1000;
    let builder = || Server::builder().rate_limit(RateLimit::messages_per_second(LIMIT));
    let (server, elsewhere) = (start_server_with(builder()).await, start_server_with(builder()).await);
    let client = within(ServiceClient::connect(&server.url, Listener::default())).await.unwrap();
    // The baseline: this server idle, the same flood (and the machine's
    // load from making it) going to another.
    let (idle, _) = p99_during(&client, flood_for_a_second(elsewhere.url.clone(), LIMIT)).await;
    let (flooded, flood) = p99_during(&client, flood_for_a_second(server.url.clone(), LIMIT)).await;
    // The burst, and a token each millisecond the flood lasted (more than
    // the second it aims at, on a busy machine), at most were admitted.
    let admitted = flood.sent - flood.refused;
    let allowed = LIMIT as usize + (flood.took.as_secs_f64() * f64::from(LIMIT)).ceil() as usize;
    assert!(admitted <= allowed, "{admitted} admitted in {:?}", flood.took);
    assert!(flood.refused > 0, "nothing refused in {:?}", flood.took);
    // A floor under the baseline: below a millisecond, a busy two-core
    // machine's scheduler decides a p99, not the flood.
    let bound = 2 * idle.max(Duration::from_millis(1));
    assert!(flooded <= bound, "p99 {flooded:?} while flooded, {idle:?} while another server was");
}
