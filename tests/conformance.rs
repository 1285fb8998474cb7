//! JSON-RPC 2.0 conformance on the wire: exact JSON in, exact JSON out, from a
//! raw WebSocket client. Nothing here may panic a task or close the connection.

mod common;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The connection still answers: every test ends with this.
async fn still_serving(raw: &mut Raw) {
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":"alive","method":"t.echo","params":["yes"]}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":"alive","result":"yes"}));
}

#[tokio::test]
async fn parse_error() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}));
    let reply = raw
        .exchange(r#"[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method""#)
        .await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn invalid_requests() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#).await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request","data":"\"method\" must be a string"}})
    );
    let reply = raw.exchange(r#"{"jsonrpc":"1.0","id":4,"method":"t.echo","params":["x"]}"#).await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":4,"error":{"code":-32600,"message":"Invalid request","data":"\"jsonrpc\" must be \"2.0\""}})
    );
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":5,"method":"t.echo","params":"x"}"#).await;
    assert_eq!(reply["error"]["code"], json!(-32600));
    assert_eq!(reply["id"], json!(5));
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":[1],"method":"t.echo"}"#).await;
    assert_eq!(reply["error"]["code"], json!(-32600));
    assert_eq!(reply["id"], Value::Null);
    let reply = raw.exchange("42").await;
    assert_eq!(reply["error"]["code"], json!(-32600));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn method_not_found() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":"1","method":"foobar"}"#).await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"Method not found","data":"foobar"}})
    );
    // A notification to an unknown method is not answered.
    raw.send(r#"{"jsonrpc":"2.0","method":"foobar"}"#).await;
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn invalid_params_name_the_parameter() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.add","params":{"a":1,"b":"x"}}"#).await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":1,"error":{
            "code":-32602,
            "message":"Invalid params: `b`: invalid type: string \"x\", expected i64",
            "data":{"param":"b","reason":"invalid type: string \"x\", expected i64"}
        }})
    );
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"t.add","params":{"a":1}}"#).await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":2,"error":{
            "code":-32602,
            "message":"Invalid params: `b`: missing required parameter",
            "data":{"param":"b","reason":"missing required parameter"}
        }})
    );
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":3,"method":"t.add","params":[1,2,3,4]}"#).await;
    assert_eq!(reply["error"]["code"], json!(-32602));
    assert_eq!(reply["error"]["data"], json!({"reason":"too many parameters: expected at most 3"}));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn params_by_name_and_by_position() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    for (params, sum) in [
        (r#"{"a":1,"b":2,"c":3}"#, 6),
        (r#"{"b":2,"a":1}"#, 3),
        (r#"{"a":1,"b":2,"c":null}"#, 3),
        ("[1,2,3]", 6),
        ("[1,2]", 3),
    ] {
        let request = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"t.add","params":{params}}}"#);
        assert_eq!(raw.exchange(&request).await, json!({"jsonrpc":"2.0","id":1,"result":sum}), "{params}");
    }
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn ids_of_every_legal_type_are_echoed_exactly() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    for id in ["0", "7", "-5", "1.5", "1e3", "123456789012345678901234567890", "\"abc\"", "\"\"", "\"\\u00e9\"", "null"]
    {
        raw.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.echo","params":["x"]}}"#)).await;
        let text = match within(futures_util::StreamExt::next(&mut raw.socket)).await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(text.contains(&format!(r#""id":{id},"#)), "id {id} came back as {text}");
    }
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn a_one_way_method_called_with_an_id_answers_null_after_running() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":7,"method":"t.note","params":{"text":"with an id"}}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":7,"result":null}));
    assert_eq!(*server.observed.notes.lock().unwrap(), ["with an id"]);
}

#[tokio::test]
async fn a_renamed_method_answers_to_its_wire_name() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.renamed"}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":1,"result":"renamed on the wire"}));
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"t.original"}"#).await;
    assert_eq!(reply["error"]["code"], json!(-32601));
}

#[tokio::test]
async fn a_handlers_messages_to_its_caller_arrive_before_its_reply() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let joined = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.join","params":{"group":"g"}}"#).await;
    assert_eq!(joined, json!({"jsonrpc":"2.0","id":1,"result":true}));
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"t.shout","params":{"group":"g","text":"first"}}"#).await;
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","method":"t.heard","params":{"text":"first"}}));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":2,"result":null}));
}

