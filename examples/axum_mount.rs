//! Run with: cargo run --example axum_mount --features axum -- --listen 127.0.0.1:8080
//!
//! The endpoint mounted on an axum router next to other routes, served with
//! `Endpoint::serve_with_shutdown` (which bounds the HTTP phase, as the
//! standalone server does) until Ctrl-C. `--once` calls the endpoint from a
//! client in this process, then shuts down.

use axum::Router;
use axum::routing::get;
use clap::Parser;
use wsduplex::{Connection, Server};

#[wsduplex::service(namespace = "clock")]
pub trait Clock {
    /// Seconds since the Unix epoch.
    async fn now(&self) -> u64;
}

struct Ticking;

impl Clock for Ticking {
    async fn now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

#[derive(Parser)]
struct Options {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Call the endpoint once, then shut down.
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let endpoint = Server::builder().endpoint(|_conn: Connection| Ticking.into_service());
    let app = Router::new()
        .route("/", get(|| async { "the page; the clock is at /ws" }))
        .route_service("/ws", endpoint.clone());
    let listener = tokio::net::TcpListener::bind(&options.listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/ (WebSocket at ws://{addr}/ws)");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            let signal = async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = stopped => {}
                }
            };
            endpoint.serve_with_shutdown(listener, app, signal).await
        }
    });
    if options.once {
        let clock = ClockClient::connect(&format!("ws://{addr}/ws")).await?;
        println!("the clock says {}", clock.now().await?);
        let _ = stop.send(());
    }
    serving.await?;
    println!("shut down");
    Ok(())
}
