//! jsonrpsee 0.26 as a contender: its server and WebSocket client, default
//! settings but for the connection limit; broadcast in its documented
//! pattern, a subscription per client fed from a `tokio::sync::broadcast`.

use std::sync::Arc;

use futures_util::StreamExt;
use jsonrpsee::core::SubscriptionError;
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::server::{PendingSubscriptionSink, RpcModule, Server, ServerConfig, ServerHandle};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::broadcast::Deliveries;
use crate::calls::EchoClient;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tick {
    pub seq: u64,
    pub data: String,
}

pub struct Running {
    pub url: String,
    pub ticks: broadcast::Sender<Tick>,
    handle: ServerHandle,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.handle.stop();
    }
}

pub async fn serve(addr: &str, broadcast_capacity: usize) -> Running {
    let config = ServerConfig::builder().max_connections(20_000).build();
    let server = Server::builder().set_config(config).build(addr).await.expect("bind");
    let url = format!("ws://{}", server.local_addr().expect("address"));
    let (ticks, _) = broadcast::channel(broadcast_capacity);
    let mut module = RpcModule::new(ticks.clone());
    module.register_async_method("echo", |params, _, _| async move { params.one::<String>() }).expect("register echo");
    module
        .register_subscription("subscribe_ticks", "tick", "unsubscribe_ticks", |_, pending, ticks, _| async move {
            pipe_from_stream(pending, BroadcastStream::new(ticks.subscribe())).await
        })
        .expect("register subscription");
    module
        .register_subscription("subscribe_items", "item", "unsubscribe_items", |params, pending, _, _| async move {
            let text: String = params.one()?;
            let sink = pending.accept().await?;
            let mut feed = crate::streams::feed(&text);
            // As fast as the sink takes them (it waits while its buffer is full).
            loop {
                tokio::select! {
                    _ = sink.closed() => return Ok(()),
                    item = feed.recv() => {
                        let Some(item) = item else { return Ok(()) };
                        sink.send(serde_json::value::to_raw_value(&item)?).await?;
                    }
                }
            }
        })
        .expect("register the items subscription");
    let handle = server.start(module);
    Running { url, ticks, handle }
}

/// jsonrpsee's documented way to feed a subscription from a broadcast channel.
async fn pipe_from_stream(
    pending: PendingSubscriptionSink,
    mut stream: BroadcastStream<Tick>,
) -> Result<(), SubscriptionError> {
    let sink = pending.accept().await?;
    loop {
        tokio::select! {
            _ = sink.closed() => return Err("closed".into()),
            item = stream.next() => {
                let item = match item {
                    Some(Ok(item)) => item,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                };
                let message = serde_json::value::to_raw_value(&item)?;
                sink.send(message).await?;
            }
        }
    }
}

#[derive(Clone)]
pub struct Client(pub Arc<WsClient>);

impl EchoClient for Client {
    async fn echo(&self, text: String) -> String {
        self.0.request("echo", rpc_params![text]).await.expect("echo")
    }
}

pub async fn connect(url: &str) -> Client {
    Client(Arc::new(WsClientBuilder::default().build(url).await.expect("connect")))
}

/// Connects `clients` clients, each subscribed, each counting what it receives.
pub async fn broadcast_audience(
    url: &str,
    clients: usize,
    deliveries: &Arc<Deliveries>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut readers = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(64) {
        let batch = chunk.iter().map(|_| async {
            let client = WsClientBuilder::default().build(url).await.expect("connect");
            let subscription: Subscription<Tick> =
                client.subscribe("subscribe_ticks", rpc_params![], "unsubscribe_ticks").await.expect("subscribe");
            (client, subscription)
        });
        for (client, mut subscription) in futures_util::future::join_all(batch).await {
            let deliveries = deliveries.clone();
            readers.push(tokio::spawn(async move {
                let _client = client;
                while let Some(Ok(_tick)) = subscription.next().await {
                    deliveries.delivered();
                }
            }));
        }
    }
    readers
}

/// A subscription sending `payload` copies from a live feed as fast as the client takes them.
pub async fn stream(payload: &str, window: crate::calls::Window) -> crate::stats::Measurement {
    let server = serve("127.0.0.1:0", 16).await;
    // Its client drops a subscription whose consumer falls more than this
    // many values behind (1,024 by default): room for the whole window, so
    // what is measured is the throughput, not the buffer's size.
    let client = WsClientBuilder::default()
        .max_buffer_capacity_per_subscription(1 << 24)
        .build(&server.url)
        .await
        .expect("connect");
    let items: Subscription<String> =
        client.subscribe("subscribe_items", rpc_params![payload], "unsubscribe_items").await.expect("subscribe");
    crate::streams::run(items.map(|item| item.expect("item")), window).await
}
