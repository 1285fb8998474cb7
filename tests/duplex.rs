//! Calls, callbacks, one-way messages, fan-out, cancellation and closing,
//! between typed clients and a server over real loopback sockets.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use wsduplex::{CallError, Client, CloseReason, Connection, Error, Server, contract::TwoWay};

/// Connects a typed client, and waits until the server has registered the
/// connection (the client's handshake completes before that).
async fn client(server: &mut TestServer) -> (ServiceClient, Listener, Connection<EventsClient>) {
    let listener = Listener::default();
    let client = within(ServiceClient::connect(&server.url, listener.clone())).await.unwrap();
    let conn = within(server.connections.recv()).await.unwrap();
    (client, listener, conn)
}

#[tokio::test]
async fn typed_calls_round_trip() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    assert_eq!(within(client.echo("hi".into())).await.unwrap(), "hi");
    assert_eq!(within(client.add(1, 2, Some(3))).await.unwrap(), 6);
    assert_eq!(within(client.add(1, 2, None)).await.unwrap(), 3);
    assert_eq!(within(client.original()).await.unwrap(), "renamed on the wire");
}

#[tokio::test]
async fn a_handler_error_arrives_as_its_own_error_object() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    match within(client.refuse("no reason".into())).await {
        Err(CallError::Call(Error::Rpc(object))) => {
            assert_eq!(object.code(), 4001);
            assert_eq!(object.message(), "refused");
            assert_eq!(object.data().map(|d| d.get()), Some("\"no reason\""));
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_error_and_the_connection_lives_on() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    match within(client.panic()).await {
        Err(Error::Rpc(object)) => assert_eq!(object.code(), wsduplex::codes::INTERNAL_ERROR),
        other => panic!("expected an internal error, got {other:?}"),
    }
    // A panic while serializing the reply is caught the same way.
    match within(client.caller().call::<_, ()>("t.explode", (), None)).await {
        Err(Error::Rpc(object)) => assert_eq!(object.code(), wsduplex::codes::INTERNAL_ERROR),
        other => panic!("expected an internal error, got {other:?}"),
    }
    assert_eq!(within(client.echo("still here".into())).await.unwrap(), "still here");
}

#[tokio::test]
async fn the_server_calls_the_client_back_and_awaits_its_answer() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    assert_eq!(within(client.ask("life".into())).await.unwrap(), "answer to life");
}

#[tokio::test]
async fn one_way_messages_go_both_ways() {
    let mut server = start_server().await;
    let (client, listener, conn) = client(&mut server).await;
    let noted = server.observed.noted.notified();
    within(client.note("from the client".into())).await.unwrap();
    within(noted).await;
    assert_eq!(*server.observed.notes.lock().unwrap(), ["from the client"]);

    let heard = listener.heard_signal.notified();
    within(conn.callback().heard("from the server".into())).await.unwrap();
    within(heard).await;
    assert_eq!(*listener.heard.lock().unwrap(), ["from the server"]);
}

/// Waits until `listener` has heard `count` messages.
async fn heard(listener: &Listener, count: usize) -> Vec<String> {
    within(async {
        loop {
            let signal = listener.heard_signal.notified();
            if listener.heard.lock().unwrap().len() >= count {
                return listener.heard.lock().unwrap().clone();
            }
            signal.await;
        }
    })
    .await
}

#[tokio::test]
async fn the_hub_fans_out_to_a_group_and_to_everyone() {
    let mut server = start_server().await;
    let (alice, alice_hears, _) = client(&mut server).await;
    let (bob, bob_hears, _) = client(&mut server).await;
    let (_carol, carol_hears, _) = client(&mut server).await;
    assert!(within(alice.join("g".into())).await.unwrap());
    assert!(within(bob.join("g".into())).await.unwrap());
    assert!(!within(bob.join("g".into())).await.unwrap(), "joining twice is a no-op");

    within(alice.shout("g".into(), "to the group".into())).await.unwrap();
    // Then a message to everyone: carol's first message shows she got nothing before it.
    within(server.hub.all().heard("to all".into())).await.unwrap();

    assert_eq!(heard(&alice_hears, 2).await, ["to the group", "to all"]);
    assert_eq!(heard(&bob_hears, 2).await, ["to the group", "to all"]);
    assert_eq!(heard(&carol_hears, 1).await, ["to all"]);
}

