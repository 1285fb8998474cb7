//! Connection-level errors and the JSON-RPC error codes wsduplex uses.

use std::time::Duration;

use jsonrpsee_types::ErrorObjectOwned;

/// Why a call, notification or connection attempt failed.
///
/// Handlers return their own error types; this enum is what a *caller* sees.
/// The peer's own error object arrives as [`Error::Rpc`] with its code, message
/// and data intact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer answered with a JSON-RPC error object.
    #[error("the peer answered with error {}: {}", .0.code(), .0.message())]
    Rpc(ErrorObjectOwned),
    /// The connection is closed, or closed before the reply arrived.
    #[error("the connection is closed")]
    Closed,
    /// No reply arrived before the call's deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The WebSocket or the socket under it failed.
    #[error("transport error: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The reply did not decode into the expected type.
    #[error("could not decode the reply: {0}")]
    Decode(#[source] serde_json::Error),
    /// The parameters could not be encoded as JSON.
    #[error("could not encode the parameters: {0}")]
    Encode(#[source] serde_json::Error),
    /// The server answered the WebSocket handshake with this HTTP status
    /// instead of upgrading (401 or 403 from its authentication, 503, ...).
    #[error("the server refused the WebSocket handshake with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// Not connected, and the one-way messages kept for the reconnect
    /// already fill their buffer (of this many).
    #[error("not connected, and {0} one-way messages already wait for the reconnect")]
    OfflineBufferFull(usize),
}

impl Error {
    /// The code of the error object the peer answered with ([`Error::Rpc`]);
    /// `None` when the call failed otherwise.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Rpc(object) => Some(object.code()),
            _ => None,
        }
    }

    pub(crate) fn transport(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Transport(Box::new(error))
    }

    /// The error object a handler that propagates this error answers with.
    ///
    /// A peer's own error object is not passed through as it is: the caller
    /// called this handler, not that peer, so it gets [`codes::PEER_ERROR`]
    /// with the peer's object as `data`. A handler that means to forward the
    /// object matches [`Error::Rpc`] itself.
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        match self {
            Error::Rpc(object) => ErrorObjectOwned::owned(codes::PEER_ERROR, self.to_string(), Some(object)),
            Error::Closed => ErrorObjectOwned::owned(codes::PEER_CLOSED, self.to_string(), None::<()>),
            Error::Timeout(_) => ErrorObjectOwned::owned(codes::TIMED_OUT, self.to_string(), None::<()>),
            Error::Transport(_) => ErrorObjectOwned::owned(codes::TRANSPORT, self.to_string(), None::<()>),
            Error::Decode(_) => ErrorObjectOwned::owned(codes::BAD_REPLY, self.to_string(), None::<()>),
            Error::Encode(_) => ErrorObjectOwned::owned(codes::INTERNAL_ERROR, self.to_string(), None::<()>),
            Error::Refused { .. } => ErrorObjectOwned::owned(codes::TRANSPORT, self.to_string(), None::<()>),
            Error::OfflineBufferFull(_) => ErrorObjectOwned::owned(codes::PEER_CLOSED, self.to_string(), None::<()>),
        }
    }
}

/// The error objects a handler answers with when it propagates an `Error`
/// (a callback that failed, for instance), one per code.
impl crate::contract::DocumentedErrors for Error {
    fn errors() -> Vec<crate::contract::ErrorInfo> {
        use crate::contract::ErrorInfo;
        /// The shape of a peer's error object, passed on as `data`.
        #[derive(schemars::JsonSchema, serde::Serialize)]
        #[allow(dead_code, reason = "only its schema is used")]
        struct ErrorObject {
            code: i32,
            message: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<serde_json::Value>,
        }
        vec![
            ErrorInfo {
                code: codes::PEER_ERROR,
                name: "PeerError",
                docs: "A peer this call depends on answered with an error; `data` is its error object.",
                data: Some(crate::contract::info::schema_of::<ErrorObject>),
            },
            ErrorInfo {
                code: codes::PEER_CLOSED,
                name: "PeerClosed",
                docs: "A peer this call depends on closed its connection.",
                data: None,
            },
            ErrorInfo {
                code: codes::TIMED_OUT,
                name: "TimedOut",
                docs: "A peer this call depends on did not answer in time.",
                data: None,
            },
            ErrorInfo { code: codes::TRANSPORT, name: "Transport", docs: "A connection failed.", data: None },
            ErrorInfo {
                code: codes::BAD_REPLY,
                name: "BadReply",
                docs: "A peer this call depends on answered with a value of the wrong type.",
                data: None,
            },
        ]
    }
}

