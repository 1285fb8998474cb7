//! Documents generated from contracts' metadata
//! ([`Contract::info`](crate::contract::Contract::info)): the
//! [`openrpc`] document a server answers `rpc.discover` with, and
//! [`typescript`] clients for browsers.
#![doc = include_str!("../../docs/guide/schema.md")]
#![doc = include_str!("../../docs/guide/browser.md")]

pub mod openrpc;
mod schemas;
pub mod typescript;
