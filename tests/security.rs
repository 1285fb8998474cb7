//! Handshake security over real sockets: the authentication hook (401, 403,
//! tokens in a header or the query string, a hook that panics), the origin
//! allow-list, identities and users, and the lifecycle hooks; on the
//! standalone server and on the axum mount. (That refused handshakes leave
//! no task and no file descriptor behind is in `handshake_leaks.rs`, a
//! process of its own, so no other test's sockets are counted.)

mod common;

use std::sync::Arc;

use common::*;
use http::{HeaderName, HeaderValue};
use serde_json::json;
use tokio::sync::mpsc;
use wsduplex::{
    Client, CloseReason, Connection, Server, server::Handshake, server::Identity, server::Refusal,
    server::ServerBuilder,
};

/// What the hook attaches besides the user.
#[derive(Clone, Debug, PartialEq)]
struct Role(&'static str);

#[derive(Clone, Debug, PartialEq)]
struct Tier(u8);

/// Tokens: `s3cret` is ada (an admin), `other` is bob, `boom` panics the hook,
/// `banned` is a valid user who may not connect.
fn check_token(handshake: &Handshake) -> Result<Identity, Refusal> {
    let token = handshake.bearer_token().map(str::to_owned).or_else(|| handshake.query("token"));
    match token.as_deref() {
        Some("s3cret") => Ok(Identity::user("ada").with(Role("admin")).with(Tier(3))),
        Some("other") => Ok(Identity::user("bob").with(Role("reader"))),
        Some("boom") => panic!("this hook panics on purpose"),
        Some("banned") => Err(Refusal::forbidden("this account may not connect")),
        Some(_) => Err(Refusal::unauthorized("that token is not valid")),
        None => Err(Refusal::unauthorized("a token is required")),
    }
}

fn secured() -> ServerBuilder {
    Server::builder().authenticate(check_token).allow_origin("https://chat.example")
}

fn with_token(token: &str) -> wsduplex::client::ClientBuilder {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    Client::builder().header(HeaderName::from_static("authorization"), value)
}

async fn status_of(server: &TestServer, path: &str, extra: &[&str]) -> String {
    let response = upgrade_response(server.addr, path, extra).await;
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn missing_wrong_and_malformed_tokens_get_401_before_any_upgrade() {
    let server = start_server_with(secured()).await;
    let missing = upgrade_response(server.addr, "/ws", &[]).await;
    assert!(missing.starts_with("http/1.1 401"), "{missing}");
    assert!(missing.contains("www-authenticate: bearer"), "{missing}");
    assert!(missing.ends_with("a token is required\n"), "{missing}");
    for header in [
        "Authorization: Bearer wrong",
        "Authorization: Bearer",
        "Authorization: Basic czNjcmV0",
        "Authorization: s3cret",
        "Authorization: Bearer  ",
    ] {
        assert_eq!(status_of(&server, "/ws", &[header]).await, "http/1.1 401 unauthorized", "{header}");
    }
    for query in ["/ws?token=wrong", "/ws?token=", "/ws?token=%ZZ", "/ws?tok=s3cret", "/ws?token=s3cret%00"] {
        assert_eq!(status_of(&server, query, &[]).await, "http/1.1 401 unauthorized", "{query}");
    }
    assert_eq!(status_of(&server, "/ws?token=banned", &[]).await, "http/1.1 403 forbidden");
    assert!(server.hub.connection_ids().is_empty(), "no refused handshake became a connection");
}

#[tokio::test]
async fn a_good_token_in_a_header_or_the_query_lets_the_client_in_with_its_identity() {
    let mut server = start_server_with(secured()).await;
    let client =
        within(ServiceClient::connect_with(with_token("s3cret"), &server.url, Listener::default())).await.unwrap();
    let conn = server.next_connection().await;
    assert_eq!(conn.user(), Some("ada"));
    assert_eq!(conn.data::<Role>(), Some(Role("admin")));
    assert_eq!(conn.data::<Tier>(), Some(Tier(3)));
    assert_eq!(within(client.echo("in".into())).await.unwrap(), "in");

    // Browsers cannot set headers: the same token in the query string, percent-encoded or not.
    let url = format!("{}?room=1&token=%6Fther", server.url);
    let _browser_like = Raw::connect(&url).await;
    let conn = server.next_connection().await;
    assert_eq!(conn.user(), Some("bob"));
    assert_eq!(conn.data::<Role>(), Some(Role("reader")));
}

#[tokio::test]
async fn a_forbidden_origin_gets_403_and_programs_without_one_are_not_affected() {
    let server = start_server_with(secured()).await;
    let evil = status_of(&server, "/ws?token=s3cret", &["Origin: https://evil.example"]).await;
    assert_eq!(evil, "http/1.1 403 forbidden");
    let allowed = status_of(&server, "/ws?token=s3cret", &["Origin: https://chat.example"]).await;
    assert_eq!(allowed, "http/1.1 101 switching protocols");
    let no_origin = status_of(&server, "/ws?token=s3cret", &[]).await;
    assert_eq!(no_origin, "http/1.1 101 switching protocols");
    // The origin is checked before the token: a forbidden page learns nothing about tokens.
    assert_eq!(status_of(&server, "/ws", &["Origin: https://evil.example"]).await, "http/1.1 403 forbidden");
}

#[tokio::test]
async fn a_panicking_hook_fails_that_handshake_with_500_and_the_server_serves_on() {
    let mut server = start_server_with(secured()).await;
    assert_eq!(status_of(&server, "/ws?token=boom", &[]).await, "http/1.1 500 internal server error");
    let client =
        within(ServiceClient::connect_with(with_token("s3cret"), &server.url, Listener::default())).await.unwrap();
    server.next_connection().await;
    assert_eq!(within(client.echo("still".into())).await.unwrap(), "still");
}

#[tokio::test]
async fn a_user_is_reached_on_every_connection() {
    let mut server = start_server_with(secured()).await;
    let (laptop, phone, bob) = (Listener::default(), Listener::default(), Listener::default());
    let _laptop = within(ServiceClient::connect_with(with_token("s3cret"), &server.url, laptop.clone())).await.unwrap();
    let _phone = within(ServiceClient::connect_with(with_token("s3cret"), &server.url, phone.clone())).await.unwrap();
    let _bob = within(ServiceClient::connect_with(with_token("other"), &server.url, bob.clone())).await.unwrap();
    for _ in 0..3 {
        server.next_connection().await;
    }
    assert_eq!(server.hub.user_connections("ada").len(), 2);
    server.hub.user("ada").heard("for ada".into()).await.unwrap();
    server.hub.user("bob").heard("for bob".into()).await.unwrap();
    for (listener, expected) in [(&laptop, "for ada"), (&phone, "for ada"), (&bob, "for bob")] {
        let heard = listener.heard_signal.notified();
        if listener.heard.lock().unwrap().is_empty() {
            within(heard).await;
        }
        assert_eq!(*listener.heard.lock().unwrap(), [expected]);
    }
}

#[tokio::test]
async fn lifecycle_hooks_see_connections_open_and_end_with_the_reason() {
    let (events, mut heard) = mpsc::unbounded_channel();
    let hub = wsduplex::Hub::<EventsClient>::new();
    let hub_in_hook = hub.clone();
    let opened = events.clone();
    let builder = secured()
        .hub(&hub)
        .on_connect(move |conn: &Connection| {
            let _ = opened.send(format!("connect {}", conn.user().unwrap_or("-")));
        })
        .on_disconnect(move |conn: &Connection, reason: &CloseReason| {
            // Groups and hub are left before the hook runs.
            let gone = !hub_in_hook.contains(conn.id()) && hub_in_hook.group_members("room").is_empty();
            let _ = events.send(format!("disconnect {} {reason:?} gone={gone}", conn.user().unwrap_or("-")));
        });
    let server = within(builder.build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let hub_for_sessions = hub.clone();
    let handle = server.start(move |conn: Connection<EventsClient>| {
        Session { conn, hub: hub_for_sessions.clone(), observed: Arc::default() }.into_service()
    });

    let client = within(ServiceClient::connect_with(with_token("s3cret"), &url, Listener::default())).await.unwrap();
    assert_eq!(within(heard.recv()).await.unwrap(), "connect ada");
    assert!(within(client.join("room".into())).await.unwrap());
    client.caller().close();
    let ended = within(heard.recv()).await.unwrap();
    assert_eq!(ended, r#"disconnect ada ClosedByPeer { code: 1000, reason: "" } gone=true"#);

    let _bob = within(ServiceClient::connect_with(with_token("other"), &url, Listener::default())).await.unwrap();
    assert_eq!(within(heard.recv()).await.unwrap(), "connect bob");
    within(handle.shutdown()).await;
    assert_eq!(within(heard.recv()).await.unwrap(), "disconnect bob Shutdown gone=true");
}

#[tokio::test]
async fn failing_handlers_reach_the_handler_error_hook() {
    let (failures, mut failed) = mpsc::unbounded_channel();
    let builder =
        Server::builder().on_handler_error(move |conn: &Connection, failure: &wsduplex::server::HandlerError| {
            let _ = failures.send((conn.id(), failure.method().to_owned(), failure.error().code(), failure.panicked()));
        });
    let mut server = start_server_with(builder).await;
    let client =
        within(ServiceClient::connect_with(Client::builder(), &server.url, Listener::default())).await.unwrap();
    let id = server.next_connection().await.id();
    assert!(within(client.refuse("no".into())).await.is_err());
    assert_eq!(within(failed.recv()).await.unwrap(), (id, "t.refuse".to_owned(), 4001, false));
    assert!(within(client.panic()).await.is_err());
    assert_eq!(within(failed.recv()).await.unwrap(), (id, "t.panic".to_owned(), -32603, true));
    // Invalid params are the caller's fault, not the handler's: no report; then a real failure.
    let untyped: Result<u8, _> =
        within(wsduplex::contract::TwoWay::call(client.caller(), "t.refuse", [1, 2, 3], None)).await;
    assert!(untyped.is_err());
    assert!(within(client.refuse("again".into())).await.is_err());
    assert_eq!(within(failed.recv()).await.unwrap(), (id, "t.refuse".to_owned(), 4001, false));
}

#[tokio::test]
async fn the_same_policy_guards_the_axum_mount() {
    let (connections, mut opened) = mpsc::unbounded_channel();
    let endpoint = secured().endpoint(move |conn: Connection<EventsClient>| {
        let _ = connections.send(conn.untyped());
        Session::detached(conn).into_service()
    });
    let app = axum::Router::new().route_service("/api/ws", endpoint);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let refused = upgrade_response(addr, "/api/ws", &[]).await;
    assert!(refused.starts_with("http/1.1 401"), "{refused}");
    let forbidden = upgrade_response(addr, "/api/ws?token=s3cret", &["Origin: https://evil.example"]).await;
    assert!(forbidden.starts_with("http/1.1 403"), "{forbidden}");
    let panicked = upgrade_response(addr, "/api/ws?token=boom", &[]).await;
    assert!(panicked.starts_with("http/1.1 500"), "{panicked}");
    let mut raw = Raw::connect(&format!("ws://{addr}/api/ws?token=s3cret")).await;
    let reply = raw.exchange(r#"{"jsonrpc":"2.0","id":1,"method":"t.echo","params":["mounted"]}"#).await;
    assert_eq!(reply, json!({"jsonrpc":"2.0","id":1,"result":"mounted"}));
    assert_eq!(within(opened.recv()).await.unwrap().user(), Some("ada"));
}

/// A hook that awaits, as a token store would: `s3cret` is ada after a
/// lookup; `slow` is never decided (and says when it started waiting).
struct TokenStore {
    waiting: Arc<tokio::sync::Notify>,
}

impl wsduplex::server::Authenticate for TokenStore {
    async fn authenticate(&self, handshake: &Handshake) -> Result<Identity, Refusal> {
        match handshake.query("token").as_deref() {
            Some("s3cret") => {
                tokio::task::yield_now().await;
                Ok(Identity::user("ada"))
            }
            Some("slow") => {
                self.waiting.notify_one();
                std::future::pending().await
            }
            _ => Err(Refusal::unauthorized("unknown token")),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_awaiting_hook_decides_and_one_that_never_does_cannot_hold_a_place_or_a_shutdown() {
    let waiting = Arc::new(tokio::sync::Notify::new());
    let builder = Server::builder().authenticate(TokenStore { waiting: waiting.clone() });
    let mut server = start_server_with(builder).await;
    let _ada = Raw::connect(&format!("{}?token=s3cret", server.url)).await;
    assert_eq!(server.next_connection().await.user(), Some("ada"));

    let start = tokio::time::Instant::now();
    assert_eq!(status_of(&server, "/ws?token=slow", &[]).await, "http/1.1 503 service unavailable");
    assert!(start.elapsed() >= std::time::Duration::from_secs(10), "after {:?}", start.elapsed());

    // Mounted on axum (which bounds no handshake), a shutdown does not wait
    // for a hook that never decides, however long the handshake timeout.
    // (A Notify of its own: the first part left a permit in the other.)
    let waiting = Arc::new(tokio::sync::Notify::new());
    let endpoint = Server::builder()
        .handshake_timeout(std::time::Duration::from_secs(3600))
        .authenticate(TokenStore { waiting: waiting.clone() })
        .endpoint(|conn: Connection<EventsClient>| Session::detached(conn).into_service());
    let app = axum::Router::new().route_service("/ws", endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws?token=slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let started = waiting.notified();
    let stuck = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await.map(drop) });
    within(started).await;
    within(endpoint.shutdown()).await;
    let outcome = within(stuck).await.unwrap();
    assert!(outcome.is_err(), "a hook that never decided let a client in");
}
