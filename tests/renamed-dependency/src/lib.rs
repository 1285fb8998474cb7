//! Contracts declared against `wsduplex` renamed to `duplex` in Cargo.toml,
//! and through a facade module that re-exports it (`crate = "..."`).

use std::fmt;

/// Echoes, after asking the caller.
#[duplex::service(namespace = "r", callback = Ping)]
pub trait Echo {
    /// Echoes `text`; fails on empty text.
    async fn echo(&self, text: String) -> Result<String, Failure>;
}

/// What the server asks the caller.
#[duplex::callback(namespace = "r")]
pub trait Ping {
    /// Answers 7.
    async fn ping(&self) -> u8;
}

/// The echo's failure.
#[derive(Debug, duplex::RpcError)]
pub enum Failure {
    /// Nothing to echo.
    #[rpc(code = 1)]
    Empty,
    /// The callback failed.
    #[rpc(code = 2)]
    Callback { reason: String },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Empty => f.write_str("nothing to echo"),
            Failure::Callback { reason } => write!(f, "the callback failed: {reason}"),
        }
    }
}

/// A crate that re-exports the runtime under its own path.
pub mod facade {
    pub use duplex as runtime;
}

/// Declared through the facade.
#[facade::runtime::service(namespace = "f", crate = "crate::facade::runtime")]
pub trait Facaded {
    /// Answers 1.
    async fn one(&self) -> Result<u8, Refusal>;
}

/// An error declared through the facade.
#[derive(Debug, facade::runtime::RpcError)]
#[rpc(crate = "crate::facade::runtime")]
pub enum Refusal {
    /// Never sent.
    #[rpc(code = 3)]
    No { why: Option<String> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no")
    }
}
