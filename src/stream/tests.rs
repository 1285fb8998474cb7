use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use jsonrpsee_types::ErrorObjectOwned;
use serde_json::json;
use serde_json::value::RawValue;

use super::producer::{MAX_BATCH_BYTES, Producer};
use super::*;
use crate::wire::RequestId;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

#[test]
fn tokens_are_named_by_name_or_by_position() {
    assert!(matches!(named_token(Some(&raw(r#"{"token":"abc"}"#))), Named::Token(t) if t == "abc"));
    assert!(matches!(named_token(Some(&raw(r#"["abc"]"#))), Named::Token(t) if t == "abc"));
    assert!(matches!(named_token(Some(&raw(r#"{"token":7}"#))), Named::Foreign));
    assert!(matches!(named_token(Some(&raw(r#"{"id":"abc"}"#))), Named::Missing));
    assert!(matches!(named_token(Some(&raw("[]"))), Named::Missing));
    assert!(matches!(named_token(None), Named::Missing));
}

#[test]
fn tokens_are_unguessable_and_distinct() {
    let a = new_token();
    assert_eq!(a.len(), 22, "128 bits in base64url: {a}");
    assert_ne!(a, new_token());
}

/// Sets its flag when dropped: shows that a producer's stream was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn producer_of<T: serde::Serialize + Send + 'static>(
    items: impl futures_util::Stream<Item = Result<T, ErrorObjectOwned>> + Send + 'static,
    settings: Settings,
) -> Producer {
    let items: BoxStream<'static, Result<T, ErrorObjectOwned>> = items.boxed();
    Producer::new(items, settings)
}

async fn ask(producers: &Arc<Producers>, id: u64, token: &str) -> serde_json::Value {
    let future = producers.ask(RequestId::Number(id), token.to_owned(), MAX_BATCH_BYTES).unwrap();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), future).await.unwrap().frame.unwrap();
    serde_json::from_str(&frame).unwrap()
}

#[tokio::test]
async fn values_ready_at_once_travel_together_and_the_end_is_said() {
    let producers = Arc::new(Producers::new(10));
    let items = futures_util::stream::iter((0..5).map(Ok::<_, ErrorObjectOwned>));
    let token = producers.open(producer_of(items, Settings::default())).unwrap();
    assert_eq!(
        ask(&producers, 1, &token).await,
        json!({"jsonrpc":"2.0","id":1,"result":{"values":[0,1,2,3,4],"finished":true}})
    );
    // Finished: the token is gone.
    assert_eq!(producers.len(), 0);
    let refused = producers.ask(RequestId::Number(2), token, MAX_BATCH_BYTES).err().unwrap();
    assert_eq!(refused.code(), crate::codes::NO_SUCH_STREAM);
}

#[tokio::test]
async fn a_batch_waits_for_its_minimum_and_stops_at_its_byte_bound() {
    let producers = Arc::new(Producers::new(10));
    // One value now, the rest a little later: a minimum of 3 waits for them.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(Ok::<_, ErrorObjectOwned>(1)).await.unwrap();
    let settings = Settings { min_batch_size: 3, max_read_ahead: 0 };
    let rx = futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let token = producers.open(producer_of(rx, settings)).unwrap();
    let asking = producers.ask(RequestId::Number(1), token.clone(), MAX_BATCH_BYTES).unwrap();
    let answer = tokio::spawn(asking);
    tx.send(Ok(2)).await.unwrap();
    tx.send(Ok(3)).await.unwrap();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), answer).await.unwrap().unwrap();
    let frame: serde_json::Value = serde_json::from_str(&frame.frame.unwrap()).unwrap();
    assert_eq!(frame["result"], json!({"values":[1,2,3],"finished":false}));

    // An endless ready stream of long strings: one answer holds about MAX_BATCH_BYTES.
    let long = "x".repeat(1000);
    let items = futures_util::stream::repeat(Ok::<_, ErrorObjectOwned>(long));
    let token = producers.open(producer_of(items, Settings::default())).unwrap();
    let answer = ask(&producers, 2, &token).await;
    let values = answer["result"]["values"].as_array().unwrap().len();
    assert_eq!(values, MAX_BATCH_BYTES.div_ceil(1003), "values in one answer");
    assert_eq!(answer["result"]["finished"], json!(false));

    // With no room left in the connection's queue, one value per answer.
    let future = producers.ask(RequestId::Number(3), token.clone(), 0).unwrap();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(5), future).await.unwrap().frame.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(answer["result"]["values"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_error_after_values_comes_with_the_next_ask() {
    let producers = Arc::new(Producers::new(10));
    let error = ErrorObjectOwned::owned(2001, "unknown symbol", None::<()>);
    let items = futures_util::stream::iter([Ok(1), Ok(2), Err(error), Ok(3)]);
    let token = producers.open(producer_of(items, Settings::default())).unwrap();
    assert_eq!(ask(&producers, 1, &token).await["result"], json!({"values":[1,2],"finished":false}));
    assert_eq!(
        ask(&producers, 2, &token).await,
        json!({"jsonrpc":"2.0","id":2,"error":{"code":2001,"message":"unknown symbol"}})
    );
    assert_eq!(producers.len(), 0, "an error ends the stream");
}

/// A producer that never yields a value, and the flag its drop sets.
fn silent_producer() -> (Producer, Arc<AtomicBool>) {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let items = futures_util::stream::pending::<Result<u8, ErrorObjectOwned>>().map(move |v| {
        let _keep = &flag;
        v
    });
    (producer_of(items, Settings::default()), dropped)
}

#[tokio::test]
async fn dispose_drops_the_stream_even_while_an_ask_waits() {
    let producers = Arc::new(Producers::new(10));
    let (producer, dropped) = silent_producer();
    let token = producers.open(producer).unwrap();
    let mut asking = producers.ask(RequestId::Number(1), token.clone(), MAX_BATCH_BYTES).unwrap();
    assert!(futures_util::poll!(&mut asking).is_pending(), "the ask waits for a value");
    // A second ask for the same token while one waits is refused.
    let second = producers.ask(RequestId::Number(2), token.clone(), MAX_BATCH_BYTES).err().unwrap();
    assert_eq!(second.code(), crate::codes::INVALID_REQUEST);

    assert!(producers.dispose(&token));
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), asking).await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer.frame.unwrap()).unwrap();
    // Cut short, which is not the end.
    assert_eq!(answer["error"], json!({"code":-32001,"message":"The stream was disposed of"}));
    assert!(dropped.load(Ordering::SeqCst), "the producer's stream is dropped");
    assert_eq!(producers.len(), 0);
    assert!(!producers.dispose(&token), "disposing twice finds nothing");
}

#[tokio::test]
async fn a_cancelled_ask_disposes_of_its_stream() {
    let producers = Arc::new(Producers::new(10));
    let (producer, dropped) = silent_producer();
    let token = producers.open(producer).unwrap();
    let mut asking = producers.ask(RequestId::Number(1), token.clone(), MAX_BATCH_BYTES).unwrap();
    assert!(futures_util::poll!(&mut asking).is_pending());
    // What the driver does with a running call on `$/cancelRequest`.
    drop(asking);
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(producers.len(), 0, "no slot stays busy");
    assert_eq!(
        producers.ask(RequestId::Number(2), token, MAX_BATCH_BYTES).err().unwrap().code(),
        crate::codes::NO_SUCH_STREAM
    );
}

#[tokio::test]
async fn read_ahead_produces_that_many_before_being_asked() {
    let producers = Arc::new(Producers::new(10));
    let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = produced.clone();
    let items = futures_util::stream::iter(0..100).map(move |v| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, ErrorObjectOwned>(v)
    });
    let settings = Settings { min_batch_size: 1, max_read_ahead: 8 };
    let token = producers.open(producer_of(items, settings)).unwrap();
    // The pump fills its buffer of 8, and one more waits in its hand.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let ahead = produced.load(Ordering::SeqCst);
    assert!((8..=9).contains(&ahead), "produced {ahead} before any ask");
    let answer = ask(&producers, 1, &token).await;
    assert!(answer["result"]["values"].as_array().unwrap().len() >= 8);
    producers.dispose(&token);
}

#[tokio::test]
async fn the_open_stream_limit_and_closing() {
    let producers = Arc::new(Producers::new(2));
    let none = || producer_of(futures_util::stream::empty::<Result<u8, ErrorObjectOwned>>(), Settings::default());
    producers.open(none()).unwrap();
    producers.open(none()).unwrap();
    assert_eq!(producers.open(none()).unwrap_err().code(), crate::codes::SERVER_BUSY);
    producers.close();
    assert_eq!(producers.len(), 0);
    assert!(producers.open(none()).is_err(), "a closed connection registers no stream");
}

#[test]
fn a_stream_refuses_to_serialize_outside_a_connection() {
    let stream = Outgoing::iter([1, 2, 3]);
    let error = serde_json::to_string(&stream).unwrap_err().to_string();
    assert!(error.contains("never in a notification"), "{error}");
    let again = serde_json::to_string(&stream).unwrap_err().to_string();
    assert!(again.contains("sent once"), "{again}");
}

#[tokio::test]
async fn a_prefetched_sequence_that_ends_needs_no_token() {
    let stream = Outgoing::iter([1, 2]).prefetch(5).await;
    // No token to register, so no connection needed.
    assert_eq!(serde_json::to_value(&stream).unwrap(), json!({"values":[1,2]}));
    // An empty one says so too: no token and no values would read as a token.
    let empty = Outgoing::iter(Vec::<u8>::new()).prefetch(5).await;
    assert_eq!(serde_json::to_value(&empty).unwrap(), json!({"values":[]}));
}

#[tokio::test]
async fn incoming_reads_a_finished_sequence_without_a_connection() {
    let incoming: Incoming<u8> = serde_json::from_str(r#"{"values":[4,5]}"#).unwrap();
    let values: Vec<u8> = incoming.map(Result::unwrap).collect().await;
    assert_eq!(values, [4, 5]);
    assert!(serde_json::from_str::<Incoming<u8>>(r#"{"token":"t"}"#).is_err(), "a token needs a connection");
    assert!(serde_json::from_str::<Incoming<u8>>("null").is_err());
    // A null token is no token: the values are all of it.
    let nothing: Incoming<u8> = serde_json::from_str(r#"{"token":null}"#).unwrap();
    assert!(nothing.collect::<Vec<_>>().await.is_empty());
    let empty: Incoming<u8> = serde_json::from_str(r#"{"values":[]}"#).unwrap();
    assert!(empty.collect::<Vec<_>>().await.is_empty());
}

#[test]
fn scopes_nest_and_finishing_one_restores_the_outer() {
    let peer = crate::peer::Peer::new(crate::ConnectionId::next(), &crate::peer::PeerConfig::default());
    let shared = peer.shared().clone();
    let serving = scope::Scope::serving(&shared);
    for _ in 0..2 {
        let inner = scope::Scope::serving_message().expect("inside the serving scope");
        let _ = inner.finish();
        assert_eq!(scope::serving_connection(), Some(shared.id), "the serving mark is back");
    }
    drop(serving);
    assert_eq!(scope::serving_connection(), None);
    assert!(scope::Scope::serving_message().is_none());
}

mod fuzz {
    use super::*;
    use crate::arbitrary;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a peer sends as a stream's params, or as the message
        /// carrying one, nothing panics.
        #[test]
        fn any_params_name_a_token_or_not(value in arbitrary::json()) {
            let text = raw(&value.to_string());
            let _ = named_token(Some(&text));
            let _ = serde_json::from_str::<Incoming<u8>>(text.get());
        }
    }
}
