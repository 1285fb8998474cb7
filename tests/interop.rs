//! Interop with jsonrpsee, both ways: a plain jsonrpsee client calls a
//! wsduplex service, and a jsonrpsee `RpcModule` is served by a wsduplex server
//! on the same socket as the contract's own methods.

mod common;

use common::*;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::core::params::{BatchRequestBuilder, ObjectParams};
use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use wsduplex::{CallError, Client, Connection, Error, Hub, Server, interop::Jsonrpsee};

/// An existing jsonrpsee API, with its server and client halves.
#[rpc(server, client, namespace = "legacy")]
pub trait Legacy {
    #[method(name = "version")]
    fn version(&self) -> RpcResult<String>;

    #[method(name = "sum")]
    async fn sum(&self, a: u64, b: u64) -> RpcResult<u64>;
}

struct LegacyImpl;

#[async_trait]
impl LegacyServer for LegacyImpl {
    fn version(&self) -> RpcResult<String> {
        Ok("1.2.3".into())
    }

    async fn sum(&self, a: u64, b: u64) -> RpcResult<u64> {
        Ok(a + b)
    }
}

#[tokio::test]
async fn a_plain_jsonrpsee_client_calls_a_wsduplex_service() {
    let server = start_server().await;
    let client = within(WsClientBuilder::default().build(&server.url)).await.unwrap();

    let echoed: String = within(client.request("t.echo", rpc_params!["by position"])).await.unwrap();
    assert_eq!(echoed, "by position");

    let mut by_name = ObjectParams::new();
    by_name.insert("a", 40).unwrap();
    by_name.insert("b", 2).unwrap();
    let sum: i64 = within(client.request("t.add", by_name)).await.unwrap();
    assert_eq!(sum, 42);

    let noted = server.observed.noted.notified();
    within(client.notification("t.note", rpc_params!["from jsonrpsee"])).await.unwrap();
    within(noted).await;
    assert_eq!(*server.observed.notes.lock().unwrap(), ["from jsonrpsee"]);

    match within(client.request::<u8, _>("t.refuse", rpc_params!["because"])).await {
        Err(jsonrpsee::core::ClientError::Call(object)) => assert_eq!(object.code(), 4001),
        other => panic!("expected the handler's error object, got {other:?}"),
    }
}

#[tokio::test]
async fn a_typed_stub_drives_a_plain_jsonrpsee_client() {
    let server = start_server().await;
    let client = within(WsClientBuilder::default().build(&server.url)).await.unwrap();
    let stub = ServiceClient::new(Jsonrpsee(client));
    assert_eq!(within(stub.echo("through jsonrpsee".into())).await.unwrap(), "through jsonrpsee");
    assert_eq!(within(stub.add(1, 2, None)).await.unwrap(), 3);
    // `TestError` does not decode (no `FromErrorObject`): its object stays an `Error::Rpc`.
    match within(stub.refuse("x".into())).await {
        Err(CallError::Call(Error::Rpc(object))) => assert_eq!(object.code(), 4001),
        other => panic!("expected the handler's error, got {other:?}"),
    }
}

async fn server_with_legacy_module() -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let hub = Hub::<EventsClient>::new();
    let observed = std::sync::Arc::new(Observed::default());
    let builder = Server::builder().hub(&hub).rpc_module(LegacyImpl.into_rpc());
    let server = within(builder.build("127.0.0.1:0")).await.unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let task = tokio::spawn(server.serve(move |conn: Connection<EventsClient>| {
        Session { conn, hub: hub.clone(), observed: observed.clone() }.into_service()
    }));
    (url, task)
}

#[tokio::test]
async fn a_merged_rpc_module_is_served_on_the_same_socket() {
    let (url, _task) = server_with_legacy_module().await;

    // One wsduplex connection calls the contract, the merged module, and answers callbacks.
    let typed = within(ServiceClient::connect(&url, Listener::default())).await.unwrap();
    let client: &Client = typed.caller();
    assert_eq!(within(typed.echo("contract".into())).await.unwrap(), "contract");
    assert_eq!(within(LegacyClient::version(client)).await.unwrap(), "1.2.3");
    assert_eq!(within(LegacyClient::sum(client, 2, 3)).await.unwrap(), 5);
    assert_eq!(within(typed.ask("still duplex".into())).await.unwrap(), "answer to still duplex");

    // A plain jsonrpsee client sees both too.
    let plain = within(WsClientBuilder::default().build(&url)).await.unwrap();
    assert_eq!(within(plain.version()).await.unwrap(), "1.2.3");
    let echoed: String = within(plain.request("t.echo", rpc_params!["plain"])).await.unwrap();
    assert_eq!(echoed, "plain");
}

#[test]
#[should_panic(expected = "rpc_module: ")]
fn a_merged_module_name_clash_is_a_panic_where_the_server_is_built() {
    let builder = Server::builder().rpc_module(LegacyImpl.into_rpc());
    let _ = builder.rpc_module(LegacyImpl.into_rpc());
}

#[tokio::test]
async fn jsonrpsee_batches_run_over_a_wsduplex_client() {
    let server = start_server().await;
    let client =
        within(Client::builder().connect(&server.url, wsduplex::contract::NoCallbacks::service())).await.unwrap();
    let mut batch = BatchRequestBuilder::new();
    batch.insert("t.echo", rpc_params!["one"]).unwrap();
    batch.insert("t.nope", rpc_params![]).unwrap();
    batch.insert("t.echo", rpc_params!["three"]).unwrap();
    let responses = within(client.batch_request::<String>(batch)).await.unwrap();
    assert_eq!(responses.num_successful_calls(), 2);
    assert_eq!(responses.num_failed_calls(), 1);
    let entries: Vec<_> = responses.into_iter().collect();
    assert_eq!(entries[0].as_ref().unwrap(), "one");
    assert_eq!(entries[1].as_ref().unwrap_err().code(), wsduplex::codes::METHOD_NOT_FOUND);
    assert_eq!(entries[2].as_ref().unwrap(), "three");
}
