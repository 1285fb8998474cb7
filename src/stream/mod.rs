#![doc = include_str!("../../docs/guide/streams.md")]

// How it works: each side keeps the streams it sends in a per-connection
// registry (`Producers`, in the connection's shared state); the driver answers
// `next` and `dispose` from it with no call slot taken (a consumer asks once
// at a time per stream, so the registry bounds them), and drops every
// stream when the connection ends. serde cannot be told the connection, so
// `scope` marks the thread while a connection's messages are encoded or
// decoded.

mod consumer;
mod producer;
pub(crate) mod scope;

pub(crate) use scope::encode_result;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use consumer::Incoming;
pub(crate) use producer::Producers;
pub use producer::{IntoOutgoing, Outgoing};

/// The consumer asks for the next values.
pub(crate) const NEXT_METHOD: &str = "$/enumerator/next";
/// The consumer is done with the stream.
pub(crate) const DISPOSE_METHOD: &str = "$/enumerator/dispose";
/// StreamJsonRpc's name for dispose.
pub(crate) const ABORT_METHOD: &str = "$/enumerator/abort";

/// True for the protocol's own methods.
pub(crate) fn is_control(method: &str) -> bool {
    matches!(method, NEXT_METHOD | DISPOSE_METHOD | ABORT_METHOD)
}

/// The answer to `next` for a token this side does not have.
pub(crate) fn no_such_stream() -> jsonrpsee_types::ErrorObjectOwned {
    jsonrpsee_types::ErrorObjectOwned::owned(crate::codes::NO_SUCH_STREAM, "No stream has this token", None::<()>)
}

/// How many open streams a connection holds by default.
pub(crate) const MAX_OPEN_STREAMS: usize = 1000;

/// A producer's batching, as StreamJsonRpc's `JsonRpcEnumerableSettings`.
#[derive(Clone, Copy, Debug)]
struct Settings {
    min_batch_size: usize,
    max_read_ahead: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { min_batch_size: 1, max_read_ahead: 0 }
    }
}

/// A new unguessable token: 128 random bits, base64url.
fn new_token() -> String {
    data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 16]>())
}

/// What a `next` or `dispose` message names.
pub(crate) enum Named {
    /// One of the tokens this side issues (a string).
    Token(String),
    /// A token this side never issues (not a string).
    Foreign,
    /// No token at all.
    Missing,
}

/// The token in `next` or `dispose` params: `{"token": T}` or `[T]`.
pub(crate) fn named_token(params: Option<&RawValue>) -> Named {
    #[derive(Deserialize)]
    struct ByName<'a> {
        #[serde(borrow)]
        token: &'a RawValue,
    }
    let Some(text) = params.map(RawValue::get) else { return Named::Missing };
    let raw = match text.trim_start().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<ByName<'_>>(text).map(|p| p.token),
        _ => serde_json::from_str::<(&RawValue,)>(text).map(|p| p.0),
    };
    match raw {
        Ok(raw) => serde_json::from_str::<String>(raw.get()).map_or(Named::Foreign, Named::Token),
        Err(_) => Named::Missing,
    }
}

/// The schema of a stream of `T` in a contract's documents: the object that
/// carries it on the wire, marked `"x-wsduplex-stream": true` (the OpenRPC
/// and TypeScript generators read a stream of `items` from it).
fn stream_schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let items = generator.subschema_for::<T>();
    schemars::json_schema!({
        "type": "object",
        "description": "A stream of values, pulled with `$/enumerator/next` (StreamJsonRpc's IAsyncEnumerable protocol).",
        "properties": {
            "token": { "description": "What the consumer names the stream by; missing when `values` hold all of it." },
            "values": { "type": "array", "items": items },
        },
        "x-wsduplex-stream": true,
    })
}

/// Both ends of a stream have the same schema: what travels.
macro_rules! stream_json_schema {
    ($($ty:ident),*) => {$(
        impl<T: schemars::JsonSchema> schemars::JsonSchema for $ty<T> {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                format!("Stream_of_{}", T::schema_name()).into()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                stream_schema::<T>(generator)
            }
        }
    )*};
}

stream_json_schema!(Outgoing, Incoming);

#[cfg(test)]
mod tests;
