//! `rpc.discover`: a server answers it with the OpenRPC document of its
//! service (callbacks included), written once.

use std::sync::Arc;

use jsonrpsee_core::server::{Methods, RpcModule};
use jsonrpsee_types::ResponsePayload;

use crate::codegen::openrpc;
use crate::contract::ContractInfo;

/// Adds `rpc.discover` for `service` to `methods`, unless a merged module
/// answers it already.
pub(super) fn add(methods: &mut Methods, service: &ContractInfo) {
    if methods.method(openrpc::DISCOVER_METHOD).is_some() {
        return;
    }
    let document = match serde_json::value::to_raw_value(&openrpc::document(service)) {
        Ok(document) => SharedJson(Arc::from(document)),
        Err(e) => return tracing::error!(error = %e, "could not write the OpenRPC document"),
    };
    let mut module = RpcModule::new(());
    let registered =
        module.register_method(openrpc::DISCOVER_METHOD, move |_, _, _| ResponsePayload::success(document.clone()));
    if let Err(e) = registered.map(|_| ()).and_then(|()| methods.merge(module)) {
        tracing::error!(error = %e, "could not register rpc.discover");
    }
}

/// JSON written once and shared by every response that carries it.
#[derive(Clone)]
struct SharedJson(Arc<serde_json::value::RawValue>);

impl serde::Serialize for SharedJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
