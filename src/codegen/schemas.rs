//! The JSON Schemas of a set of contracts, for one document (an OpenRPC
//! document, a TypeScript module): each named type defined once, under a
//! plain identifier, and described the way it travels.
//!
//! A type is read by the side that implements a method (its parameters) and
//! written by it (its result, its errors' data), and serde may give the two
//! different shapes (`#[serde(default)]`, `skip_serializing_if`,
//! `skip_deserializing`...). So there are two generators, serde's
//! `Deserialize` side and its `Serialize` side. A type whose definition comes
//! out the same on both (and whose parts do too) is defined once; one that
//! differs gets a second definition, `NameOut`, for the written shape.
//!
//! Use in two passes: ask for every schema once, then [`Schemas::name`],
//! then ask again (now with final names in every `$ref`), then
//! [`Schemas::finish`] for the definitions.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::contract::SchemaFn;

/// Where a document's named types are, as `$ref`s point at them.
pub(crate) const SCHEMAS_PATH: &str = "#/components/schemas/";

/// Which way a value travels, seen from the side that implements the method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Read by it: a service's parameters, a callback's result.
    Read,
    /// Written by it: a service's result and error data, a callback's parameters.
    Written,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Read => 0,
            Side::Written => 1,
        }
    }
}

pub(crate) struct Schemas {
    generators: [SchemaGenerator; 2],
    reserved: Vec<String>,
    /// Raw definition name to final name, per side, once named.
    names: Option<[HashMap<String, String>; 2]>,
}

impl Schemas {
    /// Definitions will not take the names in `reserved`.
    pub(crate) fn new(reserved: &[&str]) -> Self {
        let settings = || {
            let mut settings = SchemaSettings::draft07();
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
            settings
        };
        Schemas {
            generators: [settings().for_deserialize().into_generator(), settings().for_serialize().into_generator()],
            reserved: reserved.iter().map(|n| (*n).to_owned()).collect(),
            names: None,
        }
    }

    /// A schema as draft 7 has it (the generator's transforms applied); once
    /// named, its `$ref`s name the final definitions.
    pub(crate) fn schema(&mut self, of: SchemaFn, side: Side) -> Value {
        let generator = &mut self.generators[side.index()];
        let mut schema: Schema = of(generator);
        for transform in generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        let mut value = schema.to_value();
        if let Some(names) = &self.names {
            rewrite_refs(&mut value, &names[side.index()]);
        }
        value
    }

    /// Names every definition met so far: the same on both sides once,
    /// plain identifiers, unique, clear of the reserved names.
    pub(crate) fn name(&mut self) {
        let [read, written] = &self.generators;
        let (read, written) = (read.definitions(), written.definitions());
        // Alike on both sides, and made only of parts alike on both sides.
        let mut shared: HashSet<&String> =
            read.iter().filter(|(n, s)| written.get(*n) == Some(s)).map(|(n, _)| n).collect();
        loop {
            let kept: HashSet<&String> =
                shared.iter().copied().filter(|n| references(&read[*n]).iter().all(|m| shared.contains(m))).collect();
            if kept.len() == shared.len() {
                break;
            }
            shared = kept;
        }
        let mut taken: HashSet<String> = self.reserved.iter().cloned().collect();
        let mut names = [HashMap::new(), HashMap::new()];
        let mut sorted: Vec<&String> = read.keys().collect();
        sorted.sort();
        for raw in sorted {
            let name = unique(identifier(raw), &mut taken);
            if shared.contains(raw) {
                names[1].insert(raw.clone(), name.clone());
            }
            names[0].insert(raw.clone(), name);
        }
        let mut sorted: Vec<&String> = written.keys().filter(|n| !shared.contains(n)).collect();
        sorted.sort();
        for raw in sorted {
            let base = identifier(raw);
            let base = if read.contains_key(raw) { format!("{base}Out") } else { base };
            names[1].insert(raw.clone(), unique(base, &mut taken));
        }
        self.names = Some(names);
    }