#[tokio::test]
async fn a_connection_leaves_its_groups_when_it_closes() {
    let mut server = start_server().await;
    let (alice, _, conn) = client(&mut server).await;
    within(alice.join("g".into())).await.unwrap();
    assert_eq!(server.hub.group_members("g"), [conn.id()]);
    alice.caller().close();
    within(conn.closed()).await;
    assert!(server.hub.group_members("g").is_empty());
    assert!(!server.hub.contains(conn.id()));
}

#[tokio::test]
async fn hub_targets_reach_one_connection_or_all_but_one() {
    let mut server = start_server().await;
    let (_a, a_hears, a) = client(&mut server).await;
    let (_b, b_hears, _) = client(&mut server).await;

    within(server.hub.except(a.id()).heard("not for a".into())).await.unwrap();
    within(server.hub.connection(a.id()).heard("only for a".into())).await.unwrap();
    let answer = within(server.hub.connection(a.id()).answer("q".into())).await.unwrap();
    assert_eq!(answer, "answer to q");

    assert_eq!(heard(&a_hears, 1).await, ["only for a"]);
    assert_eq!(heard(&b_hears, 1).await, ["not for a"]);
}

/// A callback handler that calls the server back while answering.
#[derive(Clone, Default)]
struct Reentrant {
    client: Arc<OnceLock<ServiceClient>>,
}

impl Events for Reentrant {
    async fn answer(&self, question: String) -> String {
        let client = self.client.get().expect("client set before the first call");
        let echoed = client.echo(question).await.unwrap();
        format!("{echoed}, echoed from inside a callback")
    }

    async fn heard(&self, _: String) {}
}

#[tokio::test]
async fn a_handler_awaiting_a_callback_does_not_block_other_calls_on_its_connection() {
    let server = start_server().await;
    let handler = Reentrant::default();
    let client = within(ServiceClient::connect(&server.url, handler.clone())).await.unwrap();
    handler.client.set(client.clone()).unwrap();
    // client -> server.ask -> client.answer -> server.echo -> back up the chain,
    // all on one connection, with both ends waiting on each other.
    let answer = within(client.ask("ping".into())).await.unwrap();
    assert_eq!(answer, "ping, echoed from inside a callback");
}

#[tokio::test]
async fn callbacks_keep_flowing_while_requests_wait_for_a_slot() {
    // Two slots and twenty calls, each waiting for a callback whose reply
    // arrives behind the queued requests: the server keeps reading to see it.
    let mut server = start_server_with(Server::builder().max_in_flight(2)).await;
    let (client, _, _) = client(&mut server).await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.ask(format!("q{i}")).await })
        })
        .collect();
    let mut answered = 0;
    for (i, call) in calls.into_iter().enumerate() {
        match within(call).await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer, format!("answer to q{i}"));
                answered += 1;
            }
            // Past the slots and the parked frames, excess requests are refused, not stalled.
            // The refusal is not `ask`'s own error (`Error` decodes only the codes it answers with).
            Err(CallError::Call(Error::Rpc(object))) if object.code() == wsduplex::codes::SERVER_BUSY => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(answered >= 4, "the running and the parked calls are answered; got {answered}");
}

#[tokio::test]
async fn calls_past_the_limit_queue_instead_of_failing() {
    let mut server = start_server_with(Server::builder().max_in_flight(8)).await;
    let (client, _, _) = client(&mut server).await;
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.ask(format!("q{i}")).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(within(call).await.unwrap().unwrap(), format!("answer to q{i}"));
    }
}

