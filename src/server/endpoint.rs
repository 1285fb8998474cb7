//! The [`Endpoint`]: the WebSocket upgrade as a tower service, and the start
//! of each connection it accepts.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
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
use tokio_util::either::Either;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tracing::Instrument;

use super::Settings;
use super::connections::{Connections, Slot};
use super::discovery::{self, Discovery};
use super::failures::ReportFailures;
#[cfg(feature = "axum")]
use super::http_phase::{self, Served};
use super::policy::{DynAuthenticate, Origins};
use super::upgrade::{Rejection, check_upgrade, plain};
use crate::connection::Connection;
use crate::contract::{Contract, Serve, ServiceFactory};
use crate::hub::Topic;
use crate::identity::Handshake;
use crate::identity::Identity;
use crate::interop::WithRpcModule;
use crate::metrics;
use crate::middleware::ConnectionInfo;
use crate::peer::{CloseReason, Driver, Peer, Transport};
use crate::socket::Socket;
use crate::transport::ServerTlsStream;

/// Starts a connection's task, given its socket, handshake, identity and place.
type StartConnection = dyn Fn(Socket<ServerIo>, Handshake, Identity, Slot) + Send + Sync;

/// The byte stream under a server-side WebSocket: the TCP or TLS stream
/// itself when hyper hands it back (no indirection, and hyper's buffers are
/// freed), else hyper's upgraded connection (another server's transport).
/// `Either` passes vectored writes through, which the socket relies on.
pub(crate) type ServerIo = Either<TcpStream, Either<ServerTlsStream, TokioIo<hyper::upgrade::Upgraded>>>;

/// Takes the connection back from hyper, with any bytes read past the
/// handshake: as our own listener hands it over, or as axum's (which wraps
/// it in hyper-util's rewind buffer).
fn take_back(upgraded: hyper::upgrade::Upgraded) -> (ServerIo, Bytes) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => return (Either::Left(parts.io.into_inner()), parts.read_buf),
        Err(upgraded) => upgraded,
    };
    #[cfg(feature = "axum")]
    let upgraded = match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded) {
        Ok(parts) => return (Either::Left(parts.io.into_inner()), parts.read_buf),
        Err(upgraded) => upgraded,
    };
    #[cfg(feature = "tls")]
    let upgraded = {
        use tokio_rustls::server::TlsStream;
        let tls = |stream| Either::Right(Either::Left(Box::new(stream)));
        let upgraded = match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(parts) => return (tls(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        #[cfg(feature = "axum")]
        let upgraded =
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TlsStream<TcpStream>>>(upgraded) {
                Ok(parts) => return (tls(parts.io.into_inner()), parts.read_buf),
                Err(upgraded) => upgraded,
            };
        upgraded
    };
    (Either::Right(Either::Right(TokioIo::new(upgraded))), Bytes::new())
}

/// What carries a connection, for the logs.
fn transport_kind(io: &ServerIo) -> &'static str {
    match io {
        Either::Left(_) => "tcp",
        Either::Right(Either::Left(_)) => "tls",
        Either::Right(Either::Right(_)) => "upgraded",
    }
}

struct EndpointInner {
    start: Box<StartConnection>,
    max_message_size: usize,
    handshake_timeout: Duration,
    origins: Origins,
    authenticate: Option<Arc<dyn DynAuthenticate>>,
    connections: Arc<Connections>,
}