/// The elements of a batch response, by id (the spec allows any order).
fn by_id(reply: Value) -> Vec<(String, Value)> {
    let Value::Array(items) = reply else { panic!("expected a batch, got {reply}") };
    let mut items: Vec<(String, Value)> = items.into_iter().map(|item| (item["id"].to_string(), item)).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

#[tokio::test]
async fn a_batch_of_calls_and_notifications() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw
        .exchange(
            r#"[
                {"jsonrpc":"2.0","method":"t.add","params":[1,2,4],"id":"1"},
                {"jsonrpc":"2.0","method":"t.note","params":["in a batch"]},
                {"jsonrpc":"2.0","method":"t.echo","params":{"text":"x"},"id":"2"},
                {"foo":"boo"},
                {"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},
                {"jsonrpc":"2.0","method":"t.add","params":[1],"id":"9"}
            ]"#,
        )
        .await;
    let items = by_id(reply);
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["\"1\"", "\"2\"", "\"5\"", "\"9\"", "null"]);
    assert_eq!(items[0].1, json!({"jsonrpc":"2.0","id":"1","result":7}));
    assert_eq!(items[1].1, json!({"jsonrpc":"2.0","id":"2","result":"x"}));
    assert_eq!(
        items[2].1,
        json!({"jsonrpc":"2.0","id":"5","error":{"code":-32601,"message":"Method not found","data":"foo.get"}})
    );
    assert_eq!(items[3].1["error"]["data"]["param"], json!("b"));
    assert_eq!(items[4].1["error"]["code"], json!(-32600));
    assert_eq!(*server.observed.notes.lock().unwrap(), ["in a batch"]);
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn empty_and_junk_batches() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let reply = raw.exchange("[]").await;
    assert_eq!(
        reply,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request","data":"empty batch"}})
    );
    let reply = raw.exchange("[1,2,3]").await;
    let invalid = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request","data":"a message must be a JSON object"}});
    assert_eq!(reply, json!([invalid, invalid, invalid]));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn a_batch_of_notifications_gets_no_reply() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    raw.send(
        r#"[{"jsonrpc":"2.0","method":"t.note","params":["a"]},{"jsonrpc":"2.0","method":"t.note","params":["b"]}]"#,
    )
    .await;
    // The next frame is the answer to the next request: nothing came for the batch.
    still_serving(&mut raw).await;
    let mut notes = server.observed.notes.lock().unwrap().clone();
    notes.sort();
    assert_eq!(notes, ["a", "b"]);
}

