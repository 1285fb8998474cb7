//! From an incoming call to the user's method and back: parameter decoding (by
//! name and by position), the reply conversion, and the future the engine runs.
//!
//! Generated dispatch arms call [`handle`] and nothing else, so everything here is
//! ordinary code with ordinary tests.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use jsonrpsee_types::ErrorObjectOwned;
use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::codes;
use crate::wire::{self, RequestId};

/// The future running one incoming call (or batch).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// How an incoming call ended: the response frame (none for a
/// notification), and the handler's failures, for the server's hook.
#[doc(hidden)]
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub(crate) frame: Option<String>,
    pub(crate) failures: Vec<HandlerError>,
    /// The code of the error object answered, if one was (for middleware).
    pub(crate) error: Option<i32>,
    /// How far the call got (for metrics).
    pub(crate) reached: Reached,
}

/// How far an incoming call got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reached {
    /// Its method, which answered (or failed to decode its params).
    #[default]
    Method,
    /// A middleware or `#[authorize]` refused it before its method ran.
    Refused,
    /// No method has its name (-32601).
    NoSuchMethod,
}

impl Answer {
    pub(crate) fn frame(frame: Option<String>) -> Answer {
        Answer { frame, failures: Vec::new(), error: None, reached: Reached::Method }
    }

    /// The answer to a call answered with `error` before it ran: `reached`
    /// says why.
    pub(crate) fn early(id: Option<&RequestId>, error: &ErrorObjectOwned, reached: Reached) -> Answer {
        let frame = id.map(|id| wire::failure(id, error));
        Answer { frame, failures: Vec::new(), error: Some(error.code()), reached }
    }
}

/// A handler that returned an error or panicked (see
/// [`ServerBuilder::on_handler_error`](crate::server::ServerBuilder::on_handler_error)).
/// Calls refused before the handler ran (invalid params, say) are not handler errors.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerError {
    method: &'static str,
    error: ErrorObjectOwned,
    panicked: bool,
}

impl HandlerError {
    /// The method's wire name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The error object the caller got (or would have, for a notification).
    pub fn error(&self) -> &ErrorObjectOwned {
        &self.error
    }

    /// True if the handler panicked (the caller got -32603).
    pub fn panicked(&self) -> bool {
        self.panicked
    }
}

/// One incoming call, as the dispatch table sees it.
#[doc(hidden)]
pub struct IncomingCall<'a> {
    pub(crate) id: Option<RequestId>,
    pub(crate) params: Option<&'a RawValue>,
    /// The roles of the connection it came in on.
    pub(crate) roles: &'a [std::sync::Arc<str>],
}

/// Decodes a method's parameters into a tuple of owned values.
///
/// Accepts a by-name object (keys are the parameter names; unknown keys are
/// ignored) or a by-position array. A parameter whose type accepts `null` (an
/// `Option`) may be missing. Errors name the offending parameter.
#[doc(hidden)]
pub trait DecodeParams: Sized {
    /// Decodes `params`; `names` holds one name per tuple element.
    fn decode(params: Option<&RawValue>, names: &'static [&'static str]) -> Result<Self, ParamsError>;
}

/// Why parameters did not decode: answered with -32602 and `data` naming the parameter.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamsError {
    /// The parameter at fault, when one is.
    pub param: Option<&'static str>,
    /// What was wrong.
    pub reason: String,
}

impl ParamsError {
    fn about(param: &'static str, reason: impl fmt::Display) -> Self {
        ParamsError { param: Some(param), reason: without_position(reason.to_string()) }
    }

    fn general(reason: impl fmt::Display) -> Self {
        ParamsError { param: None, reason: without_position(reason.to_string()) }
    }

    /// The -32602 error object, `data` being `{"param": …, "reason": …}`.
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        #[derive(Serialize)]
        struct Data<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            param: Option<&'a str>,
            reason: &'a str,
        }
        let message = match self.param {
            Some(param) => format!("Invalid params: `{param}`: {}", self.reason),
            None => format!("Invalid params: {}", self.reason),
        };
        ErrorObjectOwned::owned(codes::INVALID_PARAMS, message, Some(Data { param: self.param, reason: &self.reason }))
    }
}

