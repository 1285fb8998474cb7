//! Calls, callbacks, one-way messages and fan-out between a typed client and a
//! server over real loopback sockets.

mod common;

use common::*;

#[tokio::test]
async fn a_typed_call_round_trips() {
    let server = start_server().await;
    let client = within(ServiceClient::connect(&server.url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("hi".into())).await.unwrap(), "hi");
}
