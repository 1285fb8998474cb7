//! The [`Endpoint`]: the WebSocket upgrade as a tower service, and the start
//! of each connection it accepts.

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
use futures_util::{FutureExt, SinkExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tracing::Instrument;

use super::ServerBuilder;
use super::connections::{Connections, Slot};
use super::upgrade::{Rejection, check_upgrade, plain};
use crate::connection::{Connection, ConnectionId, Handshake};
use crate::contract::{Contract, Dispatch, ServiceContract, ServiceInstance};
use crate::peer::{CloseReason, Driver, Peer, Transport};
use crate::socket::Socket;

/// Starts a connection's task, given its socket, handshake and place.
type StartConnection = dyn Fn(Socket<ServerIo>, Handshake, Slot) + Send + Sync;

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
    connections: Arc<Connections>,
}

/// The WebSocket endpoint of a service, as a tower `Service` over HTTP
/// requests: mount it with `axum::Router::route_service(path, endpoint)`.
///
/// A request that is not a WebSocket upgrade gets `400 Bad Request`; an
/// upgrade past [`max_connections`](ServerBuilder::max_connections), or
/// during shutdown, gets `503 Service Unavailable` with `Retry-After`.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("connections", &self.connection_count()).finish_non_exhaustive()
    }
}

impl Endpoint {
    pub(super) fn new<F, M, S>(builder: ServerBuilder, factory: F) -> Endpoint
    where
        F: Fn(Connection<M::Callback>) -> ServiceInstance<M, S> + Send + Sync + 'static,
        M: ServiceContract + Dispatch<S> + 'static,
        S: Send + Sync + 'static,
    {
        let connections = Connections::new(builder.max_connections, builder.shutdown_timeout);
        let max_message_size = builder.max_message_size;
        let tasks = connections.clone();
        let start = move |socket: Socket<ServerIo>, handshake: Handshake, mut slot: Slot| {
            // The connection's task holds just its driver and its place: setup is done before it starts.
            // `map`, not an async block: awaiting a captured future in one
            // stores it twice, doubling every idle connection's task.
            match start_connection::<_, F, M, S>(socket, handshake, &factory, &builder, &mut slot) {
                Ok(running) => tasks.spawn(running.map(move |_| drop(slot))),
                Err(refused) => tasks.spawn(refused.map(move |()| drop(slot))),
            }
        };
        Endpoint { inner: Arc::new(EndpointInner { start: Box::new(start), max_message_size, connections }) }
    }

    pub(super) fn connections(&self) -> &Arc<Connections> {
        &self.inner.connections
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.count()
    }

    /// Shuts the endpoint down gracefully: new upgrades get 503; open
    /// connections refuse new calls (-32009), finish the running ones (up to
    /// [`shutdown_timeout`](ServerBuilder::shutdown_timeout)), write what is
    /// queued, and close with 1001; calls waiting on a client fail with
    /// [`Error::Closed`](crate::Error::Closed). Returns once every connection
    /// task has ended.
    ///
    /// Under axum, await it inside the future given to
    /// `axum::serve(..).with_graceful_shutdown(..)`: axum does not track
    /// upgraded connections, and stops accepting once that future resolves
    /// (until then, new upgrades get 503). Waits at most the shutdown timeout
    /// plus a few seconds per close handshake.
    pub async fn shutdown(&self) {
        self.inner.connections.shutdown().await;
    }

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
        // Refused before anything is spawned for it.
        let slot = match self.inner.connections.admit() {
            Ok(slot) => slot,
            Err(rejection) => {
                match rejection {
                    Rejection::Full => tracing::warn!("at max_connections: refusing a WebSocket upgrade with 503"),
                    _ => tracing::debug!(?rejection, "refusing a WebSocket upgrade"),
                }
                return rejection.response();
            }
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
        self.inner.connections.spawn(async move {
            match upgrading.await {
                Ok(upgraded) => {
                    let (io, pre_read) = ServerIo::from_upgraded(upgraded);
                    let socket = Socket::new(io, Role::Server, inner.max_message_size, &pre_read);
                    (inner.start)(socket, handshake, slot);
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

/// Sets up one accepted connection (registers it, builds its service) and
/// returns the future that drives it to its end. If the service factory
/// panics, returns instead the future that closes the socket with 1011.
fn start_connection<T, F, M, S>(
    socket: T,
    handshake: Handshake,
    factory: &F,
    config: &ServerBuilder,
    slot: &mut Slot,
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
    slot.attach(&peer);
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