/// serde_json appends " at line L column C", which means nothing to the peer.
fn without_position(mut reason: String) -> String {
    if let Some(at) = reason.rfind(" at line ") {
        reason.truncate(at);
    }
    reason
}

/// The value of a parameter the peer left out: `None` for an `Option`, else an error.
fn missing<T: DeserializeOwned>(name: &'static str) -> Result<T, ParamsError> {
    T::deserialize(serde_json::Value::Null).map_err(|_| ParamsError::about(name, "missing required parameter"))
}

enum Shape {
    Absent,
    Object,
    Array,
}

fn shape(params: Option<&RawValue>) -> Shape {
    match params.map(|p| p.get().trim_start().as_bytes().first().copied()) {
        Some(Some(b'{')) => Shape::Object,
        Some(Some(b'[')) => Shape::Array,
        _ => Shape::Absent,
    }
}

/// Runs a visitor over raw params, blaming the parameter it was reading when it fails.
fn run<V, T>(
    raw: &RawValue,
    names: &'static [&'static str],
    cursor: &Cell<Option<usize>>,
    visitor: V,
) -> Result<T, ParamsError>
where
    V: for<'de> Visitor<'de, Value = Result<T, ParamsError>>,
{
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match de.deserialize_any(visitor) {
        Ok(inner) => inner,
        Err(e) => Err(match cursor.get().and_then(|i| names.get(i)) {
            Some(name) => ParamsError::about(name, e),
            None => ParamsError::general(e),
        }),
    }
}

/// Visits a by-name object; `cursor` tracks the parameter being read.
struct ByName<'c, T> {
    names: &'static [&'static str],
    cursor: &'c Cell<Option<usize>>,
    _t: PhantomData<T>,
}

/// Visits a by-position array; `cursor` tracks the parameter being read.
struct ByPosition<'c, T> {
    names: &'static [&'static str],
    cursor: &'c Cell<Option<usize>>,
    _t: PhantomData<T>,
}

macro_rules! decode_tuple {
    ($n:literal $(, $T:ident $i:tt)*) => {
        impl<$($T: DeserializeOwned),*> DecodeParams for ($($T,)*) {
            fn decode(
                params: Option<&RawValue>,
                names: &'static [&'static str],
            ) -> Result<Self, ParamsError> {
                if names.len() != $n {
                    return Err(ParamsError::general("parameter names do not match the method"));
                }
                let cursor = &Cell::new(None);
                match (shape(params), params) {
                    (Shape::Object, Some(raw)) => {
                        run(raw, names, cursor, ByName::<Self> { names, cursor, _t: PhantomData })
                    }
                    (Shape::Array, Some(raw)) => {
                        run(raw, names, cursor, ByPosition::<Self> { names, cursor, _t: PhantomData })
                    }
                    _ => Ok(($(missing::<$T>(names[$i])?,)*)),
                }
            }
        }

        impl<'de, $($T: DeserializeOwned),*> Visitor<'de> for ByName<'_, ($($T,)*)> {
            type Value = Result<($($T,)*), ParamsError>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of named parameters")
            }

            // One slot per parameter, named after its type parameter.
            #[allow(unused_mut, unused_variables, non_snake_case)]
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                $( let mut $T: Option<$T> = None; )*
                // serde_json insists the whole object is read, so a failure is kept for the end.
                let mut failure = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let index = self.names.iter().position(|n| *n == key);
                    self.cursor.set(index);
                    match index {
                        $( Some($i) if $T.is_none() => $T = Some(map.next_value()?), )*
                        Some(repeated) => {
                            map.next_value::<IgnoredAny>()?;
                            let name = self.names.get(repeated).copied().unwrap_or_default();
                            failure.get_or_insert(ParamsError::about(name, "given more than once"));
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if let Some(failure) = failure {
                    return Ok(Err(failure));
                }
                self.cursor.set(None);
                Ok(Ok(($(
                    match $T {
                        Some(v) => v,
                        None => match missing(self.names[$i]) {
                            Ok(v) => v,
                            Err(e) => return Ok(Err(e)),
                        },
                    },
                )*)))
            }
        }

        impl<'de, $($T: DeserializeOwned),*> Visitor<'de> for ByPosition<'_, ($($T,)*)> {
            type Value = Result<($($T,)*), ParamsError>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of positional parameters")
            }

            #[allow(unused_mut)]
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let values = ($(
                    {
                        self.cursor.set(Some($i));
                        match seq.next_element::<$T>()? {
                            Some(v) => v,
                            None => match missing(self.names[$i]) {
                                Ok(v) => v,
                                Err(e) => return Ok(Err(e)),
                            },
                        }
                    },
                )*);
                self.cursor.set(None);
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Err(ParamsError::general(format_args!(
                        "too many parameters: expected at most {}", $n
                    ))));
                }
                Ok(Ok(values))
            }
        }
    };
}

