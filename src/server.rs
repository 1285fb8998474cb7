//! The accepting side: the standalone listener, the HTTP upgrade, and the
//! [`Endpoint`] that mounts on an axum router (or any tower stack).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use jsonrpsee_core::server::Methods;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tracing::Instrument;

use crate::connection::{Connection, ConnectionId, Handshake};
use crate::contract::{Contract, Dispatch, ServiceContract, ServiceInstance};
use crate::hub::{Hub, HubCore};
use crate::peer::{CloseReason, Driver, Peer, PeerConfig, Transport};
use crate::socket::Socket;

/// Largest message accepted by default: 10 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 << 20;

/// Settings for a server; made by [`Server::builder`].
#[derive(Clone)]
pub struct ServerBuilder {
    peer: PeerConfig,
    hub: Arc<HubCore>,
    methods: Option<Methods>,
    max_message_size: usize,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("peer", &self.peer)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            peer: PeerConfig::default(),
            hub: HubCore::new_local(),
            methods: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl ServerBuilder {
    /// Registers every connection with `hub` while it is open.
    pub fn hub<M>(mut self, hub: &Hub<M>) -> Self
    where
        M: Contract,
    {
        self.hub = hub.core().clone();
        self
    }

    /// How long the server waits for a client to answer a callback, unless
    /// the call sets its own deadline (default 30 s).
    pub fn callback_timeout(mut self, timeout: Duration) -> Self {
        self.peer.call_timeout = timeout;
        self
    }

    /// Requests running at once per connection (default 128). Past it, the
    /// server parks further frames (as many again, up to 4 MiB) and then stops
    /// reading from that socket until one finishes; while it waits for that
    /// client's replies to its own callbacks, it keeps reading and answers
    /// the excess requests with -32009 (server busy) instead.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.peer.max_in_flight = limit;
        self
    }

    /// Frames waiting for one client's socket (default 256). A broadcast that
    /// finds the queue full drops that client with close code 1013.
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.peer.outbound_capacity = frames;
        self
    }

    /// Largest message accepted from a client (default 10 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Serves the methods of a jsonrpsee `RpcModule` (or `Methods`) on the same
    /// sockets, next to the contract's own. Fails if another merged module
    /// has a method of the same name; a contract method of the same name
    /// takes precedence over a merged one.
    pub fn rpc_module(mut self, methods: impl Into<Methods>) -> Result<Self, jsonrpsee_core::RegisterMethodError> {
        let merged = match self.methods.take() {
            Some(mut existing) => {
                existing.merge(methods)?;
                existing
            }
            None => methods.into(),
        };
        self.methods = Some(merged);
        Ok(self)
    }

    /// Binds a standalone server to `addr`.
    pub async fn build(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, builder: self })
    }

    /// An endpoint to mount on an existing axum `Router`:
    /// `router.route_service("/ws", endpoint)`.
    ///
    /// `factory` builds one service instance per connection from the
    /// connection's handle. Serve the router with connect info to give
    /// [`Connection::remote_addr`] the client's address:
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
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
    ///     .route_service("/api/ws", endpoint);
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
    /// # }
    /// ```
    pub fn endpoint<F, M, S>(self, factory: F) -> Endpoint
    where
        F: Fn(Connection<M::Callback>) -> ServiceInstance<M, S> + Send + Sync + 'static,
        M: ServiceContract + Dispatch<S> + 'static,
        S: Send + Sync + 'static,
    {
        let max_message_size = self.max_message_size;
        let start = move |socket: Socket<ServerIo>, handshake: Handshake| {
            // The connection's task holds just its driver: setup is done before it starts.
            match start_connection::<_, F, M, S>(socket, handshake, &factory, &self) {
                Ok(running) => drop(tokio::spawn(running)),
                Err(refused) => drop(tokio::spawn(refused)),
            }
        };
        Endpoint { inner: Arc::new(EndpointInner { start: Box::new(start), max_message_size }) }
    }
}

