//! Call middleware: code that runs around every incoming call and
//! notification, on either end (a server's service, a client's callbacks).
//!
//! A [`Middleware`] gets the [`Call`] (its connection, wire method, id and
//! raw params) and [`Next`], the rest of the chain. It hands the call on
//! with [`Next::run`], which gives back the call's [`Running`] future to
//! await, wrap or return as it is; or it refuses the call with an error
//! object, and the handler never runs. Middleware registered on a builder
//! (`middleware(..)`) run in the order given, the first outermost, as
//! SignalR's hub filters do.
//!
//! ```
//! use std::time::Instant;
//! use wsduplex::middleware::{self, Call, Next};
//!
//! # #[wsduplex::service(namespace = "calc")]
//! # pub trait Calc { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct Adder;
//! # impl Calc for Adder { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let timing = middleware::from_fn(|call: &Call<'_>, next: Next<'_>| {
//!     let method = call.method().to_owned();
//!     let started = Instant::now();
//!     let running = next.run();
//!     Ok(middleware::Running::new(async move {
//!         let answered = running.await;
//!         println!("{method} took {:?}, error {:?}", started.elapsed(), answered.error_code());
//!         answered
//!     }))
//! });
//! let read_only = middleware::from_fn(|call: &Call<'_>, next: Next<'_>| {
//!     if call.method().starts_with("admin.") {
//!         return Err(wsduplex::ErrorObjectOwned::owned(-32050, "read-only server", None::<()>));
//!     }
//!     Ok(next.run())
//! });
//! let server = wsduplex::Server::builder()
//!     .middleware(timing)
//!     .middleware(read_only)
//!     .build("127.0.0.1:0")
//!     .await?;
//! # let url = format!("ws://{}", server.local_addr()?);
//! # let _serving = server.start(|_conn: wsduplex::Connection| Adder.into_service());
//! # assert_eq!(CalcClient::connect(&url).await?.add(2, 3).await?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! Why not a tower `Layer`: a call is dispatched synchronously from the
//! frame it came in (its params borrowed, not copied), and only its running
//! future outlives that; a [`Call`] borrowed for the dispatch and a future
//! to wrap fit that exactly, where a tower request would have to own its
//! params, and a `Service` would ask for `poll_ready` and `&mut self`, which
//! mean nothing per message. A builder takes any number of them at run time
//! (`dyn Middleware`), so adding one does not change the server's type.
//!
//! Without middleware, a call goes straight to its handler: nothing is
//! boxed or checked per call beyond one branch.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use jsonrpsee_types::ErrorObjectOwned;
use serde_json::value::RawValue;

use crate::connection_id::ConnectionId;
use crate::dispatch::{Answer, Handler, HandlerFuture, IncomingCall, Reached};
use crate::identity::Roles;
use crate::wire::{self, RequestId};

/// Runs around incoming calls (see the [module docs](self)).
pub trait Middleware: Send + Sync + 'static {
    /// Handles `call`: `next.run()` hands it on and gives back its future;
    /// `Err(error)` answers the caller with `error` instead (a notification
    /// gets nothing), and the handler never runs.
    fn call(&self, call: &Call<'_>, next: Next<'_>) -> Result<Running, ErrorObjectOwned>;
}

/// A [`Middleware`] made of a function (see the [module docs](self)).
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: for<'a, 'b> Fn(&'a Call<'b>, Next<'b>) -> Result<Running, ErrorObjectOwned> + Send + Sync + 'static,
{
    FromFn(f)
}

/// The middleware [`from_fn`] makes.
#[derive(Clone)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F> Middleware for FromFn<F>
where
    F: for<'a, 'b> Fn(&'a Call<'b>, Next<'b>) -> Result<Running, ErrorObjectOwned> + Send + Sync + 'static,
{
    fn call(&self, call: &Call<'_>, next: Next<'_>) -> Result<Running, ErrorObjectOwned> {
        (self.0)(call, next)
    }
}

/// What the connection a call came in on says of itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionInfo {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) roles: Roles,
    pub(crate) remote_addr: Option<SocketAddr>,
}

/// One incoming call or notification, as middleware sees it.
#[derive(Debug)]
pub struct Call<'a> {
    connection: ConnectionId,
    info: &'a ConnectionInfo,
    method: &'a str,
    id: Option<&'a RequestId>,
    params: Option<&'a RawValue>,
}

