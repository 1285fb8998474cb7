//! The floor: a raw tokio-tungstenite loop that parses each JSON-RPC request
//! and writes the reply, and a raw client that does no more than that either.

use std::borrow::Cow;
use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::calls::Window;
use crate::stats::{Latencies, Measurement};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    params: (Cow<'a, str>,),
}

#[derive(Serialize)]
struct Response<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: &'a str,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    result: Cow<'a, str>,
}

pub struct Running {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A default tokio-tungstenite server, as a user would write one.
pub async fn serve(addr: &str) -> Running {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(request) = serde_json::from_str::<Request<'_>>(&text) else { continue };
                    let reply = Response { jsonrpc: "2.0", id: request.id, result: &request.params.0 };
                    let Ok(reply) = serde_json::to_string(&reply) else { continue };
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Running { url, task }
}

/// `connections` connections, each keeping `in_flight` echo requests outstanding.
pub async fn calls(url: &str, connections: usize, in_flight: usize, payload: &str, window: Window) -> Measurement {
    let measuring_from = Instant::now() + window.warmup;
    let until = measuring_from + window.measure;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, payload) = (url.to_owned(), payload.to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut socket, _) =
                tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await.expect("connect");
            let mut latencies = Latencies::default();
            let mut ops = 0u64;
            let mut next_id = 0u64;
            let mut outstanding = VecDeque::with_capacity(in_flight);
            let request = |id: u64| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo","params":["{payload}"]}}"#);
            for _ in 0..in_flight {
                outstanding.push_back(Instant::now());
                socket.send(Message::Text(request(next_id).into())).await.expect("send");
                next_id += 1;
            }
            while let Some(sent) = outstanding.pop_front() {
                let next = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next()).await;
                let Ok(Some(Ok(Message::Text(text)))) = next else { panic!("the raw server went away or stalled") };
                let reply: Reply<'_> = serde_json::from_str(&text).expect("a reply");
                assert_eq!(reply.result.len(), payload.len());
                if sent >= measuring_from {
                    latencies.record(sent.elapsed());
                    ops += 1;
                }
                let now = Instant::now();
                if now < until {
                    outstanding.push_back(now);
                    socket.send(Message::Text(request(next_id).into())).await.expect("send");
                    next_id += 1;
                }
            }
            (ops, latencies)
        }));
    }
    crate::calls::gather(tasks, measuring_from, window).await
}
