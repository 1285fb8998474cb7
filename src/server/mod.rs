//! The accepting side: the standalone listener and its settings, and the
//! [`Endpoint`] that mounts on an axum router (or any tower stack).
#![doc = include_str!("../../docs/guide/security.md")]

mod connections;
mod discovery;
mod endpoint;
mod failures;
mod http_phase;
mod policy;
mod upgrade;

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee_core::server::Methods;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::connection::Connection;
pub use crate::connection_id::ParseConnectionIdError;
pub use crate::dispatch::HandlerError;
pub use crate::identity::{Handshake, Identity};
pub use crate::peer::SlowConsumer;
pub use endpoint::Endpoint;
pub use policy::{Authenticate, Refusal};
use policy::{DynAuthenticate, Origins};

use crate::contract::{Contract, Serve, ServiceFactory};

use crate::hub::{Hub, HubCore};
use crate::peer::CloseReason;
use crate::peer::PeerConfig;
#[cfg(feature = "tls")]
use crate::tls::Tls;
use crate::transport::ServerTls;

/// Settings for a server; made by [`Server::builder`]. Every limit has a
/// default that is safe for a server on the open internet.
///
/// `H` is the callback stub of the [`Hub`] given to [`hub`](Self::hub), so
/// that only a service whose connections carry that callback contract can be
/// served with it; without a hub it is [`AnyCallbacks`].
///
#[doc = include_str!("../../docs/guide/limits.md")]
pub struct ServerBuilder<H = AnyCallbacks> {
    settings: Settings,
    hub_contract: PhantomData<fn() -> H>,
}

/// What a builder sets, and what its endpoint runs with.
#[derive(Clone)]
pub(crate) struct Settings {
    peer: PeerConfig,
    hub: Arc<HubCore>,
    methods: Option<Methods>,
    max_message_size: usize,
    max_connections: usize,
    handshake_timeout: Duration,
    shutdown_timeout: Duration,
    origins: Origins,
    authenticate: Option<Arc<dyn DynAuthenticate>>,
    hooks: Hooks,
    tls: Option<ServerTls>,
    /// Whether to answer `rpc.discover`.
    #[cfg(feature = "codegen")]
    discovery: bool,
}

/// The hub type of a [`ServerBuilder`] given no hub: its connections join a
/// hub of their own, so any service goes.
#[derive(Clone, Copy, Debug)]
pub enum AnyCallbacks {}

/// A hub whose fan-out can reach the connections of a service with callback
/// contract `C`: a [`Hub`] of that contract's stub, or none given.
#[diagnostic::on_unimplemented(
    message = "the server's hub calls `{Self}`, but this service's connections carry `{C}`",
    label = "a service is served with the hub of its own callback contract",
    note = "make the hub with `Hub::<{C}>::new()`"
)]
pub trait HubFor<C>: sealed::HubFor<C> {}

impl<C> HubFor<C> for AnyCallbacks {}

impl<C: Contract> HubFor<C> for C {}

/// Only wsduplex says which hub goes with which contract.
mod sealed {
    pub trait HubFor<C> {}
    impl<C> HubFor<C> for super::AnyCallbacks {}
    impl<C: crate::contract::Contract> HubFor<C> for C {}
}

impl<H> Clone for ServerBuilder<H> {
    fn clone(&self) -> Self {
        ServerBuilder { settings: self.settings.clone(), hub_contract: PhantomData }
    }
}

/// Application code to run when connections open and end.
#[derive(Clone, Default)]
struct Hooks {
    on_connect: Option<Arc<ConnectHook>>,
    on_disconnect: Option<Arc<DisconnectHook>>,
    on_handler_error: Option<Arc<FailureHook>>,
}

type ConnectHook = dyn Fn(&Connection) + Send + Sync;
type DisconnectHook = dyn Fn(&Connection, &CloseReason) + Send + Sync;
pub(crate) type FailureHook = dyn Fn(&Connection, &HandlerError) + Send + Sync;

