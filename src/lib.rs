//! wsduplex: typed two-way JSON-RPC 2.0 over one WebSocket.
#![deny(missing_docs)]

mod caller;
mod client;
mod connection;
mod contract;
mod dispatch;
mod error;
mod hub;
mod peer;
mod server;
mod wire;

pub use caller::{Call, Jsonrpsee, Notify};
pub use client::{Client, ClientBuilder};
pub use connection::{Connection, ConnectionId, ParseConnectionIdError};
pub use contract::{
    Contract, ContractInfo, ContractKind, Dispatch, MethodInfo, NoCallbacks, ParamInfo, ServiceContract,
    ServiceInstance,
};
pub use error::{Error, codes};
pub use wsduplex_macros::{callback, service};
pub use hub::{Audience, Backplane, ConnectionTarget, Fanout, Hub, InProcess, LocalConnections, Payload};
pub use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
pub use peer::{CloseReason, Peer};
pub use server::{Endpoint, Server, ServerBuilder};

/// What generated code reaches for; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::contract::CallbackContract;
    pub use crate::dispatch::{HandlerFuture, IncomingCall, IntoReply, handle};
    pub use crate::wire::ByName;
    pub use serde;
}
