//! Typed, two-way JSON-RPC 2.0 over one WebSocket.
//!
//! wsduplex is the Rust counterpart of a WCF duplex service
//! (`ServiceContract` + `CallbackContract`) and of ASP.NET Core SignalR's typed
//! hubs (`Hub<IClient>`, groups, client results). You declare two traits: the
//! service that clients call, and the callback contract the server calls back
//! on each client. [`macro@service`] and [`macro@callback`] generate everything
//! between them:
//!
//! - for a contract `X`, the typed stub `XClient` that calls a remote
//!   implementor of `X` (a client's `ChatClient`, a connection's
//!   `ChatEventsClient`, a hub group's fan-out);
//! - `ServeX<S>`, which answers calls with your implementation `S`, decoding
//!   parameters by name or by position; `into_service()` on the trait makes one;
//! - the contract's metadata, available at run time through
//!   [`Contract::info`](contract::Contract::info).
//!
//! Calls and callbacks travel as standard JSON-RPC 2.0 over one WebSocket, in
//! both directions at once: any number in flight, answered in any order.
//!
//! ```
//! use wsduplex::{Connection, ErrorObjectOwned, Hub, Server};
//!
//! #[wsduplex::service(namespace = "greet", callback = Listener)]
//! pub trait Greeter {
//!     async fn hello(&self, name: String) -> Result<String, ErrorObjectOwned>;
//! }
//!
//! #[wsduplex::callback(namespace = "greet")]
//! pub trait Listener {
//!     async fn confirm(&self, question: String) -> bool;
//!     #[oneway]
//!     async fn news(&self, text: String);
//! }
//!
//! // One instance per connection, built from the connection's handle.
//! struct Session {
//!     conn: Connection<ListenerClient>,
//!     hub: Hub<ListenerClient>,
//! }
//!
//! impl Greeter for Session {
//!     async fn hello(&self, name: String) -> Result<String, ErrorObjectOwned> {
//!         // Ask this caller and await its answer ...
//!         let sure = self.conn.callback().confirm(format!("are you {name}?")).await?;
//!         // ... and tell everyone, without waiting for anyone.
//!         self.hub.all().news(format!("{name} said hello")).await?;
//!         Ok(if sure { format!("hello, {name}") } else { "hello, stranger".into() })
//!     }
//! }
//!
//! struct Me;
//!
//! impl Listener for Me {
//!     async fn confirm(&self, _question: String) -> bool {
//!         true
//!     }
//!     async fn news(&self, text: String) {
//!         println!("news: {text}");
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::<ListenerClient>::new();
//! let server = Server::builder().hub(&hub).build("127.0.0.1:0").await?;
//! let url = format!("ws://{}/", server.local_addr()?);
//! tokio::spawn(server.serve(move |conn| Session { conn, hub: hub.clone() }.into_service()));
//!
//! let greeter = GreeterClient::connect(&url, Me).await?;
//! assert_eq!(greeter.hello("ada".into()).await?, "hello, ada");
//! # Ok(())
//! # }
//! ```
//!
//! # The pieces
//!
//! At the root are the names every program uses; the rest is in modules.
//!
//! - [`Server`] listens on its own; [`server::ServerBuilder::endpoint`] gives
//!   an [`server::Endpoint`] to mount on an axum `Router` at any path. Every
//!   limit (message size, connections, calls in flight, send queues and the
//!   [`server::SlowConsumer`] policy, keep-alive, timeouts) is set on
//!   [`server::ServerBuilder`] with a default fit for the open internet;
//!   shutdowns are graceful, closing every client with 1001. Authentication,
//!   origins and lifecycle hooks are in [`server`] too.
//! - [`Connection`] is the server's handle to one client: its [`ConnectionId`],
//!   address, handshake headers, identity, per-connection data, groups, and
//!   the typed callback stub ([`Connection::callback`]).
//! - [`Hub`] tracks live connections and groups, and fans one-way callbacks
//!   out to them: serialized once, the same bytes queued for every recipient,
//!   never waiting on a slow one. Its fan-out, calls to single connections
//!   and group changes go through a [`hub::Backplane`]: in this process by
//!   default, or across server nodes with `redis::RedisBackplane` (feature
//!   `redis`).
//! - [`Client`] connects and serves the callback contract; generated stubs
//!   wrap it. [`client::ClientBuilder`] sets its limits, its reconnect
//!   policy and its TLS roots (`wsduplex::tls`, feature `tls`).
//! - Every call has a deadline: `call_timeout` on either builder (30 s by
//!   default), or a stub's `with_timeout`.
//! - [`Error`] is what a caller sees: the peer's error object
//!   ([`ErrorObjectOwned`]), `Closed`, `Timeout`, transport and decode
//!   failures; a method declared `-> Result<T, E>` fails with
//!   [`CallError<E>`](CallError), the method's own error decoded.
//!   [`derive@RpcError`] gives error enums their codes, both ways.
//! - [`Peer`] is the engine's handle to one connection, the same on both
//!   ends; [`CloseReason`] says why one ended.
//! - [`contract`] holds what the macros generate against, and the metadata
//!   (schemas, documented errors, docs) from which `wsduplex::codegen`
//!   (feature `codegen`, on by default) makes the OpenRPC document servers
//!   answer `rpc.discover` with and typed TypeScript clients.
//! - [`interop`] works with jsonrpsee: a jsonrpsee client drives a generated
//!   stub, jsonrpsee `#[rpc(client)]` traits run over a wsduplex connection,
//!   and a jsonrpsee `RpcModule` is served next to a contract.
//!
//! # The wire
//!
//! One JSON-RPC message or batch per WebSocket frame. Wire names are
//! `namespace.method`; stubs send parameters by name; `#[oneway]` methods are
//! notifications; dropping a call's future sends `$/cancelRequest`. Error
//! codes are in [`codes`].
#![deny(missing_docs)]

