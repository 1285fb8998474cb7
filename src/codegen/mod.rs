//! Documents generated from contracts' metadata
//! ([`Contract::info`](crate::contract::Contract::info)): the
//! [`openrpc`] document a server answers `rpc.discover` with, and
//! [`typescript`] clients for browsers.

pub mod openrpc;
mod schemas;
pub mod typescript;
