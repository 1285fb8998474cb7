//! A real `redis-server` for a test or a benchmark: on a free port,
//! persistence off, killed with its owner, and restartable on the same port.
//! (Self-contained: the benchmark harness includes this file too.)

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Every wait here is bounded: a stuck Redis fails the test instead of hanging it.
async fn within_for<F: std::future::Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future).await.expect("timed out waiting for redis-server")
}

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port; `None` (with a note) when `redis-server` is
    /// not installed and `WSDUPLEX_REQUIRE_REDIS` is not `1`.
    pub async fn start() -> Option<RedisServer> {
        if Command::new("redis-server").arg("--version").output().await.is_err() {
            if std::env::var("WSDUPLEX_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("WSDUPLEX_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        // A free port, as far as anyone can tell: another test may take it
        // first, so a server that cannot start there tries another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut server = RedisServer { port, child: None };
            if server.try_start().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) on its port, and returns once it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.try_start().await, "redis-server exited before it was ready");
    }

    /// Starts the server on its port; false if it exits before it is ready.
    async fn try_start(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = within_for(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        if !ready {
            return false;
        }
        // Keep reading its log, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        true
    }

    /// Kills the server at once, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// A plain connection, to look at the server from outside.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        within_for(Duration::from_secs(20), client.get_multiplexed_async_connection()).await.unwrap()
    }

    /// How many subscribers `channel` has.
    pub async fn subscribers(&self, channel: &str) -> usize {
        let mut connection = self.connection().await;
        let counts: Vec<(String, usize)> = within_for(
            Duration::from_secs(20),
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut connection),
        )
        .await
        .unwrap();
        counts.first().map_or(0, |(_, count)| *count)
    }

    /// Waits until `channel` has `count` subscribers (nodes subscribe and
    /// unsubscribe in the background; Redis is asked until it agrees).
    pub async fn wait_for_subscribers(&self, channel: &str, count: usize) {
        within_for(Duration::from_secs(20), async {
            while self.subscribers(channel).await != count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}
