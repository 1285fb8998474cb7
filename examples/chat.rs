//! Run with: cargo run --example chat --all-features
//!
//! A chat server with rooms, nicks, messages and invites, speaking exactly the
//! wire contract of docs/chat-contract.md. The WebSocket endpoint is
//! mounted at `/ws` on an axum router, next to the chat page at `/` and the
//! browser modules it uses: `clients/js/wsduplex.js` at `/wsduplex.js`, and
//! `clients/js/chat.js` at `/chat.js`, the chat client generated from the
//! Rust contract. Every WebSocket client can ask `rpc.discover` for the
//! contract's OpenRPC document.
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:8080); `--callback-timeout-ms N`
//! (default 10000), how long an invite waits for the invitee's answer;
//! `--max-message-bytes N` (default 10 MiB), `--max-connections N` (default
//! 10000) and `--handshake-timeout-ms N` (default 10000, how long a client may
//! take over each HTTP request head), the server's limits; `--rate-limit N`
//! (messages a second per connection, in bursts of N: past it, calls get
//! -32029 and `chat.say` is dropped); `--token SECRET` (then a client must send
//! `Authorization: Bearer SECRET` or `?token=SECRET`, or gets 401);
//! `--admin-token SECRET` (a client sending that token instead gets the
//! role `admin`, which `chat.kick` requires);
//! `--allow-origin ORIGIN`, repeatable (a browser page from any other origin
//! gets 403); `--tls-cert FILE --tls-key FILE` (PEM), to serve `https://` and
//! `wss://`. The first line printed is `listening on http://ADDR` (or
//! `https://`), with the bound address. Ctrl-C shuts down
//! gracefully: every client gets close code 1001.
//!
//! `--metrics ADDR` serves the server's metrics (wsduplex's, listed in the
//! README) in the Prometheus text format at `http://ADDR/metrics`, and prints
//! `metrics on http://ADDR/metrics` as the second line.
//!
//! `--redis URL` (`redis://host:port/`) makes this server one of several:
//! rooms and nicks live in Redis, and the hub's fan-out, invites (callbacks
//! with replies) and room changes reach clients on every chat server on that
//! Redis, so two servers behave as one.
//!
//! `--emit-ts DIR` writes the TypeScript client of the chat contract
//! (`chat.js` and `chat.d.ts`) into `DIR` and exits, without serving:
//! `cargo run --example chat --all-features -- --emit-ts clients/js` regenerates the
//! checked-in copy the page uses.

#[path = "shared/chat_contract.rs"]
mod chat_contract;
#[path = "shared/chat_rooms.rs"]
mod chat_rooms;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use axum::serve::ListenerExt;
use chat_contract::{Chat, ChatClient, ChatError, ChatEventsClient};
use chat_rooms::{RedisRooms, Rooms};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use wsduplex::{
    Connection, ConnectionId, Hub, Server, rate_limit::RateLimit, redis::RedisBackplane, redis::RedisOptions,
    server::Handshake, server::Identity, server::Refusal, server::ServerBuilder, tls::Tls, tls::TlsListener,
};

/// The chat server: rooms, nicks, invites, over wsduplex, with its page at `/`.
#[derive(clap::Parser)]
struct Options {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How long an invite waits for the invitee's answer, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    callback_timeout_ms: u64,
    /// The largest message accepted, in bytes.
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// The most connections at once.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Messages a second each connection may send (in bursts of as many); past it, -32029.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// How long a client may take to send its upgrade request, in milliseconds.
    #[arg(long)]
    handshake_timeout_ms: Option<u64>,
    /// A token clients must send (`Authorization: Bearer` or `?token=`).
    #[arg(long)]
    token: Option<String>,
    /// A token that makes its client an admin, who may kick others.
    #[arg(long)]
    admin_token: Option<String>,
    /// A page origin allowed to connect (repeatable); others get 403.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// A PEM certificate chain, to serve `https://` and `wss://`.
    #[arg(long)]
    tls_cert: Option<String>,
    /// The certificate's PEM private key.
    #[arg(long)]
    tls_key: Option<String>,
    /// Writes the chat's TypeScript client into this directory, and exits.
    #[arg(long)]
    emit_ts: Option<String>,
    /// Serves Prometheus metrics at `http://ADDR/metrics`.
    #[arg(long)]
    metrics: Option<String>,
    /// Makes this server one of several sharing rooms and nicks in Redis.
    #[arg(long)]
    redis: Option<String>,
}

