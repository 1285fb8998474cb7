//! The stream scenarios: values sent over one connection as fast as the
//! consumer takes them, and the memory a paused consumer of a
//! million-value stream holds.
//!
//! Both contenders get their values the same way, from a task that sends
//! them into a bounded channel (a live feed, not a ready-made collection),
//! and send them with their defaults: wsduplex an `Outgoing<T>` the consumer
//! pulls from, jsonrpsee a subscription whose sink it feeds as fast as the
//! sink accepts.

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::calls::Window;
use crate::stats::{Latencies, Measurement};

/// Counts the values `items` yields during the window (after its warm-up).
pub async fn run(mut items: impl Stream<Item = String> + Unpin, window: Window) -> Measurement {
    let measuring_from = Instant::now() + window.warmup;
    let until = measuring_from + window.measure;
    let mut ops = 0u64;
    loop {
        let item = items.next().await.expect("the stream ended before the window closed");
        debug_assert!(!item.is_empty());
        let now = Instant::now();
        if now >= until {
            break;
        }
        if now >= measuring_from {
            ops += 1;
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measuring_from);
    Measurement { ops, elapsed, latencies: Latencies::default(), memory_per_connection: None }
}

/// A channel fed with copies of `payload` by a task of its own, until the
/// receiver is dropped.
pub fn feed(payload: &str) -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let payload = payload.to_owned();
    tokio::spawn(async move { while tx.send(payload.clone()).await.is_ok() {} });
    rx
}

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}

/// The memory a paused consumer of a million-value stream costs, both ends
/// in one fresh process (see `wsduplex_side::paused_stream_main`).
pub fn paused_memory() -> Measurement {
    let exe = std::env::current_exe().expect("current exe");
    let output =
        std::process::Command::new(exe).arg("--paused-stream").output().expect("run the paused-stream process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let grown: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("grown "))
        .and_then(|bytes| bytes.trim().parse().ok())
        .unwrap_or_else(|| panic!("the paused-stream process printed {stdout:?}"));
    Measurement {
        ops: 0,
        elapsed: std::time::Duration::ZERO,
        latencies: Latencies::default(),
        memory_per_connection: Some(grown),
    }
}
