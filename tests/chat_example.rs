//! The chat example, driven from outside as a separate process by raw
//! WebSocket clients: its flags, its first line, and the exact wire contract
//! of docs/chat-contract.md.

mod common;

use std::process::{Command, Stdio};

use common::example::{self, ExampleProcess};
use common::redis::RedisServer;
use common::{Raw, within};
use serde_json::{Value, json};

/// The features the chat example is built with.
const CHAT_FEATURES: &str = "axum,tls,redis,codegen,metrics";

fn start_chat(args: &[&str]) -> ExampleProcess {
    example::start("chat", CHAT_FEATURES, args)
}

/// A raw chat participant with its own request ids.
struct User {
    raw: Raw,
    next_id: u64,
}

impl User {
    async fn connect(chat: &ExampleProcess) -> User {
        User::connect_to(chat, "/ws").await
    }

    async fn connect_to(chat: &ExampleProcess, path: &str) -> User {
        User { raw: Raw::connect(&format!("ws://{}{path}", chat.addr)).await, next_id: 1 }
    }

    /// Sends a request and returns its id.
    async fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.raw.send(&message.to_string()).await;
        id
    }

    /// Sends a request and expects its response as the very next frame.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        let reply = self.raw.recv().await;
        assert_eq!(reply["id"], json!(id), "expected the reply to {method}, got {reply}");
        reply
    }

    async fn notify(&mut self, method: &str, params: Value) {
        let message = json!({"jsonrpc":"2.0","method":method,"params":params});
        self.raw.send(&message.to_string()).await;
    }

    async fn expect(&mut self, expected: Value) {
        assert_eq!(self.raw.recv().await, expected);
    }

    async fn join(&mut self, room: &str, nick: &str) -> Value {
        self.call("chat.join", json!({"room":room,"nick":nick})).await
    }
}

fn assert_ok(reply: Value, result: Value) {
    assert_eq!(reply.get("result"), Some(&result), "{reply}");
    assert_eq!(reply["jsonrpc"], json!("2.0"));
}

fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error, got {reply}"))
}

fn joined(room: &str, nick: &str) -> Value {
    json!({"jsonrpc":"2.0","method":"chat.joined","params":{"room":room,"nick":nick}})
}

fn left(room: &str, nick: &str) -> Value {
    json!({"jsonrpc":"2.0","method":"chat.left","params":{"room":room,"nick":nick}})
}

fn message(room: &str, from: &str, text: &str) -> Value {
    json!({"jsonrpc":"2.0","method":"chat.message","params":{"room":room,"from":from,"text":text}})
}