impl<H> fmt::Debug for ServerBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("peer", &self.settings.peer)
            .field("max_message_size", &self.settings.max_message_size)
            .field("max_connections", &self.settings.max_connections)
            .field("handshake_timeout", &self.settings.handshake_timeout)
            .field("shutdown_timeout", &self.settings.shutdown_timeout)
            .field("origins", &self.settings.origins)
            .field("authenticate", &self.settings.authenticate.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        let settings = Settings {
            peer: PeerConfig::default(),
            hub: HubCore::new_local(),
            methods: None,
            max_message_size: crate::socket::DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            origins: Origins::default(),
            authenticate: None,
            hooks: Hooks::default(),
            tls: None,
            #[cfg(feature = "codegen")]
            discovery: true,
        };
        ServerBuilder { settings, hub_contract: PhantomData }
    }
}

impl<H> ServerBuilder<H> {
    /// Registers every connection with `hub` while it is open. The service
    /// served must have `M` as its callback contract ([`HubFor`]).
    pub fn hub<M: Contract>(self, hub: &Hub<M>) -> ServerBuilder<M> {
        let mut builder = self.with_hub_type::<M>();
        builder.settings.hub = hub.core().clone();
        builder
    }

    /// The same settings, typed for another hub.
    fn with_hub_type<M>(self) -> ServerBuilder<M> {
        ServerBuilder { settings: self.settings, hub_contract: PhantomData }
    }

