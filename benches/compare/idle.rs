//! The idle-memory scenario: the server in its own process, idle connections
//! opened from this one, and the server's resident memory growth per connection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stats::{Latencies, Measurement};

/// Runs in the child process: serves until stdin closes.
pub fn server_main(contender: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let url = match contender {
            "wsduplex" => {
                let running = crate::wsduplex_side::serve("127.0.0.1:0", false).await;
                let url = running.url.clone();
                std::mem::forget(running);
                url
            }
            "jsonrpsee" => {
                let running = crate::jsonrpsee_side::serve("127.0.0.1:0", 16).await;
                let url = running.url.clone();
                std::mem::forget(running);
                url
            }
            "raw" => {
                let running = crate::raw_side::serve("127.0.0.1:0").await;
                let url = running.url.clone();
                std::mem::forget(running);
                url
            }
            other => panic!("unknown contender {other}"),
        };
        println!("ready {url}");
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await.expect("stdin");
    });
}

/// The child's resident set, in bytes.
fn resident_bytes(child: &Child) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024.0
}

/// Opens `count` idle WebSocket connections to `url`.
async fn open(url: &str, count: usize) -> Vec<impl Sized> {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let mut sockets = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(100) {
        let batch = chunk.iter().map(|_| tokio_tungstenite::connect_async_with_config(url, Some(config), true));
        for connected in futures_util::future::join_all(batch).await {
            sockets.push(connected.expect("connect").0);
        }
    }
    sockets
}

pub async fn measure(contender: &str, connections: usize, settle: Duration) -> Measurement {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--idle-server", contender])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    let url = line.trim().strip_prefix("ready ").expect("ready <url>").to_owned();

    // Warm up first, so one-time allocations are not counted per connection.
    let _warm = open(&url, 100.min(connections)).await;
    tokio::time::sleep(settle).await;
    let before = resident_bytes(&child);
    let idle = open(&url, connections).await;
    tokio::time::sleep(settle).await;
    let after = resident_bytes(&child);
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
    Measurement {
        ops: connections as u64,
        elapsed: Duration::ZERO,
        latencies: Latencies::default(),
        memory_per_connection: Some((after - before).max(0.0) / connections as f64),
    }
}
