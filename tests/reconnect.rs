//! Client resilience over real loopback sockets: the server goes away and a
//! new one starts on the same port; the client reconnects with backoff, runs
//! its hook once per reconnect, lets waiting calls through, keeps one-way
//! messages, and gets callbacks again. Backoff is timed on the paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::sync::watch;
use tokio::time::Instant;
use wsduplex::{
    Client, Error, Server, client::ConnectionState, client::ReconnectPolicy, server::Identity, server::Refusal,
};

fn fast() -> ReconnectPolicy {
    ReconnectPolicy::exponential(Duration::from_millis(10), Duration::from_millis(200))
}

/// A server whose shutdown does not wait for running calls.
fn impatient() -> wsduplex::server::ServerBuilder {
    Server::builder().shutdown_timeout(Duration::ZERO)
}

/// Waits until the state is one that `wanted` accepts, and returns it.
async fn state_until(
    state: &mut watch::Receiver<ConnectionState>,
    wanted: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    within(async {
        loop {
            let now = state.borrow_and_update().clone();
            if wanted(&now) {
                return now;
            }
            state.changed().await.expect("the client is gone");
        }
    })
    .await
}

fn reconnecting(state: &ConnectionState) -> bool {
    matches!(state, ConnectionState::Reconnecting { .. })
}

#[tokio::test]
async fn the_client_reconnects_runs_its_hook_and_serves_callbacks_again() {
    let server = start_server_with(impatient()).await;
    let addr = server.addr;
    let hooks = Arc::new(AtomicUsize::new(0));
    let listener = Listener::default();
    let counted = hooks.clone();
    let builder = Client::builder().reconnect(fast()).on_reconnect(move |client| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            // The server kept nothing: join the room again.
            assert!(ServiceClient::new(client).join("room".into()).await.unwrap());
        }
    });
    let client = within(ServiceClient::connect_with(builder, &server.url, listener.clone())).await.unwrap();
    assert!(within(client.join("room".into())).await.unwrap());
    let mut state = client.caller().state();
    assert_eq!(*state.borrow(), ConnectionState::Connected);

    // A call in flight when the server goes fails with Closed; it is not sent again.
    let started = server.observed.hang_started.notified();
    let hanging = tokio::spawn({
        let client = client.clone();
        async move { client.hang().await }
    });
    within(started).await;
    within(server.handle.shutdown()).await;
    assert!(matches!(within(hanging).await.unwrap(), Err(Error::Closed)));
    state_until(&mut state, reconnecting).await;

    // During the outage: a call waits, a one-way message is kept.
    let during = tokio::spawn({
        let client = client.clone();
        async move { client.echo("made during the outage".into()).await }
    });
    within(client.note("kept".into())).await.unwrap();

    let server = start_server_on(impatient(), addr).await;
    assert_eq!(within(during).await.unwrap().unwrap(), "made during the outage");
    assert_eq!(state_until(&mut state, |s| *s == ConnectionState::Connected).await, ConnectionState::Connected);
    assert_eq!(hooks.load(Ordering::SeqCst), 1, "the hook runs once per reconnect");
    assert_eq!(server.observed.hangs_started.load(Ordering::SeqCst), 0, "the call in flight was not sent again");
    let noted = server.observed.noted.notified();
    if server.observed.notes.lock().unwrap().is_empty() {
        within(noted).await;
    }
    assert_eq!(*server.observed.notes.lock().unwrap(), ["kept"]);
    // The hook re-joined the room: callbacks reach the client again.
    let heard = listener.heard_signal.notified();
    server.hub.group("room").heard("welcome back".into()).await.unwrap();
    within(heard).await;
    assert_eq!(*listener.heard.lock().unwrap(), ["welcome back"]);
}

#[tokio::test]
async fn with_fail_while_disconnected_calls_fail_at_once_and_the_buffer_is_bounded() {
    let server = start_server_with(impatient()).await;
    let builder = Client::builder().reconnect(fast()).fail_while_disconnected().offline_buffer(2);
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let mut state = client.caller().state();
    within(server.handle.shutdown()).await;
    state_until(&mut state, reconnecting).await;
    assert!(matches!(within(client.echo("now".into())).await, Err(Error::Closed)));
    within(client.note("one".into())).await.unwrap();
    within(client.note("two".into())).await.unwrap();
    assert!(matches!(within(client.note("three".into())).await, Err(Error::OfflineBufferFull(2))));
}

