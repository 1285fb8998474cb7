//! What `#[derive(RpcError)]` builds on: error objects from an enum's
//! variants, the schema of a variant's named fields, and the way back from an
//! error object to the variant (for typed stubs' [`CallError`]).

use schemars::{Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ErrorObjectOwned;
use crate::contract::SchemaFn;
use crate::error::{CallError, Error};
use crate::probe::Probe;

/// An error type a typed stub decodes from the error object a method
/// answers with, so the caller can `match` on it. `#[derive(RpcError)]`
/// implements it: the code picks the variant and `data` fills its fields.
pub trait FromErrorObject: Sized {
    /// The error `object` stands for, or `None` when its code (or its data)
    /// is not one of this type's.
    fn from_error_object(object: &ErrorObjectOwned) -> Option<Self>;
}

/// An object with a code of the method's own, as it came: any code outside
/// -32768..=-32000 (JSON-RPC's and wsduplex's, which the peer's engine
/// answers with: unknown method, bad params, busy, cancelled, panicked), and
/// the codes a handler answers with when it propagates an [`Error`].
impl FromErrorObject for ErrorObjectOwned {
    fn from_error_object(object: &ErrorObjectOwned) -> Option<Self> {
        let reserved = (-32768..=-32000).contains(&object.code());
        (!reserved || Error::from_error_object(object).is_some()).then(|| object.clone())
    }
}

/// An object with one of the codes a handler answers with when it propagates
/// an [`Error`] (a failed callback, say), as [`Error::Rpc`]. Other codes
/// (the peer refusing the call, for one) are not the method's own error.
impl FromErrorObject for Error {
    fn from_error_object(object: &ErrorObjectOwned) -> Option<Self> {
        use crate::contract::DocumentedErrors;
        let documented = Error::errors().iter().any(|info| info.code == object.code());
        documented.then(|| Error::Rpc(object.clone()))
    }
}

/// A method that cannot fail decodes nothing.
impl FromErrorObject for std::convert::Infallible {
    fn from_error_object(_: &ErrorObjectOwned) -> Option<Self> {
        None
    }
}

// `E` decoded when it implements `FromErrorObject`, and nothing otherwise
// (see `crate::probe`): typed stubs and the derive's pass-through variants
// use it, so an error type that cannot decode still compiles.
#[doc(hidden)]
pub trait DecodeViaTrait<E> {
    fn call_error(&self, error: Error) -> CallError<E>;
    fn decode(&self, object: &ErrorObjectOwned) -> Option<E>;
}

impl<E: FromErrorObject> DecodeViaTrait<E> for Probe<E> {
    fn call_error(&self, error: Error) -> CallError<E> {
        CallError::new(error)
    }
    fn decode(&self, object: &ErrorObjectOwned) -> Option<E> {
        E::from_error_object(object)
    }
}

#[doc(hidden)]
pub trait DecodeNothing<E> {
    fn call_error(&self, error: Error) -> CallError<E>;
    fn decode(&self, object: &ErrorObjectOwned) -> Option<E>;
}

impl<E> DecodeNothing<E> for &Probe<E> {
    fn call_error(&self, error: Error) -> CallError<E> {
        CallError::Call(error)
    }
    fn decode(&self, _: &ErrorObjectOwned) -> Option<E> {
        None
    }
}

// A variant's field read from `data` when its type can be deserialized, and
// not otherwise (see `crate::probe`): the derive asks nothing more of
// field types.
#[doc(hidden)]
pub trait FieldViaSerde<T> {
    fn read(&self, value: &Value) -> Option<T>;
}

impl<T: DeserializeOwned> FieldViaSerde<T> for Probe<T> {
    fn read(&self, value: &Value) -> Option<T> {
        T::deserialize(value).ok()
    }
}

#[doc(hidden)]
pub trait FieldOpaque<T> {
    fn read(&self, value: &Value) -> Option<T>;
}

impl<T> FieldOpaque<T> for &Probe<T> {
    fn read(&self, _: &Value) -> Option<T> {
        None
    }
}

/// An error object's `data` as JSON; `null` when it has none.
#[doc(hidden)]
pub fn data_value(object: &ErrorObjectOwned) -> Value {
    object.data().and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or(Value::Null)
}

/// The member `name` of `data`; `null` when it is missing (so an `Option`
/// field reads as `None`).
#[doc(hidden)]
pub fn data_member<'a>(data: &'a Value, name: &str) -> &'a Value {
    data.get(name).unwrap_or(&Value::Null)
}