#[tokio::test]
async fn later_calls_are_answered_while_an_earlier_one_is_still_running() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    let started = server.observed.hang_started.notified();
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.hang().await })
    };
    within(started).await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.echo(format!("call {i}")).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(within(call).await.unwrap().unwrap(), format!("call {i}"));
    }
    assert!(!first.is_finished(), "the first call never gets an answer");
    first.abort();
}

#[tokio::test]
async fn dropping_a_call_stops_its_handler_on_the_server() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    let started = server.observed.hang_started.notified();
    let call = tokio::spawn(async move { client.hang().await });
    within(started).await;
    let dropped = server.observed.hang_dropped.notified();
    call.abort();
    within(dropped).await;
    assert_eq!(server.observed.hangs_dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_call_past_its_deadline_fails_with_timeout_and_is_cancelled() {
    let mut server = start_server().await;
    let (client, _, _) = client(&mut server).await;
    let dropped = server.observed.hang_dropped.notified();
    // The handler never answers, so the outcome cannot depend on timing.
    let error = within(client.with_timeout(Duration::from_millis(100)).hang()).await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    within(dropped).await;
}

#[tokio::test]
async fn waiting_calls_fail_with_closed_as_soon_as_the_connection_closes() {
    let mut server = start_server().await;
    let builder = Client::builder().call_timeout(Duration::from_secs(3600));
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let conn = within(server.connections.recv()).await.unwrap();
    let started = server.observed.hang_started.notified();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.hang().await })
    };
    within(started).await;
    conn.close(1000, "bye");
    let error = within(waiting).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    assert_eq!(within(client.caller().closed()).await, CloseReason::ClosedByPeer { code: 1000, reason: "bye".into() });
    // A call on a closed connection fails at once.
    assert!(matches!(within(client.echo("x".into())).await, Err(Error::Closed)));
}

#[tokio::test]
async fn a_callback_to_a_closed_client_fails_with_closed() {
    let mut server = start_server().await;
    let (client, _, conn) = client(&mut server).await;
    client.caller().close();
    within(conn.closed()).await;
    let error = within(conn.callback().answer("anyone?".into())).await.unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    let error = within(server.hub.connection(conn.id()).answer("anyone?".into())).await.unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
}

#[tokio::test]
async fn the_connection_handle_describes_the_handshake() {
    let mut server = start_server().await;
    let builder =
        Client::builder().header(http::HeaderName::from_static("x-test"), http::HeaderValue::from_static("yes"));
    let _client = within(
        Client::builder().connect(&format!("{}?room=1", server.url), wsduplex::contract::NoCallbacks::service()),
    )
    .await
    .unwrap();
    let first = within(server.connections.recv()).await.unwrap();
    assert_eq!(first.uri().query(), Some("room=1"));
    let _second = within(builder.connect(&server.url, wsduplex::contract::NoCallbacks::service())).await.unwrap();
    let second = within(server.connections.recv()).await.unwrap();
    assert_eq!(second.headers().get("x-test").unwrap(), "yes");
    assert_eq!(second.remote_addr().map(|a| a.ip()), Some([127, 0, 0, 1].into()));
    assert_ne!(first.id(), second.id());
}

#[tokio::test]
async fn untyped_calls_use_the_same_engine() {
    let server = start_server().await;
    let client =
        within(Client::builder().connect(&server.url, wsduplex::contract::NoCallbacks::service())).await.unwrap();
    // By position this time, as any JSON-RPC client may send them.
    let sum: i64 = within(client.call("t.add", (2, 3), None)).await.unwrap();
    assert_eq!(sum, 5);
    let error = within(client.call::<_, ()>("t.nope", (), None)).await.unwrap_err();
    assert!(matches!(error, Error::Rpc(o) if o.code() == wsduplex::codes::METHOD_NOT_FOUND));
}