#[tokio::test]
async fn a_server_that_refuses_the_handshake_is_not_tried_again() {
    let server = start_server_with(impatient()).await;
    let addr = server.addr;
    let attempts = Arc::new(AtomicUsize::new(0));
    let builder = Client::builder().reconnect(fast());
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let mut state = client.caller().state();
    within(server.handle.shutdown()).await;
    let counted = attempts.clone();
    let _refusing = start_server_on(
        impatient().authenticate(move |_: &wsduplex::server::Handshake| -> Result<Identity, Refusal> {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(Refusal::unauthorized("no more"))
        }),
        addr,
    )
    .await;
    let closed = state_until(&mut state, |s| matches!(s, ConnectionState::Closed { .. })).await;
    match closed {
        ConnectionState::Closed { error: Some(error), .. } => assert!(error.contains("HTTP 401"), "{error}"),
        other => panic!("expected closed with the refusal, got {other:?}"),
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(matches!(within(client.echo("x".into())).await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_between_attempts_and_gives_up_after_the_last() {
    let server = start_server_with(impatient()).await;
    let policy =
        ReconnectPolicy::exponential(Duration::from_secs(1), Duration::from_secs(4)).jitter(0.0).max_attempts(4);
    let builder = Client::builder().reconnect(policy);
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let mut state = client.caller().state();
    within(server.handle.shutdown()).await;
    let lost = Instant::now();
    // Nothing listens any more: each attempt is refused at once.
    let (mut seen, mut dialled) = (Vec::new(), Vec::new());
    let closed = within_for(Duration::from_secs(120), async {
        loop {
            let now = state.borrow_and_update().clone();
            match now {
                ConnectionState::Reconnecting { attempt, .. } => seen.push((attempt, lost.elapsed())),
                ConnectionState::Connecting { attempt } => dialled.push((attempt, lost.elapsed())),
                _ => {}
            }
            if matches!(now, ConnectionState::Closed { .. }) {
                return lost.elapsed();
            }
            state.changed().await.unwrap();
        }
    })
    .await;
    let secs = Duration::from_secs;
    // Attempt n waits its turn from when attempt n-1 failed, and dials after
    // delays of 1, 2, 4 and 4 s (the maximum).
    assert_eq!(seen, [(1, secs(0)), (2, secs(1)), (3, secs(3)), (4, secs(7))]);
    // (A dial refused at once may replace its Connecting state before this
    // test sees it: those it saw came at the right times.)
    let dial_times = [secs(1), secs(3), secs(7), secs(11)];
    assert!(dialled.iter().all(|&(attempt, at)| dial_times[attempt as usize - 1] == at), "{dialled:?}");
    assert_eq!(closed, secs(11));
    assert!(client.caller().is_closed());
}

#[tokio::test]
async fn a_hook_that_panics_does_not_keep_the_connection_shut_and_close_ends_a_hanging_one() {
    let server = start_server_with(impatient()).await;
    let addr = server.addr;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let builder = Client::builder().reconnect(fast()).on_reconnect(move |_client| {
        let run = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if run == 0 {
                panic!("this hook panics on purpose");
            }
            std::future::pending::<()>().await
        }
    });
    let client = within(ServiceClient::connect_with(builder, &server.url, Listener::default())).await.unwrap();
    let mut state = client.caller().state();

    // First reconnect: the hook panics; the connection opens anyway.
    within(server.handle.shutdown()).await;
    state_until(&mut state, reconnecting).await;
    let server = start_server_on(impatient(), addr).await;
    state_until(&mut state, |s| *s == ConnectionState::Connected).await;
    assert_eq!(within(client.echo("after a panicking hook".into())).await.unwrap(), "after a panicking hook");

    // Second reconnect: the hook hangs; close() ends the client all the same.
    within(server.handle.shutdown()).await;
    state_until(&mut state, reconnecting).await;
    let _server = start_server_on(impatient(), addr).await;
    within(async {
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    client.caller().close();
    let closed = state_until(&mut state, |s| matches!(s, ConnectionState::Closed { .. })).await;
    assert!(matches!(closed, ConnectionState::Closed { error: None, .. }), "{closed:?}");
    assert!(matches!(within(client.echo("x".into())).await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_drops_every_connection_at_once_is_not_redialled_forever() {
    let flapping = impatient().on_connect(|conn: &wsduplex::Connection| conn.close(1008, "go away"));
    let server = start_server_with(flapping).await;
    let policy =
        ReconnectPolicy::exponential(Duration::from_secs(1), Duration::from_secs(8)).jitter(0.0).max_attempts(3);
    let start = Instant::now();
    let client =
        within(ServiceClient::connect_with(Client::builder().reconnect(policy), &server.url, Listener::default()))
            .await
            .unwrap();
    let mut state = client.caller().state();
    // Each connection is dropped at once, so the attempts add up: 1, 2, then 4 s, then it gives up.
    let closed = within_for(Duration::from_secs(120), async {
        loop {
            if matches!(*state.borrow_and_update(), ConnectionState::Closed { .. }) {
                return start.elapsed();
            }
            state.changed().await.unwrap();
        }
    })
    .await;
    assert!(closed >= Duration::from_secs(7), "gave up after {closed:?}");
    assert!(closed < Duration::from_secs(8), "gave up after {closed:?}");
}