/// A standalone wsduplex server: a TCP listener that upgrades every request,
/// on any path, to a WebSocket.
pub struct Server {
    listener: TcpListener,
    builder: ServerBuilder,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Server {
    /// Settings for a new server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections, building one service instance per connection
    /// with `factory`. Runs until the future is dropped.
    pub async fn serve<F, M, S>(self, factory: F) -> io::Result<()>
    where
        F: Fn(Connection<M::Callback>) -> ServiceInstance<M, S> + Send + Sync + 'static,
        M: ServiceContract + Dispatch<S> + 'static,
        S: Send + Sync + 'static,
    {
        let Server { listener, builder } = self;
        let endpoint = builder.endpoint(factory);
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            // Latency over throughput: every message is a small frame.
            let _ = stream.set_nodelay(true);
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(remote);
                    std::future::ready(Ok::<_, Infallible>(endpoint.handle(request)))
                });
                let serving = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(e) = serving.await {
                    tracing::debug!(%remote, error = %e, "HTTP connection failed");
                }
            });
        }
    }
}

/// Accept errors are about one connection or a passing shortage (of file
/// descriptors, say): log, pause briefly if it is a shortage, keep serving.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock => {
            tracing::debug!(%error, "accept failed");
        }
        _ => {
            tracing::warn!(%error, "accept failed; pausing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts a connection's task, given its socket and handshake.
type StartConnection = dyn Fn(Socket<ServerIo>, Handshake) + Send + Sync;

/// The byte stream under a server-side WebSocket: the TCP stream itself when
/// hyper hands it back (no indirection, and hyper's buffers are freed), else
/// hyper's upgraded connection (TLS, say).
pub(crate) enum ServerIo {
    Tcp(TcpStream),
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

impl ServerIo {
    /// Takes the connection back from hyper, with any bytes read past the handshake.
    fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> (ServerIo, Bytes) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (ServerIo::Tcp(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => (ServerIo::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            ServerIo::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            ServerIo::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Tcp(io) => Pin::new(io).poll_flush(cx),
            ServerIo::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            ServerIo::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

struct EndpointInner {
    start: Box<StartConnection>,
    max_message_size: usize,
}

/// The WebSocket endpoint of a service, as a tower `Service` over HTTP
/// requests: mount it with `axum::Router::route_service(path, endpoint)`.
///
/// A request that is not a WebSocket upgrade gets `400 Bad Request`.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Answers one HTTP request: `101 Switching Protocols` and a new
    /// connection for a valid upgrade, an error status otherwise.
    pub fn handle<B>(&self, mut request: Request<B>) -> Response<String> {
        let key = match check_upgrade(&request) {
            Ok(key) => key,
            Err(rejection) => return rejection.response(),
        };
        let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
            return plain(StatusCode::BAD_REQUEST, "invalid Sec-WebSocket-Key\n");
        };
        let remote_addr = request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .or_else(|| request.extensions().get::<SocketAddr>().copied());
        let upgrading = hyper::upgrade::on(&mut request);
        let (parts, _body) = request.into_parts();
        let handshake = Handshake::detached(remote_addr, &parts.uri, &parts.headers);
        let inner = self.inner.clone();
        // This task ends once the upgrade is done; the connection gets a task of its own.
        tokio::spawn(async move {
            match upgrading.await {
                Ok(upgraded) => {
                    let (io, pre_read) = ServerIo::from_upgraded(upgraded);
                    let socket = Socket::new(io, Role::Server, inner.max_message_size, &pre_read);
                    (inner.start)(socket, handshake);
                }
                Err(e) => tracing::debug!(error = %e, "the WebSocket upgrade did not complete"),
            }
        });
        let mut response = Response::new(String::new());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

impl<B> tower_service::Service<Request<B>> for Endpoint {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.handle(request)))
    }
}

fn plain(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// True when a comma-separated header holds `token` (case-insensitive).
fn header_has_token<B>(request: &Request<B>, name: http::header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why an HTTP request is not a WebSocket upgrade we accept.
#[derive(Debug, PartialEq, Eq)]
enum Rejection {
    NotAnUpgrade,
    UnsupportedVersion,
    BadKey,
}

impl Rejection {
    fn response(&self) -> Response<String> {
        match self {
            Rejection::NotAnUpgrade => plain(
                StatusCode::BAD_REQUEST,
                "This is a WebSocket endpoint (JSON-RPC 2.0): a WebSocket upgrade request is expected.\n",
            ),
            Rejection::UnsupportedVersion => {
                let mut response = plain(StatusCode::UPGRADE_REQUIRED, "Only WebSocket version 13 is supported.\n");
                response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                response
            }
            Rejection::BadKey => plain(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key\n"),
        }
    }
}

/// Checks a WebSocket upgrade request (RFC 6455 section 4.2.1); returns its key.
fn check_upgrade<B>(request: &Request<B>) -> Result<String, Rejection> {
    let is_upgrade = request.method() == Method::GET
        && request.version() == Version::HTTP_11
        && header_has_token(request, CONNECTION, "upgrade")
        && header_has_token(request, UPGRADE, "websocket");
    if !is_upgrade {
        return Err(Rejection::NotAnUpgrade);
    }
    if request.headers().get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(Rejection::UnsupportedVersion);
    }
    match request.headers().get(SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok()) {
        // A key is 16 random bytes in base64: 24 characters.
        Some(key) if key.trim().len() == 24 => Ok(key.trim().to_owned()),
        _ => Err(Rejection::BadKey),
    }
}

/// Sets up one accepted connection (registers it, builds its service) and
/// returns the future that drives it to its end. If the service factory
/// panics, returns instead the future that closes the socket with 1011.
fn start_connection<T, F, M, S>(
    socket: T,
    handshake: Handshake,
    factory: &F,
    config: &ServerBuilder,
) -> Result<impl Future<Output = CloseReason> + Send + 'static, impl Future<Output = ()> + Send + 'static>
where
    T: Transport,
    F: Fn(Connection<M::Callback>) -> ServiceInstance<M, S> + Send + Sync + 'static,
    M: ServiceContract + Dispatch<S> + 'static,
    S: Send + Sync + 'static,
{
    let id = ConnectionId::next();
    let span = tracing::debug_span!("conn", %id, remote = ?handshake.remote_addr);
    let _entered = span.enter();
    let peer = Peer::new(id, &config.peer);
    let hub = config.hub.clone();
    hub.register(peer.clone());
    let callback = <M::Callback as Contract>::from_caller(peer.clone());
    let connection = Connection::new(peer.clone(), handshake, hub.clone(), callback);
    let service = match std::panic::catch_unwind(AssertUnwindSafe(|| factory(connection))) {
        Ok(service) => service,
        Err(_) => {
            tracing::error!("the service factory panicked; closing the connection with 1011");
            hub.unregister(id);
            let mut socket = socket;
            let frame = CloseFrame { code: 1011.into(), reason: "internal error".into() };
            return Err(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
            });
        }
    };
    tracing::debug!("connection opened");
    let driver = Driver::new(socket, peer, service, config.methods.clone(), &config.peer);
    drop(_entered);
    Ok(driver.run(move || hub.unregister(id)).instrument(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const GOOD: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_valid_upgrade_yields_its_key() {
        assert_eq!(check_upgrade(&request("GET", GOOD)), Ok("dGhlIHNhbXBsZSBub25jZQ==".into()));
    }

    #[test]
    fn everything_else_is_rejected_with_the_right_status() {
        assert_eq!(check_upgrade(&request("POST", GOOD)), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&request("GET", &GOOD[1..])), Err(Rejection::NotAnUpgrade));
        assert_eq!(check_upgrade(&request("GET", &[GOOD[0], GOOD[2], GOOD[3]])), Err(Rejection::NotAnUpgrade));
        let old = [GOOD[0], GOOD[1], ("sec-websocket-version", "8"), GOOD[3]];
        assert_eq!(check_upgrade(&request("GET", &old)), Err(Rejection::UnsupportedVersion));
        let short = [GOOD[0], GOOD[1], GOOD[2], ("sec-websocket-key", "abc")];
        assert_eq!(check_upgrade(&request("GET", &short)), Err(Rejection::BadKey));
        assert_eq!(Rejection::NotAnUpgrade.response().status(), StatusCode::BAD_REQUEST);
        let upgrade_required = Rejection::UnsupportedVersion.response();
        assert_eq!(upgrade_required.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(upgrade_required.headers()[SEC_WEBSOCKET_VERSION], "13");
    }
}