/// The error object of one variant. `data` that cannot be written as JSON is
/// left out (the error still reaches the caller, with its code and message).
#[doc(hidden)]
pub fn error_object<D: Serialize>(code: i32, message: String, data: Option<D>) -> ErrorObjectOwned {
    let data = data.and_then(|data| match serde_json::value::to_raw_value(&data) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::warn!(code, error = %e, "an error's data could not be written as JSON; leaving it out");
            None
        }
    });
    ErrorObjectOwned::owned(code, message, data)
}

/// The schema of named fields: an object with one property per field, the
/// non-`Option` ones required.
#[doc(hidden)]
pub fn object_schema(generator: &mut SchemaGenerator, fields: &[(&str, SchemaFn, bool)]) -> Schema {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, schema, is_required) in fields {
        properties.insert((*name).to_owned(), schema(generator).to_value());
        if *is_required {
            required.push(Value::from(*name));
        }
    }
    let mut object = Map::new();
    object.insert("type".into(), "object".into());
    object.insert("properties".into(), Value::Object(properties));
    object.insert("required".into(), Value::Array(required));
    Schema::from(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::info::schema_of;

    #[test]
    fn named_fields_become_one_object_and_only_options_are_optional() {
        let mut generator = SchemaGenerator::default();
        let schema = object_schema(
            &mut generator,
            &[("nick", schema_of::<String> as SchemaFn, true), ("room", schema_of::<Option<String>>, false)],
        );
        let value = schema.to_value();
        assert_eq!(value["required"], serde_json::json!(["nick"]));
        assert_eq!(value["properties"]["nick"], serde_json::json!({"type": "string"}));
    }

    #[test]
    #[allow(clippy::needless_borrow, reason = "called as generated code calls it")]
    fn a_type_without_from_error_object_decodes_nothing_and_compiles() {
        struct Opaque;
        let object = ErrorObjectOwned::owned(7, "seven", None::<()>);
        let decoded = {
            #[allow(unused_imports)]
            use super::{DecodeNothing as _, DecodeViaTrait as _};
            (&Probe::<Opaque>::new()).decode(&object)
        };
        assert!(decoded.is_none());
        let kept = {
            #[allow(unused_imports)]
            use super::{DecodeNothing as _, DecodeViaTrait as _};
            (&Probe::<ErrorObjectOwned>::new()).decode(&object)
        };
        assert_eq!(kept.map(|o| o.code()), Some(7));
    }

    #[test]
    #[allow(clippy::needless_borrow, reason = "called as generated code calls it")]
    fn fields_read_through_serde_when_they_can_and_absent_members_are_null() {
        let object = ErrorObjectOwned::owned(7, "seven", Some(serde_json::json!({"n": 4})));
        let data = data_value(&object);
        let read = |name| {
            #[allow(unused_imports)]
            use super::{FieldOpaque as _, FieldViaSerde as _};
            (&Probe::<Option<u8>>::new()).read(data_member(&data, name))
        };
        assert_eq!(read("n"), Some(Some(4)));
        assert_eq!(read("missing"), Some(None));
        struct NotDeserialize;
        let opaque = {
            #[allow(unused_imports)]
            use super::{FieldOpaque as _, FieldViaSerde as _};
            (&Probe::<NotDeserialize>::new()).read(&data)
        };
        assert!(opaque.is_none());
        assert_eq!(data_value(&ErrorObjectOwned::owned(7, "seven", None::<()>)), Value::Null);
    }

    #[test]
    fn error_decodes_only_the_codes_a_propagating_handler_answers_with() {
        let closed = ErrorObjectOwned::owned(crate::codes::PEER_CLOSED, "closed", None::<()>);
        assert!(matches!(Error::from_error_object(&closed), Some(Error::Rpc(_))));
        let busy = ErrorObjectOwned::owned(crate::codes::SERVER_BUSY, "busy", None::<()>);
        assert!(Error::from_error_object(&busy).is_none());
        assert_eq!(Error::Rpc(busy).code(), Some(crate::codes::SERVER_BUSY));
        assert_eq!(Error::Closed.code(), None);
    }

    #[test]
    fn data_that_cannot_be_json_is_left_out() {
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let object = error_object(7, "seven".into(), Some(&map));
        assert_eq!((object.code(), object.message()), (7, "seven"));
        assert!(object.data().is_none());
        let object = error_object(7, "seven".into(), Some(&[1, 2]));
        assert_eq!(object.data().map(|d| d.get()), Some("[1,2]"));
    }
}