/// The WebSocket endpoint of a service, as a tower `Service` over HTTP
/// requests: mount it with `axum::Router::route_service(path, endpoint)`.
/// With the `axum` feature, a connection's remote address is read from
/// axum's `ConnectInfo` (`into_make_service_with_connect_info`), and
/// `serve` serves the app with the HTTP phase bounded.
///
/// A request that is not a WebSocket upgrade gets `400 Bad Request`; an
/// upgrade past [`max_connections`](crate::server::ServerBuilder::max_connections), or
/// during shutdown, gets `503 Service Unavailable` with `Retry-After`.
///
#[cfg_attr(feature = "axum", doc = include_str!("../../docs/guide/axum.md"))]
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
    pub(super) fn new<S: Serve>(
        builder: Settings,
        factory: impl ServiceFactory<S>,
        document: Option<discovery::Document>,
    ) -> Endpoint {
        let connections = Connections::new(builder.max_connections, builder.shutdown_timeout);
        let (max_message_size, handshake_timeout) = (builder.max_message_size, builder.handshake_timeout);
        let (origins, authenticate) = (builder.origins.clone(), builder.authenticate.clone());
        let tasks = connections.clone();
        let start = move |socket: Socket<ServerIo>, handshake: Handshake, identity: Identity, mut slot: Slot| {
            // The connection's task holds just its driver and its place: setup is done before it starts.
            // `map`, not an async block: awaiting a captured future in one
            // stores it twice, doubling every idle connection's task.
            match start_connection(socket, handshake, identity, &factory, &builder, &document, &mut slot) {
                Ok(running) => tasks.spawn(running.map(move |_| drop(slot))),
                Err(refused) => tasks.spawn(refused.map(move |()| drop(slot))),
            }
        };
        let inner = EndpointInner {
            start: Box::new(start),
            max_message_size,
            handshake_timeout,
            origins,
            authenticate,
            connections,
        };
        Endpoint { inner: Arc::new(inner) }
    }

    pub(super) fn connections(&self) -> &Arc<Connections> {
        &self.inner.connections
    }

    /// How many connections may be in their HTTP phase at once, and how long
    /// each request head may take.
    pub(super) fn handshake_limits(&self) -> (usize, Duration) {
        (self.inner.connections.max(), self.inner.handshake_timeout)
    }

    /// Connections open now.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.count()
    }

    /// Shuts the endpoint down gracefully: new upgrades get 503; open
    /// connections refuse new calls (-32009), finish the running ones (up to
    /// [`shutdown_timeout`](crate::server::ServerBuilder::shutdown_timeout)), write what is
    /// queued, and close with 1001; calls waiting on a client fail with
    /// [`Error::Closed`](crate::Error::Closed). Returns once every connection
    /// task has ended.
    ///
    /// `serve_with_shutdown` (feature `axum`) calls it when its
    /// signal comes; HTTP connections not yet upgraded get a second to
    /// finish the request they are on. Waits at most the shutdown timeout
    /// plus a few seconds per close handshake.
    pub async fn shutdown(&self) {
        self.inner.connections.shutdown().await;
    }

    /// Serves `app`, an axum router that mounts this endpoint, on
    /// `listener`: a `tokio::net::TcpListener`, a `TlsListener` (feature `tls`),
    /// or any axum listener with socket addresses. It is what
    /// `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`
    /// does over HTTP/1.1 (HTTP/2 is not served: a TLS configuration should
    /// not offer it by ALPN), plus the bounds on the HTTP phase that axum leaves out: each
    /// request head must arrive within
    /// [`handshake_timeout`](crate::server::ServerBuilder::handshake_timeout) (a client
    /// that sends half a request and waits, or idles between requests, is cut
    /// off), and at most [`max_connections`](crate::server::ServerBuilder::max_connections)
    /// connections may be in their HTTP phase at once (more are closed at
    /// once). Runs until the endpoint shuts down; see
    /// [`serve_with_shutdown`](Self::serve_with_shutdown).
    #[cfg(feature = "axum")]
    pub async fn serve<L>(&self, listener: L, app: axum::Router)
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        http_phase::accept(http_phase::Axum(listener), self.clone(), Served::App(app)).await
    }

    /// Like [`serve`](Self::serve), until `signal` completes; then shuts
    /// down gracefully ([`shutdown`](Self::shutdown): pages being served get
    /// a second to finish) and returns when every connection has ended.
    #[cfg(feature = "axum")]
    pub async fn serve_with_shutdown<L>(&self, listener: L, app: axum::Router, signal: impl Future<Output = ()>)
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        tokio::select! {
            () = self.serve(listener, app) => {}
            () = signal => {}
        }
        self.shutdown().await;
    }

    /// Answers one HTTP request: `101 Switching Protocols` and a new
    /// connection for a valid upgrade that passes the origin policy and the
    /// authentication hook, an error status otherwise (400, 401, 403, 426,
    /// 500 if the hook panics, 503). Nothing is spawned before the answer is
    /// known.
    pub fn handle<B>(&self, mut request: Request<B>) -> impl Future<Output = Response<String>> + Send + use<B> {
        // Everything that needs the request happens now; the future holds none of it.
        let admitted = self.admit(&mut request);
        let inner = self.inner.clone();
        let answering = async move {
            let Admitted { slot, handshake, upgrading, accept } = match admitted {
                Ok(admitted) => admitted,
                Err(rejection) => return rejection.response(),
            };
            let identity = match &inner.authenticate {
                None => Identity::anonymous(),
                Some(authenticate) => {
                    // Inside the async block, so a hook that panics before returning its future is caught too.
                    let verdict = AssertUnwindSafe(async { authenticate.authenticate(&handshake).await });
                    // A hook that hangs neither holds a place forever nor holds up a shutdown.
                    let stopping = inner.connections.stopping().clone();
                    let verdict = tokio::select! {
                        verdict = verdict.catch_unwind() => verdict,
                        () = stopping.cancelled() => return Rejection::ShuttingDown.response(),
                        () = tokio::time::sleep(inner.handshake_timeout) => {
                            tracing::warn!("the authentication hook took longer than the handshake timeout; answering 503");
                            return Rejection::SlowAuthentication.response();
                        }
                    };
                    match verdict {
                        Ok(Ok(identity)) => identity,
                        Ok(Err(refusal)) => {
                            tracing::debug!(status = %refusal.status(), remote = ?handshake.remote_addr(), "authentication refused");
                            return refusal.response();
                        }
                        Err(_) => {
                            tracing::error!("the authentication hook panicked; answering 500");
                            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
                        }
                    }
                }
            };
            // This task ends once the upgrade is done; the connection gets a task of its own.
            let starting = inner.clone();
            inner.connections.spawn(async move {
                match upgrading.await {
                    Ok(upgraded) => {
                        let (io, pre_read) = take_back(upgraded);
                        tracing::debug!(transport = transport_kind(&io), "upgraded");
                        let socket = Socket::new(io, Role::Server, starting.max_message_size, &pre_read);
                        (starting.start)(socket, handshake, identity, slot);
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
        };
        async move {
            let response = answering.await;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                metrics::handshake_refused(response.status());
            }
            response
        }
    }

    /// The checks that need no waiting: a valid upgrade, an allowed origin,
    /// room for one more connection.
    fn admit<B>(&self, request: &mut Request<B>) -> Result<Admitted, Rejection> {
        let key = check_upgrade(request)?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| Rejection::BadKey)?;
        let remote_addr = remote_addr(request);
        let handshake = Handshake::detached(remote_addr, request.uri(), request.headers());
        if !self.inner.origins.admit(&handshake) {
            tracing::debug!(origin = ?handshake.headers().get(http::header::ORIGIN), "origin not allowed");
            return Err(Rejection::ForbiddenOrigin);
        }
        let slot = self.inner.connections.admit().inspect_err(|rejection| match rejection {
            Rejection::Full => tracing::warn!("at max_connections: refusing a WebSocket upgrade with 503"),
            _ => tracing::debug!(?rejection, "refusing a WebSocket upgrade"),
        })?;
        let upgrading = hyper::upgrade::on(request);
        Ok(Admitted { slot, handshake, upgrading, accept })
    }
}

/// The client's address: as our accept loop records it, or as axum's
/// `ConnectInfo` (from `into_make_service_with_connect_info`).
fn remote_addr<B>(request: &Request<B>) -> Option<SocketAddr> {
    let ours = request.extensions().get::<SocketAddr>().copied();
    #[cfg(feature = "axum")]
    let ours = ours.or_else(|| request.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0));
    ours
}

