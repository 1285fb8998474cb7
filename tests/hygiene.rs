//! Generated code names everything by absolute path: the contracts below are
//! declared in a module with no prelude and with look-alikes of every name the
//! generated code uses, and they still compile and serve.

mod contracts {
    #![no_implicit_prelude]
    #![allow(dead_code)]

    struct Result;
    struct Ok;
    struct Err;
    struct Option;
    struct Some;
    struct None;
    struct Box;
    struct Vec;
    struct String;
    struct Arc;
    struct Send;
    struct Sync;
    struct Sized;
    struct Clone;
    struct Debug;
    struct Future;
    struct Duration;
    struct Infallible;
    struct Error;
    struct Client;
    struct Peer;
    struct ServiceInstance;
    mod wsduplex {}
    mod core {}
    mod std {}

    #[::wsduplex::service(namespace = "h", callback = Events)]
    pub trait Service {
        async fn echo(&self, text: ::std::string::String) -> ::std::string::String;
        async fn checked(&self, n: u8) -> ::core::result::Result<u8, ::wsduplex::ErrorObjectOwned>;
        #[oneway]
        async fn fire(&self, n: u8);
    }

    #[::wsduplex::callback(namespace = "h")]
    pub trait Events {
        async fn ping(&self) -> bool;
        #[oneway]
        async fn tick(&self, n: u64);
    }

    #[::wsduplex::service]
    pub trait Bare {
        async fn nothing(&self);
    }
}

use std::time::Duration;

use contracts::{Events, EventsClient, Service, ServiceClient};
use wsduplex::{Connection, ErrorObjectOwned, Server};

struct Impl(Connection<EventsClient>);

impl Service for Impl {
    async fn echo(&self, text: String) -> String {
        assert!(self.0.callback().ping().await.unwrap());
        text
    }

    async fn checked(&self, n: u8) -> Result<u8, ErrorObjectOwned> {
        Ok(n)
    }

    async fn fire(&self, _: u8) {}
}

struct Pong;

impl Events for Pong {
    async fn ping(&self) -> bool {
        true
    }

    async fn tick(&self, _: u64) {}
}

#[tokio::test]
async fn contracts_declared_without_a_prelude_serve_calls_and_callbacks() {
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    let task = tokio::spawn(server.serve(|conn: Connection<EventsClient>| Impl(conn).into_service()));
    let work = async {
        let client = ServiceClient::connect(&url, Pong).await.unwrap();
        assert_eq!(client.echo("clean".into()).await.unwrap(), "clean");
        assert_eq!(client.checked(3).await.unwrap(), 3);
        client.fire(1).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("timed out");
    task.abort();
}
