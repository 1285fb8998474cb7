//! The ticker example as a third-party peer sees it: a raw WebSocket client
//! reads `ticker.history` and feeds `ticker.total` by hand, speaking the
//! stream protocol (StreamJsonRpc's `$/enumerator/*`) itself.

mod common;

use common::Raw;
use common::example;
use serde_json::{Value, json};

async fn connect() -> (example::ExampleProcess, Raw) {
    let ticker = example::start("ticker", "codegen", &[]);
    assert_eq!(ticker.scheme, "ws");
    let raw = Raw::connect(&format!("ws://{}", ticker.addr)).await;
    (ticker, raw)
}

#[tokio::test]
async fn history_is_read_by_hand_in_order() {
    let (_ticker, mut raw) = connect().await;
    let opened = raw
        .exchange(r#"{"jsonrpc":"2.0","id":1,"method":"ticker.history","params":{"symbol":"ACME","count":2500}}"#)
        .await;
    let token = opened["result"]["token"].clone();
    assert!(token.is_string(), "{opened}");

    let mut seq = 0;
    let mut asks = 0;
    loop {
        asks += 1;
        let next = json!({"jsonrpc":"2.0","id":1 + asks,"method":"$/enumerator/next","params":{"token":token}});
        let answer = raw.exchange(&next.to_string()).await;
        assert_eq!(answer["id"], json!(1 + asks));
        let values = answer["result"]["values"].as_array().unwrap();
        for tick in values {
            assert_eq!(tick["symbol"], json!("ACME"));
            assert_eq!(tick["seq"], json!(seq), "in order");
            assert!(tick["price"].as_f64().is_some_and(|p| p > 0.0), "{tick}");
            seq += 1;
        }
        if answer["result"]["finished"] == json!(true) {
            break;
        }
        assert!(!values.is_empty(), "an empty batch before the end");
    }
    assert_eq!(seq, 2500);
    assert!(asks < 2500, "values travel in batches: {asks} asks");
    // Finished: the token is gone.
    let next = json!({"jsonrpc":"2.0","id":9000,"method":"$/enumerator/next","params":[token]});
    assert_eq!(raw.exchange(&next.to_string()).await["error"]["code"], json!(-32001));
}

#[tokio::test]
async fn an_unknown_symbol_is_the_calls_error_before_any_stream() {
    let (_ticker, mut raw) = connect().await;
    let refused = raw
        .exchange(r#"{"jsonrpc":"2.0","id":1,"method":"ticker.history","params":{"symbol":"NOPE","count":5}}"#)
        .await;
    assert_eq!(refused["error"]["code"], json!(2001));
    assert_eq!(refused["error"]["data"], json!("NOPE"));
    assert!(refused.get("result").is_none());
}

#[tokio::test]
async fn total_is_fed_by_hand() {
    let (_ticker, mut raw) = connect().await;
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"ticker.total","params":{"values":{"token":"mine"}}}"#).await;
    let batches = [json!([1.0, 2.0, 3.0]), json!([4.5]), json!([0.5, 10.0])];
    for (n, batch) in batches.iter().enumerate() {
        let ask = raw.recv().await;
        assert_eq!(ask["method"], json!("$/enumerator/next"));
        assert_eq!(ask["params"], json!({"token":"mine"}));
        let finished = n == batches.len() - 1;
        let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"values":batch,"finished":finished}});
        raw.send(&answer.to_string()).await;
    }
    let mut rest: Vec<Value> = vec![raw.recv().await, raw.recv().await];
    rest.sort_by_key(|m| m.get("method").is_none());
    assert_eq!(rest[0], json!({"jsonrpc":"2.0","method":"$/enumerator/dispose","params":{"token":"mine"}}));
    assert_eq!(rest[1], json!({"jsonrpc":"2.0","id":1,"result":21.0}));
}
