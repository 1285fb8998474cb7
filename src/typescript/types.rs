//! JSON Schema (draft 7, as schemars writes it) to TypeScript types.
//!
//! Covers what serde types produce: primitives, `null` unions (`Option`),
//! arrays and tuples, objects with required and optional properties, maps,
//! `const`/`enum` literals, and `oneOf`/`anyOf`/`allOf` (serde's enum
//! representations). Anything else becomes `unknown`, which still type-checks.

use serde_json::{Map, Value};

use crate::openrpc::SCHEMAS_PATH;

/// The TypeScript type of `schema`, written at indentation `indent` (for
/// objects that span lines).
pub(crate) fn type_of(schema: &Value, indent: usize) -> String {
    let object = match schema {
        Value::Bool(true) => return "unknown".into(),
        Value::Bool(false) => return "never".into(),
        Value::Object(object) => object,
        _ => return "unknown".into(),
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return match reference.strip_prefix(SCHEMAS_PATH) {
            Some(name) => identifier(name),
            None => "unknown".into(),
        };
    }
    if let Some(value) = object.get("const") {
        return literal(value);
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return union(values.iter().map(literal).collect());
    }
    let mut parts = Vec::new();
    if object.contains_key("type") || object.contains_key("properties") || object.contains_key("items") {
        parts.push(typed(object, indent));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = object.get(key) {
            parts.push(union(members.iter().map(|m| type_of(m, indent)).collect()));
        }
    }
    if let Some(Value::Array(members)) = object.get("allOf") {
        parts.extend(members.iter().map(|m| type_of(m, indent)));
    }
    match parts.len() {
        0 => "unknown".into(),
        1 => parts.remove(0),
        _ => parts.iter().map(|p| parenthesized(p)).collect::<Vec<_>>().join(" & "),
    }
}

/// A schema's `type` (one name or several): each becomes a member of a union.
fn typed(object: &Map<String, Value>, indent: usize) -> String {
    let names: Vec<&str> = match object.get("type") {
        Some(Value::String(name)) => vec![name],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        // `properties` or `items` without a `type`.
        _ if object.contains_key("properties") => vec!["object"],
        _ => vec!["array"],
    };
    union(
        names
            .into_iter()
            .map(|name| match name {
                "string" => "string".into(),
                "integer" | "number" => "number".into(),
                "boolean" => "boolean".into(),
                "null" => "null".into(),
                "array" => array(object, indent),
                "object" => object_type(object, indent),
                _ => "unknown".into(),
            })
            .collect(),
    )
}

fn array(object: &Map<String, Value>, indent: usize) -> String {
    match object.get("items") {
        // Draft 7's tuple form: one schema per position.
        Some(Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|i| type_of(i, indent)).collect();
            format!("[{}]", items.join(", "))
        }
        Some(items) => format!("{}[]", parenthesized(&type_of(items, indent))),
        None => "unknown[]".into(),
    }
}

fn object_type(object: &Map<String, Value>, indent: usize) -> String {
    let properties = object.get("properties").and_then(Value::as_object);
    let extra = match object.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(schema @ Value::Object(_)) => Some(type_of(schema, indent)),
        _ if properties.is_some() => None,
        _ => Some("unknown".into()),
    };
    let Some(properties) = properties.filter(|p| !p.is_empty()) else {
        return format!("Record<string, {}>", extra.unwrap_or_else(|| "never".into()));
    };
    let required: Vec<&str> = match object.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let pad = "  ".repeat(indent + 1);
    let mut text = String::from("{\n");
    for (name, schema) in properties {
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            text.push_str(&doc_comment(description, indent + 1));
        }
        let optional = if required.contains(&name.as_str()) { "" } else { "?" };
        text.push_str(&format!("{pad}{}{optional}: {};\n", property_key(name), type_of(schema, indent + 1)));
    }
    text.push_str(&"  ".repeat(indent));
    text.push('}');
    match extra {
        Some(extra) => format!("{text} & Record<string, {extra}>"),
        None => text,
    }
}

fn union(mut members: Vec<String>) -> String {
    members.dedup();
    match members.len() {
        0 => "never".into(),
        1 => members.remove(0),
        _ => members.iter().map(|m| parenthesized(m)).collect::<Vec<_>>().join(" | "),
    }
}

