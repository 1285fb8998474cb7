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
//!   errors use, referenced as `#/components/schemas/Name` (JSON Schema draft
//!   7), as it travels: a type that serde reads and writes in different
//!   shapes has a second definition, `NameOut`, for the shape written;
//! - `x-callbacks` (extension): the callback contract, as
//!   `{"name", "description", "methods": [method objects]}`: what the server
//!   calls on a connected client, described like the service's own methods;
//! - `x-error-data` (extension, on a method): the schema of each documented
//!   error's `data`, keyed by the error code, since an OpenRPC error object
//!   has no place for one;
//! - `x-wsduplex-authorize` (extension, on a method declared
//!   `#[authorize(..)]`): `{"roles": [...]}`, the roles of which a caller
//!   needs one; others get -32030 (`codes::NOT_AUTHORIZED`);
//! - `x-wsduplex-stream` (extension, `true` on a parameter's or result's
//!   content descriptor, and in its schema): the value is a stream
//!   ([`Outgoing`](crate::Outgoing) or [`Incoming`](crate::Incoming)), sent as
//!   `{"token", "values"}` and pulled with `$/enumerator/next`; the schema's
//!   `properties.values.items` is the schema of one value.
//!
//! [`ServerBuilder::without_discovery`]: crate::server::ServerBuilder::without_discovery

use serde_json::{Map, Value, json};

use super::schemas::{Schemas, Side};
use crate::contract::{ContractInfo, ContractKind, MethodInfo};

/// The OpenRPC version of the documents made here.
pub const OPENRPC_VERSION: &str = "1.3.2";

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
/// let doc = wsduplex::codegen::openrpc::document(CalculatorClient::contract());
/// assert_eq!(doc["methods"][0]["name"], "calc.add");
/// assert_eq!(doc["methods"][0]["description"], "Adds two numbers.");
/// assert_eq!(doc["methods"][0]["params"][1]["schema"]["type"], "integer");
/// ```
pub fn document(service: &ContractInfo) -> Value {
    let callback = service.callback_with_methods();
    let mut schemas = Schemas::new(&[]);
    // Every type met once, so each gets its name; then the real pass.
    let methods_of = |schemas: &mut Schemas| {
        let methods: Vec<Value> = service.methods.iter().map(|m| method(schemas, m, ContractKind::Service)).collect();
        let callbacks: Option<Vec<Value>> =
            callback.map(|c| c.methods.iter().map(|m| method(schemas, m, ContractKind::Callback)).collect());
        (methods, callbacks)
    };
    methods_of(&mut schemas);
    schemas.name();
    let (methods, callback_methods) = methods_of(&mut schemas);
    let callbacks = callback.zip(callback_methods).map(|(callback, methods)| {
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

/// One method object; `kind` says which side implements it.
fn method(schemas: &mut Schemas, method: &MethodInfo, kind: ContractKind) -> Value {
    // What the implementer reads (its parameters) and writes (result, error data).
    let (reads, writes) = match kind {
        ContractKind::Service => (Side::Read, Side::Written),
        ContractKind::Callback => (Side::Written, Side::Read),
    };
    // OpenRPC wants optional parameters after the required ones: only a
    // trailing run of `Option`s can be left out by position too.
    let first_optional = method.params.len() - method.optional_tail();
    let params: Vec<Value> = method
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let schema = schemas.schema(p.schema, reads);
            content_descriptor(json!({ "name": p.name, "schema": schema, "required": i < first_optional }))
        })
        .collect();
    let mut object = Map::new();
    object.insert("name".into(), method.wire_name.into());
    insert_text(&mut object, "description", method.docs);
    object.insert("params".into(), params.into());
    object.insert("paramStructure".into(), "either".into());
    if !method.roles.is_empty() {
        object.insert("x-wsduplex-authorize".into(), json!({ "roles": method.roles }));
    }
    if method.oneway {
        // A notification: no result, and no error reaches the caller.
        return Value::Object(object);
    }
    let result = json!({ "name": "result", "schema": schemas.schema(method.result, writes) });
    object.insert("result".into(), content_descriptor(result));
    let errors = method.documented_errors();
    if !errors.is_empty() {
        let objects: Vec<Value> = errors.iter().map(|e| json!({ "code": e.code, "message": e.summary() })).collect();
        object.insert("errors".into(), objects.into());
        let data: Map<String, Value> = errors
            .iter()
            .filter_map(|e| e.data.map(|data| (e.code.to_string(), schemas.schema(data, writes))))
            .collect();
        if !data.is_empty() {
            object.insert("x-error-data".into(), Value::Object(data));
        }
    }
    Value::Object(object)
}

/// `descriptor`, marked `x-wsduplex-stream` when its schema is a stream's.
fn content_descriptor(mut descriptor: Value) -> Value {
    if descriptor["schema"]["x-wsduplex-stream"] == Value::Bool(true) {
        descriptor["x-wsduplex-stream"] = Value::Bool(true);
    }
    descriptor
}

fn insert_text(object: &mut Map<String, Value>, key: &str, text: &str) {
    if !text.is_empty() {
        object.insert(key.into(), text.into());
    }
}