#[tokio::test]
async fn the_page_the_socket_and_plain_http() {
    let chat = start_chat(&[]);
    let page = within(http_get(&chat.addr, "/")).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains(r#"import { ChatClient } from "/chat.js""#), "the page uses the generated client");
    let module = within(http_get(&chat.addr, "/wsduplex.js")).await;
    assert!(module.starts_with("HTTP/1.1 200"), "{module}");
    assert!(module.to_ascii_lowercase().contains("content-type: text/javascript"), "{module}");
    assert!(module.contains("export function connect("), "{module}");
    let client = within(http_get(&chat.addr, "/chat.js")).await;
    assert!(client.starts_with("HTTP/1.1 200"), "{client}");
    assert!(client.to_ascii_lowercase().contains("content-type: text/javascript"), "{client}");
    assert!(client.ends_with(include_str!("../clients/js/chat.js")), "{client}");
    let not_upgraded = within(http_get(&chat.addr, "/ws")).await;
    assert!(not_upgraded.starts_with("HTTP/1.1 400"), "{not_upgraded}");
    assert!(not_upgraded.contains("WebSocket upgrade"), "{not_upgraded}");
}

#[tokio::test]
async fn rpc_discover_answers_with_the_chat_contract_s_openrpc_document() {
    let chat = start_chat(&[]);
    let mut user = User::connect(&chat).await;
    let reply = user.call("rpc.discover", json!([])).await;
    let snapshot: Value = serde_json::from_str(include_str!("snapshots/chat.openrpc.json")).unwrap();
    assert_eq!(reply["result"], snapshot);
}

#[test]
fn emit_ts_writes_the_client_the_page_uses() {
    let binary = example::build("chat", CHAT_FEATURES);
    let dir = std::env::temp_dir().join(format!("wsduplex-emit-ts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new(&binary).arg("--emit-ts").arg(&dir).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let written = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(written("chat.js"), include_str!("../clients/js/chat.js"));
    assert_eq!(written("chat.d.ts"), include_str!("../clients/js/chat.d.ts"));
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn join_say_and_leave() {
    let chat = start_chat(&[]);
    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    let mut carol = User::connect(&chat).await;

    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("lobby", "bob").await, json!(["alice", "bob"]));
    alice.expect(joined("lobby", "bob")).await;

    // Nicks are unique among connected users.
    let taken = carol.join("lobby", "alice").await;
    assert_eq!(error_code(&taken), 1001, "{taken}");
    assert_ok(carol.join("kitchen", "carol").await, json!(["carol"]));

    // A message reaches every member, the sender included, and no one else.
    alice.notify("chat.say", json!({"text":"hi all"})).await;
    alice.expect(message("lobby", "alice", "hi all")).await;
    bob.expect(message("lobby", "alice", "hi all")).await;

    // Joining while in a room moves: the old room hears `left`, the new one `joined`.
    assert_ok(bob.join("kitchen", "bob").await, json!(["bob", "carol"]));
    alice.expect(left("lobby", "bob")).await;
    carol.expect(joined("kitchen", "bob")).await;

    // A connection may re-join with its own nick.
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));

    // Leaving answers null and tells the rest; leaving again is 1002.
    assert_ok(carol.call("chat.leave", json!({})).await, Value::Null);
    bob.expect(left("kitchen", "carol")).await;
    assert_eq!(error_code(&carol.call("chat.leave", json!({})).await), 1002);

    // Saying with an id while in no room is 1002; carol heard nothing meanwhile.
    assert_eq!(error_code(&carol.call("chat.say", json!({"text":"anyone?"})).await), 1002);
    // Said as a notification, it is dropped silently; by position works too.
    carol.notify("chat.say", json!(["into the void"])).await;
    assert_ok(carol.join("lobby", "carol").await, json!(["alice", "carol"]));
    alice.expect(joined("lobby", "carol")).await;
}

#[tokio::test]
async fn invites_ask_the_invitee_and_move_them_on_yes() {
    let chat = start_chat(&[]);
    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    let mut carol = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("kitchen", "bob").await, json!(["bob"]));
    assert_ok(carol.join("kitchen", "carol").await, json!(["bob", "carol"]));
    bob.expect(joined("kitchen", "carol")).await;

    // The invitee gets a request and answers it itself.
    let invite = alice.request("chat.invite", json!({"nick":"bob"})).await;
    let asked = bob.raw.recv().await;
    assert_eq!(asked["method"], json!("chat.invited"));
    assert_eq!(asked["params"], json!({"from":"alice","room":"lobby"}));
    let asked_id = asked["id"].clone();
    assert!(!asked_id.is_null(), "{asked}");
    bob.raw.send(&json!({"jsonrpc":"2.0","id":asked_id,"result":true}).to_string()).await;

    // Accepted: bob moves to the lobby; the kitchen hears he left, alice that he joined.
    carol.expect(left("kitchen", "bob")).await;
    alice.expect(joined("lobby", "bob")).await;
    assert_eq!(alice.raw.recv().await, json!({"jsonrpc":"2.0","id":invite,"result":true}));
    assert_ok(bob.join("lobby", "bob").await, json!(["alice", "bob"]));

    // Declined: nothing moves.
    let invite = alice.request("chat.invite", json!({"nick":"carol"})).await;
    let asked = carol.raw.recv().await;
    assert_eq!(asked["params"], json!({"from":"alice","room":"lobby"}));
    carol.raw.send(&json!({"jsonrpc":"2.0","id":asked["id"],"result":false}).to_string()).await;
    assert_eq!(alice.raw.recv().await, json!({"jsonrpc":"2.0","id":invite,"result":false}));
    assert_ok(carol.join("kitchen", "carol").await, json!(["carol"]));

    // No such user, and inviting from no room.
    let nobody = alice.call("chat.invite", json!({"nick":"zed"})).await;
    assert_eq!(error_code(&nobody), 1003, "{nobody}");
    let mut dave = User::connect(&chat).await;
    assert_eq!(error_code(&dave.call("chat.invite", json!({"nick":"alice"})).await), 1002);
}

