//! The OpenRPC document of a service and its callback contract.
//!
//! A server answers `rpc.discover` (the OpenRPC convention) with
//! [`document`] of its service, unless [`ServerBuilder::without_discovery`]
//! turns it off. The document follows OpenRPC 1.3.2:
//!
//! - `info`: the service trait's name as `title`, its doc comment as
//!   `description`, and the declaring crate's version;
//! - `methods`: one method object per service method: its wire name, doc
//!   comment, parameters (`required` but for a trailing run of `Option`s),
//!   `result`
//!   and documented `errors` (both left out for one-way methods, which
//!   OpenRPC reads as notifications); `paramStructure` is `"either"`, as dispatch
//!   takes parameters by name or by position;
//! - `components.schemas`: every named type the parameters, results and
//!   errors use, referenced as `#/components/schemas/Name` (JSON Schema draft 7);
//! - `x-callbacks` (extension): the callback contract, as
//!   `{"name", "description", "methods": [method objects]}`: what the server
//!   calls on a connected client, described like the service's own methods;
//! - `x-error-data` (extension, on a method): the schema of each documented
//!   error's `data`, keyed by the error code, since an OpenRPC error object
//!   has no place for one.
//!
//! [`ServerBuilder::without_discovery`]: crate::ServerBuilder::without_discovery

use std::collections::{HashMap, HashSet};

use schemars::generate::SchemaSettings;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::contract::{ContractInfo, MethodInfo, SchemaFn};

/// The OpenRPC version of the documents made here.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// Where a document's named types are, as `$ref`s point at them.
pub(crate) const SCHEMAS_PATH: &str = "#/components/schemas/";

/// The method name a server answers with its document.
pub const DISCOVER_METHOD: &str = "rpc.discover";

/// The OpenRPC document of `service`, with its callback contract under
/// `x-callbacks`.
///
/// ```
/// #[wsduplex::service(namespace = "calc")]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
/// }
///
/// let doc = wsduplex::openrpc::document(CalculatorClient::contract());
/// assert_eq!(doc["methods"][0]["name"], "calc.add");
/// assert_eq!(doc["methods"][0]["description"], "Adds two numbers.");
/// assert_eq!(doc["methods"][0]["params"][1]["schema"]["type"], "integer");
/// ```
pub fn document(service: &ContractInfo) -> Value {
    let mut schemas = Schemas::new(&[]);
    let methods: Vec<Value> = service.methods.iter().map(|m| schemas.method(m)).collect();
    let callbacks = service.callback_with_methods().map(|callback| {
        let methods: Vec<Value> = callback.methods.iter().map(|m| schemas.method(m)).collect();
        let mut object = Map::new();
        object.insert("name".into(), callback.name.into());
        insert_text(&mut object, "description", callback.docs);
        object.insert("methods".into(), methods.into());
        Value::Object(object)
    });

    let mut info = Map::new();
    info.insert("title".into(), service.name.into());
    insert_text(&mut info, "description", service.docs);
    info.insert("version".into(), service.version.into());

    let mut doc = Map::new();
    doc.insert("openrpc".into(), OPENRPC_VERSION.into());
    doc.insert("info".into(), Value::Object(info));
    doc.insert("methods".into(), methods.into());
    let definitions = schemas.finish();
    if !definitions.is_empty() {
        doc.insert("components".into(), json!({ "schemas": definitions }));
    }
    if let Some(callbacks) = callbacks {
        doc.insert("x-callbacks".into(), callbacks);
    }
    Value::Object(doc)
}

/// One generator for a whole document, so each named type is defined once
/// (under `#/components/schemas/`), with draft 7's transforms applied.
///
/// Definitions are renamed to plain identifiers (ASCII letters, digits and
/// `_`, unique, clear of `reserved`), as OpenRPC wants component names and
/// TypeScript wants type names; every `$ref` is rewritten to match. Schemas
/// describe types as they are read (serde's `Deserialize` side).
pub(crate) struct Schemas {
    generator: SchemaGenerator,
    names: Names,
}

