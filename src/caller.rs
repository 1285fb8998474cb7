//! What a typed stub sends through: [`OneWay`] for one-way messages, [`TwoWay`]
//! for calls that await a reply.
//!
//! A stub's one-way methods need `C: OneWay`, its other methods `C: TwoWay`, so
//! `hub.group(..)` (one-way only) offers just the one-way callbacks, checked
//! at compile time. [`Peer`] and [`Client`](crate::Client) implement both, as
//! does any jsonrpsee client through
//! [`interop::Jsonrpsee`](crate::interop::Jsonrpsee).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::peer::Peer;

/// Sends one-way messages (JSON-RPC notifications).
pub trait OneWay: Send + Sync {
    /// Sends `method` with `params` (serialized as given: a struct or map is
    /// by-name, a tuple or sequence by-position). Returns once the message is
    /// queued; there is no reply.
    fn notify<P: Serialize + Send + Sync>(
        &self,
        method: &str,
        params: P,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Makes calls and awaits their replies.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make calls that wait for a reply",
    label = "this sends one-way messages only",
    note = "a hub's fan-out (`hub.all()`, `hub.group(..)`, `hub.user(..)`, ...) sends #[oneway] methods only; \
            use `hub.connection(id)` to call one connection and await its reply"
)]
pub trait TwoWay: OneWay {
    /// Calls `method` and decodes the reply's result as `R`.
    ///
    /// `timeout` overrides the caller's default deadline. Dropping the future
    /// before the reply arrives tells the peer to stop (`$/cancelRequest`)
    /// where the caller supports it.
    fn call<P, R>(
        &self,
        method: &str,
        params: P,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<R, Error>> + Send
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send;
}

impl OneWay for Peer {
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        self.notify_with(method, Some(params)).await
    }
}

impl TwoWay for Peer {
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        self.call_with(method, Some(params), timeout).await
    }
}
