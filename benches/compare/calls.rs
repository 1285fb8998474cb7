//! The call scenarios, for any client that can echo a string.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::stats::{Latencies, Measurement};

/// A client of an echo method, as each contender offers one.
pub trait EchoClient: Clone + Send + Sync + 'static {
    fn echo(&self, text: String) -> impl Future<Output = String> + Send;
}

/// How long to run, and how long to warm up first.
#[derive(Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

/// Runs `callers_per_client` sequential callers on every client for the
/// window; each caller makes one call at a time and times it.
pub async fn run<C: EchoClient>(
    clients: &[C],
    callers_per_client: usize,
    payload: &str,
    window: Window,
) -> Measurement {
    let start = Instant::now();
    let measuring_from = start + window.warmup;
    let until = measuring_from + window.measure;
    let mut callers = Vec::new();
    for client in clients {
        for _ in 0..callers_per_client {
            let (client, payload) = (client.clone(), payload.to_owned());
            callers.push(tokio::spawn(async move {
                let mut latencies = Latencies::default();
                let mut ops = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let echoed = client.echo(payload.clone()).await;
                    assert_eq!(echoed.len(), payload.len(), "the echo came back wrong");
                    if sent >= measuring_from {
                        latencies.record(sent.elapsed());
                        ops += 1;
                    }
                }
                (ops, latencies)
            }));
        }
    }
    gather(callers, measuring_from, window).await
}

/// Sums what the callers counted; the window ends when the last call does.
pub async fn gather(
    callers: Vec<tokio::task::JoinHandle<(u64, Latencies)>>,
    measuring_from: Instant,
    window: Window,
) -> Measurement {
    let mut total =
        Measurement { ops: 0, elapsed: window.measure, latencies: Latencies::default(), memory_per_connection: None };
    for caller in callers {
        let (ops, latencies) = caller.await.expect("a caller panicked");
        total.ops += ops;
        total.latencies.merge(latencies);
    }
    // The last calls may end a little after the window closes.
    total.elapsed = Instant::now().saturating_duration_since(measuring_from).max(window.measure);
    total
}
