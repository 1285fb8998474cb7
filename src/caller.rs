//! What a typed stub sends through: [`Notify`] for one-way messages, [`Call`]
//! for calls that await a reply.
//!
//! A stub's one-way methods need `C: Notify`, its other methods `C: Call`, so
//! `hub.group(..)` (one-way only) offers just the one-way callbacks, checked
//! at compile time. [`Peer`] and [`Client`](crate::Client) implement both, as
//! does any jsonrpsee client through [`Jsonrpsee`]. They also implement
//! jsonrpsee's own `ClientT`, so jsonrpsee `#[rpc(client)]` traits run over a
//! wsduplex connection.

use std::future::Future;
use std::time::Duration;

use jsonrpsee_core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::traits::ToRpcParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::peer::Peer;

/// Sends one-way messages (JSON-RPC notifications).
pub trait Notify: Send + Sync {
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
pub trait Call: Notify {
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

impl Notify for Peer {
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        self.notify_with(method, Some(params)).await
    }
}

impl Call for Peer {
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        self.call_with(method, Some(params), timeout).await
    }
}

/// jsonrpsee's client interface over a wsduplex connection.
impl ClientT for Peer {
    async fn notification<Params>(&self, method: &str, params: Params) -> Result<(), ClientError>
    where
        Params: ToRpcParams + Send,
    {
        let params = params.to_rpc_params()?;
        Ok(self.notify_with(method, params).await?)
    }

    async fn request<R, Params>(&self, method: &str, params: Params) -> Result<R, ClientError>
    where
        R: DeserializeOwned,
        Params: ToRpcParams + Send,
    {
        let params = params.to_rpc_params()?;
        Ok(self.call_with(method, params, None).await?)
    }

    async fn batch_request<'a, R>(&self, batch: BatchRequestBuilder<'a>) -> Result<BatchResponse<'a, R>, ClientError>
    where
        R: DeserializeOwned + std::fmt::Debug + 'a,
    {
        let calls = batch.build()?;
        let replies = self.call_batch(&calls, self.default_timeout()).await?;
        let (mut succeeded, mut failed) = (0, 0);
        let mut entries = Vec::with_capacity(replies.len());
        for reply in replies {
            match reply.decode() {
                Ok(result) => {
                    entries.push(Ok(result));
                    succeeded += 1;
                }
                Err(Error::Rpc(object)) => {
                    entries.push(Err(object));
                    failed += 1;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(BatchResponse::new(succeeded, entries, failed))
    }
}

/// Any jsonrpsee client (`WsClient`, `HttpClient`, …) as a wsduplex caller, so
/// a generated service stub drives a plain jsonrpsee client:
/// `ChatClient::new(Jsonrpsee(ws_client))`.
///
/// jsonrpsee clients cannot answer callbacks, and cancel nothing on the
/// server when a call is dropped.
#[derive(Clone, Debug)]
pub struct Jsonrpsee<C>(pub C);

/// Parameters already serialized, for jsonrpsee's `ToRpcParams`.
struct Serialized(Box<RawValue>);

impl ToRpcParams for Serialized {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(Some(self.0))
    }
}

fn serialize<P: Serialize>(params: &P) -> Result<Serialized, Error> {
    serde_json::value::to_raw_value(params).map(Serialized).map_err(Error::Encode)
}

impl<C: ClientT + Send + Sync> Notify for Jsonrpsee<C> {
    async fn notify<P: Serialize + Send + Sync>(&self, method: &str, params: P) -> Result<(), Error> {
        let params = serialize(&params)?;
        Ok(self.0.notification(method, params).await?)
    }
}

impl<C: ClientT + Send + Sync> Call for Jsonrpsee<C> {
    async fn call<P, R>(&self, method: &str, params: P, timeout: Option<Duration>) -> Result<R, Error>
    where
        P: Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        let params = serialize(&params)?;
        let request = self.0.request(method, params);
        match timeout {
            None => Ok(request.await?),
            Some(limit) => {
                tokio::time::timeout(limit, request).await.map_err(|_| Error::Timeout(limit))?.map_err(Error::from)
            }
        }
    }
}