#[tokio::test]
async fn an_unanswered_invite_fails_with_an_implementation_error() {
    // The invitee never answers: the outcome does not depend on timing.
    let chat = start_chat(&["--callback-timeout-ms", "200"]);
    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("kitchen", "bob").await, json!(["bob"]));
    let reply = alice.call("chat.invite", json!({"nick":"bob"})).await;
    let code = error_code(&reply);
    assert!((-32099..=-32000).contains(&code), "{reply}");
    // bob was asked, then told to stop (the deadline passed), and stays where he is.
    let asked = bob.raw.recv().await;
    assert_eq!(asked["method"], json!("chat.invited"));
    let cancel = json!({"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":asked["id"]}});
    assert_eq!(bob.raw.recv().await, cancel);
    assert_ok(bob.join("kitchen", "bob").await, json!(["bob"]));
}

#[tokio::test]
async fn two_servers_on_one_redis_behave_as_one() {
    let Some(redis) = RedisServer::start().await else { return };
    let url = redis.url();
    let one = start_chat(&["--redis", &url, "--admin-token", "adm1n"]);
    let two = start_chat(&["--redis", &url, "--admin-token", "adm1n"]);
    let mut alice = User::connect(&one).await;
    let mut bob = User::connect(&two).await;
    let mut carol = User::connect(&one).await;

    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("lobby", "bob").await, json!(["alice", "bob"]));
    alice.expect(joined("lobby", "bob")).await;

    // Nicks are unique across servers.
    assert_eq!(error_code(&carol.join("lobby", "bob").await), 1001);
    assert_ok(carol.join("kitchen", "carol").await, json!(["carol"]));

    // Messages both ways, to every member and no one else.
    alice.notify("chat.say", json!({"text":"hi bob"})).await;
    alice.expect(message("lobby", "alice", "hi bob")).await;
    bob.expect(message("lobby", "alice", "hi bob")).await;
    bob.notify("chat.say", json!({"text":"hi alice"})).await;
    bob.expect(message("lobby", "bob", "hi alice")).await;
    alice.expect(message("lobby", "bob", "hi alice")).await;

    // An invite from server one, answered by bob on server two, moves bob.
    let invite = carol.request("chat.invite", json!({"nick":"bob"})).await;
    let asked = bob.raw.recv().await;
    assert_eq!(asked["method"], json!("chat.invited"));
    assert_eq!(asked["params"], json!({"from":"carol","room":"kitchen"}));
    bob.raw.send(&json!({"jsonrpc":"2.0","id":asked["id"],"result":true}).to_string()).await;
    alice.expect(left("lobby", "bob")).await;
    carol.expect(joined("kitchen", "bob")).await;
    assert_eq!(carol.raw.recv().await, json!({"jsonrpc":"2.0","id":invite,"result":true}));
    // Server two moved bob's connection into the kitchen's group.
    bob.notify("chat.say", json!({"text":"in the kitchen"})).await;
    bob.expect(message("kitchen", "bob", "in the kitchen")).await;
    carol.expect(message("kitchen", "bob", "in the kitchen")).await;

    // Leaving, and a disconnect that frees the nick on the other server.
    assert_ok(bob.call("chat.leave", json!({})).await, Value::Null);
    carol.expect(left("kitchen", "bob")).await;
    assert_ok(bob.join("kitchen", "bob").await, json!(["bob", "carol"]));
    carol.expect(joined("kitchen", "bob")).await;
    within(bob.raw.socket.close(None)).await.unwrap();
    carol.expect(left("kitchen", "bob")).await;
    let mut bob_again = User::connect(&one).await;
    assert_ok(bob_again.join("kitchen", "bob").await, json!(["bob", "carol"]));
    carol.expect(joined("kitchen", "bob")).await;

    // Alice, in the lobby, heard none of the kitchen.
    alice.notify("chat.say", json!({"text":"still here"})).await;
    alice.expect(message("lobby", "alice", "still here")).await;

    // An admin on server two kicks alice, held by server one.
    let mut admin = User::connect_to(&two, "/ws?token=adm1n").await;
    assert_ok(admin.join("lobby", "admin").await, json!(["admin", "alice"]));
    alice.expect(joined("lobby", "admin")).await;
    let kick = admin.request("chat.kick", json!({"nick":"alice"})).await;
    assert_eq!(alice.raw.close_code().await, 1008);
    // The reply and the room's news travel different ways: either may come first.
    let mut heard = vec![admin.raw.recv().await, admin.raw.recv().await];
    heard.sort_by_key(|frame| frame.get("id").is_some());
    assert_eq!(heard, [left("lobby", "alice"), json!({"jsonrpc":"2.0","id":kick,"result":null})]);
}