/// An upgrade request that passed the checks that need no waiting.
struct Admitted {
    slot: Slot,
    handshake: Handshake,
    upgrading: hyper::upgrade::OnUpgrade,
    accept: HeaderValue,
}

impl<B: 'static> tower_service::Service<Request<B>> for Endpoint {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(self.handle(request).map(Ok))
    }
}

/// Sets up one accepted connection (registers it, builds its service) and
/// returns the future that drives it to its end. If the service factory
/// panics, returns instead the future that closes the socket with 1011.
fn start_connection<T: Transport, S: Serve>(
    socket: T,
    handshake: Handshake,
    identity: Identity,
    factory: &impl ServiceFactory<S>,
    config: &Settings,
    document: &Option<discovery::Document>,
    slot: &mut Slot,
) -> Result<impl Future<Output = CloseReason> + Send + 'static, impl Future<Output = ()> + Send + 'static> {
    let id = config.hub.next_connection_id();
    let span = tracing::debug_span!("conn", %id, remote = ?handshake.remote_addr(), user = identity.user.as_deref());
    let _entered = span.enter();
    let peer = Peer::new(id, &config.peer);
    slot.attach(&peer);
    let hub = config.hub.clone();
    hub.register(peer.clone(), identity.user.clone());
    let (identity_user, identity_roles, hub_for_user) = (identity.user.clone(), identity.roles.clone(), hub.clone());
    let callback = <S::Callback as Contract>::from_caller(peer.clone());
    let connection = Connection::new(peer.clone(), handshake, identity, hub.clone(), callback);
    let untyped = connection.untyped();
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
    metrics::connections(1);
    if let Some(on_connect) = &config.hooks.on_connect {
        run_hook("on_connect", || on_connect(&untyped));
    }
    // The contract first, then a merged jsonrpsee module, then `rpc.discover`;
    // the failure hook sees every answer.
    let handler = ReportFailures {
        inner: Discovery { inner: WithRpcModule::new(service, config.methods.clone(), id), document: document.clone() },
        hook: config.hooks.on_handler_error.clone().map(|hook| (hook, untyped.clone())),
    };
    let info =
        ConnectionInfo { user: identity_user.clone(), roles: identity_roles, remote_addr: untyped.remote_addr() };
    let driver = Driver::new(socket, peer, handler, &config.peer).connection_info(info);
    // Holds the connection only when someone is to hear of its end (boxed:
    // every connection's task carries the field).
    let on_disconnect = config.hooks.on_disconnect.clone().map(|hook| Box::new((hook, untyped)));
    drop(_entered);
    let on_end = move |reason: &CloseReason| {
        metrics::connections(-1);
        hub.unregister(id);
        if let Some(hooked) = on_disconnect {
            let (on_disconnect, connection) = *hooked;
            run_hook("on_disconnect", || on_disconnect(&connection, reason));
        }
    };
    // With a bus, a user's messages reach this connection once its node
    // listens for them: start serving then. Combinators, not an async block,
    // so the task does not keep room for the driver twice.
    let run = match identity_user {
        Some(user) => Either::Left(hub_for_user.subscribed(&Topic::User(user)).then(move |()| driver.run(on_end))),
        None => Either::Right(driver.run(on_end)),
    };
    Ok(run.instrument(span))
}

/// Runs an application hook; a panic in it is logged, and goes no further.
fn run_hook(name: &str, hook: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!(hook = name, "a lifecycle hook panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWrite;

    #[tokio::test]
    async fn the_server_stream_passes_vectored_writes_through() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let io: ServerIo = Either::Left(stream);
        assert!(io.is_write_vectored(), "the socket's frames would go out one slice per system call");
    }
}