for_each_arity!(decode_tuple);

/// What a contract method returns, turned into a result or an error object.
///
/// Implemented for `Result<T, E>` where `T: Serialize` and `E` converts into an
/// error object; generated code wraps infallible returns in
/// `Result<T, Infallible>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as a reply",
    label = "a contract method returns `T: Serialize` or `Result<T, E>` with `E: Into<ErrorObjectOwned>`",
    note = "a return type whose name ends in `Result` is read as a `Result`; if `{Self}` is not one, return `Result<{Self}, std::convert::Infallible>`"
)]
pub trait IntoReply {
    /// The success value.
    type Ok: Serialize;
    /// The error type (what the method's metadata documents).
    type Error;
    /// Splits into the success value or the error object.
    fn into_reply(self) -> Result<Self::Ok, ErrorObjectOwned>;
}

impl<T: Serialize, E: Into<ErrorObjectOwned>> IntoReply for Result<T, E> {
    type Ok = T;
    type Error = E;
    fn into_reply(self) -> Result<T, ErrorObjectOwned> {
        self.map_err(Into::into)
    }
}

/// Implemented twice for `Result` and once for everything else, so naming it
/// for a `Result` is ambiguous: generated code asserts that a return type read
/// as a plain value (its name does not end in `Result`) is not a `Result`
/// under another name, which would otherwise be sent as `{"Ok": …}`.
#[doc(hidden)]
pub trait ReturnTypeIsAResultAlias<Marker> {
    /// Named by the assertion; does nothing.
    #[inline(always)]
    fn assert_not_a_result() {}
}

impl<T: ?Sized> ReturnTypeIsAResultAlias<()> for T {}
impl<T, E> ReturnTypeIsAResultAlias<u8> for Result<T, E> {}

/// Builds the future that runs one call: checks the connection has one of
/// the `roles` the method requires (if any), decodes the parameters, calls
/// the user's method through `f`, and writes the response.
///
/// A missing role answers -32030 before the parameters are decoded; a
/// decoding failure answers -32602 without calling the method; a panic in
/// the method answers -32603 and leaves the connection up.
#[doc(hidden)]
pub fn handle<S, A, F, Fut>(
    service: &Arc<S>,
    method: &'static str,
    call: IncomingCall<'_>,
    roles: &'static [&'static str],
    names: &'static [&'static str],
    f: F,
) -> HandlerFuture
where
    S: Send + Sync + 'static,
    A: DecodeParams,
    F: FnOnce(Arc<S>, A) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: IntoReply,
{
    let IncomingCall { id, params, roles: held } = call;
    if !roles.is_empty() && !held.iter().any(|role| roles.contains(&&**role)) {
        tracing::debug!(method, "refused: the connection has none of the roles the method requires");
        let answer = Answer::early(id.as_ref(), &not_authorized(roles), Reached::Refused);
        return Box::pin(std::future::ready(answer));
    }
    let decoded = {
        // A stream in the params pulls from the connection being served.
        let _decoding = crate::stream::scope::Scope::serving_message();
        A::decode(params, names)
    };
    let args = match decoded {
        Ok(args) => args,
        Err(e) => {
            tracing::debug!(reason = %e.reason, param = e.param, "invalid params");
            return Box::pin(std::future::ready(Answer::early(id.as_ref(), &e.to_error_object(), Reached::Method)));
        }
    };
    let running = f(service.clone(), args);
    Box::pin(async move {
        // Everything the user's code touches runs inside: the method, the
        // error conversion and the result's `Serialize`.
        let answered = AssertUnwindSafe(async {
            match running.await.into_reply() {
                Ok(value) => Answer::frame(id.as_ref().map(|id| crate::stream::encode_result(id, &value))),
                Err(error) => Answer {
                    frame: id.as_ref().map(|id| wire::failure(id, &error)),
                    error: Some(error.code()),
                    failures: vec![HandlerError { method, error, panicked: false }],
                    reached: Reached::Method,
                },
            }
        })
        .catch_unwind()
        .await;
        answered.unwrap_or_else(|_| {
            tracing::error!("handler panicked");
            let error =
                ErrorObjectOwned::owned(codes::INTERNAL_ERROR, "Internal error: the handler panicked", None::<()>);
            let frame = id.map(|id| wire::failure(&id, &error));
            let code = Some(error.code());
            let failures = vec![HandlerError { method, error, panicked: true }];
            Answer { frame, error: code, failures, reached: Reached::Method }
        })
    })
}

