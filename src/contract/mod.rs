//! What the macros generate against: contracts, their stubs, their dispatch
//! tables, and the metadata they record.
//!
//! For a contract trait `X`, the macros generate the stub `XClient<C>`. The stub
//! type also names the contract at the type level: it implements [`Contract`]
//! (and [`ServiceContract`] for a service), and `XClient<C>: Dispatch<S>` for
//! every `S: X`, which is how a server or client reaches the user's methods.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::dispatch::{Handler, HandlerFuture, IncomingCall};
use crate::peer::Peer;

mod info;

pub use info::{ContractInfo, ContractKind, DocumentedErrors, ErrorInfo, MethodInfo, ParamInfo, SchemaFn};
#[doc(hidden)]
pub use info::{ErrorsOf, ErrorsUndocumented, ErrorsViaTrait, schema_of};

/// A contract, named by its typed stub.
///
/// Implemented by the macros for `XClient<C>`, for every caller `C`.
pub trait Contract: Sized {
    /// What this stub sends through.
    type Caller;
    /// The same contract's stub over another caller.
    type Stub<C>: Contract<Caller = C>;
    /// Wraps a caller in this stub.
    fn from_caller(caller: Self::Caller) -> Self;
    /// The contract's metadata, recorded at compile time.
    fn info() -> &'static ContractInfo;
}

/// A service contract: the side clients call, with the callback contract its
/// connections carry.
pub trait ServiceContract: Contract {
    /// The callback stub a service's [`Connection`](crate::Connection) carries.
    type Callback: Contract<Caller = Peer> + Clone + Send + Sync + 'static;
}

/// The dispatch table of a contract for implementation `S`.
#[diagnostic::on_unimplemented(
    message = "`{S}` does not implement the contract of `{Self}`",
    label = "implement the contract trait for `{S}`"
)]
pub trait Dispatch<S>: Contract {
    /// Starts `method`, or gives the call back when the contract has no such method.
    #[doc(hidden)]
    fn dispatch<'a>(service: &Arc<S>, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>>;
}

/// An implementation of contract `M`, ready to answer calls on one connection.
///
/// Made by the `into_service()` method every contract trait gets.
pub struct ServiceInstance<M, S> {
    service: Arc<S>,
    _contract: PhantomData<fn() -> M>,
}

/// Another handle to the same instance (a reconnecting client serves each
/// of its connections with it).
impl<M, S> Clone for ServiceInstance<M, S> {
    fn clone(&self) -> Self {
        ServiceInstance { service: self.service.clone(), _contract: PhantomData }
    }
}

impl<M, S> ServiceInstance<M, S> {
    /// Wraps `service`; generated `into_service()` calls this.
    pub fn new(service: S) -> Self {
        ServiceInstance { service: Arc::new(service), _contract: PhantomData }
    }

    /// The implementation.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }
}

impl<M, S> Handler for ServiceInstance<M, S>
where
    M: Dispatch<S> + 'static,
    S: Send + Sync + 'static,
{
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        M::dispatch(&self.service, method, call)
    }
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
    fn info() -> &'static ContractInfo {
        static INFO: ContractInfo = ContractInfo {
            name: "NoCallbacks",
            namespace: None,
            kind: ContractKind::Callback,
            docs: "A callback contract without methods.",
            version: env!("CARGO_PKG_VERSION"),
            methods: &[],
            callback: None,
        };
        &INFO
    }
}

impl<C, S> Dispatch<S> for NoCallbacks<C> {
    fn dispatch<'a>(_: &Arc<S>, _: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        Err(call)
    }
}

impl NoCallbacks {
    /// An implementation of no callbacks, for a client of a service without a callback contract.
    pub fn service() -> ServiceInstance<NoCallbacks, ()> {
        ServiceInstance::new(())
    }
}

/// Marks the stubs of callback contracts, so `#[service(callback = X)]` can
/// check that `X` is one.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the stub of a callback contract",
    label = "`callback = ...` names a trait declared with #[wsduplex::callback]"
)]
pub trait CallbackContract {}