    /// Every named type, transformed for draft 7, under its final name, in
    /// name order.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        if self.names.is_none() {
            self.name();
        }
        let names = self.names.take().unwrap_or_default();
        let mut all = BTreeMap::new();
        for (generator, names) in self.generators.iter_mut().zip(&names) {
            for (raw, mut schema) in generator.take_definitions(true) {
                let Some(name) = names.get(&raw) else { continue };
                if !all.contains_key(name) {
                    rewrite_refs(&mut schema, names);
                    all.insert(name.clone(), schema);
                }
            }
        }
        all.into_iter().collect()
    }
}

/// A name as an identifier: ASCII letters, digits and `_`, not starting
/// with a digit (what OpenRPC's component names and TypeScript both take).
pub(crate) fn identifier(raw: &str) -> String {
    let mut name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// `base`, or `base2`, `base3`... whichever is not taken yet; now taken.
fn unique(base: String, taken: &mut HashSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// The raw names of the definitions `schema` refers to.
fn references(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![schema];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match child {
                        Value::String(reference) if key == "$ref" => {
                            found.extend(reference.strip_prefix(SCHEMAS_PATH).map(decode_ref));
                        }
                        _ => stack.push(child),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// Points every `#/components/schemas/…` reference at its final name.
fn rewrite_refs(value: &mut Value, names: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match child {
                    Value::String(reference) if key == "$ref" => {
                        if let Some(name) = reference.strip_prefix(SCHEMAS_PATH).and_then(|e| names.get(&decode_ref(e)))
                        {
                            *reference = format!("{SCHEMAS_PATH}{name}");
                        }
                    }
                    _ => rewrite_refs(child, names),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, names)),
        _ => {}
    }
}

/// A reference's last segment as the definition's name: JSON Pointer
/// escapes (`~1`, `~0`) and URI percent-escapes undone.
fn decode_ref(encoded: &str) -> String {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (byte, tail) {
            (b'%', [high, low, ..]) if hex(*high).is_some() && hex(*low).is_some() => {
                bytes.push((hex(*high).unwrap_or(0) * 16 + hex(*low).unwrap_or(0)) as u8);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::contract::info::schema_of;

    /// The same on both sides.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Point {
        x: f64,
    }

    /// Read with a default, written always.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Page {
        #[serde(default)]
        items: Vec<Point>,
    }

    /// Holds a type that differs, so it differs too.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Book {
        first: Page,
        at: Point,
    }

    fn two_passes(schemas: &mut Schemas, asks: &[(SchemaFn, Side)]) -> Vec<Value> {
        for (of, side) in asks {
            schemas.schema(*of, *side);
        }
        schemas.name();
        asks.iter().map(|(of, side)| schemas.schema(*of, *side)).collect()
    }

    #[test]
    fn a_type_alike_both_ways_is_defined_once_and_one_that_differs_twice() {
        let mut schemas = Schemas::new(&["Page"]);
        let asked = two_passes(
            &mut schemas,
            &[(schema_of::<Book>, Side::Read), (schema_of::<Book>, Side::Written), (schema_of::<Point>, Side::Written)],
        );
        assert_eq!(asked[0], json!({"$ref": "#/components/schemas/Book"}));
        assert_eq!(asked[1], json!({"$ref": "#/components/schemas/BookOut"}));
        assert_eq!(asked[2], json!({"$ref": "#/components/schemas/Point"}));
        let definitions = schemas.finish();
        let names: Vec<&String> = definitions.keys().collect();
        // `Page` is reserved: the read one is `Page2`, the written one `PageOut`.
        assert_eq!(names, ["Book", "BookOut", "Page2", "PageOut", "Point"]);
        assert_eq!(definitions["Page2"]["required"], Value::Null, "read: items may be left out");
        assert_eq!(definitions["PageOut"]["required"], json!(["items"]), "written: always there");
        assert_eq!(definitions["BookOut"]["properties"]["first"]["$ref"], "#/components/schemas/PageOut");
        assert_eq!(definitions["BookOut"]["properties"]["at"]["$ref"], "#/components/schemas/Point");
    }

    #[test]
    fn refs_are_decoded_to_definition_names() {
        assert_eq!(decode_ref("Gr%C3%B6%C3%9Fe"), "Größe");
        assert_eq!(decode_ref("a~1b~0c"), "a/b~c");
        assert_eq!(decode_ref("bad%zz"), "bad%zz");
        assert_eq!(identifier("Pair<u8>"), "Pair_u8_");
        assert_eq!(identifier("9x"), "_9x");
    }
}
