//! JSON Schema (draft 7, as schemars writes it) to TypeScript types.
//!
//! Covers what serde types produce: primitives, `null` unions (`Option`),
//! arrays and tuples, objects with required and optional properties, maps,
//! `const`/`enum` literals, and `oneOf`/`anyOf`/`allOf` (serde's enum
//! representations). Anything else becomes `unknown`, which still type-checks.

use serde_json::{Map, Value};

use crate::codegen::schemas::SCHEMAS_PATH;

/// The TypeScript type of `schema`, written at indentation `indent` (for
/// objects that span lines). `$ref`s name definitions already renamed to
/// TypeScript identifiers (see `crate::codegen::schemas`).
pub(crate) fn type_of(schema: &Value, indent: usize) -> String {
    ty(schema, indent).text
}

/// A type's text, and whether it is a union or intersection at the top
/// level (and so needs parentheses inside another type).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ty {
    text: String,
    compound: bool,
}

impl Ty {
    fn plain(text: impl Into<String>) -> Ty {
        Ty { text: text.into(), compound: false }
    }

    /// The text, parenthesized when it could bind wrongly inside another type.
    fn operand(&self) -> String {
        if self.compound { format!("({})", self.text) } else { self.text.clone() }
    }
}

fn ty(schema: &Value, indent: usize) -> Ty {
    let object = match schema {
        Value::Bool(true) => return Ty::plain("unknown"),
        Value::Bool(false) => return Ty::plain("never"),
        Value::Object(object) => object,
        _ => return Ty::plain("unknown"),
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        return Ty::plain(reference.strip_prefix(SCHEMAS_PATH).unwrap_or("unknown"));
    }
    if let Some(value) = object.get("const") {
        return Ty::plain(literal(value));
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return union(values.iter().map(|v| Ty::plain(literal(v))).collect());
    }
    let mut parts = Vec::new();
    if ["type", "properties", "items", "additionalProperties", "patternProperties"]
        .iter()
        .any(|k| object.contains_key(*k))
    {
        parts.push(typed(object, indent));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(members)) = object.get(key) {
            parts.push(union(members.iter().map(|m| ty(m, indent)).collect()));
        }
    }
    if let Some(Value::Array(members)) = object.get("allOf") {
        parts.extend(members.iter().map(|m| ty(m, indent)));
    }
    intersection(parts)
}

/// A schema's `type` (one name or several): each becomes a member of a union.
fn typed(object: &Map<String, Value>, indent: usize) -> Ty {
    let names: Vec<&str> = match object.get("type") {
        Some(Value::String(name)) => vec![name],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        // Keywords of one kind without a `type`.
        _ if object.contains_key("items") => vec!["array"],
        _ => vec!["object"],
    };
    union(
        names
            .into_iter()
            .map(|name| match name {
                "string" => Ty::plain("string"),
                "integer" | "number" => Ty::plain("number"),
                "boolean" => Ty::plain("boolean"),
                "null" => Ty::plain("null"),
                "array" => array(object, indent),
                "object" => object_type(object, indent),
                _ => Ty::plain("unknown"),
            })
            .collect(),
    )
}

fn array(object: &Map<String, Value>, indent: usize) -> Ty {
    match object.get("items") {
        // Draft 7's tuple form: one schema per position.
        Some(Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|i| ty(i, indent).text).collect();
            Ty::plain(format!("[{}]", items.join(", ")))
        }
        Some(items) => Ty::plain(format!("{}[]", ty(items, indent).operand())),
        None => Ty::plain("unknown[]"),
    }
}

fn object_type(object: &Map<String, Value>, indent: usize) -> Ty {
    let properties = object.get("properties").and_then(Value::as_object).filter(|p| !p.is_empty());
    // Keys beyond the properties: `additionalProperties`, and maps whose keys
    // follow a pattern (integer keys, say).
    let mut extra: Vec<Ty> = match object.get("additionalProperties") {
        Some(Value::Bool(false)) => Vec::new(),
        Some(schema @ Value::Object(_)) => vec![ty(schema, indent + 1)],
        _ if properties.is_some() || object.contains_key("patternProperties") => Vec::new(),
        _ => vec![Ty::plain("unknown")],
    };
    if let Some(patterns) = object.get("patternProperties").and_then(Value::as_object) {
        extra.extend(patterns.values().map(|schema| ty(schema, indent + 1)));
    }
    let pad = "  ".repeat(indent + 1);
    let Some(properties) = properties else {
        let value = if extra.is_empty() { Ty::plain("never") } else { union(extra) };
        return Ty::plain(format!("{{ [key: string]: {} }}", value.text));
    };
    let required: Vec<&str> = match object.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut text = String::from("{\n");
    let mut property_types = Vec::new();
    for (name, schema) in properties {
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            text.push_str(&doc_comment(description, indent + 1));
        }
        let optional = if required.contains(&name.as_str()) { "" } else { "?" };
        let property = ty(schema, indent + 1);
        text.push_str(&format!("{pad}{}{optional}: {};\n", property_key(name), property.text));
        property_types.push(property);
    }
    if !extra.is_empty() {
        // An index signature must admit every property's type too.
        extra.extend(property_types);
        extra.push(Ty::plain("undefined"));
        text.push_str(&format!("{pad}[key: string]: {};\n", union(extra).text));
    }
    text.push_str(&"  ".repeat(indent));
    text.push('}');
    Ty::plain(text)
}

fn union(mut members: Vec<Ty>) -> Ty {
    let mut seen = Vec::new();
    members.retain(|m| {
        let new = !seen.contains(&m.text);
        seen.push(m.text.clone());
        new
    });
    match members.len() {
        0 => Ty::plain("never"),
        1 => members.remove(0),
        _ => Ty { text: members.iter().map(Ty::operand).collect::<Vec<_>>().join(" | "), compound: true },
    }
}

fn intersection(mut members: Vec<Ty>) -> Ty {
    match members.len() {
        0 => Ty::plain("unknown"),
        1 => members.remove(0),
        _ => Ty { text: members.iter().map(Ty::operand).collect::<Vec<_>>().join(" & "), compound: true },
    }
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
            "{ [key: string]: number }"
        );
        // A map with integer keys, as schemars writes `HashMap<u32, String>`.
        let by_number = json!({"type": "object", "additionalProperties": false, "patternProperties": {"^\\d+$": {"type": "string"}}});
        assert_eq!(ts(by_number), "{ [key: string]: string }");
    }

    #[test]
    fn properties_beside_a_flattened_map_widen_the_index_signature() {
        let schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
            "additionalProperties": {"type": "integer"}
        });
        assert_eq!(ts(schema), "{\n  name: string;\n  [key: string]: number | string | undefined;\n}");
    }

    #[test]
    fn brackets_in_docs_do_not_confuse_the_precedence() {
        let schema = json!({
            "allOf": [
                {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                {"oneOf": [
                    {"type": "object", "properties": {"text": {"type": "string", "description": "must be > 0 chars)"}}},
                    {"type": "object", "properties": {"n": {"type": "integer"}}}
                ]}
            ]
        });
        let text = ts(schema);
        assert!(text.contains("} & ({"), "{text}");
        assert!(text.ends_with("})"), "{text}");
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
        assert_eq!(property_key("class"), "class");
        assert_eq!(property_key("odd-key"), "\"odd-key\"");
        assert_eq!(doc_comment("One line.", 1), "  /** One line. */\n");
        assert_eq!(doc_comment("Two\n\nlines */ here", 0), "/**\n * Two\n *\n * lines *\\/ here\n */\n");
    }
}