impl Options {
    /// TLS from `--tls-cert` and `--tls-key`, which come together or not at all.
    fn tls(&self) -> Result<Option<Tls>, Box<dyn std::error::Error>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(Tls::from_pem_files(cert, key)?)),
            (None, None) => Ok(None),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }

    fn server(&self) -> ServerBuilder {
        let mut server = Server::builder().call_timeout(Duration::from_millis(self.callback_timeout_ms));
        if let Some(bytes) = self.max_message_bytes {
            server = server.max_message_size(bytes);
        }
        if let Some(limit) = self.max_connections {
            server = server.max_connections(limit);
        }
        if let Some(messages) = self.rate_limit {
            server = server.rate_limit(RateLimit::messages_per_second(messages));
        }
        if let Some(millis) = self.handshake_timeout_ms {
            server = server.handshake_timeout(Duration::from_millis(millis));
        }
        for origin in &self.allow_origins {
            server = server.allow_origin(origin);
        }
        if self.token.is_some() || self.admin_token.is_some() {
            let (token, admin_token) = (self.token.clone(), self.admin_token.clone());
            server = server.authenticate(move |handshake: &Handshake| {
                // Browsers cannot set headers on a WebSocket: they send the token in the query.
                let offered = handshake.bearer_token().map(str::to_owned).or_else(|| handshake.query("token"));
                let matches =
                    |secret: &Option<String>, offered: &str| secret.as_deref().is_some_and(|s| same_secret(offered, s));
                match offered {
                    Some(offered) if matches(&admin_token, &offered) => Ok(Identity::anonymous().with_role("admin")),
                    Some(offered) if matches(&token, &offered) => Ok(Identity::anonymous()),
                    Some(_) => Err(Refusal::unauthorized("wrong token")),
                    // Without --token, anyone may chat; the admin token only adds a role.
                    None if token.is_none() => Ok(Identity::anonymous()),
                    None => {
                        Err(Refusal::unauthorized("a token is required: Authorization: Bearer TOKEN or ?token=TOKEN"))
                    }
                }
            });
        }
        server
    }
}

/// Compares every byte whatever the lengths, so the time taken says nothing
/// of the secret but the offered token's own length.
fn same_secret(offered: &str, secret: &str) -> bool {
    let secret = secret.as_bytes();
    let differ = offered.bytes().enumerate().fold(offered.len() ^ secret.len(), |acc, (i, byte)| {
        acc | usize::from(byte ^ secret.get(i).copied().unwrap_or(!byte))
    });
    differ == 0
}

/// One connection's session (WCF's PerSession instance).
struct ChatSession {
    conn: Connection<ChatEventsClient>,
    hub: Hub<ChatEventsClient>,
    rooms: Arc<Rooms>,
    /// Moves of a connection (a room change and the hub group changes that
    /// follow it) go one at a time, so two cannot interleave.
    moves: Arc<Moves>,
}

/// A lock per connection being moved, held across a room change and its
/// hub group changes. Within one process: a connection moved from two
/// servers at once is not serialized.
#[derive(Default)]
struct Moves(std::sync::Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>);

impl Moves {
    async fn of(&self, id: ConnectionId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().clone();
        lock.lock_owned().await
    }

    fn forget(&self, id: ConnectionId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

impl ChatSession {
    /// Moves connection `id` into `room` and tells both rooms.
    /// With `existing`, only while `id` is still known under `nick`.
    async fn move_to(
        &self,
        id: ConnectionId,
        room: &str,
        nick: &str,
        existing: bool,
    ) -> Result<Vec<String>, ChatError> {
        let _moving = self.moves.of(id).await;
        let moved = self.rooms.enter(id, room, nick, existing).await?;
        if let Some((old_room, old_nick)) = moved.left {
            self.hub.remove_from_group(id, &old_room).await;
            self.hub.group(&old_room).left(old_room.clone(), old_nick).await?;
        }
        if let Some((room, nick)) = moved.joined {
            // On whichever server holds the connection; it hears the room from now on.
            self.hub.add_to_group(id, &room).await;
            self.hub.group_except(&room, id).joined(room.clone(), nick).await?;
        }
        Ok(moved.members)
    }
}

impl Chat for ChatSession {
    async fn join(&self, room: String, nick: String) -> Result<Vec<String>, ChatError> {
        self.move_to(self.conn.id(), &room, &nick, false).await
    }

    async fn say(&self, text: String) -> Result<(), ChatError> {
        let (room, nick) = self.rooms.whereabouts(self.conn.id()).await?;
        self.hub.group(&room).message(room.clone(), nick, text).await?;
        Ok(())
    }

    async fn invite(&self, nick: String) -> Result<bool, ChatError> {
        let (room, from) = self.rooms.whereabouts(self.conn.id()).await?;
        let invitee = self.rooms.holder(&nick).await?.ok_or_else(|| ChatError::NoSuchUser(nick.clone()))?;
        // Waits up to --callback-timeout-ms for the invitee's own answer,
        // whichever server it is connected to.
        let accepted = self.hub.connection(invitee).invited(from, room.clone()).await?;
        if accepted && let Some(invitee_nick) = self.rooms.nick_of(invitee).await? {
            self.move_to(invitee, &room, &invitee_nick, true).await?;
        }
        Ok(accepted)
    }

    async fn leave(&self) -> Result<(), ChatError> {
        let _moving = self.moves.of(self.conn.id()).await;
        let (room, nick) = self.rooms.exit_room(self.conn.id()).await?.ok_or(ChatError::NotInRoom)?;
        self.hub.remove_from_group(self.conn.id(), &room).await;
        self.hub.group(&room).left(room.clone(), nick).await?;
        Ok(())
    }

    async fn kick(&self, nick: String) -> Result<(), ChatError> {
        let holder = self.rooms.holder(&nick).await?.ok_or_else(|| ChatError::NoSuchUser(nick.clone()))?;
        // Its session's drop frees the nick and tells the room, as for any disconnect.
        if !self.hub.close(holder, POLICY_VIOLATION, "kicked by an admin").await {
            return Err(ChatError::NoSuchUser(nick));
        }
        Ok(())
    }
}

/// The close code of a kicked connection (RFC 6455: policy violation).
const POLICY_VIOLATION: u16 = 1008;

/// The connection closed: free the nick and tell the room.
impl Drop for ChatSession {
    fn drop(&mut self) {
        let (id, hub, rooms) = (self.conn.id(), self.hub.clone(), self.rooms.clone());
        self.moves.forget(id);
        // Local state frees the nick before anything else can run.
        let freed = rooms.forget_here(id);
        tokio::spawn(async move {
            let left = match freed {
                Some(left) => left,
                None => match rooms.forget(id).await {
                    Ok(left) => left,
                    Err(e) => return tracing::warn!(error = %e, conn = %id, "could not free a nick"),
                },
            };
            if let Some((room, nick)) = left {
                let _ = hub.group(&room).left(room.clone(), nick).await;
            }
        });
    }
}

/// The chat page: join, talk, invite and answer invites, from a browser.
async fn index() -> Html<&'static str> {
    Html(include_str!("shared/chat_page.html"))
}

/// A browser module the page imports.
fn javascript(source: &'static str) -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], source)
}

/// Call durations, in seconds: from a quick local call to a slow callback.
const DURATION_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0];