/// The client's address comes from axum's `ConnectInfo`, which wsduplex
/// reads with its `axum` feature.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_endpoint_mounts_on_an_axum_router_next_to_other_routes() {
    use axum::routing::get;
    use std::net::SocketAddr;

    let hub = wsduplex::Hub::<EventsClient>::new();
    let observed = Arc::new(Observed::default());
    let (connections, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let endpoint = Server::builder().hub(&hub).endpoint({
        let hub = hub.clone();
        move |conn: wsduplex::Connection<EventsClient>| {
            let _ = connections.send(conn.clone());
            Session { conn, hub: hub.clone(), observed: observed.clone() }.into_service()
        }
    });
    let app = axum::Router::new().route("/health", get(|| async { "ok" })).route_service("/api/v1/rpc", endpoint);
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving =
        tokio::spawn(
            async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await },
        );

    let client = within(ServiceClient::connect(&format!("ws://{addr}/api/v1/rpc"), Listener::default())).await.unwrap();
    assert_eq!(within(client.ask("mounted".into())).await.unwrap(), "answer to mounted");
    let conn = within(opened.recv()).await.unwrap();
    assert_eq!(conn.remote_addr().map(|a| a.ip()), Some([127, 0, 0, 1].into()));
    assert_eq!(conn.uri().path(), "/api/v1/rpc");
    assert_eq!(hub.connection_ids(), [conn.id()]);

    // The app's other routes still answer plain HTTP.
    let mut stream = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await.unwrap();
    let mut response = String::new();
    within(stream.read_to_string(&mut response)).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("ok"), "{response}");
    serving.abort();
}

#[test]
fn contract_metadata_is_available_at_run_time() {
    use wsduplex::{contract::Contract, contract::ContractKind};
    let info = <ServiceClient as Contract>::info();
    assert_eq!((info.name, info.namespace, info.kind), ("Service", Some("t"), ContractKind::Service));
    assert_eq!(info.docs, "The server side of the test contract.");
    let add = info.method("t.add").unwrap();
    let params: Vec<_> = add.params.iter().map(|p| (p.name, p.ty)).collect();
    assert_eq!(params, [("a", "i64"), ("b", "i64"), ("c", "Option<i64>")]);
    assert_eq!(add.returns, "i64");
    assert!(!add.oneway);
    assert!(info.method("t.note").unwrap().oneway);
    assert_eq!(info.method("t.renamed").unwrap().name, "original");
    assert_eq!(info.method("t.echo").unwrap().docs, "Echoes its argument.");
    assert_eq!(info.method("t.refuse").unwrap().returns, "Result<u8, TestError>");

    let events = <EventsClient as Contract>::info();
    assert_eq!(events.kind, ContractKind::Callback);
    let wire_names: Vec<_> = events.methods.iter().map(|m| m.wire_name).collect();
    assert_eq!(wire_names, ["t.answer", "t.heard"]);
}

#[tokio::test]
async fn connecting_to_something_that_is_not_a_websocket_fails_clearly() {
    use axum::routing::get;
    let app = axum::Router::new().route("/plain", get(|| async { "just http" }));
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let error =
        within(Client::builder().connect(&format!("ws://{addr}/plain"), wsduplex::contract::NoCallbacks::service()))
            .await
            .unwrap_err();
    assert!(matches!(error, Error::Refused { status: 200 }), "{error:?}");
    assert!(error.to_string().contains("HTTP 200"), "{error}");

    let error = within(Client::builder().connect("http://127.0.0.1:1/", wsduplex::contract::NoCallbacks::service()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ws://"), "{error}");
    serving.abort();
    // Nothing listens there any more, or ever did: the connection is refused.
    let refused =
        within(Client::builder().connect("ws://127.0.0.1:1/", wsduplex::contract::NoCallbacks::service())).await;
    assert!(matches!(refused, Err(Error::Transport(_))), "{refused:?}");
}

/// Without the `tls` feature a `wss://` URL fails with an error that says so.
#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn a_build_without_tls_refuses_wss_urls_by_name() {
    let listener = within(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let url = format!("wss://{}/", listener.local_addr().unwrap());
    let error = within(ServiceClient::connect(&url, Listener::default())).await.unwrap_err();
    assert!(error.to_string().contains("`tls` feature"), "{error}");
}
