//! JSON-RPC 2.0 messages as they cross the socket: classifying what arrives,
//! and writing what leaves.
//!
//! Incoming frames are parsed once, borrowing from the frame's text; nothing a
//! peer sends can make these functions panic. Outgoing messages are serialized
//! straight into the frame that is sent, with no intermediate JSON values.

use std::borrow::Cow;
use std::fmt;

use jsonrpsee_types::{ErrorObject, ErrorObjectOwned, TwoPointZero};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::error::codes;

/// The method name of the cancellation notification (the LSP and StreamJsonRpc convention).
pub(crate) const CANCEL_METHOD: &str = "$/cancelRequest";

/// The id of a request received from the peer, kept exactly as it was sent so the
/// response echoes it byte for byte (negative, fractional and huge numbers too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestId {
    /// `null` (legal, if discouraged).
    Null,
    /// A non-negative integer that fits in a `u64`: the common case, stored without allocating.
    Number(u64),
    /// Any other legal id (a string or another number), as its JSON text.
    Raw(Box<str>),
}

impl RequestId {
    /// Reads an id from its JSON text; `None` when the value is not a legal id
    /// (an object, array or boolean).
    fn from_raw(raw: &RawValue) -> Option<Self> {
        let text = raw.get();
        match text.as_bytes().first()? {
            b'n' => Some(RequestId::Null),
            b'"' => Some(RequestId::Raw(text.into())),
            b'-' | b'0'..=b'9' => Some(match text.parse::<u64>() {
                Ok(n) => RequestId::Number(n),
                Err(_) => RequestId::Raw(text.into()),
            }),
            _ => None,
        }
    }

    /// The same id as jsonrpsee's [`Id`](jsonrpsee_types::Id), when it can hold it
    /// (it has no negative or fractional numbers).
    pub(crate) fn to_jsonrpsee(&self) -> Option<jsonrpsee_types::Id<'static>> {
        match self {
            RequestId::Null => Some(jsonrpsee_types::Id::Null),
            RequestId::Number(n) => Some(jsonrpsee_types::Id::Number(*n)),
            RequestId::Raw(text) if text.starts_with('"') => {
                let s: String = serde_json::from_str(text).ok()?;
                Some(jsonrpsee_types::Id::Str(Cow::Owned(s)))
            }
            RequestId::Raw(_) => None,
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Null => f.write_str("null"),
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Raw(text) => f.write_str(text),
        }
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Null => serializer.serialize_unit(),
            RequestId::Number(n) => serializer.serialize_u64(*n),
            RequestId::Raw(text) => match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) => raw.serialize(serializer),
                // Unreachable: the text came from a parsed RawValue.
                Err(_) => serializer.serialize_unit(),
            },
        }
    }
}