/// Why a typed stub's call to a method declared `-> Result<T, E>` failed:
/// the method's own error, decoded, or anything else.
///
/// `E` is decoded from the error object when `E` implements
/// [`FromErrorObject`](crate::contract::FromErrorObject) (`#[derive(RpcError)]` does):
/// its code picks the variant and its `data` fills the fields. An object that
/// `E` does not decode (another code, data of another shape, or an `E` that
/// cannot decode at all) stays an [`Error::Rpc`] in [`CallError::Call`].
#[derive(Debug)]
pub enum CallError<E> {
    /// The method answered with one of its own errors.
    Method(E),
    /// The call failed otherwise: connection, deadline, encoding, or an
    /// error object `E` does not decode ([`Error::Rpc`]).
    Call(Error),
}

impl<E> CallError<E> {
    /// Decodes the method's error from `error` when it is an error object of
    /// one of `E`'s codes.
    pub fn new(error: Error) -> Self
    where
        E: crate::contract::FromErrorObject,
    {
        match error {
            Error::Rpc(object) => match E::from_error_object(&object) {
                Some(decoded) => CallError::Method(decoded),
                None => CallError::Call(Error::Rpc(object)),
            },
            other => CallError::Call(other),
        }
    }

    /// The method's own error, if that is why the call failed.
    pub fn method_error(self) -> Option<E> {
        match self {
            CallError::Method(error) => Some(error),
            CallError::Call(_) => None,
        }
    }
}

impl<E> From<Error> for CallError<E> {
    fn from(error: Error) -> Self {
        CallError::Call(error)
    }
}

impl<E: std::fmt::Display> std::fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Method(error) => write!(f, "the method failed: {error}"),
            CallError::Call(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Method(error) => Some(error),
            CallError::Call(error) => Some(error),
        }
    }
}

/// A handler that awaits a callback and propagates its failure with `?`
/// answers its own caller as it would for the undecoded [`Error`]: the
/// callee's error object goes in `data` under [`codes::PEER_ERROR`].
impl<E: Into<ErrorObjectOwned>> From<CallError<E>> for ErrorObjectOwned {
    fn from(error: CallError<E>) -> Self {
        match error {
            CallError::Method(error) => Error::Rpc(error.into()).to_error_object(),
            CallError::Call(error) => error.to_error_object(),
        }
    }
}

/// The undecoded error: the method's own error becomes [`Error::Rpc`] again.
impl<E: Into<ErrorObjectOwned>> From<CallError<E>> for Error {
    fn from(error: CallError<E>) -> Self {
        match error {
            CallError::Method(error) => Error::Rpc(error.into()),
            CallError::Call(error) => error,
        }
    }
}

/// Socket errors (binding, accepting, connecting) are transport errors.
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::transport(error)
    }
}

/// A handler that awaits a callback and propagates its failure with `?` answers
/// its own caller with the matching implementation error code.
impl From<Error> for ErrorObjectOwned {
    fn from(error: Error) -> Self {
        error.to_error_object()
    }
}