    /// Requests running at once per connection (default 128); a call's slot
    /// is free again once its reply has been handed to the socket. Past it,
    /// the server parks further requests, in order, up to 4 MiB; with the
    /// parking full it stops reading from that socket until a call finishes
    /// (TCP holds the client back), unless it is waiting on that client (for
    /// a callback's reply, or for room to send) or its writes to it wait:
    /// then it keeps reading and
    /// answers the excess requests with -32009 (server busy), since what it
    /// waits for may be queued behind them. Responses and `$/cancelRequest`
    /// are always read.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.settings.peer.max_in_flight = limit;
        self
    }

    /// Frames waiting for one client's socket (default 256). When the queue
    /// is full, by frames or by bytes, a broadcast applies the
    /// [`slow_consumer`](Self::slow_consumer) policy, and a call or a direct
    /// message waits for room (within its deadline).
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.settings.peer.outbound_capacity = frames;
        self
    }

    /// Bytes waiting for one client's socket (default 4 MiB); see
    /// [`outbound_capacity`](Self::outbound_capacity). One message larger
    /// than this still goes out when the queue is otherwise empty.
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.settings.peer.outbound_bytes = bytes;
        self
    }

    /// What a broadcast does for a client whose queue is full (default:
    /// [`SlowConsumer::Disconnect`], close code 1013).
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.settings.peer.slow_consumer = policy;
        self
    }

    /// Largest message accepted from a client (default 10 MiB). A larger
    /// frame or fragmented message closes the connection with 1009 as soon as
    /// its size is known, before it is buffered.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// Most entries in one batch (default 1,000); a larger batch is answered
    /// with a single -32010 error and none of it runs.
    pub fn max_batch_len(mut self, entries: usize) -> Self {
        self.settings.peer.max_batch_len = entries;
        self
    }

    /// Connections open at once (default 10,000); an upgrade past it gets
    /// `503 Service Unavailable` with `Retry-After`, and nothing is spawned for
    /// it. The standalone server also lets at most this many TCP connections
    /// be in their HTTP handshake at once, closing any more straight away.
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.settings.max_connections = limit;
        self
    }

    peer_settings!("client", settings.peer);

    /// How long a TCP connection to the standalone server may take to finish
    /// its TLS handshake and WebSocket upgrade (default 10 s); a slower one is
    /// closed. Under axum, the router's server owns the HTTP connection and
    /// its timeouts. On both, the authentication hook gets this long to
    /// decide, or the client gets 503.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// How long running calls may take to finish once a graceful shutdown
    /// starts (default 10 s); see [`Endpoint::shutdown`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Serves TLS (`wss://`) on the standalone server, with a certificate
    /// from [`Tls::from_pem_files`] (or any rustls configuration). The TLS
    /// handshake counts against the handshake timeout. An
    /// [`endpoint`](Self::endpoint) ignores it: to serve TLS from an axum
    /// router, give `axum::serve` a [`TlsListener`](crate::tls::TlsListener).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.settings.tls = Some(tls);
        self
    }

    /// Lets pages from `origin` (`https://chat.example`) open connections;
    /// repeat for each allowed origin. Once any is given, a handshake whose
    /// `Origin` header names another origin gets `403 Forbidden`.
    ///
    /// This is the defence against cross-site WebSocket hijacking: a browser
    /// sends the user's cookies with a WebSocket handshake from any page, and
    /// only the `Origin` header says which page it was. Handshakes without
    /// `Origin` (programs, not browsers) are not affected. Off by default.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        self.settings.origins.allow(origin);
        self
    }

    /// Decides who may connect, from the upgrade request (headers, cookies,
    /// query string, remote address), before the upgrade: a [`Refusal`]
    /// answers 401 or 403 with a short body; an [`Identity`] lets the
    /// connection in, its user and value readable from every handler through
    /// the [`Connection`]. A hook that panics answers 500. Browsers cannot
    /// set headers on a WebSocket: accept a token in the query string too
    /// ([`Handshake::query`](crate::server::Handshake::query)).
    ///
    /// ```
    /// use wsduplex::{server::Identity, server::Refusal, Server};
    ///
    /// let builder = Server::builder().authenticate(|handshake: &wsduplex::server::Handshake| {
    ///     let token = handshake.bearer_token().map(str::to_owned).or_else(|| handshake.query("token"));
    ///     match token.as_deref() {
    ///         Some("s3cret") => Ok(Identity::user("ada")),
    ///         Some(_) => Err(Refusal::unauthorized("that token is not valid")),
    ///         None => Err(Refusal::unauthorized("a token is required")),
    ///     }
    /// });
    /// ```
    pub fn authenticate(mut self, hook: impl Authenticate) -> Self {
        self.settings.authenticate = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` when a connection has opened (after its service instance
    /// is built). A panic in it is logged and goes no further.
    pub fn on_connect(mut self, hook: impl Fn(&Connection) + Send + Sync + 'static) -> Self {
        self.settings.hooks.on_connect = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` when a connection has ended, with the reason: closed by
    /// the client (with its close code), unresponsive, idle, server shutdown,
    /// or a transport error. It has left the hub and its groups by then.
    pub fn on_disconnect(mut self, hook: impl Fn(&Connection, &CloseReason) + Send + Sync + 'static) -> Self {
        self.settings.hooks.on_disconnect = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` whenever a handler of this service returns an error or
    /// panics (as the call completes, just before its reply is queued: keep
    /// it quick, it runs on the connection's task), for logs and
    /// metrics. A panic in the hook is logged and goes no further.
    pub fn on_handler_error(mut self, hook: impl Fn(&Connection, &HandlerError) + Send + Sync + 'static) -> Self {
        self.settings.hooks.on_handler_error = Some(Arc::new(hook));
        self
    }

    /// Serves the methods of a jsonrpsee `RpcModule` (or `Methods`) on the same
    /// sockets, next to the contract's own; a contract method of the same
    /// name takes precedence over a merged one.
    ///
    /// # Panics
    ///
    /// When a module merged before has a method of the same name: a mistake
    /// in the program, found where the server is put together (as axum's
    /// `Router` does with overlapping routes).
    pub fn rpc_module(mut self, methods: impl Into<Methods>) -> Self {
        let merged = match self.settings.methods.take() {
            Some(mut existing) => {
                if let Err(clash) = existing.merge(methods) {
                    panic!("rpc_module: {clash}");
                }
                existing
            }
            None => methods.into(),
        };
        self.settings.methods = Some(merged);
        self
    }

    /// Stops answering `rpc.discover` (by default it answers with the
    /// service's [OpenRPC document](crate::codegen::openrpc), callbacks included), for
    /// a server that keeps its contract to itself. The method is then
    /// unknown (-32601).
    #[cfg(feature = "codegen")]
    pub fn without_discovery(mut self) -> Self {
        self.settings.discovery = false;
        self
    }

    /// Binds a standalone server to `addr`.
    pub async fn build(self, addr: impl ToSocketAddrs) -> io::Result<Server<H>> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Server { listener, local_addr, builder: self })
    }

    /// An endpoint to mount on an existing axum `Router`:
    /// `router.route_service("/ws", endpoint)`.
    ///
    /// `factory` builds one service instance per connection from the
    /// connection's handle. With the `axum` feature, serve the router with
    /// `Endpoint::serve`: like `axum::serve`, with
    /// [`Connection::remote_addr`] set, and with the handshake timeout and
    /// connection bound applied to the HTTP phase, which `axum::serve` leaves
    /// unbounded (see [`Endpoint`]). Any tower stack can mount it too:
    ///
    /// ```no_run
    /// use axum::routing::get;
    /// use wsduplex::{Connection, Server};
    ///
    /// #[wsduplex::service(namespace = "status")]
    /// pub trait Status {
    ///     async fn uptime(&self) -> u64;
    /// }
    ///
    /// struct Up;
    ///
    /// impl Status for Up {
    ///     async fn uptime(&self) -> u64 {
    ///         42
    ///     }
    /// }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// let endpoint = Server::builder().endpoint(|_conn: Connection| Up.into_service());
    /// let app = axum::Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .route_service("/api/ws", endpoint.clone());
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// axum::serve(listener, app).await
    /// # }
    /// ```
    pub fn endpoint<S: Serve>(self, factory: impl ServiceFactory<S>) -> Endpoint
    where
        H: HubFor<S::Callback>,
    {
        let builder = self.with_hub_type::<AnyCallbacks>();
        builder.settings.peer.meters.seed(<S::Contract as Contract>::info());
        #[cfg(feature = "codegen")]
        let document = {
            // A merged module's own `rpc.discover` wins (it is tried first):
            // the document is not even written then.
            let merged = builder
                .settings
                .methods
                .as_ref()
                .is_some_and(|m| m.method(crate::codegen::openrpc::DISCOVER_METHOD).is_some());
            (builder.settings.discovery && !merged)
                .then(|| discovery::document(<S::Contract as Contract>::info()))
                .flatten()
        };
        #[cfg(not(feature = "codegen"))]
        let document = None;
        Endpoint::new(builder.settings, factory, document)
    }

    /// The standalone server's TLS, and its endpoint.
    fn into_parts<S: Serve>(self, factory: impl ServiceFactory<S>) -> (Option<ServerTls>, Endpoint)
    where
        H: HubFor<S::Callback>,
    {
        (self.settings.tls.clone(), self.endpoint(factory))
    }
}

/// A standalone wsduplex server: a TCP listener that upgrades every request,
/// on any path, to a WebSocket. `H` is its builder's hub type.
pub struct Server<H = AnyCallbacks> {
    listener: TcpListener,
    local_addr: SocketAddr,
    builder: ServerBuilder<H>,
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Settings for a new server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl<H> Server<H> {
    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Accepts connections, building one service instance per connection
    /// with `factory`. Runs until the future is dropped; connections already
    /// open go on. For a graceful stop, see [`start`](Self::start) or
    /// [`serve_with_shutdown`](Self::serve_with_shutdown).
    pub async fn serve<S: Serve>(self, factory: impl ServiceFactory<S>) -> io::Result<()>
    where
        H: HubFor<S::Callback>,
    {
        let Server { listener, builder, .. } = self;
        let (tls, endpoint) = builder.into_parts(factory);
        http_phase::accept_standalone(listener, tls, endpoint).await;
        Ok(())
    }

    /// Like [`serve`](Self::serve), until `signal` completes; then shuts down
    /// gracefully ([`ServerHandle::shutdown`]) and returns when every
    /// connection has ended.
    pub async fn serve_with_shutdown<S: Serve>(
        self,
        factory: impl ServiceFactory<S>,
        signal: impl Future<Output = ()>,
    ) -> io::Result<()>
    where
        H: HubFor<S::Callback>,
    {
        let handle = self.start(factory);
        signal.await;
        handle.shutdown().await;
        Ok(())
    }

    /// Starts accepting connections in the background; the handle counts
    /// them and shuts the server down.
    pub fn start<S: Serve>(self, factory: impl ServiceFactory<S>) -> ServerHandle
    where
        H: HubFor<S::Callback>,
    {
        let Server { listener, local_addr, builder } = self;
        let (tls, endpoint) = builder.into_parts(factory);
        endpoint.connections().spawn(http_phase::accept_standalone(listener, tls, endpoint.clone()));
        ServerHandle { endpoint, local_addr }
    }
}

/// A running server, from [`Server::start`]. Cheap to clone; dropping it
/// leaves the server running.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    endpoint: Endpoint,
    local_addr: SocketAddr,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.endpoint.connection_count()
    }

    /// Stops accepting, and shuts every connection down gracefully (see
    /// [`Endpoint::shutdown`]); returns once every connection task, and the
    /// listener's, has ended.
    pub async fn shutdown(&self) {
        self.endpoint.shutdown().await;
    }
}