#[tokio::test]
async fn hostile_input_does_not_panic_or_close_the_connection() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let deep_array = "[".repeat(100_000);
    let deep_params = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"t.echo","params":[{}]}}"#, "[".repeat(50_000));
    for junk in [
        "",
        " ",
        "null",
        "\"\\ud800\"",
        deep_array.as_str(),
        deep_params.as_str(),
        r#"{"jsonrpc":"2.0","id":1,"method":"t.add","params":[1e999,2]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"t.add","params":[18446744073709551616,2]}"#,
        r#"{"jsonrpc":"2.0","id":{"nested":[1]},"method":"t.echo"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"$/cancelRequest","params":"nonsense"}"#,
        r#"{"jsonrpc":"2.0","method":"t.echo","params":{"text":"notification with bad params","text":1}}"#,
    ] {
        raw.send(junk).await;
        // Every request-shaped input gets exactly one answer; notifications none.
        if junk.contains("notification with bad params") {
            continue;
        }
        let reply = raw.recv().await;
        assert!(reply.get("error").is_some() || reply.get("result").is_some(), "{junk:.60}: {reply}");
    }
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn a_plain_http_request_gets_400_and_a_wrong_version_426() {
    let server = start_server().await;
    let mut stream = within(tokio::net::TcpStream::connect(server.addr)).await.unwrap();
    within(stream.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await.unwrap();
    let mut response = String::new();
    within(stream.read_to_string(&mut response)).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("WebSocket upgrade request is expected"), "{response}");

    let mut stream = within(tokio::net::TcpStream::connect(server.addr)).await.unwrap();
    let request = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    within(stream.write_all(request.as_bytes())).await.unwrap();
    let mut buffer = vec![0; 1024];
    let read = within(stream.read(&mut buffer)).await.unwrap();
    let response = String::from_utf8_lossy(&buffer[..read]);
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(response.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{response}");
}

#[tokio::test]
async fn a_cancellation_overtakes_calls_waiting_for_a_slot() {
    // Two slots, both held by calls that never end; the next call waits its turn.
    let server = start_server_with(wsduplex::Server::builder().max_in_flight(2)).await;
    let mut raw = Raw::connect(&server.url).await;
    for id in [1, 2] {
        let started = server.observed.hang_started.notified();
        raw.send(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.hang"}}"#)).await;
        within(started).await;
    }
    raw.send(r#"{"jsonrpc":"2.0","id":3,"method":"t.echo","params":["after"]}"#).await;
    // The cancellation needs no slot: it is handled at once, not parked behind
    // the call it would free a slot for.
    raw.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#).await;
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Request cancelled"}}));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":3,"result":"after"}));
}

#[tokio::test]
async fn a_request_cancelled_twice_is_answered_once() {
    let server = start_server().await;
    let mut raw = Raw::connect(&server.url).await;
    let started = server.observed.hang_started.notified();
    raw.send(r#"{"jsonrpc":"2.0","id":5,"method":"t.hang"}"#).await;
    within(started).await;
    raw.send(r#"[{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":5}},{"jsonrpc":"2.0","method":"$/cancelRequest","params":[5]}]"#)
        .await;
    assert_eq!(raw.recv().await["error"]["code"], json!(-32022));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn frames_parked_at_the_call_limit_are_answered_in_order_as_if_they_had_not_waited() {
    // One slot, held by a call that never ends: everything after it is parked.
    let server = start_server_with(wsduplex::Server::builder().max_in_flight(1)).await;
    let mut raw = Raw::connect(&server.url).await;
    let started = server.observed.hang_started.notified();
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.hang"}"#).await;
    within(started).await;
    raw.send(r#"{"jsonrpc":"2.0","id":2,"method":"t.echo","params":{"text":"parked"}}"#).await;
    raw.send(r#"{"jsonrpc":"2.0","id":"x","method":"t.add","params":[1,2]}"#).await;
    raw.send("not json").await;
    raw.send(r#"{"jsonrpc":"1.0","id":3,"method":"t.echo"}"#).await;
    raw.send(r#"[{"jsonrpc":"2.0","id":4,"method":"t.echo","params":["in a batch"]},{"jsonrpc":"2.0","method":"t.note","params":["hi"]}]"#)
        .await;
    raw.send(r#"{"jsonrpc":"2.0","id":5,"method":"t.nope"}"#).await;
    // Freeing the slot lets them through, one at a time, in the order they came.
    raw.send(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":1}}"#).await;
    assert_eq!(raw.recv().await["id"], json!(1));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":2,"result":"parked"}));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":"x","result":3}));
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}));
    assert_eq!(raw.recv().await["error"]["code"], json!(-32600));
    assert_eq!(raw.recv().await, json!([{"jsonrpc":"2.0","id":4,"result":"in a batch"}]));
    let unknown = raw.recv().await;
    assert_eq!((unknown["id"].clone(), unknown["error"]["code"].clone()), (json!(5), json!(-32601)));
    still_serving(&mut raw).await;
}

#[tokio::test]
async fn a_response_in_a_parked_batch_reaches_its_caller_at_once() {
    // The only slot is held by `t.ask`, which waits for this client's answer
    // to its callback. The answer comes in a batch with a request, which must
    // wait for a slot: the answer must not wait with it, or neither moves.
    let server = start_server_with(wsduplex::Server::builder().max_in_flight(1)).await;
    let mut raw = Raw::connect(&server.url).await;
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.ask","params":["ready?"]}"#).await;
    let callback = raw.recv().await;
    assert_eq!(callback["method"], json!("t.answer"));
    let answer = json!({"jsonrpc":"2.0","id":callback["id"],"result":"yes"});
    let echo = json!({"jsonrpc":"2.0","id":2,"method":"t.echo","params":["then this"]});
    raw.send(&json!([echo, answer]).to_string()).await;
    assert_eq!(raw.recv().await, json!({"jsonrpc":"2.0","id":1,"result":"yes"}));
    assert_eq!(raw.recv().await, json!([{"jsonrpc":"2.0","id":2,"result":"then this"}]));
}