#[tokio::test]
async fn an_invite_to_a_server_that_dies_fails_at_its_deadline() {
    let Some(redis) = RedisServer::start().await else { return };
    let url = redis.url();
    let one = start_chat(&["--redis", &url, "--callback-timeout-ms", "1500"]);
    let two = start_chat(&["--redis", &url, "--callback-timeout-ms", "1500"]);
    let mut alice = User::connect(&one).await;
    let mut bob = User::connect(&two).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("den", "bob").await, json!(["bob"]));

    // Bob's server receives the invite; then it is killed, as a crash would.
    let invite = alice.request("chat.invite", json!({"nick":"bob"})).await;
    assert_eq!(bob.raw.recv().await["method"], json!("chat.invited"));
    drop(two);
    let started = std::time::Instant::now();
    let reply = alice.raw.recv().await;
    assert_eq!(reply["id"], json!(invite));
    assert_eq!(error_code(&reply), -32020, "timed out: {reply}");
    // By its 1.5 s deadline (plus the time to answer on a busy machine),
    // not when some default would expire.
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(3), "failed {waited:?} after the server died");
}

#[tokio::test]
async fn a_disconnect_frees_the_nick_and_tells_the_room() {
    let chat = start_chat(&[]);
    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("lobby", "bob").await, json!(["alice", "bob"]));
    alice.expect(joined("lobby", "bob")).await;

    within(bob.raw.socket.close(None)).await.unwrap();
    alice.expect(left("lobby", "bob")).await;

    let mut bob_again = User::connect(&chat).await;
    assert_ok(bob_again.join("lobby", "bob").await, json!(["alice", "bob"]));
    alice.expect(joined("lobby", "bob")).await;
}

#[tokio::test]
async fn invalid_params_name_the_parameter() {
    let chat = start_chat(&[]);
    let mut alice = User::connect(&chat).await;
    let reply = alice.call("chat.join", json!({"room": 1, "nick": "alice"})).await;
    assert_eq!(error_code(&reply), -32602);
    assert_eq!(reply["error"]["data"]["param"], json!("room"));
    let reply = alice.call("chat.join", json!({"room": "lobby"})).await;
    assert_eq!(reply["error"]["data"]["param"], json!("nick"));
}

#[tokio::test]
async fn the_limit_flags_apply_from_outside() {
    let chat = start_chat(&["--max-message-bytes", "200", "--max-connections", "1"]);
    let mut alice = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    match within(tokio_tungstenite::connect_async(format!("ws://{}/ws", chat.addr))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected 503, got {other:?}"),
    }
    alice.notify("chat.say", json!({"text": "x".repeat(300)})).await;
    assert_eq!(alice.raw.close_code().await, 1009);
}