/// Wraps a union or intersection so it can stand inside another type.
fn parenthesized(ty: &str) -> String {
    let mut depth = 0i32;
    let mut top_level_operator = false;
    for c in ty.chars() {
        match c {
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' | '>' => depth -= 1,
            '|' | '&' if depth == 0 => top_level_operator = true,
            _ => {}
        }
    }
    if top_level_operator { format!("({ty})") } else { ty.to_owned() }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        _ => "unknown".into(),
    }
}

/// A property name, quoted unless it is a plain identifier.
pub(crate) fn property_key(name: &str) -> String {
    if is_identifier(name) { name.to_owned() } else { Value::from(name).to_string() }
}

/// A definition's name as a TypeScript identifier.
pub(crate) fn identifier(name: &str) -> String {
    let mut ident: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert(0, '_');
    }
    ident
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A JSDoc block at `indent`, or nothing for empty text.
pub(crate) fn doc_comment(text: &str, indent: usize) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let pad = "  ".repeat(indent);
    let text = text.replace("*/", "*\\/");
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(only), None) => format!("{pad}/** {only} */\n"),
        _ => {
            let mut block = format!("{pad}/**\n");
            for line in text.lines() {
                let line = line.trim_end();
                if line.is_empty() {
                    block.push_str(&format!("{pad} *\n"));
                } else {
                    block.push_str(&format!("{pad} * {line}\n"));
                }
            }
            block.push_str(&format!("{pad} */\n"));
            block
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ts(schema: Value) -> String {
        type_of(&schema, 0)
    }

    #[test]
    fn primitives_and_nullable_types() {
        assert_eq!(ts(json!({"type": "string"})), "string");
        assert_eq!(ts(json!({"type": "integer", "format": "uint32", "minimum": 0})), "number");
        assert_eq!(ts(json!({"type": ["string", "null"]})), "string | null");
        assert_eq!(ts(json!({"type": "null"})), "null");
        assert_eq!(ts(json!(true)), "unknown");
        assert_eq!(ts(json!({})), "unknown");
        assert_eq!(ts(json!({"anyOf": [{"$ref": "#/components/schemas/Point"}, {"type": "null"}]})), "Point | null");
    }

    #[test]
    fn arrays_tuples_and_maps() {
        assert_eq!(ts(json!({"type": "array", "items": {"type": ["number", "null"]}})), "(number | null)[]");
        assert_eq!(
            ts(json!({"type": "array", "items": [{"type": "string"}, {"type": "boolean"}], "maxItems": 2})),
            "[string, boolean]"
        );
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "integer"}})),
            "Record<string, number>"
        );
    }

    #[test]
    fn objects_keep_optional_properties_docs_and_odd_keys() {
        let schema = json!({
            "type": "object",
            "properties": {
                "x": {"type": "number", "description": "Across."},
                "label": {"type": ["string", "null"]},
                "odd-key": {"type": "boolean"}
            },
            "required": ["x", "odd-key"]
        });
        assert_eq!(
            ts(schema),
            "{\n  label?: string | null;\n  \"odd-key\": boolean;\n  /** Across. */\n  x: number;\n}"
        );
    }

    #[test]
    fn enums_in_serde_representations() {
        // A unit-only enum, and an externally tagged one with data.
        assert_eq!(ts(json!({"type": "string", "enum": ["Red", "Green"]})), "\"Red\" | \"Green\"");
        let tagged = json!({"oneOf": [
            {"type": "string", "const": "Stop"},
            {"type": "object", "properties": {"Move": {"type": "integer"}}, "required": ["Move"], "additionalProperties": false}
        ]});
        assert_eq!(ts(tagged), "\"Stop\" | {\n  Move: number;\n}");
        // A tag beside the variants' fields: the object part and the union, intersected.
        let internally = json!({
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"],
            "oneOf": [{"properties": {"kind": {"const": "a"}}, "required": ["kind"]}, {"properties": {"kind": {"const": "b"}}, "required": ["kind"]}]
        });
        assert_eq!(ts(internally), "{\n  id: string;\n} & ({\n  kind: \"a\";\n} | {\n  kind: \"b\";\n})");
    }

    #[test]
    fn names_and_docs() {
        assert_eq!(identifier("Wrapper_for_String"), "Wrapper_for_String");
        assert_eq!(identifier("Pair<u8>"), "Pair_u8_");
        assert_eq!(property_key("class"), "class");
        assert_eq!(doc_comment("One line.", 1), "  /** One line. */\n");
        assert_eq!(doc_comment("Two\n\nlines */ here", 0), "/**\n * Two\n *\n * lines *\\/ here\n */\n");
    }
}
