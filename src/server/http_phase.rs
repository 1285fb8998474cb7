//! The HTTP phase of every connection, whichever way it is served: the
//! standalone server's listener, and [`Endpoint::serve`] for an axum app on
//! a TCP or TLS listener. Each connection must send each request head within
//! the handshake timeout (a client that trickles one in, or sends half of
//! one and waits, is cut off), and at most `max_connections` connections may
//! be in their HTTP phase at once (past that, a new one is closed at once,
//! before it has said a word). A connection leaves its HTTP phase when it
//! upgrades to a WebSocket, or closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::Endpoint;
use crate::deadline::{deadline_after, deadline_in};
use crate::transport::ServerTls;

/// How long an HTTP connection that is shutting down may take to finish its request.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What a connection's HTTP requests go to.
#[derive(Clone)]
pub(super) enum Served {
    /// Every request, on any path, is a WebSocket upgrade for the endpoint
    /// (the standalone server): the whole HTTP phase, not just each request
    /// head, must fit in the handshake timeout twice (once for the request,
    /// once more for the authentication hook).
    Endpoint,
    /// An axum app that mounts the endpoint somewhere among other routes.
    #[cfg(feature = "axum")]
    App(axum::Router),
}

/// What an HTTP response carries: axum's body when an app may answer, else
/// the endpoint's own.
#[cfg(feature = "axum")]
type HttpBody = axum::body::Body;
#[cfg(not(feature = "axum"))]
type HttpBody = String;

/// Where the accept loop takes its connections from.
pub(super) trait Accept: Send + 'static {
    /// The connection's byte stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection and its peer's address; failures are handled inside.
    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr)> + Send;
}

/// The standalone server's TCP listener: small frames go out at once
/// (no Nagle), and a failed accept pauses briefly if it is a shortage.
struct Tcp(TcpListener);

impl Accept for Tcp {
    type Io = TcpStream;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, remote);
                }
                Err(error) => crate::accept::accept_failed(error).await,
            }
        }
    }
}

/// The standalone server's TLS listener, without Nagle as for TCP.
#[cfg(feature = "tls")]
struct TlsNoDelay(crate::tls::TlsListener);

#[cfg(feature = "tls")]
impl Accept for TlsNoDelay {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        let (stream, remote) = self.0.next_connection().await;
        let _ = stream.get_ref().0.set_nodelay(true);
        (stream, remote)
    }
}

/// Any axum listener, for [`Endpoint::serve`].
#[cfg(feature = "axum")]
pub(super) struct Axum<L>(pub(super) L);

#[cfg(feature = "axum")]
impl<L> Accept for Axum<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Io = L::Io;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr)> + Send {
        self.0.accept()
    }
}

/// The accept loop: one task per connection, until the endpoint shuts down.
pub(super) async fn accept(mut listener: impl Accept, endpoint: Endpoint, served: Served) {
    let stopping = endpoint.connections().stopping().clone();
    let tasks = endpoint.connections().clone();
    let (at_once, timeout) = endpoint.handshake_limits();
    let handshakes = Arc::new(Semaphore::new(at_once.min(Semaphore::MAX_PERMITS)));
    loop {
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.cancelled() => return,
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many connections in their HTTP phase; closing a new one");
            continue;
        };
        let phase = Phase { remote, endpoint: endpoint.clone(), served: served.clone(), permit };
        tasks.spawn(serve_http(io, phase, deadline_in(timeout), timeout));
    }
}

/// One connection in its HTTP phase.
struct Phase {
    remote: SocketAddr,
    endpoint: Endpoint,
    served: Served,
    /// Its place among the connections before their upgrade.
    permit: OwnedSemaphorePermit,
}

/// Serves one connection's HTTP until its WebSocket upgrade, or its end:
/// each request head must be in within `timeout` (the first by `deadline`),
/// and for [`Served::Endpoint`] the answer must be out one `timeout` later.
async fn serve_http<Io>(io: Io, phase: Phase, deadline: Instant, timeout: Duration)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Phase { remote, endpoint, served, permit } = phase;
    let stopping = endpoint.connections().stopping().clone();
    let whole_phase = matches!(served, Served::Endpoint).then(|| deadline_after(deadline, timeout));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        answer(&endpoint, &served, remote, request).map(Ok::<_, Infallible>)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()));
    let serving = http.serve_connection(TokioIo::new(io), service);
    let mut serving = pin!(serving.with_upgrades());
    let cut_off = async {
        match whole_phase {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serving.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%remote, error = %e, "HTTP connection failed or timed out");
            }
        }
        () = cut_off => {
            tracing::debug!(%remote, "closing a connection that did not finish its upgrade in time");
        }
        () = stopping.cancelled() => {
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_SHUTDOWN_GRACE, serving.as_mut()).await;
        }
    }
    // The place is free before the socket closes: a client that sees its
    // connection end and dials again finds it.
    drop(permit);
}

/// One request's answer: from the endpoint, or from the app (which gets the
/// client's address as axum's `ConnectInfo`, as `into_make_service_with_connect_info` gives it).
fn answer(
    endpoint: &Endpoint,
    served: &Served,
    remote: SocketAddr,
    mut request: Request<Incoming>,
) -> BoxFuture<'static, Response<HttpBody>> {
    match served {
        Served::Endpoint => {
            request.extensions_mut().insert(remote);
            endpoint.handle(request).map(|response| response.map(HttpBody::from)).boxed()
        }
        #[cfg(feature = "axum")]
        Served::App(app) => {
            request.extensions_mut().insert(axum::extract::ConnectInfo(remote));
            let mut app = app.clone();
            let answered = tower_service::Service::call(&mut app, request);
            answered.map(|answered| answered.unwrap_or_else(|never| match never {})).boxed()
        }
    }
}

/// The standalone server's accept loop, on TCP or TLS (each TLS handshake
/// within the handshake timeout, as many at once as connections may be in
/// their HTTP phase).
pub(super) async fn accept_standalone(listener: TcpListener, tls: Option<ServerTls>, endpoint: Endpoint) {
    let Some(tls) = tls else {
        return accept(Tcp(listener), endpoint, Served::Endpoint).await;
    };
    #[cfg(feature = "tls")]
    {
        let (at_once, timeout) = endpoint.handshake_limits();
        let listener = crate::tls::TlsListener::new(listener, tls).handshake_timeout(timeout).max_handshakes(at_once);
        accept(TlsNoDelay(listener), endpoint, Served::Endpoint).await
    }
    #[cfg(not(feature = "tls"))]
    match tls {}
}