/// The answer to a call whose connection lacks the roles its method requires.
fn not_authorized(roles: &[&str]) -> ErrorObjectOwned {
    #[derive(Serialize)]
    struct Data<'a> {
        roles: &'a [&'a str],
    }
    let message = match roles {
        [role] => format!("Not authorized: the method requires the role `{role}`"),
        _ => format!("Not authorized: the method requires one of the roles {}", roles.join(", ")),
    };
    ErrorObjectOwned::owned(codes::NOT_AUTHORIZED, message, Some(Data { roles }))
}

/// Answers calls arriving on one connection; the engine is generic over it.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Starts the call, or gives it back when no method has that name.
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>>;
}

impl<S: crate::contract::Serve> Handler for S {
    fn dispatch<'a>(&self, method: &str, call: IncomingCall<'a>) -> Result<HandlerFuture, IncomingCall<'a>> {
        crate::contract::Serve::dispatch(self, method, call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    const NAMES: &[&str] = &["room", "nick", "limit"];

    fn decode3(text: Option<&str>) -> Result<(String, String, Option<u32>), ParamsError> {
        let params = text.map(raw);
        <(String, String, Option<u32>)>::decode(params.as_deref(), NAMES)
    }

    #[test]
    fn by_name_in_any_order_with_unknown_keys_ignored() {
        let got = decode3(Some(r#"{"nick":"al","extra":[1],"room":"lobby","limit":3}"#)).unwrap();
        assert_eq!(got, ("lobby".into(), "al".into(), Some(3)));
    }

    #[test]
    fn by_position() {
        let got = decode3(Some(r#"["lobby","al",5]"#)).unwrap();
        assert_eq!(got, ("lobby".into(), "al".into(), Some(5)));
    }

    #[test]
    fn a_trailing_option_may_be_missing_either_way() {
        assert_eq!(decode3(Some(r#"["lobby","al"]"#)).unwrap().2, None);
        assert_eq!(decode3(Some(r#"{"room":"lobby","nick":"al"}"#)).unwrap().2, None);
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = decode3(Some(r#"{"room":1,"nick":"al"}"#)).unwrap_err();
        assert_eq!(e.param, Some("room"));
        assert!(e.reason.contains("invalid type"), "{}", e.reason);
        assert!(!e.reason.contains("line"), "{}", e.reason);

        let e = decode3(Some(r#"["lobby",false]"#)).unwrap_err();
        assert_eq!(e.param, Some("nick"));

        let e = decode3(Some(r#"{"room":"lobby"}"#)).unwrap_err();
        assert_eq!(e, ParamsError { param: Some("nick"), reason: "missing required parameter".into() });

        let e = decode3(None).unwrap_err();
        assert_eq!(e.param, Some("room"));

        let e = decode3(Some(r#"{"room":"a","room":"b","nick":"c"}"#)).unwrap_err();
        assert_eq!(e.param, Some("room"));
        assert_eq!(e.reason, "given more than once");
    }

    #[test]
    fn too_many_positional_parameters() {
        let e = decode3(Some(r#"["a","b",1,2]"#)).unwrap_err();
        assert_eq!(e.param, None);
        assert!(e.reason.contains("too many"), "{}", e.reason);
    }

    #[test]
    fn no_parameters() {
        assert_eq!(<()>::decode(None, &[]), Ok(()));
        assert_eq!(<()>::decode(Some(&raw("{}")), &[]), Ok(()));
        assert_eq!(<()>::decode(Some(&raw("[]")), &[]), Ok(()));
        assert!(<()>::decode(Some(&raw("[1]")), &[]).is_err());
    }

    #[test]
    fn the_error_object_carries_the_parameter_in_data() {
        let e = decode3(Some(r#"{"room":1,"nick":"al"}"#)).unwrap_err().to_error_object();
        assert_eq!(e.code(), codes::INVALID_PARAMS);
        let data: serde_json::Value = serde_json::from_str(e.data().unwrap().get()).unwrap();
        assert_eq!(data["param"], json!("room"));
    }

    #[test]
    fn mismatched_names_are_an_error_not_a_panic() {
        assert!(<(u8,)>::decode(None, &[]).is_err());
    }

    struct Echo;

    async fn run(fut: HandlerFuture) -> serde_json::Value {
        serde_json::from_str(&fut.await.frame.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn handle_answers_success_errors_and_panics() {
        let svc = Arc::new(Echo);
        let params = raw(r#"["hi"]"#);
        let call = IncomingCall { id: Some(RequestId::Number(1)), params: Some(&params), roles: &[] };
        let fut = handle(&svc, "m", call, &[], &["text"], |_s: Arc<Echo>, (text,): (String,)| async move {
            Ok::<_, std::convert::Infallible>(text)
        });
        assert_eq!(run(fut).await, json!({"jsonrpc":"2.0","id":1,"result":"hi"}));

        let call = IncomingCall { id: Some(RequestId::Number(2)), params: None, roles: &[] };
        let fut = handle(&svc, "m", call, &[], &[], |_s: Arc<Echo>, (): ()| async move {
            Err::<(), _>(ErrorObjectOwned::owned(1002, "not in a room", None::<()>))
        });
        let answer = fut.await;
        assert_eq!(answer.failures.len(), 1);
        assert_eq!((answer.failures[0].method(), answer.failures[0].error().code()), ("m", 1002));
        let frame: serde_json::Value = serde_json::from_str(&answer.frame.unwrap()).unwrap();
        assert_eq!(frame, json!({"jsonrpc":"2.0","id":2,"error":{"code":1002,"message":"not in a room"}}));

        let call = IncomingCall { id: Some(RequestId::Number(3)), params: None, roles: &[] };
        let fut = handle(&svc, "m", call, &[], &[], |_s: Arc<Echo>, (): ()| async move {
            if true {
                panic!("boom");
            }
            Ok::<(), std::convert::Infallible>(())
        });
        let answer = fut.await;
        assert!(answer.failures.first().is_some_and(HandlerError::panicked));
        let frame: serde_json::Value = serde_json::from_str(&answer.frame.unwrap()).unwrap();
        assert_eq!(frame["error"]["code"], json!(codes::INTERNAL_ERROR));

        // A notification runs the method and produces no frame.
        let call = IncomingCall { id: None, params: None, roles: &[] };
        let fut =
            handle(
                &svc,
                "m",
                call,
                &[],
                &[],
                |_s: Arc<Echo>, (): ()| async move { Ok::<(), std::convert::Infallible>(()) },
            );
        assert_eq!(fut.await, Answer::default());
    }

    #[tokio::test]
    async fn handle_rejects_bad_params_without_calling_the_method() {
        let svc = Arc::new(Echo);
        let params = raw(r#"{"text":5}"#);
        let call = IncomingCall { id: Some(RequestId::Number(1)), params: Some(&params), roles: &[] };
        let fut = handle(&svc, "m", call, &[], &["text"], |_s: Arc<Echo>, (_t,): (String,)| async move {
            unreachable!("must not run");
            #[allow(unreachable_code)]
            Ok::<(), std::convert::Infallible>(())
        });
        let out = run(fut).await;
        assert_eq!(out["error"]["code"], json!(codes::INVALID_PARAMS));
        assert_eq!(out["error"]["data"]["param"], json!("text"));
    }
}