/// Error codes on the wire.
///
/// The standard JSON-RPC 2.0 codes, plus the implementation codes wsduplex
/// itself answers with (all within the spec's -32000..-32099 server range).
/// Where jsonrpsee already defines a code for the same condition, wsduplex
/// uses jsonrpsee's number.
#[doc = ""]
#[doc = include_str!("../docs/guide/wire.md")]
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i32 = jsonrpsee_types::error::PARSE_ERROR_CODE;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i32 = jsonrpsee_types::error::INVALID_REQUEST_CODE;
    /// The method does not exist on this peer.
    pub const METHOD_NOT_FOUND: i32 = jsonrpsee_types::error::METHOD_NOT_FOUND_CODE;
    /// Invalid method parameters; `data` names the parameter.
    pub const INVALID_PARAMS: i32 = jsonrpsee_types::error::INVALID_PARAMS_CODE;
    /// The handler failed in an unexpected way (for example, it panicked).
    pub const INTERNAL_ERROR: i32 = jsonrpsee_types::error::INTERNAL_ERROR_CODE;
    /// The connection is at its limit of running calls; try again later (jsonrpsee's code).
    pub const SERVER_BUSY: i32 = jsonrpsee_types::error::SERVER_IS_BUSY_CODE;
    /// A batch holds more than 1,000 entries (jsonrpsee's code).
    pub const BATCH_TOO_LARGE: i32 = jsonrpsee_types::error::TOO_BIG_BATCH_REQUEST_CODE;
    /// `$/enumerator/next` named a stream token this side does not have (never
    /// issued, finished, or disposed of): StreamJsonRpc's code.
    pub const NO_SUCH_STREAM: i32 = -32001;
    /// The connection's identity has none of the roles the method requires
    /// (`#[authorize(role = "...")]`); `data` is `{"roles": [...]}`. The
    /// handler never ran, and the params were not read.
    pub const NOT_AUTHORIZED: i32 = -32030;
    /// The peer sends faster than the connection's rate limit allows
    /// ([`RateLimit`](crate::rate_limit::RateLimit)); the handler did not run.
    pub const RATE_LIMITED: i32 = -32029;
    /// A call the handler made to another peer timed out.
    pub const TIMED_OUT: i32 = -32020;
    /// A call the handler made went to a connection that closed.
    pub const PEER_CLOSED: i32 = -32021;
    /// The request was cancelled by `$/cancelRequest` before it finished.
    pub const REQUEST_CANCELLED: i32 = -32022;
    /// A call the handler made failed in the transport.
    pub const TRANSPORT: i32 = -32023;
    /// A call the handler made got a reply it could not decode.
    pub const BAD_REPLY: i32 = -32024;
    /// A call the handler made was answered with an error object, which is in `data`.
    pub const PEER_ERROR: i32 = -32025;
}

/// The error object for a request refused by the connection's rate limit.
pub(crate) fn rate_limited() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::RATE_LIMITED, "Rate limit exceeded", None::<()>)
}

/// The error object for a request refused because the peer is at its limit
/// (code -32009 and message as jsonrpsee words them).
pub(crate) fn server_busy() -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::SERVER_BUSY, jsonrpsee_types::error::SERVER_IS_BUSY_MSG, None::<()>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_map_to_implementation_codes() {
        assert_eq!(Error::Closed.to_error_object().code(), codes::PEER_CLOSED);
        assert_eq!(Error::Timeout(Duration::from_secs(1)).to_error_object().code(), codes::TIMED_OUT);
        let peer = ErrorObjectOwned::owned(-32601, "Method not found", Some("chat.invited"));
        let forwarded = Error::Rpc(peer.clone()).to_error_object();
        assert_eq!(forwarded.code(), codes::PEER_ERROR);
        let data: serde_json::Value = serde_json::from_str(forwarded.data().unwrap().get()).unwrap();
        assert_eq!(data, serde_json::json!({"code": -32601, "message": "Method not found", "data": "chat.invited"}));
    }

    #[test]
    fn errors_survive_a_round_trip_through_jsonrpsee() {
        let back = Error::from(jsonrpsee_core::client::Error::from(Error::Closed));
        assert!(matches!(back, Error::Closed), "{back:?}");
        let rpc = ErrorObjectOwned::owned(7, "seven", None::<()>);
        let back = Error::from(jsonrpsee_core::client::Error::from(Error::Rpc(rpc.clone())));
        assert!(matches!(back, Error::Rpc(o) if o == rpc));
    }
}