/// Invokes `$m!(N, A 0, B 1, …)` for every parameter count a contract method
/// may have (0 to 12): the stub's by-name encoding and the dispatch's
/// decoding are implemented per tuple arity.
macro_rules! for_each_arity {
    ($m:ident) => {
        $m!(0);
        $m!(1, A 0);
        $m!(2, A 0, B 1);
        $m!(3, A 0, B 1, C 2);
        $m!(4, A 0, B 1, C 2, D 3);
        $m!(5, A 0, B 1, C 2, D 3, E 4);
        $m!(6, A 0, B 1, C 2, D 3, E 4, F 5);
        $m!(7, A 0, B 1, C 2, D 3, E 4, F 5, G 6);
        $m!(8, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
        $m!(9, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
        $m!(10, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
        $m!(11, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
        $m!(12, A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
    };
}

/// The settings of a builder that are the same on both ends (`$peer` is the
/// path to its `PeerConfig`): keep-alive pings, the idle timeout, how many
/// calls to the other end may await replies at once, and how many streams
/// a connection sends at once. `$other` names the
/// other end in the docs.
macro_rules! peer_settings {
    ($other:literal, $($peer:ident).+) => {
        #[doc = concat!("Pings the ", $other, " every `interval`, and drops the connection when nothing")]
        /// comes back within `timeout` of a ping going out (default: 30 s and
        /// 20 s), so a dead peer or network path is noticed even with no call
        /// in flight. Browsers answer pings on their own.
        pub fn keep_alive(mut self, interval: ::std::time::Duration, timeout: ::std::time::Duration) -> Self {
            self.$($peer).+.keep_alive = Some(crate::peer::KeepAliveConfig { interval, timeout });
            self
        }

        #[doc = concat!("How long a call to the ", $other, " waits for its reply unless it sets its own")]
        /// deadline (a stub's `with_timeout`); default 30 s. Past it the call
        /// fails with [`Error::Timeout`](crate::Error::Timeout) and the other
        /// end is told to stop (`$/cancelRequest`).
        pub fn call_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$($peer).+.call_timeout = timeout;
            self
        }

        /// Sends no keep-alive pings.
        pub fn without_keep_alive(mut self) -> Self {
            self.$($peer).+.keep_alive = None;
            self
        }

        /// Closes a connection (code 1000) when no message has gone either
        /// way, and no call has been running, for `timeout` (default: never).
        pub fn idle_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.$($peer).+.idle_timeout = Some(timeout);
            self
        }

        #[doc = concat!("Calls to the ", $other, " awaiting replies at once, per connection (default")]
        /// 128, the default `max_in_flight` of a wsduplex peer); further calls
        /// wait their turn, in order, within their deadline. At or below what
        /// the other end runs at once, it can run our calls as they come
        /// instead of parking them. One-way messages take no turn, and
        /// neither do calls a handler makes while serving this same
        /// connection (the calls holding the turns may be waiting for them).
        pub fn max_outgoing_calls(mut self, limit: usize) -> Self {
            self.$($peer).+.max_outgoing_calls = limit;
            self
        }

        #[doc = concat!("Streams sent to the ", $other, " at once, per connection (default 1,000):")]
        /// stream results not yet read to the end or disposed of, and stream
        /// parameters of calls still running. A result that would open one
        /// more is answered with -32009 (server busy); a call's parameter
        /// fails to encode.
        pub fn max_open_streams(mut self, limit: usize) -> Self {
            self.$($peer).+.max_open_streams = limit;
            self
        }

        #[doc = concat!("Limits how fast the ", $other, " may send on each connection (default: no")]
        /// limit): past it, requests are refused with -32029 and notifications
        /// dropped, and a peer that keeps at it is closed with 1008 (see
        /// [`rate_limit`](crate::rate_limit)).
        pub fn rate_limit(mut self, limit: crate::rate_limit::RateLimit) -> Self {
            self.$($peer).+.rate_limit = Some(limit);
            self
        }

        #[doc = concat!("Runs `middleware` around every call and notification from the ", $other, ":")]
        /// before its handler, after the middleware already given (see
        /// [`middleware`](crate::middleware)).
        pub fn middleware(mut self, middleware: impl crate::middleware::Middleware) -> Self {
            self.$($peer).+.middleware.push(middleware);
            self
        }
    };
}

mod accept;
mod backoff;
mod caller;
pub mod client;
#[cfg(feature = "codegen")]
pub mod codegen;
mod connection;
mod connection_id;
pub mod contract;
mod deadline;
mod dispatch;
mod error;
pub mod hub;
mod identity;
pub mod interop;
pub mod metrics;
pub mod middleware;
mod peer;
mod probe;
pub mod rate_limit;
#[cfg(feature = "redis")]
pub mod redis;
mod rpc_error;
pub mod server;
mod socket;
pub mod stream;
mod sync;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod wire;

#[cfg(test)]
mod arbitrary;

pub use client::Client;
pub use connection::Connection;
pub use connection_id::ConnectionId;
pub use error::{CallError, Error, codes};
pub use hub::Hub;
pub use jsonrpsee_types::ErrorObjectOwned;
pub use peer::{CloseReason, Peer};
pub use server::Server;
pub use stream::{Incoming, Outgoing};

/// Declares a service contract: the methods clients call on the server.
/// Written `#[wsduplex::service(namespace = "chat", callback = ChatEvents)]`
/// on a trait, with these arguments:
///
/// - `namespace = "..."`: wire names become `namespace.method`; without it, the method name alone.
/// - `callback = Trait`: the callback contract (declared with [`macro@callback`])
///   each connection carries; leave it out for a service without callbacks.
///
/// Every method is an `async fn` taking `&self` and owned, named parameters,
/// and returns a serializable value or `Result<T, E>` where `E` converts into
/// an [`ErrorObjectOwned`] (the error then reaches the caller with its own
/// code, message and data; [`derive@RpcError`] writes that conversion and
/// documents the codes). Parameter and result types also implement
/// [`schemars::JsonSchema`], so the contract's schema is complete. On a method:
///
/// - `#[oneway]` sends it as a notification, with no reply; it returns
///   nothing, or `Result<(), E>` to answer callers that send an id anyway.
/// - `#[method(name = "...")]` sets the wire name (the namespace still applies).
/// - `#[errors(NickTaken, NotInRoom)]` documents only these variants of the
///   method's error enum (its `Result<T, E>` written out), in this order: the
///   contract's metadata, its OpenRPC document and generated clients list
///   their codes alone, and a `#[rpc(transparent)]` variant's codes only
///   where it is named. Without it, a method documents every variant.
///
/// For a trait `Chat` it generates:
///
/// - the trait, with `Send` futures and `into_service()`, which binds an
///   implementation for [`Server::serve`] and [`server::ServerBuilder::endpoint`];
/// - `ServeChat<S>`, what `into_service()` returns: it answers calls with an
///   implementation `S` ([`contract::Serve`]);
/// - `ChatClient<C = Client>`, the typed stub, with `connect(url, handler)`
///   (the handler implements the callback contract), `connect_with`,
///   `new(caller)`, `caller()` and `with_timeout(duration)`, and
///   [`contract::Contract`] for the stub.
///
/// A contract method may have the name of one of those helpers (`new`,
/// `connect`, `into_service`, ...): the method wins, the helper is left out,
/// and [`contract::Contract`]'s functions, [`client::ClientBuilder::connect`] or `ServeChat::new`
/// do its job.
///
/// `crate = "path"` names the runtime crate when it is neither `wsduplex` nor
/// a renamed dependency in Cargo.toml (a facade that re-exports it); a
/// renamed dependency is found by itself.
///
/// Compile errors point at the offending tokens: a method that is not
/// `async`, lacks `&self`, takes a pattern or a borrowed parameter, repeats a
/// wire name, or is `#[oneway]` with a return value; an unknown argument; a
/// `callback` that is not a callback contract.
///
/// # Example
///
/// A service without callbacks, served and called over loopback:
///
/// ```
/// use wsduplex::{Connection, Server};
///
/// #[wsduplex::service(namespace = "math")]
/// pub trait Calculator {
///     /// Adds two numbers; `c` may be left out.
///     async fn add(&self, a: i64, b: i64, c: Option<i64>) -> i64;
///     #[method(name = "neg")]
///     async fn negate(&self, x: i64) -> i64;
/// }
///
/// struct Calc;
///
/// impl Calculator for Calc {
///     async fn add(&self, a: i64, b: i64, c: Option<i64>) -> i64 {
///         a + b + c.unwrap_or(0)
///     }
///     async fn negate(&self, x: i64) -> i64 {
///         -x
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wsduplex::Error> {
/// let server = Server::builder().build("127.0.0.1:0").await?;
/// let url = format!("ws://{}/", server.local_addr()?);
/// tokio::spawn(server.serve(|_conn: Connection| Calc.into_service()));
///
/// let calc = CalculatorClient::connect(&url).await?;
/// assert_eq!(calc.add(1, 2, None).await?, 3);
/// assert_eq!(calc.negate(5).await?, -5);
/// # Ok(())
/// # }
/// ```
pub use wsduplex_macros::service;

/// Declares a callback contract: the methods the server calls on a client.
/// Written `#[wsduplex::callback(namespace = "chat")]` on a trait.
///
/// The rules are those of [`macro@service`] (`namespace`, `#[oneway]`,
/// `#[method(name = "...")]`), without `callback`. For a trait `ChatEvents`
/// it generates the trait (implemented by clients, passed to the service
/// stub's `connect`) and `ChatEventsClient<C = Peer>`, the stub the server
/// calls through: each [`Connection`] carries one, and a [`Hub`] makes them
/// for fan-out (one-way methods only) and for single connections.
///
/// # Example
///
/// A server asking its client a question in the middle of a call:
///
/// ```
/// use wsduplex::{Connection, ErrorObjectOwned, Server};
///
/// #[wsduplex::callback]
/// pub trait Prompt {
///     async fn ask(&self, question: String) -> String;
/// }
///
/// #[wsduplex::service(callback = Prompt)]
/// pub trait Wizard {
///     async fn run(&self) -> Result<String, ErrorObjectOwned>;
/// }
///
/// struct Session(Connection<PromptClient>);
///
/// impl Wizard for Session {
///     async fn run(&self) -> Result<String, ErrorObjectOwned> {
///         let name = self.0.callback().ask("name?".into()).await?;
///         Ok(format!("welcome, {name}"))
///     }
/// }
///
/// struct Terminal;
///
/// impl Prompt for Terminal {
///     async fn ask(&self, _question: String) -> String {
///         "ada".into()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), wsduplex::Error> {
/// let server = Server::builder().build("127.0.0.1:0").await?;
/// let url = format!("ws://{}/", server.local_addr()?);
/// tokio::spawn(server.serve(|conn| Session(conn).into_service()));
///
/// let wizard = WizardClient::connect(&url, Terminal).await?;
/// assert_eq!(wizard.run().await?, "welcome, ada");
/// # Ok(())
/// # }
/// ```
pub use wsduplex_macros::callback;

/// Derives an error enum's wire form: each variant names its code.
///
/// - `#[rpc(code = N)]`: the variant answers with error code `N`, its
///   `Display` text as the message, and its fields as `data` (one unnamed
///   field as it is; named fields as an object; none, no `data`).
/// - `#[rpc(transparent)]`: the variant's one field is itself an error that
///   converts into an error object (a [`enum@Error`] from a callback, say), and
///   its documented codes are listed too.
///
/// It implements `From<E> for ErrorObjectOwned`, so methods return
/// `Result<T, E>`, [`contract::FromErrorObject`], so a caller gets `E` back
/// in [`CallError::Method`], and [`contract::DocumentedErrors`], so the contract's metadata, its
/// OpenRPC document and generated clients list every code with the variant's
/// doc comment and the schema of its `data`. `Display` is yours to write
/// (with `thiserror`, for instance).
///
/// ```
/// use wsduplex::{contract::DocumentedErrors, ErrorObjectOwned, RpcError};
///
/// #[derive(Debug, thiserror::Error, RpcError)]
/// pub enum BankError {
///     /// The account does not exist.
///     #[error("no account {0}")]
///     #[rpc(code = 1001)]
///     NoAccount(String),
///     /// Not enough money.
///     #[error("short by {short}")]
///     #[rpc(code = 1002)]
///     Insufficient { balance: u64, short: u64 },
///     /// Another service failed us.
///     #[error(transparent)]
///     #[rpc(transparent)]
///     Upstream(#[from] wsduplex::Error),
/// }
///
/// let object = ErrorObjectOwned::from(BankError::Insufficient { balance: 5, short: 3 });
/// assert_eq!((object.code(), object.message()), (1002, "short by 3"));
/// assert_eq!(object.data().unwrap().get(), r#"{"balance":5,"short":3}"#);
///
/// let codes: Vec<i32> = BankError::errors().iter().map(|e| e.code).collect();
/// assert_eq!(&codes[..2], [1001, 1002]);
/// assert!(codes.contains(&wsduplex::codes::TIMED_OUT));
/// ```
pub use wsduplex_macros::RpcError;

/// What generated code reaches for; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::contract::info::{ErrorsUndocumented, ErrorsViaTrait, schema_of};
    pub use crate::contract::{CallbackContract, ServeWith};
    pub use crate::dispatch::{HandlerFuture, IncomingCall, IntoReply, ReturnTypeIsAResultAlias, handle};
    pub use crate::probe::Probe;
    pub use crate::rpc_error::{
        DecodeNothing, DecodeViaTrait, FieldOpaque, FieldViaSerde, data_member, data_value, error_object, object_schema,
    };
    pub use crate::wire::ByName;
    pub use serde;
}

/// The README's example, compiled and run as a doc test so the README stays
/// true (it shows every feature).
#[cfg(all(doctest, feature = "axum", feature = "tls", feature = "redis", feature = "codegen", feature = "metrics"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
