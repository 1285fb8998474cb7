//! The broadcast scenario: rounds of one-way messages to every client.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stats::{Latencies, Measurement};

/// Counts deliveries across all clients and wakes the publisher at a target.
#[derive(Default)]
pub struct Deliveries {
    count: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Deliveries {
    pub fn delivered(&self) {
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if count == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    async fn wait_for(&self, target: u64) {
        loop {
            let reached = self.reached.notified();
            if self.count.load(Ordering::Acquire) >= target {
                return;
            }
            reached.await;
        }
    }
}

/// Publishes `rounds` rounds of `per_round` messages (after one warm-up
/// round); each round ends when every client has every message of it.
pub async fn run<F, Fut>(
    clients: usize,
    rounds: usize,
    per_round: usize,
    deliveries: &Deliveries,
    mut publish: F,
) -> Measurement
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut seq = 0u64;
    let mut expected = 0u64;
    let mut latencies = Latencies::default();
    let mut measured_from = Instant::now();
    for round in 0..=rounds {
        if round == 1 {
            measured_from = Instant::now();
        }
        expected += (clients * per_round) as u64;
        deliveries.target.store(expected, Ordering::Release);
        let started = Instant::now();
        for _ in 0..per_round {
            seq += 1;
            publish(seq).await;
        }
        tokio::time::timeout(std::time::Duration::from_secs(60), deliveries.wait_for(expected)).await.unwrap_or_else(
            |_| panic!("round {round}: only {} of {expected} delivered", deliveries.count.load(Ordering::Acquire)),
        );
        if round > 0 {
            latencies.record(started.elapsed());
        }
    }
    let elapsed = measured_from.elapsed();
    Measurement { ops: (clients * per_round * rounds) as u64, elapsed, latencies, memory_per_connection: None }
}
