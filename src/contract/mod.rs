//! What the macros generate against: contracts, their stubs, the types that
//! serve them, and the metadata they record.
//!
//! For a contract trait `X`, the macros generate two types:
//!
//! - the stub `XClient<C>`, which calls a remote implementor of `X` through a
//!   caller `C`. It also names the contract at the type level (it implements
//!   [`Contract`]): a [`Hub`](crate::Hub) or [`Connection`] is typed by the
//!   stub of the callback contract it calls;
//! - `ServeX<S>`, which answers calls with an implementation `S: X`. It
//!   implements [`Serve`]; a server's [`ServiceFactory`] returns one per
//!   connection, and a client serves its callbacks with one.
#![doc = include_str!("../../docs/guide/macros.md")]

use std::time::Duration;

use crate::connection::Connection;
use crate::dispatch::{HandlerFuture, IncomingCall};
use crate::peer::Peer;

pub(crate) mod info;

pub use crate::caller::{OneWay, TwoWay};
pub use crate::rpc_error::FromErrorObject;
pub use info::{
    ContractInfo, ContractKind, ContractType, DocumentedErrors, ErrorInfo, MethodInfo, ParamInfo, SchemaFn,
};
/// The JSON Schema library: contracts' types implement its `JsonSchema`. A
/// crate without its own `schemars` dependency derives it with
/// `#[derive(wsduplex::contract::schemars::JsonSchema)]` and
/// `#[schemars(crate = "wsduplex::contract::schemars")]`.
pub use schemars;

/// A contract, named by its typed stub.
///
/// Implemented by the macros for `XClient<C>`, for every caller `C`. The
/// stub's inherent `new`, `caller` and `with_timeout` call these; when a
/// contract method takes one of those names, the method wins and these
/// functions remain.
pub trait Contract: Sized {
    /// What this stub sends through.
    type Caller;
    /// The same contract's stub over another caller.
    type Stub<C>: Contract<Caller = C>;
    /// Wraps a caller in this stub.
    fn from_caller(caller: Self::Caller) -> Self;
    /// What this stub sends through.
    fn caller(&self) -> &Self::Caller;
    /// A copy of this stub whose calls fail with [`Error::Timeout`](crate::Error::Timeout)
    /// after `timeout`, instead of the caller's default deadline.
    fn with_timeout(&self, timeout: Duration) -> Self
    where
        Self::Caller: Clone;
    /// The contract's metadata, recorded at compile time.
    fn info() -> &'static ContractInfo;
}

/// An implementation bound to its contract, ready to answer calls on one
/// connection: the generated `ServeX<S>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not serve a contract",
    label = "expected `ServeX<_>`, made by `into_service()` on an implementation of contract `X`",
    note = "a server's factory returns `Session {{ .. }}.into_service()` (or `ServeX::new(..)`)"
)]
pub trait Serve: Clone + Send + Sync + 'static {
    /// The contract it implements, named by its stub.
    type Contract: Contract;
    /// The stub of the callback contract its connections carry:
    /// [`NoCallbacks`] for a service without one, and for a callback contract.
    type Callback: Contract<Caller = Peer> + Clone + Send + Sync + 'static;
    /// Starts `method`, or gives the call back when the contract has no such method.
    #[doc(hidden)]
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>>;
}

/// Makes the service of each new connection from the connection's handle:
/// any `Fn(Connection<Callback>) -> ServeX<S>`, usually a closure ending in
/// `.into_service()`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make the service of a connection",
    label = "expected a closure `|conn: Connection<_>| Session {{ .. }}.into_service()`"
)]
pub trait ServiceFactory<S: Serve>: Fn(Connection<S::Callback>) -> S + Send + Sync + 'static {}

impl<F, S> ServiceFactory<S> for F
where
    S: Serve,
    F: Fn(Connection<S::Callback>) -> S + Send + Sync + 'static,
{
}

/// The callback contract of a service that declares none: it has no methods.
#[derive(Clone, Debug)]
pub struct NoCallbacks<C = Peer>(C);

impl<C> Contract for NoCallbacks<C> {
    type Caller = C;
    type Stub<T> = NoCallbacks<T>;
    fn from_caller(caller: C) -> Self {
        NoCallbacks(caller)
    }
    fn caller(&self) -> &C {
        &self.0
    }
    fn with_timeout(&self, _: Duration) -> Self
    where
        C: Clone,
    {
        NoCallbacks(self.0.clone())
    }
    fn info() -> &'static ContractInfo {
        static INFO: ContractInfo = ContractInfo::new("NoCallbacks", ContractKind::Callback)
            .with_docs("A callback contract without methods.")
            .with_version(env!("CARGO_PKG_VERSION"));
        &INFO
    }
}

impl NoCallbacks {
    /// Serves no callbacks: for a client of a service without a callback contract.
    pub fn service() -> ServeNoCallbacks {
        ServeNoCallbacks
    }
}

/// Answers no calls: what a client of a service without a callback contract serves.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServeNoCallbacks;

impl Serve for ServeNoCallbacks {
    type Contract = NoCallbacks;
    type Callback = NoCallbacks;
    fn dispatch<'a>(&self, _: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        Err(call)
    }
}

/// Leads from a contract's stub to the type that serves it with `H`, so a
/// service's generated `connect` can serve its callback handler.
#[doc(hidden)]
pub trait ServeWith<H> {
    /// `ServeX<H>`.
    type Serve: Serve;
    /// Binds `handler`.
    fn serve(handler: H) -> Self::Serve;
}

/// Marks the stubs of callback contracts, so `#[service(callback = X)]` can
/// check that `X` is one.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the stub of a callback contract",
    label = "`callback = ...` names a trait declared with #[wsduplex::callback]"
)]
pub trait CallbackContract {}
