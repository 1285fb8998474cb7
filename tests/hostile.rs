//! The hostile input catalog: each case is sent on a live connection, the
//! exact reply or close code is asserted, and a bystander connection on the
//! same server must be unaffected.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use wsduplex::{Client, Error, Server};

/// A hostile connection and a bystander on the same server.
struct Scene {
    server: TestServer,
    raw: Raw,
    bystander: Raw,
}

impl Scene {
    async fn new() -> Scene {
        Scene::with(Server::builder()).await
    }

    async fn with(builder: wsduplex::server::ServerBuilder) -> Scene {
        let server = start_server_with(builder).await;
        let raw = Raw::connect(&server.url).await;
        let bystander = Raw::connect(&server.url).await;
        Scene { server, raw, bystander }
    }

    /// Ends every case: the bystander is served, and so is the hostile
    /// connection unless the case closed it.
    async fn still_serving(mut self, hostile_too: bool) {
        alive(&mut self.bystander).await;
        if hostile_too {
            alive(&mut self.raw).await;
        }
    }
}

async fn alive(raw: &mut Raw) {
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":"alive","method":"t.echo","params":["yes"]}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":"alive","result":"yes"}));
}

/// Sends WebSocket frames exactly as given (masked, as a client must).
async fn send_frames(raw: &mut Raw, frames: &[(bool, OpCode, &[u8])]) {
    for (is_final, opcode, payload) in frames {
        let header =
            FrameHeader { is_final: *is_final, opcode: *opcode, mask: Some([7, 3, 1, 9]), ..FrameHeader::default() };
        let frame = Frame::from_payload(header, payload.to_vec().into());
        within(raw.socket.send(Message::Frame(frame))).await.unwrap();
    }
}

const TEXT: OpCode = OpCode::Data(Data::Text);
const MORE: OpCode = OpCode::Data(Data::Continue);

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let mut scene = Scene::new().await;
    send_frames(&mut scene.raw, &[(true, TEXT, &[b'"', 0xff, 0xfe, b'"'])]).await;
    assert_eq!(scene.raw.close_code().await, 1007);
    scene.still_serving(false).await;
}

#[tokio::test]
async fn a_fragmented_message_is_reassembled() {
    let mut scene = Scene::new().await;
    let parts: [&[u8]; 3] = [br#"{"jsonrpc":"2.0","id":1,"#, br#""method":"t.echo","#, br#""params":["frag"]}"#];
    send_frames(&mut scene.raw, &[(false, TEXT, parts[0]), (false, MORE, parts[1]), (true, MORE, parts[2])]).await;
    assert_eq!(scene.raw.recv().await, json!({"jsonrpc":"2.0","id":1,"result":"frag"}));
    scene.still_serving(true).await;
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_closes_with_1009() {
    let mut scene = Scene::with(Server::builder().max_message_size(1024)).await;
    // Every fragment is under the limit; together they are not.
    let part = [b' '; 600];
    send_frames(&mut scene.raw, &[(false, TEXT, &part), (false, MORE, &part), (true, MORE, b"{}")]).await;
    assert_eq!(scene.raw.close_code().await, 1009);
    scene.still_serving(false).await;
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let mut scene = Scene::with(Server::builder().max_message_size(1024)).await;
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"t.echo","params":["{}"]}}"#, "x".repeat(2000));
    scene.raw.send(&big).await;
    assert_eq!(scene.raw.close_code().await, 1009);
    scene.still_serving(false).await;
}

#[tokio::test]
async fn a_binary_frame_of_valid_json_is_served_and_of_invalid_utf8_is_a_parse_error() {
    let mut scene = Scene::new().await;
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"t.echo","params":["bin"]}"#;
    within(scene.raw.socket.send(Message::Binary(request.to_vec().into()))).await.unwrap();
    assert_eq!(scene.raw.recv().await, json!({"jsonrpc":"2.0","id":1,"result":"bin"}));
    within(scene.raw.socket.send(Message::Binary(vec![0xff, 0xfe, b'{'].into()))).await.unwrap();
    assert_eq!(
        scene.raw.recv().await,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}})
    );
    scene.still_serving(true).await;
}