/// One JSON-RPC message, classified.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// A call that wants a response.
    Request { id: RequestId, method: Cow<'a, str>, params: Option<&'a RawValue> },
    /// A call without an id: no response, ever.
    Notification { method: Cow<'a, str>, params: Option<&'a RawValue> },
    /// A response to a call this side made.
    Response { id: &'a RawValue, outcome: Result<&'a RawValue, &'a RawValue> },
    /// Looks like a response but is malformed; logged and dropped, never answered.
    BadResponse { reason: &'static str },
    /// Not a valid request: answered with -32600 (and the id when it was readable).
    Invalid { id: RequestId, reason: &'static str },
}

/// What one WebSocket text frame holds.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    Single(Message<'a>),
    /// The elements of a non-empty batch, each classified with [`classify`].
    Batch(Vec<&'a RawValue>),
    /// Not JSON at all: answered with -32700 and a null id.
    ParseError,
    /// A batch over the limit: answered with -32010 and a null id, before the
    /// rest of it is even parsed.
    BatchTooLarge,
}

/// The most entries a batch may hold by default (jsonrpsee's default too).
pub(crate) const MAX_BATCH_LEN: usize = 1000;

/// Collects a batch's entries, refusing to hold more than `max`.
struct BatchEntries {
    max: usize,
}

/// The error message that marks an oversized batch.
const TOO_MANY_ENTRIES: &str = "wsduplex: too many batch entries";

impl<'de> serde::de::Visitor<'de> for BatchEntries {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<&RawValue>()? {
            if entries.len() == self.max {
                return Err(serde::de::Error::custom(TOO_MANY_ENTRIES));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// The members of a message object, each kept as raw JSON so that a wrong type in
/// one member still lets us read the others (the id above all).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// `Some` for a member that is present, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses one frame's text; a batch may hold at most `max_batch_len` entries.
pub(crate) fn parse_frame(text: &str, max_batch_len: usize) -> Frame<'_> {
    match first_byte(text) {
        Some(b'[') => {
            match serde_json::Deserializer::from_str(text).deserialize_seq(BatchEntries { max: max_batch_len }) {
                Ok(items) if items.is_empty() => {
                    Frame::Single(Message::Invalid { id: RequestId::Null, reason: "empty batch" })
                }
                Ok(items) => Frame::Batch(items),
                Err(e) if e.to_string().starts_with(TOO_MANY_ENTRIES) => Frame::BatchTooLarge,
                Err(_) => Frame::ParseError,
            }
        }
        // One pass over the text: the envelope keeps each member as raw JSON.
        Some(b'{') => match serde_json::from_str::<Envelope<'_>>(text) {
            Ok(envelope) => Frame::Single(classify_envelope(envelope)),
            // Well-formed JSON of the wrong shape: a member given twice.
            Err(e) if e.is_data() => Frame::Single(invalid(None, "malformed message object")),
            Err(_) => Frame::ParseError,
        },
        _ => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Frame::Single(invalid(None, "a message must be a JSON object")),
            Err(_) => Frame::ParseError,
        },
    }
}

/// The id of a frame that is, by its first bytes, a response to one of our
/// calls: `{"jsonrpc":"2.0","id":N,"result":` or `…,"error":`, the form wsduplex
/// and jsonrpsee write. Such a frame goes to its caller unparsed, and the
/// caller parses it once, into the type it expects.
pub(crate) fn response_prefix_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"jsonrpc":"2.0","id":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, rest) = rest.split_at(digits);
    if !(rest.starts_with(r#","result":"#) || rest.starts_with(r#","error":"#)) {
        return None;
    }
    id.parse().ok()
}

/// A response parsed in one pass into the type its caller expects.
#[derive(Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
struct TypedResponse<'a, R> {
    #[serde(default = "Option::default", deserialize_with = "some")]
    result: Option<R>,
    #[serde(borrow, default)]
    error: Option<ErrorObject<'a>>,
}

fn some<'de, D: Deserializer<'de>, R: Deserialize<'de>>(d: D) -> Result<Option<R>, D::Error> {
    R::deserialize(d).map(Some)
}

/// Decodes a whole response frame: the result as `R`, or the error object.
pub(crate) fn decode_response<R: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> Result<Result<R, ErrorObjectOwned>, serde_json::Error> {
    match serde_json::from_slice::<TypedResponse<'_, R>>(frame)? {
        TypedResponse { result: Some(result), error: None } => Ok(Ok(result)),
        TypedResponse { result: None, error: Some(error) } => Ok(Err(error.into_owned())),
        _ => Err(serde::de::Error::custom("a response needs exactly one of \"result\" and \"error\"")),
    }
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|b| !b.is_ascii_whitespace())
}

/// Classifies one element of a batch.
pub(crate) fn classify(raw: &RawValue) -> Message<'_> {
    if first_byte(raw.get()) != Some(b'{') {
        return invalid(None, "a message must be a JSON object");
    }
    match serde_json::from_str::<Envelope<'_>>(raw.get()) {
        Ok(envelope) => classify_envelope(envelope),
        // Valid JSON (the batch parsed), so this is a duplicate member.
        Err(_) => invalid(None, "malformed message object"),
    }
}

