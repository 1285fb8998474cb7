//! Generated code names everything by absolute path: the contracts below are
//! declared in a module with no prelude and with look-alikes of every name the
//! generated code uses, and they still compile and serve. Every public item
//! the macros generate carries docs (`missing_docs` is denied here).
#![deny(missing_docs)]

/// Contracts in a module without a prelude.
pub mod contracts {
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

    /// A service.
    #[::wsduplex::service(namespace = "h", callback = Events)]
    pub trait Service {
        /// Echoes.
        async fn echo(&self, text: ::std::string::String) -> ::std::string::String;
        /// Returns `n`.
        async fn checked(&self, n: u8) -> ::core::result::Result<u8, ::wsduplex::ErrorObjectOwned>;
        /// Fires.
        #[oneway]
        async fn fire(&self, n: u8);
        /// Fails as asked.
        async fn risky(&self, n: u8) -> ::core::result::Result<u8, Failure>;
    }

    /// Errors, derived without a prelude.
    #[derive(Debug, ::wsduplex::RpcError)]
    pub enum Failure {
        /// Bad.
        #[rpc(code = 5)]
        Bad(::std::string::String),
        /// Named.
        #[rpc(code = -6)]
        Named {
            /// A number.
            n: u8,
            /// Maybe another.
            m: ::core::option::Option<u8>,
        },
        /// Passed on.
        #[rpc(transparent)]
        Inner(::wsduplex::Error),
    }

    impl ::core::fmt::Display for Failure {
        fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
            f.write_str("failure")
        }
    }

    /// Its callbacks.
    #[::wsduplex::callback(namespace = "h")]
    pub trait Events {
        /// Pings.
        async fn ping(&self) -> bool;
        /// Ticks.
        #[oneway]
        async fn tick(&self, n: u64);
    }

    /// A service without callbacks.
    #[::wsduplex::service]
    pub trait Bare {
        /// Does nothing.
        async fn nothing(&self);
    }

    /// Methods named like every helper the macros generate: the methods win.
    #[::wsduplex::service(namespace = "n")]
    pub trait Helpers {
        /// 1.
        async fn new(&self) -> u8;
        /// 2.
        async fn caller(&self) -> u8;
        /// Echoes.
        async fn with_timeout(&self, ms: u64) -> u64;
        /// 4.
        async fn connect(&self) -> u8;
        /// 5.
        async fn connect_with(&self) -> u8;
        /// 6.
        async fn into_service(&self) -> u8;
        /// 7.
        async fn contract(&self) -> u8;
    }
}

use std::time::Duration;

use contracts::{Events, EventsClient, Failure, Helpers, HelpersClient, ServeHelpers, Service, ServiceClient};
use wsduplex::{Client, Connection, ErrorObjectOwned, Server, contract::Contract, contract::NoCallbacks};

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

    async fn risky(&self, n: u8) -> Result<u8, Failure> {
        Err(Failure::Named { n, m: None })
    }
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
        match client.risky(4).await {
            Err(wsduplex::CallError::Method(Failure::Named { n: 4, m: None })) => {}
            other => panic!("expected Failure::Named, got {other:?}"),
        }
        let codes: Vec<i32> =
            ServiceClient::contract().method("h.risky").unwrap().documented_errors().iter().map(|e| e.code).collect();
        assert_eq!(&codes[..2], [5, -6]);
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("timed out");
    task.abort();
}

struct Numbered;

impl Helpers for Numbered {
    async fn new(&self) -> u8 {
        1
    }
    async fn caller(&self) -> u8 {
        2
    }
    async fn with_timeout(&self, ms: u64) -> u64 {
        ms
    }
    async fn connect(&self) -> u8 {
        4
    }
    async fn connect_with(&self) -> u8 {
        5
    }
    async fn into_service(&self) -> u8 {
        6
    }
    async fn contract(&self) -> u8 {
        7
    }
}

#[tokio::test]
async fn methods_named_like_generated_helpers_are_called_and_the_helpers_stay_reachable() {
    let server = Server::builder().build("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", server.local_addr().unwrap());
    // `into_service` is the contract's method here; `ServeHelpers::new` binds.
    let task = tokio::spawn(server.serve(|_conn: Connection| ServeHelpers::new(Numbered)));
    let work = async {
        let client = Client::builder().connect(&url, NoCallbacks::service()).await.unwrap();
        let stub = <HelpersClient as Contract>::from_caller(client);
        assert_eq!(stub.new().await.unwrap(), 1);
        assert_eq!(stub.caller().await.unwrap(), 2);
        assert_eq!(stub.with_timeout(3).await.unwrap(), 3);
        assert_eq!(stub.connect().await.unwrap(), 4);
        assert_eq!(stub.connect_with().await.unwrap(), 5);
        assert_eq!(stub.into_service().await.unwrap(), 6);
        assert_eq!(stub.contract().await.unwrap(), 7);
        // The helpers the methods displaced, through the trait.
        let patient = Contract::with_timeout(&stub, Duration::from_secs(9));
        assert_eq!(patient.new().await.unwrap(), 1);
        assert!(!Contract::caller(&patient).is_closed());
        assert_eq!(<HelpersClient as Contract>::info().methods.len(), 7);
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("timed out");
    task.abort();
}