impl Schemas {
    pub(crate) fn new(reserved: &[&str]) -> Self {
        let mut settings = SchemaSettings::draft07();
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
        let names = Names { assigned: HashMap::new(), taken: reserved.iter().map(|n| (*n).to_owned()).collect() };
        Schemas { generator: settings.into_generator(), names }
    }

    /// A schema as draft 7 has it (the generator's transforms applied), its
    /// `$ref`s naming renamed definitions.
    pub(crate) fn schema(&mut self, of: SchemaFn) -> Value {
        let mut schema: Schema = of(&mut self.generator);
        for transform in self.generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        let mut value = schema.to_value();
        self.names.rewrite_refs(&mut value);
        value
    }

    fn method(&mut self, method: &MethodInfo) -> Value {
        // OpenRPC wants optional parameters after the required ones: only a
        // trailing run of `Option`s can be left out by position too.
        let first_optional = method.params.len() - method.optional_tail();
        let params: Vec<Value> = method
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| json!({ "name": p.name, "schema": self.schema(p.schema), "required": i < first_optional }))
            .collect();
        let mut object = Map::new();
        object.insert("name".into(), method.wire_name.into());
        insert_text(&mut object, "description", method.docs);
        object.insert("params".into(), params.into());
        object.insert("paramStructure".into(), "either".into());
        if method.oneway {
            // A notification: no result, and no error reaches the caller.
            return Value::Object(object);
        }
        object.insert("result".into(), json!({ "name": "result", "schema": self.schema(method.result) }));
        let errors = method.documented_errors();
        if !errors.is_empty() {
            let objects: Vec<Value> =
                errors.iter().map(|e| json!({ "code": e.code, "message": e.summary() })).collect();
            object.insert("errors".into(), objects.into());
            let data: Map<String, Value> =
                errors.iter().filter_map(|e| e.data.map(|data| (e.code.to_string(), self.schema(data)))).collect();
            if !data.is_empty() {
                object.insert("x-error-data".into(), Value::Object(data));
            }
        }
        Value::Object(object)
    }

    /// Every named type used, transformed for draft 7, under its new name.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        let definitions = self.generator.take_definitions(true);
        let mut renamed: Vec<(String, Value)> = definitions
            .into_iter()
            .map(|(raw, mut schema)| {
                self.names.rewrite_refs(&mut schema);
                (self.names.of(&raw), schema)
            })
            .collect();
        renamed.sort_by(|a, b| a.0.cmp(&b.0));
        renamed.into_iter().collect()
    }
}

/// Definition names as identifiers: each raw name gets one, on first sight.
struct Names {
    assigned: HashMap<String, String>,
    taken: HashSet<String>,
}

impl Names {
    fn of(&mut self, raw: &str) -> String {
        if let Some(name) = self.assigned.get(raw) {
            return name.clone();
        }
        let mut base: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            base.insert(0, '_');
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        self.assigned.insert(raw.to_owned(), name.clone());
        name
    }

    /// Points every `#/components/schemas/…` reference at the renamed definition.
    fn rewrite_refs(&mut self, value: &mut Value) {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    match child {
                        Value::String(reference) if key == "$ref" => {
                            if let Some(encoded) = reference.strip_prefix(SCHEMAS_PATH) {
                                *reference = format!("{SCHEMAS_PATH}{}", self.of(&decode_ref(encoded)));
                            }
                        }
                        _ => self.rewrite_refs(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.rewrite_refs(item)),
            _ => {}
        }
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
                bytes.push((hex(*high).unwrap() * 16 + hex(*low).unwrap()) as u8);
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

fn insert_text(object: &mut Map<String, Value>, key: &str, text: &str) {
    if !text.is_empty() {
        object.insert(key.into(), text.into());
    }
}