fn classify_envelope(envelope: Envelope<'_>) -> Message<'_> {
    let version_ok = envelope.jsonrpc.is_some_and(|v| json_str(v).as_deref() == Some("2.0"));

    if let Some(method) = envelope.method {
        if !version_ok {
            return invalid(envelope.id, "\"jsonrpc\" must be \"2.0\"");
        }
        let Some(method) = json_str(method) else {
            return invalid(envelope.id, "\"method\" must be a string");
        };
        let params = match envelope.params {
            Some(p) if matches!(first_byte(p.get()), Some(b'{' | b'[')) => Some(p),
            Some(p) if p.get() == "null" => None,
            Some(_) => return invalid(envelope.id, "\"params\" must be an object or an array"),
            None => None,
        };
        return match envelope.id {
            None => Message::Notification { method, params },
            Some(raw_id) => match RequestId::from_raw(raw_id) {
                Some(id) => Message::Request { id, method, params },
                None => invalid(None, "\"id\" must be a string, a number or null"),
            },
        };
    }

    if envelope.result.is_some() || envelope.error.is_some() {
        let Some(id) = envelope.id else {
            return Message::BadResponse { reason: "response without an id" };
        };
        if !version_ok {
            return Message::BadResponse { reason: "\"jsonrpc\" must be \"2.0\"" };
        }
        let outcome = match (envelope.result, envelope.error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(error),
            _ => return Message::BadResponse { reason: "response has both result and error" },
        };
        return Message::Response { id, outcome };
    }

    invalid(envelope.id, "a message needs \"method\", \"result\" or \"error\"")
}

fn invalid(id: Option<&RawValue>, reason: &'static str) -> Message<'static> {
    let id = id.and_then(RequestId::from_raw).unwrap_or(RequestId::Null);
    Message::Invalid { id, reason }
}

/// The string a raw JSON value holds, borrowed when it has no escapes.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Reads the id of a response to one of our own calls (we only ever send `u64` ids).
pub(crate) fn own_call_id(raw: &RawValue) -> Option<u64> {
    raw.get().parse().ok()
}

/// Decodes the error object of a response.
pub(crate) fn error_object(raw: &RawValue) -> Result<ErrorObjectOwned, serde_json::Error> {
    serde_json::from_str::<ErrorObject<'_>>(raw.get()).map(ErrorObject::into_owned)
}

/// Reads the target id out of `$/cancelRequest` params (`{"id": …}` or `[…]`).
pub(crate) fn cancel_target(params: Option<&RawValue>) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct ByName<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
    }
    let text = params?.get();
    let raw = match first_byte(text)? {
        b'{' => serde_json::from_str::<ByName<'_>>(text).ok()?.id,
        _ => serde_json::from_str::<(&RawValue,)>(text).ok()?.0,
    };
    RequestId::from_raw(raw)
}

#[derive(Serialize)]
struct RequestOut<'a, P> {
    jsonrpc: TwoPointZero,
    id: u64,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<P>,
}

#[derive(Serialize)]
struct NotificationOut<'a, P> {
    jsonrpc: TwoPointZero,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<P>,
}

#[derive(Serialize)]
struct SuccessOut<'a, T> {
    jsonrpc: TwoPointZero,
    id: &'a RequestId,
    result: &'a T,
}

#[derive(Serialize)]
struct FailureOut<'a> {
    jsonrpc: TwoPointZero,
    id: &'a RequestId,
    error: &'a ErrorObject<'a>,
}

/// Spare capacity a frame may keep when it is queued.
const SPARE: usize = 1024;

/// A frame's text as a message holds it, without the spare capacity that
/// serializing left (up to as much again): a queued frame costs what it
/// carries, which is what the outbound bounds count.
pub(crate) fn frame_text(mut frame: String) -> Utf8Bytes {
    if frame.capacity() - frame.len() > SPARE {
        frame.shrink_to_fit();
    }
    frame.into()
}

/// `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`
pub(crate) fn request<P: Serialize>(id: u64, method: &str, params: Option<P>) -> Result<String, serde_json::Error> {
    serde_json::to_string(&RequestOut { jsonrpc: TwoPointZero, id, method, params })
}

/// `{"jsonrpc":"2.0","method":…,"params":…}`
pub(crate) fn notification<P: Serialize>(method: &str, params: Option<P>) -> Result<String, serde_json::Error> {
    serde_json::to_string(&NotificationOut { jsonrpc: TwoPointZero, method, params })
}

/// A success response; falls back to an internal-error response if the result
/// does not serialize (a map with non-string keys, say).
pub(crate) fn success<T: Serialize>(id: &RequestId, result: &T) -> String {
    try_success(id, result).unwrap_or_else(|e| failure(id, &encode_failure(&e)))
}

/// The error object for a result that did not serialize (-32603).
pub(crate) fn encode_failure(error: &serde_json::Error) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::INTERNAL_ERROR, format!("could not encode the result: {error}"), None::<()>)
}

