//! What `#[derive(RpcError)]` builds on: error objects from an enum's
//! variants, and the schema of a variant's named fields.

use schemars::{Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ErrorObjectOwned;
use crate::contract::SchemaFn;

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
