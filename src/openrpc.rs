//! The OpenRPC document of a service and its callback contract.
//!
//! A server answers `rpc.discover` (the OpenRPC convention) with
//! [`document`] of its service, unless [`ServerBuilder::without_discovery`]
//! turns it off. The document follows OpenRPC 1.3.2:
//!
//! - `info`: the service trait's name as `title`, its doc comment as
//!   `description`, and the declaring crate's version;
//! - `methods`: one method object per service method: its wire name, doc
//!   comment, parameters (`required` unless the type is an `Option`), `result`
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
    let mut schemas = Schemas::new();
    let methods: Vec<Value> = service.methods.iter().map(|m| schemas.method(m)).collect();
    let callbacks = service.callback().filter(|c| !c.methods.is_empty()).map(|callback| {
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
pub(crate) struct Schemas {
    generator: SchemaGenerator,
}

impl Schemas {
    pub(crate) fn new() -> Self {
        let mut settings = SchemaSettings::draft07();
        settings.definitions_path = "/components/schemas".into();
        settings.meta_schema = None;
        Schemas { generator: settings.into_generator() }
    }

    /// A schema as draft 7 has it (the generator's transforms applied).
    pub(crate) fn schema(&mut self, of: SchemaFn) -> Value {
        let mut schema: Schema = of(&mut self.generator);
        for transform in self.generator.transforms_mut() {
            transform.transform(&mut schema);
        }
        schema.to_value()
    }

    fn method(&mut self, method: &MethodInfo) -> Value {
        let params: Vec<Value> = method
            .params
            .iter()
            .map(|p| json!({ "name": p.name, "schema": self.schema(p.schema), "required": !p.optional }))
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

    /// Every named type used, transformed for draft 7.
    pub(crate) fn finish(mut self) -> Map<String, Value> {
        self.generator.take_definitions(true)
    }
}

fn insert_text(object: &mut Map<String, Value>, key: &str, text: &str) {
    if !text.is_empty() {
        object.insert(key.into(), text.into());
    }
}