/// A success response, if the result serializes.
pub(crate) fn try_success<T: Serialize>(id: &RequestId, result: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(&SuccessOut { jsonrpc: TwoPointZero, id, result })
}

/// The answer to `$/enumerator/next`: `{"values":[…],"finished":…}`, the
/// values given as their JSON, comma-separated.
pub(crate) fn enumerator_values(id: &RequestId, values: &[u8], finished: bool) -> String {
    // Written by hand: the values are JSON already, and a `RawValue` would parse them again.
    let (Ok(id), Ok(values)) = (serde_json::to_string(id), std::str::from_utf8(values)) else {
        return failure(id, &ErrorObjectOwned::owned(codes::INTERNAL_ERROR, "Internal error", None::<()>));
    };
    let finished = if finished { "true" } else { "false" };
    let mut out = String::with_capacity(values.len() + id.len() + 64);
    for part in
        [r#"{"jsonrpc":"2.0","id":"#, &id, r#","result":{"values":["#, values, r#"],"finished":"#, finished, "}}"]
    {
        out.push_str(part);
    }
    out
}

/// The most of an unknown method's name echoed back in -32601's `data`.
pub(crate) const ECHOED_NAME: usize = 256;

/// `name`, cut to [`ECHOED_NAME`] bytes on a character boundary (a peer's
/// megabyte-long method name is not worth sending back).
pub(crate) fn echo(name: &str) -> &str {
    let mut end = name.len().min(ECHOED_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The answer to a call of a method no handler has: -32601, its name (cut
/// short) as `data`.
pub(crate) fn method_not_found(method: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(codes::METHOD_NOT_FOUND, "Method not found", Some(echo(method)))
}

/// An error response.
pub(crate) fn failure(id: &RequestId, error: &ErrorObject<'_>) -> String {
    serde_json::to_string(&FailureOut { jsonrpc: TwoPointZero, id, error })
        // An ErrorObject always serializes: its data is already raw JSON.
        .unwrap_or_default()
}

/// A batch, `[a,b,c]`, from messages already serialized.
pub(crate) fn batch(parts: &[String]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
    out.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(part);
    }
    out.push(']');
    out
}

/// The `$/cancelRequest` notification for one of our own calls.
pub(crate) fn cancel(id: u64) -> String {
    #[derive(Serialize)]
    struct Params {
        id: u64,
    }
    notification(CANCEL_METHOD, Some(Params { id })).unwrap_or_default()
}

/// Parameters sent by name: a JSON object keyed by the Rust parameter names.
///
/// Generated stubs build one from the method's arguments, borrowed, so nothing is
/// cloned to send a call. `N` is the number of parameters, so names and values
/// cannot disagree.
#[doc(hidden)]
pub struct ByName<const N: usize, T>(pub &'static [&'static str; N], pub T);

macro_rules! by_name {
    ($n:literal $(, $T:ident $i:tt)*) => {
        impl<$($T: Serialize),*> Serialize for ByName<$n, ($($T,)*)> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                #[allow(unused_mut)]
                let mut map = serializer.serialize_map(Some($n))?;
                $( map.serialize_entry(self.0[$i], &(self.1).$i)?; )*
                map.end()
            }
        }
    };
}

