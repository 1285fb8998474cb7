//! Soak: thousands of connect, call, callback, disconnect cycles, some of
//! them cut off mid-call; afterwards the server holds no connection, no hub
//! member and no task.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use wsduplex::{Client, Connection, Error, Hub, Server};

const CYCLES: usize = 3000;
const AT_ONCE: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sessions_leave_nothing_behind() {
    let hub = Hub::<EventsClient>::new();
    let observed = Arc::new(Observed::default());
    let server = within(Server::builder().hub(&hub).build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let handle = {
        let (hub, observed) = (hub.clone(), observed.clone());
        server.start(move |conn: Connection<EventsClient>| {
            Session { conn, hub: hub.clone(), observed: observed.clone() }.into_service()
        })
    };
    let metrics = tokio::runtime::Handle::current().metrics();
    // The accept loop.
    let idle_tasks = metrics.num_alive_tasks();

    let start = Instant::now();
    let cycles = futures_util::stream::iter(0..CYCLES).for_each_concurrent(AT_ONCE, |n| {
        let url = url.clone();
        async move {
            let client = ServiceClient::connect_with(Client::builder(), &url, Listener::default()).await.unwrap();
            let mut hanging = std::pin::pin!(client.hang());
            let cut_off = n % 4 == 0;
            if cut_off {
                // Queues the call that never ends, ahead of the ones below.
                assert!(futures_util::poll!(hanging.as_mut()).is_pending());
            }
            assert_eq!(client.echo(n.to_string()).await.unwrap(), n.to_string());
            assert_eq!(client.ask(format!("q{n}")).await.unwrap(), format!("answer to q{n}"));
            assert!(client.join(format!("room{}", n % 7)).await.unwrap());
            client.caller().close();
            if cut_off {
                // Closed while the server still runs that call.
                assert!(matches!(hanging.await, Err(Error::Closed)));
            }
            client.caller().closed().await;
        }
    });
    within_for(Duration::from_secs(300), cycles).await;
    let elapsed = start.elapsed();

    within(async {
        while handle.connection_count() > 0
            || !hub.connection_ids().is_empty()
            || metrics.num_alive_tasks() > idle_tasks
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!((0..7).all(|room| hub.group_members(&format!("room{room}")).is_empty()));
    let cut_off = CYCLES.div_ceil(4);
    assert_eq!(observed.hangs_started.load(Ordering::SeqCst), cut_off);
    assert_eq!(observed.hangs_dropped.load(Ordering::SeqCst), cut_off, "every cut-off call's handler was dropped");
    println!("{CYCLES} cycles in {elapsed:?}; back to {} connections and {idle_tasks} task", handle.connection_count());

    // And the server still serves.
    let client = within(ServiceClient::connect_with(Client::builder(), &url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("after".into())).await.unwrap(), "after");
}
