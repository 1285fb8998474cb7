//! Working with jsonrpsee: a jsonrpsee client drives a generated stub
//! ([`Jsonrpsee`]), and wsduplex's [`Client`] and [`Peer`] implement
//! jsonrpsee's `ClientT`, so jsonrpsee `#[rpc(client)]` traits run over a
//! wsduplex connection. Errors convert both ways.
//!
//! Messages and error objects are `jsonrpsee-types` on both sides, so a plain
//! jsonrpsee client also calls a wsduplex service as it is, and a jsonrpsee
//! `RpcModule` is served next to a contract with
//! [`ServerBuilder::rpc_module`](crate::server::ServerBuilder::rpc_module).
#![doc = include_str!("../docs/guide/interop.md")]

use std::time::Duration;

use jsonrpsee_core::client::{BatchResponse, ClientT, Error as ClientError};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::traits::ToRpcParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;
use jsonrpsee_core::server::{MethodCallback, MethodResponse, Methods};
use jsonrpsee_types::{ErrorObjectOwned, Extensions, Params};

use crate::caller::{OneWay, TwoWay};
use crate::client::Client;
use crate::connection_id::ConnectionId;
use crate::dispatch::{Answer, Handler, HandlerFuture, IncomingCall};
use crate::error::Error;
use crate::error::codes;
use crate::peer::Peer;
use crate::wire::{self, RequestId};

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
        let replies = self.call_batch(&calls, self.call_timeout()).await?;
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

impl<C: ClientT + Send + Sync> TwoWay for Jsonrpsee<C> {
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

/// Serves a jsonrpsee `RpcModule`'s methods after the contract's own: a
/// handler decorator, so the engine knows nothing of jsonrpsee. Set with
/// [`ServerBuilder::rpc_module`](crate::server::ServerBuilder::rpc_module).
pub(crate) struct WithRpcModule<H> {
    inner: H,
    methods: Option<Methods>,
    /// The connection as jsonrpsee's methods see it.
    connection: jsonrpsee_core::server::ConnectionId,
}

impl<H> WithRpcModule<H> {
    pub(crate) fn new(inner: H, methods: Option<Methods>, connection: ConnectionId) -> Self {
        WithRpcModule {
            inner,
            methods,
            connection: jsonrpsee_core::server::ConnectionId(connection.sequence() as usize),
        }
    }
}

impl<H: Handler> Handler for WithRpcModule<H> {
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        let call = match self.inner.dispatch(method, call) {
            Ok(running) => return Ok(running),
            Err(call) => call,
        };
        let Some(callback) = self.methods.as_ref().and_then(|methods| methods.method(method)) else {
            return Err(call);
        };
        let IncomingCall { id, params, .. } = call;
        // jsonrpsee's Id has no negative or fractional numbers: such ids are put back below.
        let jsonrpsee_id = id.as_ref().and_then(RequestId::to_jsonrpsee).unwrap_or(jsonrpsee_types::Id::Null);
        let params = Params::new(params.map(RawValue::get)).into_owned();
        let connection = self.connection;
        let response: Pin<Box<dyn Future<Output = Option<MethodResponse>> + Send>> = match callback {
            MethodCallback::Sync(f) => {
                let f = f.clone();
                let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    f(jsonrpsee_id, params, usize::MAX, Extensions::new())
                }));
                Box::pin(std::future::ready(out.ok()))
            }
            MethodCallback::Async(f) => {
                let running = f(jsonrpsee_id, params, connection, usize::MAX, Extensions::new());
                Box::pin(AssertUnwindSafe(running).catch_unwind().map(Result::ok))
            }
            MethodCallback::Subscription(_) | MethodCallback::Unsubscription(_) => {
                let error = ErrorObjectOwned::owned(
                    codes::METHOD_NOT_FOUND,
                    "jsonrpsee subscriptions are not served by wsduplex; use a callback contract",
                    Some(method),
                );
                return Ok(Box::pin(std::future::ready(Answer::frame(id.map(|id| wire::failure(&id, &error))))));
            }
        };
        Ok(Box::pin(async move {
            let response = response.await;
            let Some(id) = id else { return Answer::default() };
            Answer::frame(Some(match response {
                Some(response) => jsonrpsee_frame(&id, response),
                None => wire::failure(
                    &id,
                    &ErrorObjectOwned::owned(codes::INTERNAL_ERROR, "Internal error: the handler panicked", None::<()>),
                ),
            }))
        }))
    }
}

/// A jsonrpsee response as our frame, with our exact id put back if jsonrpsee could not hold it.
fn jsonrpsee_frame(id: &RequestId, response: MethodResponse) -> String {
    let json = String::from(Box::<str>::from(response.into_json()));
    if id.to_jsonrpsee().is_some() {
        return json;
    }
    match serde_json::from_str::<&RawValue>(&json).map(wire::classify) {
        Ok(wire::Message::Response { outcome: Ok(result), .. }) => wire::success(id, &result),
        Ok(wire::Message::Response { outcome: Err(error), .. }) => match wire::error_object(error) {
            Ok(object) => wire::failure(id, &object),
            Err(_) => json,
        },
        _ => json,
    }
}