const PAGE: &str = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test]
async fn half_a_request_is_cut_off_and_connections_before_their_upgrade_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chat = start_chat(&["--handshake-timeout-ms", "500", "--max-connections", "2"]);
    let addr: std::net::SocketAddr = chat.addr.parse().unwrap();
    let mut halves = Vec::new();
    for _ in 0..2 {
        let mut stream = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
        within(stream.write_all(b"GET / HTTP/1.1\r\nHost: local")).await.unwrap();
        halves.push((stream, std::time::Instant::now()));
    }
    // Two connections before their upgrade: a third is closed at once, though it asks for the page.
    let refused = common::http_response(addr, PAGE).await;
    assert_eq!(refused, "", "a third connection was served");
    // The two halves are cut off at the handshake timeout.
    for (mut stream, start) in halves {
        let mut buffer = [0; 64];
        let read = within(stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(start.elapsed() >= std::time::Duration::from_millis(500), "after {:?}", start.elapsed());
    }
    // Their places free up as they go (just after the client sees its end): the page is served again.
    within(async {
        while !common::http_response(addr, PAGE).await.starts_with("http/1.1 200") {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn ctrl_c_shuts_down_gracefully_with_1001() {
    let mut chat = start_chat(&[]);
    let mut alice = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    let mut child = chat.child.take().unwrap();
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    assert_eq!(alice.raw.close_code().await, 1001);
    let status = within(tokio::task::spawn_blocking(move || child.wait())).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_token_and_origin_flags_guard_the_handshake() {
    let chat = start_chat(&["--token", "s3cret", "--allow-origin", "https://chat.example"]);
    let addr: std::net::SocketAddr = chat.addr.parse().unwrap();
    let status = |path: &'static str, extra: &'static [&'static str]| async move {
        let response = common::upgrade_response(addr, path, extra).await;
        response.lines().next().unwrap_or_default().to_owned()
    };
    assert_eq!(status("/ws", &[]).await, "http/1.1 401 unauthorized");
    assert_eq!(status("/ws?token=wrong", &[]).await, "http/1.1 401 unauthorized");
    assert_eq!(status("/ws", &["Authorization: Bearer s3cre"]).await, "http/1.1 401 unauthorized");
    assert_eq!(status("/ws?token=s3cret", &["Origin: https://evil.example"]).await, "http/1.1 403 forbidden");
    assert_eq!(status("/ws", &["Authorization: Bearer s3cret"]).await, "http/1.1 101 switching protocols");
    // The token in the query, as a browser page sends it: it chats.
    let mut alice = User { raw: Raw::connect(&format!("ws://{}/ws?token=s3cret", chat.addr)).await, next_id: 1 };
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
}

#[tokio::test]
async fn the_rate_limit_flag_refuses_a_flood() {
    let chat = start_chat(&["--rate-limit", "1"]);
    let mut alice = User::connect(&chat).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(alice.request("chat.join", json!({"room":"lobby","nick":format!("alice{n}")})).await);
    }
    let mut refused = 0;
    for id in ids {
        let reply = alice.raw.recv().await;
        assert_eq!(reply["id"], json!(id));
        refused += usize::from(reply.get("error").is_some_and(|e| e["code"] == json!(-32029)));
    }
    // One in the burst, and one more for each second the 20 took to arrive.
    let admitted = 20 - refused;
    assert!(admitted >= 1 && refused >= 15, "{refused} of 20 refused");
}

/// GETs `http://{addr}{path}` with hyper's HTTP/1 client: the status and body.
async fn scrape(addr: &str, path: &str) -> (http::StatusCode, String) {
    use http_body_util::BodyExt;
    let stream = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let (mut sender, connection) =
        within(hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path).header(http::header::HOST, addr).body(String::new()).unwrap();
    let response = within(sender.send_request(request)).await.unwrap();
    let status = response.status();
    let body = within(response.into_body().collect()).await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the Prometheus sample `series` (`name{labels}`) in `text`; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|line| line.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')));
    line.map_or(0.0, |line| line[series.len()..].trim().parse().unwrap())
}

#[tokio::test]
async fn the_metrics_flag_serves_prometheus_text_that_moves() {
    let mut chat = start_chat(&["--metrics", "127.0.0.1:0"]);
    let line = chat.next_line();
    let metrics = line.strip_prefix("metrics on http://").and_then(|url| url.strip_suffix("/metrics"));
    let metrics = metrics.unwrap_or_else(|| panic!("unexpected second line {line:?}")).to_owned();
    let joined_ok = r#"wsduplex_calls_total{method="chat.join",outcome="ok"}"#;
    let joined_error = r#"wsduplex_calls_total{method="chat.join",outcome="error"}"#;

    let (status, before) = scrape(&metrics, "/metrics").await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(sample(&before, joined_ok), 0.0, "{before}");

    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_eq!(error_code(&bob.join("lobby", "alice").await), 1001);
    assert_eq!(error_code(&bob.call("chat.nonsense", json!([])).await), -32601);
    let (_, after) = scrape(&metrics, "/metrics").await;
    assert_eq!(sample(&after, joined_ok), 1.0, "{after}");
    assert_eq!(sample(&after, joined_error), 1.0, "{after}");
    assert_eq!(sample(&after, r#"wsduplex_calls_total{method="_unknown",outcome="error"}"#), 1.0, "{after}");
    assert_eq!(sample(&after, "wsduplex_connections"), 2.0, "{after}");
    assert!(after.contains("# TYPE wsduplex_call_duration_seconds histogram"), "{after}");
    assert_eq!(sample(&after, r#"wsduplex_call_duration_seconds_count{method="chat.join"}"#), 2.0, "{after}");
    assert!(!after.contains("chat.nonsense"), "{after}");
}

#[tokio::test]
async fn an_admin_kicks_and_no_one_else_may() {
    let chat = start_chat(&["--admin-token", "adm1n"]);
    let addr: std::net::SocketAddr = chat.addr.parse().unwrap();
    // Without --token anyone may chat, but a wrong token is still refused.
    let status = within(common::upgrade_response(addr, "/ws?token=wrong", &[])).await;
    assert!(status.starts_with("http/1.1 401"), "{status}");

    let mut alice = User::connect(&chat).await;
    let mut bob = User::connect(&chat).await;
    let mut admin = User::connect_to(&chat, "/ws?token=adm1n").await;
    assert_ok(alice.join("lobby", "alice").await, json!(["alice"]));
    assert_ok(bob.join("lobby", "bob").await, json!(["alice", "bob"]));
    alice.expect(joined("lobby", "bob")).await;

    // Bob is no admin: refused, and nothing happens to alice.
    let refused = bob.call("chat.kick", json!({"nick":"alice"})).await;
    assert_eq!(error_code(&refused), -32030, "{refused}");
    assert_eq!(refused["error"]["data"], json!({"roles":["admin"]}));
    alice.notify("chat.say", json!({"text":"still here"})).await;
    alice.expect(message("lobby", "alice", "still here")).await;
    bob.expect(message("lobby", "alice", "still here")).await;

    // The admin (in no room) kicks bob: closed with 1008, and the room hears it.
    assert_eq!(error_code(&admin.call("chat.kick", json!({"nick":"nobody"})).await), 1003);
    assert_ok(admin.call("chat.kick", json!({"nick":"bob"})).await, Value::Null);
    assert_eq!(bob.raw.close_code().await, 1008);
    alice.expect(left("lobby", "bob")).await;
    // The nick is free again.
    let mut bob_again = User::connect(&chat).await;
    assert_ok(bob_again.join("lobby", "bob").await, json!(["alice", "bob"]));
}

#[tokio::test]
async fn with_the_tls_flags_it_serves_wss() {
    use wsduplex::contract::TwoWay;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("wsduplex-chat-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let chat = start_chat(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert_eq!(chat.scheme, "https");
    let trusting = wsduplex::Client::builder()
        .root_certificates(wsduplex::tls::RootCertificates::from_pem(made.cert.pem()).unwrap());
    let url = format!("wss://{}/ws", chat.addr);
    let client = within(trusting.connect(&url, wsduplex::contract::NoCallbacks::service())).await.unwrap();
    let members: Vec<String> =
        within(client.call("chat.join", json!({"room": "lobby", "nick": "alice"}), None)).await.unwrap();
    assert_eq!(members, ["alice"]);
    let _ = std::fs::remove_dir_all(&dir);
}