impl<'a> Call<'a> {
    /// The connection it came in on.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// The user the server's authentication gave the connection; `None` on
    /// a client, and for anonymous connections.
    pub fn user(&self) -> Option<&'a str> {
        self.info.user.as_deref()
    }

    /// The roles the server's authentication gave the connection.
    pub fn roles(&self) -> &'a [Arc<str>] {
        self.info.roles.as_slice()
    }

    /// The peer's address, where known (a server's clients).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }

    /// The wire method name, as the peer sent it.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request id as JSON text (`7`, `"a-1"`); `None` for a notification.
    pub fn id(&self) -> Option<String> {
        self.id.map(ToString::to_string)
    }

    /// True for a notification: there is no one to answer.
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// The params as the peer sent them, not yet decoded.
    pub fn params(&self) -> Option<&'a RawValue> {
        self.params
    }
}

/// The rest of the chain after one middleware: the next middleware, and
/// then the handler.
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    handler: &'a dyn Handler,
    call: &'a Call<'a>,
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next").field("middleware_left", &self.rest.len()).finish_non_exhaustive()
    }
}

impl Next<'_> {
    /// Hands the call on: to the next middleware, or to the handler (which
    /// decodes its params now). Gives back the future that runs it; a method
    /// the handler does not have is answered with -32601.
    pub fn run(self) -> Running {
        let Next { rest, handler, call } = self;
        match rest.split_first() {
            Some((first, rest)) => match first.call(call, Next { rest, handler, call }) {
                Ok(running) => running,
                Err(error) => Running::answered(call.id, error, Reached::Refused),
            },
            None => {
                let incoming =
                    IncomingCall { id: call.id.cloned(), params: call.params, roles: call.info.roles.as_slice() };
                match handler.dispatch(call.method, incoming) {
                    Ok(future) => Running(future),
                    Err(_) => Running::answered(call.id, wire::method_not_found(call.method), Reached::NoSuchMethod),
                }
            }
        }
    }
}

/// An incoming call on its way: resolves to how it was [`Answered`].
#[must_use = "a call runs only while its future is polled: return it, or await it"]
pub struct Running(HandlerFuture);

impl Running {
    /// A call's future as a middleware rewrote it (`running` wrapped with
    /// timing, say).
    pub fn new(running: impl Future<Output = Answered> + Send + 'static) -> Running {
        use futures_util::FutureExt;
        Running(Box::pin(running.map(|answered| answered.0)))
    }

    /// A call answered at once with `error`, having `reached` that far.
    fn answered(id: Option<&RequestId>, error: ErrorObjectOwned, reached: Reached) -> Running {
        Running(Box::pin(std::future::ready(Answer::early(id, &error, reached))))
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Running")
    }
}

impl Future for Running {
    type Output = Answered;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        self.0.as_mut().poll(cx).map(Answered)
    }
}

/// How an incoming call ended.
#[derive(Debug)]
pub struct Answered(Answer);

impl Answered {
    /// The code of the error object the caller got (or would have, for a
    /// notification); `None` when the call succeeded. Calls answered by a
    /// merged jsonrpsee module report `None` either way.
    pub fn error_code(&self) -> Option<i32> {
        self.0.error
    }

    /// True when the handler panicked (the caller got -32603).
    pub fn panicked(&self) -> bool {
        self.0.failures.iter().any(crate::dispatch::HandlerError::panicked)
    }
}

/// The middleware of one builder, in the order given.
#[derive(Clone, Default)]
pub(crate) struct Chain(Arc<Vec<Arc<dyn Middleware>>>);

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} middleware", self.0.len())
    }
}

impl Chain {
    pub(crate) fn push(&mut self, middleware: impl Middleware) {
        Arc::make_mut(&mut self.0).push(Arc::new(middleware));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs `call` through the chain into `handler`. Every call is answered
    /// here, unknown methods too (middleware see those as well).
    pub(crate) fn dispatch(
        &self,
        handler: &dyn Handler,
        connection: ConnectionId,
        info: &ConnectionInfo,
        method: &str,
        call: IncomingCall<'_>,
    ) -> HandlerFuture {
        let call = Call { connection, info, method, id: call.id.as_ref(), params: call.params };
        Next { rest: &self.0, handler, call: &call }.run().0
    }
}