/// Serves `metrics` at `/metrics` on `listener`, and prints where.
fn serve_metrics(listener: tokio::net::TcpListener, metrics: PrometheusHandle) -> std::io::Result<()> {
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    // The exporter's histograms and idle series need a periodic upkeep.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let render = || async move {
        ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
    };
    let app = Router::new().route("/metrics", get(render));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = <Options as clap::Parser>::parse();
    if let Some(dir) = &options.emit_ts {
        wsduplex::codegen::typescript::render(&[ChatClient::contract()]).write(Path::new(dir), "chat")?;
        println!("wrote {dir}/chat.js and {dir}/chat.d.ts");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // Before the server is built: its metrics register with this recorder.
    let metrics = match options.metrics {
        // Buckets, so that durations aggregate across servers (a summary's quantiles do not).
        Some(_) => Some(
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)?
                .install_recorder()?,
        ),
        None => None,
    };

    // With --redis, rooms, nicks and the hub's fan-out span every chat server
    // on that Redis; without it, this process is the whole chat.
    let (hub, rooms) = match &options.redis {
        Some(url) => {
            let redis = RedisOptions::new().call_timeout(Duration::from_millis(options.callback_timeout_ms));
            let hub = Hub::<ChatEventsClient>::with_backplane(RedisBackplane::connect(url, redis).await?);
            let rooms = RedisRooms::connect(url, hub.node()).await?;
            (hub, Rooms::Shared(rooms))
        }
        None => (Hub::<ChatEventsClient>::new(), Rooms::local()),
    };
    let rooms = Arc::new(rooms);
    let moves = Arc::<Moves>::default();
    let endpoint = options.server().hub(&hub).endpoint(move |conn: Connection<ChatEventsClient>| {
        ChatSession { conn, hub: hub.clone(), rooms: rooms.clone(), moves: moves.clone() }.into_service()
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/wsduplex.js", get(|| async { javascript(include_str!("../clients/js/wsduplex.js")) }))
        .route("/chat.js", get(|| async { javascript(include_str!("../clients/js/chat.js")) }))
        .route_service("/ws", endpoint.clone());

    let tls = options.tls()?;
    let listener = tokio::net::TcpListener::bind(&options.listen).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{}", listener.local_addr()?);
    if let (Some(addr), Some(metrics)) = (&options.metrics, metrics) {
        serve_metrics(tokio::net::TcpListener::bind(addr).await?, metrics)?;
    }
    std::io::stdout().flush()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    };
    // The endpoint serves the whole app: each request head within the
    // handshake timeout, a bounded number of connections before their upgrade.
    // Small frames: send them at once rather than wait for Nagle's algorithm.
    match tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls).tap_io(|tls| {
                let _ = tls.get_ref().0.set_nodelay(true);
            });
            endpoint.serve_with_shutdown(listener, app, shutdown).await
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            endpoint.serve_with_shutdown(listener, app, shutdown).await
        }
    }
    Ok(())
}
