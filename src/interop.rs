//! Working with jsonrpsee: a jsonrpsee client drives a generated stub
//! ([`Jsonrpsee`]), and wsduplex's [`Client`] and [`Peer`] implement
//! jsonrpsee's `ClientT`, so jsonrpsee `#[rpc(client)]` traits run over a
//! wsduplex connection. Errors convert both ways.
//!
//! Messages and error objects are `jsonrpsee-types` on both sides, so a plain
//! jsonrpsee client also calls a wsduplex service as it is, and a jsonrpsee
//! `RpcModule` is served next to a contract with
//! [`ServerBuilder::rpc_module`](crate::server::ServerBuilder::rpc_module).

use std::time::Duration;

use jsonrpsee_core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::traits::ToRpcParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::caller::{Call, OneWay};
use crate::client::Client;
use crate::error::Error;
use crate::peer::Peer;

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

/// jsonrpsee's client interface, so jsonrpsee `#[rpc(client)]` traits work on a wsduplex client.
impl ClientT for Client {
    async fn notification<Params>(&self, method: &str, params: Params) -> Result<(), ClientError>
    where
        Params: ToRpcParams + Send,
    {
        self.ready().await?.notification(method, params).await
    }

    async fn request<R, Params>(&self, method: &str, params: Params) -> Result<R, ClientError>
    where
        R: DeserializeOwned,
        Params: ToRpcParams + Send,
    {
        self.ready().await?.request(method, params).await
    }

    async fn batch_request<'a, R>(&self, batch: BatchRequestBuilder<'a>) -> Result<BatchResponse<'a, R>, ClientError>
    where
        R: DeserializeOwned + std::fmt::Debug + 'a,
    {
        self.ready().await?.batch_request(batch).await
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

impl<C: ClientT + Send + Sync> OneWay for Jsonrpsee<C> {
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

impl From<jsonrpsee_core::client::Error> for Error {
    fn from(error: jsonrpsee_core::client::Error) -> Self {
        use jsonrpsee_core::client::Error as J;
        match error {
            J::Call(object) => Error::Rpc(object),
            J::ParseError(e) => Error::Decode(e),
            J::RequestTimeout => Error::Timeout(Duration::ZERO),
            J::RestartNeeded(_) | J::ServiceDisconnect => Error::Closed,
            J::Transport(e) => match e.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(e) => Error::Transport(e),
            },
            other => Error::Transport(Box::new(other)),
        }
    }
}

impl From<Error> for jsonrpsee_core::client::Error {
    fn from(error: Error) -> Self {
        use jsonrpsee_core::client::Error as J;
        match error {
            Error::Rpc(object) => J::Call(object),
            Error::Decode(e) | Error::Encode(e) => J::ParseError(e),
            Error::Timeout(_) => J::RequestTimeout,
            // Boxed whole, so converting back (above) restores the exact variant.
            other => J::Transport(Box::new(other)),
        }
    }
}
