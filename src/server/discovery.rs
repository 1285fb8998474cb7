//! `rpc.discover`: a server answers it with the OpenRPC document of its
//! service (callbacks included), written once when the endpoint is built and
//! shared by every answer. A handler decorator, tried after the service and
//! any jsonrpsee module (whose own `rpc.discover` wins).

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::dispatch::{Handler, HandlerFuture, IncomingCall};

/// The document, written once.
pub(crate) type Document = Arc<RawValue>;

/// The document of `service`, or `None` if it cannot be written.
#[cfg(feature = "codegen")]
pub(super) fn document(service: &crate::contract::ContractInfo) -> Option<Document> {
    let document = crate::codegen::openrpc::document(service);
    match serde_json::value::to_raw_value(&document) {
        Ok(raw) => Some(Arc::from(raw)),
        Err(e) => {
            tracing::error!(error = %e, "could not write the OpenRPC document");
            None
        }
    }
}

/// Answers `rpc.discover` with `document` when `inner` does not.
pub(crate) struct Discovery<H> {
    pub(crate) inner: H,
    pub(crate) document: Option<Document>,
}

impl<H: Handler> Handler for Discovery<H> {
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        let call = match self.inner.dispatch(method, call) {
            Ok(running) => return Ok(running),
            Err(call) => call,
        };
        // The document exists only with the `codegen` feature.
        match &self.document {
            #[cfg(feature = "codegen")]
            Some(document) if method == crate::codegen::openrpc::DISCOVER_METHOD => {
                let frame = call.id.map(|id| crate::wire::success(&id, &document.as_ref()));
                Ok(Box::pin(std::future::ready(crate::dispatch::Answer::frame(frame))))
            }
            _ => Err(call),
        }
    }
}

#[cfg(all(test, feature = "codegen"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dispatch::{Answer, handle};
    use crate::wire::RequestId;

    /// Answers `mine` and `rpc.discover` with its name.
    struct Inner(bool);

    impl Handler for Inner {
        fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
            let answers = method == "mine" || (self.0 && method == "rpc.discover");
            if !answers {
                return Err(call);
            }
            Ok(handle(&Arc::new(()), "mine", call, &[], &[], |_, (): ()| async {
                Ok::<_, std::convert::Infallible>("inner")
            }))
        }
    }

    async fn answer(handler: &impl Handler, method: &str) -> Option<String> {
        let call = IncomingCall { id: Some(RequestId::Number(1)), params: None, roles: &[] };
        let running = handler.dispatch(method, call).ok()?;
        let Answer { frame, .. } = running.await;
        frame
    }

    #[tokio::test]
    async fn the_document_answers_rpc_discover_after_the_handler_it_wraps() {
        let document: Document =
            Arc::from(serde_json::value::to_raw_value(&serde_json::json!({"openrpc": "1.3.2"})).unwrap());
        let served = Discovery { inner: Inner(false), document: Some(document.clone()) };
        assert!(answer(&served, "rpc.discover").await.unwrap().contains(r#""result":{"openrpc":"1.3.2"}"#));
        assert!(answer(&served, "mine").await.unwrap().contains(r#""result":"inner""#));
        assert!(answer(&served, "other").await.is_none());
        // A handler that answers it itself (a merged module) wins.
        let overridden = Discovery { inner: Inner(true), document: Some(document) };
        assert!(answer(&overridden, "rpc.discover").await.unwrap().contains(r#""result":"inner""#));
        // Without a document, the method is unknown.
        assert!(answer(&Discovery { inner: Inner(false), document: None }, "rpc.discover").await.is_none());
    }
}