for_each_arity!(by_name);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn single(text: &str) -> Message<'_> {
        match parse_frame(text, MAX_BATCH_LEN) {
            Frame::Single(m) => m,
            other => panic!("expected one message, got {other:?}"),
        }
    }

    #[test]
    fn requests_and_notifications_are_told_apart_by_the_id_member() {
        match single(r#"{"jsonrpc":"2.0","id":7,"method":"a.b","params":[1]}"#) {
            Message::Request { id, method, params } => {
                assert_eq!(id, RequestId::Number(7));
                assert_eq!(method, "a.b");
                assert_eq!(params.unwrap().get(), "[1]");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(single(r#"{"jsonrpc":"2.0","method":"a.b"}"#), Message::Notification { params: None, .. }));
        // A null id is still a request.
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#),
            Message::Request { id: RequestId::Null, .. }
        ));
    }

    #[test]
    fn every_legal_id_is_echoed_exactly() {
        for id in ["0", "18446744073709551615", "-1", "1.5", "1e3", "\"abc\"", "\"\\u00e9\"", "null"] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#);
            let Message::Request { id: parsed, .. } = single(&text) else { panic!("{id}") };
            let out = success(&parsed, &true);
            let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":true}}"#);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn illegal_ids_and_members_are_invalid_requests() {
        for (text, expect_id) in [
            (r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, RequestId::Null),
            (r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#, RequestId::Null),
            (r#"{"jsonrpc":"1.0","id":3,"method":"m"}"#, RequestId::Number(3)),
            (r#"{"id":3,"method":"m"}"#, RequestId::Number(3)),
            (r#"{"jsonrpc":"2.0","id":4,"method":1}"#, RequestId::Number(4)),
            (r#"{"jsonrpc":"2.0","id":5,"method":"m","params":"x"}"#, RequestId::Number(5)),
            (r#"{"jsonrpc":"2.0","id":6}"#, RequestId::Number(6)),
            (r#"{"jsonrpc":"2.0","id":7,"method":"a","method":"b"}"#, RequestId::Null),
            ("1", RequestId::Null),
            ("\"text\"", RequestId::Null),
        ] {
            match single(text) {
                Message::Invalid { id, .. } => assert_eq!(id, expect_id, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn null_params_count_as_absent() {
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#),
            Message::Request { params: None, .. }
        ));
    }

    #[test]
    fn batches_past_the_limit_are_refused_whole() {
        let at_limit = format!("[{}1]", "1,".repeat(MAX_BATCH_LEN - 1));
        assert!(matches!(parse_frame(&at_limit, MAX_BATCH_LEN), Frame::Batch(items) if items.len() == MAX_BATCH_LEN));
        let over = format!("[{}1]", "1,".repeat(MAX_BATCH_LEN));
        assert!(matches!(parse_frame(&over, MAX_BATCH_LEN), Frame::BatchTooLarge));
        assert!(matches!(parse_frame("[1,2,3]", 2), Frame::BatchTooLarge));
        assert!(matches!(parse_frame("[1,2]", 2), Frame::Batch(items) if items.len() == 2));
    }

    #[test]
    fn batches_and_broken_json() {
        assert!(matches!(parse_frame("[1,2]", MAX_BATCH_LEN), Frame::Batch(items) if items.len() == 2));
        assert!(matches!(
            parse_frame("  []", MAX_BATCH_LEN),
            Frame::Single(Message::Invalid { id: RequestId::Null, .. })
        ));
        for text in ["", "{", r#"{"jsonrpc":"2.0","method":"m""#, "[1,", "nul", "\u{0}"] {
            assert!(matches!(parse_frame(text, MAX_BATCH_LEN), Frame::ParseError), "{text:?}");
        }
    }

    #[test]
    fn responses_are_classified_not_answered() {
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":3,"result":null}"#),
            Message::Response { outcome: Ok(r), .. } if r.get() == "null"
        ));
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}"#),
            Message::Response { outcome: Err(_), .. }
        ));
        assert!(matches!(single(r#"{"jsonrpc":"2.0","id":3,"result":1,"error":{}}"#), Message::BadResponse { .. }));
        assert!(matches!(single(r#"{"jsonrpc":"2.0","result":1}"#), Message::BadResponse { .. }));
    }

    #[test]
    fn responses_in_the_usual_form_are_recognized_by_their_first_bytes() {
        assert_eq!(response_prefix_id(r#"{"jsonrpc":"2.0","id":42,"result":"x"}"#), Some(42));
        assert_eq!(response_prefix_id(r#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"m"}}"#), Some(7));
        for other in [
            r#"{"jsonrpc":"2.0","id":42,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":"42","result":1}"#,
            r#"{"jsonrpc":"2.0","id":,"result":1}"#,
            r#"{"id":42,"jsonrpc":"2.0","result":1}"#,
            r#"{ "jsonrpc":"2.0","id":42,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":99999999999999999999999,"result":1}"#,
        ] {
            assert_eq!(response_prefix_id(other), None, "{other}");
        }
    }

    #[test]
    fn a_whole_response_decodes_in_one_pass() {
        let ok = decode_response::<String>(br#"{"jsonrpc":"2.0","id":1,"result":"hi"}"#).unwrap();
        assert_eq!(ok, Ok("hi".to_owned()));
        let unit = decode_response::<()>(br#"{"jsonrpc":"2.0","id":1,"result":null}"#).unwrap();
        assert_eq!(unit, Ok(()));
        let err = decode_response::<()>(br#"{"jsonrpc":"2.0","id":1,"error":{"code":5,"message":"no"}}"#).unwrap();
        assert_eq!(err.unwrap_err().code(), 5);
        assert!(decode_response::<String>(br#"{"jsonrpc":"2.0","id":1,"result":3}"#).is_err());
        assert!(decode_response::<u8>(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(
            decode_response::<u8>(br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#).is_err()
        );
        assert!(decode_response::<u8>(br#"{"jsonrpc":"2.0","id":1,"result":1"#).is_err());
    }

    #[test]
    fn method_names_with_escapes_are_decoded() {
        let Message::Notification { method, .. } = single(r#"{"jsonrpc":"2.0","method":"a\u002eb"}"#) else { panic!() };
        assert_eq!(method, "a.b");
    }

    #[test]
    fn outgoing_messages_have_the_exact_shape() {
        let params = ByName(&["room", "nick"], (&"lobby", &"alice"));
        let text = request(9, "chat.join", Some(params)).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"jsonrpc":"2.0","id":9,"method":"chat.join","params":{"room":"lobby","nick":"alice"}})
        );
        let text = notification::<()>("chat.left", None).unwrap();
        assert_eq!(text, r#"{"jsonrpc":"2.0","method":"chat.left"}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&cancel(4)).unwrap(),
            json!({"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":4}})
        );
        let error = ErrorObjectOwned::owned(1001, "nick taken", Some("bob"));
        assert_eq!(
            serde_json::from_str::<Value>(&failure(&RequestId::Raw("\"x\"".into()), &error)).unwrap(),
            json!({"jsonrpc":"2.0","id":"x","error":{"code":1001,"message":"nick taken","data":"bob"}})
        );
    }

    #[test]
    fn unencodable_results_become_internal_errors() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let out: Value = serde_json::from_str(&success(&RequestId::Number(1), &map)).unwrap();
        assert_eq!(out["error"]["code"], json!(codes::INTERNAL_ERROR));
    }

    #[test]
    fn cancel_targets_by_name_or_position() {
        let by_name = RawValue::from_string(r#"{"id":"x"}"#.into()).unwrap();
        assert_eq!(cancel_target(Some(&by_name)), Some(RequestId::Raw("\"x\"".into())));
        let by_position = RawValue::from_string("[12]".into()).unwrap();
        assert_eq!(cancel_target(Some(&by_position)), Some(RequestId::Number(12)));
        let junk = RawValue::from_string("[{}]".into()).unwrap();
        assert_eq!(cancel_target(Some(&junk)), None);
        assert_eq!(cancel_target(None), None);
    }

    #[test]
    fn string_ids_convert_to_jsonrpsee() {
        assert_eq!(RequestId::Raw("\"a\"".into()).to_jsonrpsee(), Some(jsonrpsee_types::Id::Str("a".into())));
        assert_eq!(RequestId::Raw("-1".into()).to_jsonrpsee(), None);
    }

    mod fuzz {
        use super::super::*;
        use crate::arbitrary;
        use proptest::prelude::*;

        /// Runs every classification a frame can go through; none may panic.
        fn classify_everything(text: &str) {
            let _ = response_prefix_id(text);
            let messages = match parse_frame(text, 4) {
                Frame::Single(message) => vec![message],
                Frame::Batch(items) => items.into_iter().map(classify).collect(),
                Frame::ParseError | Frame::BatchTooLarge => Vec::new(),
            };
            for message in messages {
                match message {
                    Message::Request { params, .. } | Message::Notification { params, .. } => {
                        let _ = cancel_target(params);
                    }
                    Message::Response { id, outcome } => {
                        let _ = own_call_id(id);
                        if let Err(error) = outcome {
                            let _ = error_object(error);
                        }
                    }
                    Message::BadResponse { .. } | Message::Invalid { .. } => {}
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_text_is_classified_without_panicking(text in ".{0,64}") {
                classify_everything(&text);
            }

            #[test]
            fn any_bytes_are_classified_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                classify_everything(&String::from_utf8_lossy(&bytes));
            }

            #[test]
            fn message_shaped_text_is_classified_without_panicking(
                text in arbitrary::frame_text(&["m", "$/cancelRequest", "$/enumerator/next"])
            ) {
                classify_everything(&text);
            }
        }
    }
}