#[tokio::test]
async fn deeply_nested_json_gets_its_error_reply_without_overflowing_the_stack() {
    let mut scene = Scene::new().await;
    let parse_error = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}});
    assert_eq!(scene.raw.exchange(&"[".repeat(100_000)).await, parse_error);
    // Well-formed but deep: a batch of one entry that is not a message object.
    let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        scene.raw.exchange(&closed).await,
        json!([{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request","data":"a message must be a JSON object"}}])
    );
    // Deep parameters: refused by the parameter's type, at the first level.
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"t.echo","params":[{}1{}]}}"#,
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    let reply = scene.raw.exchange(&deep_params).await;
    assert_eq!(reply["id"], json!(1), "{reply}");
    assert_eq!(reply["error"]["code"], json!(-32602), "{reply}");
    assert_eq!(reply["error"]["data"]["param"], json!("text"), "{reply}");
    scene.still_serving(true).await;
}

#[tokio::test]
async fn numbers_too_large_for_the_parameter_type_are_invalid_params() {
    let mut scene = Scene::new().await;
    let reply =
        scene.raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.add","params":[18446744073709551616,2]}"#).await;
    assert_eq!(reply["error"]["code"], json!(-32602), "{reply}");
    assert_eq!(reply["error"]["data"]["param"], json!("a"), "{reply}");
    let reply = scene.raw.exchange(r#"{"jsonrpc":"2.0","id":2,"method":"t.add","params":{"a":1,"b":1e400}}"#).await;
    assert_eq!(reply["id"], json!(2), "{reply}");
    assert_eq!(reply["error"]["code"], json!(-32602), "{reply}");
    assert_eq!(reply["error"]["data"]["param"], json!("b"), "{reply}");
    scene.still_serving(true).await;
}

#[tokio::test]
async fn a_very_long_method_name_is_not_found_and_not_echoed_whole() {
    let mut scene = Scene::new().await;
    let name = "m".repeat(1 << 20);
    let reply = scene.raw.exchange(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{name}"}}"#)).await;
    assert_eq!(reply["error"]["code"], json!(-32601));
    assert_eq!(reply["error"]["data"], json!(&name[..256]));
    scene.still_serving(true).await;
}

#[tokio::test]
async fn ids_of_every_legal_type_are_echoed_and_illegal_ones_refused() {
    let mut scene = Scene::new().await;
    for id in ["7", "-7", "1.5", "1e3", "123456789012345678901234567890", r#""text""#, r#""""#, "null"] {
        let reply =
            scene.raw.exchange(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.echo","params":["x"]}}"#)).await;
        let expected: Value = serde_json::from_str(id).unwrap();
        assert_eq!(reply["id"], expected, "{id}: {reply}");
        assert_eq!(reply["result"], json!("x"), "{id}: {reply}");
    }
    for id in ["true", "{}", r#"{"a":1}"#, "[1]"] {
        let reply =
            scene.raw.exchange(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"t.echo","params":["x"]}}"#)).await;
        assert_eq!(reply["id"], Value::Null, "{id}: {reply}");
        assert_eq!(reply["error"]["code"], json!(-32600), "{id}: {reply}");
    }
    scene.still_serving(true).await;
}

#[tokio::test]
async fn duplicate_ids_in_flight_are_each_answered() {
    let mut scene = Scene::new().await;
    let started = scene.server.observed.hang_started.notified();
    scene.raw.send(r#"{"jsonrpc":"2.0","id":7,"method":"t.hang"}"#).await;
    within(started).await;
    // The same id while the first is running: served on its own.
    let reply = scene.raw.exchange(r#"{"jsonrpc":"2.0","id":7,"method":"t.echo","params":["second"]}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":7,"result":"second"}));
    // Cancelling the id reaches the one still running.
    let dropped = scene.server.observed.hang_dropped.notified();
    let reply = scene.raw.exchange(r#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":7}}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":7,"error":{"code":-32022,"message":"Request cancelled"}}));
    within(dropped).await;
    scene.still_serving(true).await;
}

#[tokio::test]
async fn responses_to_ids_never_issued_are_dropped() {
    let mut scene = Scene::new().await;
    for stray in [
        r#"{"jsonrpc":"2.0","id":99,"result":1}"#,
        r#"{"jsonrpc":"2.0","id":"who","error":{"code":1,"message":"?"}}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":1,"error":{"code":1,"message":"both"}}"#,
        r#"[{"jsonrpc":"2.0","id":4,"result":1},{"jsonrpc":"2.0","id":5,"result":2}]"#,
    ] {
        scene.raw.send(stray).await;
    }
    scene.still_serving(true).await;
}

#[tokio::test]
async fn a_reply_sent_twice_is_taken_once() {
    let mut scene = Scene::new().await;
    scene.raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.ask","params":["twice?"]}"#).await;
    let callback = scene.raw.recv().await;
    assert_eq!(callback["method"], json!("t.answer"));
    let reply = json!({"jsonrpc":"2.0","id":callback["id"],"result":"once"}).to_string();
    scene.raw.send(&reply).await;
    scene.raw.send(&reply).await;
    assert_eq!(scene.raw.recv().await, json!({"jsonrpc":"2.0","id":1,"result":"once"}));
    scene.still_serving(true).await;
}

#[tokio::test]
async fn a_batch_of_ten_thousand_entries_is_refused_whole() {
    let mut scene = Scene::new().await;
    let entry = r#"{"jsonrpc":"2.0","method":"t.note","params":["x"]}"#;
    let batch = format!("[{}]", vec![entry; 10_000].join(","));
    assert_eq!(
        scene.raw.exchange(&batch).await,
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32010,"message":"Batch too large: at most 1000 entries"}})
    );
    assert!(scene.server.observed.notes.lock().unwrap().is_empty(), "no entry of the batch ran");
    scene.still_serving(true).await;
}

#[tokio::test]
async fn the_batch_limit_is_configurable() {
    let mut scene = Scene::with(Server::builder().max_batch_len(2)).await;
    let entry = r#"{"jsonrpc":"2.0","id":1,"method":"t.echo","params":["x"]}"#;
    let reply = scene.raw.exchange(&format!("[{entry},{entry},{entry}]")).await;
    assert_eq!(reply["error"]["message"], json!("Batch too large: at most 2 entries"));
    assert_eq!(scene.raw.exchange(&format!("[{entry},{entry}]")).await.as_array().map(Vec::len), Some(2));
    scene.still_serving(true).await;
}

#[tokio::test]
async fn a_client_gone_while_its_call_runs_leaves_nothing_behind() {
    let mut scene = Scene::new().await;
    let started = scene.server.observed.hang_started.notified();
    scene.raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"t.hang"}"#).await;
    within(started).await;
    let dropped = scene.server.observed.hang_dropped.notified();
    // Gone without a close frame.
    drop(scene.raw);
    within(dropped).await;
    scene.server.wait_for_connection_count(1).await;
    assert_eq!(scene.server.hub.connection_ids().len(), 1, "only the bystander is left");
    alive(&mut scene.bystander).await;
}

#[tokio::test]
async fn a_client_gone_while_the_server_awaits_its_callback_fails_that_call_at_once() {
    let mut server = start_server_with(Server::builder().call_timeout(Duration::from_secs(3600))).await;
    let mut raw = Raw::connect(&server.url).await;
    let mut bystander = Raw::connect(&server.url).await;
    let conn = server.next_connection().await;
    let asking = tokio::spawn(async move { conn.callback().answer("still there?".into()).await });
    let callback = raw.recv().await;
    assert_eq!(callback["method"], json!("t.answer"));
    drop(raw);
    let error = within(asking).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    alive(&mut bystander).await;
    // A typed client is just as fine afterwards.
    let client =
        within(ServiceClient::connect_with(Client::builder(), &server.url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("after".into())).await.unwrap(), "after");
}

#[tokio::test]
async fn upgrades_that_break_rfc_6455_get_400() {
    let scene = Scene::new().await;
    let upgrade = |host: &str, extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\n{host}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        ("a duplicate key", upgrade("Host: localhost\r\n", &format!("{key}{key}"))),
        ("a key not of 16 bytes", upgrade("Host: localhost\r\n", "Sec-WebSocket-Key: c2l4dGVlbiBieXRlcyBwbHVz\r\n")),
        ("a key not in base64", upgrade("Host: localhost\r\n", "Sec-WebSocket-Key: ???????????????????????=\r\n")),
        ("the version twice", upgrade("Host: localhost\r\n", &format!("{key}Sec-WebSocket-Version: 13\r\n"))),
        ("no Host", upgrade("", key)),
    ];
    for (case, request) in cases {
        let response = http_response(scene.server.addr, &request).await;
        assert!(response.starts_with("http/1.1 400"), "{case}: {response}");
    }
    // The same request, well formed, is upgraded.
    let response = http_response(scene.server.addr, &upgrade("Host: localhost\r\n", key)).await;
    assert!(response.starts_with("http/1.1 101"), "{response}");
}
