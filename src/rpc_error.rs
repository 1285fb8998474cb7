//! What `#[derive(RpcError)]` builds on: error objects from an enum's
//! variants, and the schema of a variant's named fields.

use schemars::{Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ErrorObjectOwned;
use crate::contract::SchemaFn;

/// The error object of one variant.
#[doc(hidden)]
pub fn error_object(code: i32, message: String, data: Option<Value>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message, data)
}

/// A field as `data`; a field that cannot be written as JSON becomes `null`
/// (the error still reaches the caller, with its code and message).
#[doc(hidden)]
pub fn data_value<T: Serialize + ?Sized>(field: &T) -> Value {
    serde_json::to_value(field).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an error's data could not be written as JSON; sending null");
        Value::Null
    })
}

/// Named fields as one `data` object.
#[doc(hidden)]
pub fn data_fields<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect::<Map<_, _>>())
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
    use crate::contract::schema_of;

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
        assert_eq!(data_fields([("nick", data_value("ada"))]), serde_json::json!({"nick": "ada"}));
    }

    #[test]
    fn data_that_cannot_be_json_is_null() {
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert_eq!(data_value(&map), Value::Null);
    }
}
