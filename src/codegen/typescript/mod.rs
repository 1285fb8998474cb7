//! Typed TypeScript clients for contracts, over `clients/js/wsduplex.js`.
//!
//! [`render`] writes one ES module (`.js`) and its declarations (`.d.ts`)
//! that import the npm package `wsduplex` (`clients/js`) by name: a bundler
//! or Node finds it in `node_modules`, a plain page maps the name with an
//! import map (`{"imports": {"wsduplex": "/wsduplex.js"}}`, as the chat
//! page does). [`render_importing`] names another specifier (a path such
//! as `./wsduplex.js`). TypeScript projects get the types. For each service `X`:
//!
//! - `class XClient`: one method per wire method (named after the wire name
//!   without its namespace, in camelCase: `chat.join` is `join`, a method
//!   renamed to `size` is `size`), parameters and
//!   result typed from the Rust types' JSON Schemas; one-way methods return
//!   `void`, others a `Promise` and take an optional `CallOptions`; doc
//!   comments carry over, with each documented error as `@throws`;
//!   `XClient.connect(url, events, options)` opens a connection whose
//!   callbacks `events` answers;
//! - for the errors its methods document (and -32030 for a method that
//!   requires a role): `XErrors`, their codes by name; `type XError`, a
//!   union of `RpcError`s told apart by `code`, each with its `data` type;
//!   and the guard `isXError(error)`, so that
//!   `if (isChatError(e) && e.code === ChatErrors.NickTaken)` types `e.data`.
//!
//! For each callback contract `Y` (a listed service's, or listed itself):
//!
//! - `interface Y`: the methods the page implements, each getting the
//!   parameters in order and a `HandlerContext`, returning the result or a
//!   promise of it;
//! - `yHandlers(events)`: `connect`'s `handlers` for an implementation, taking
//!   parameters by name or by position as the wire allows.
//!
//! Streams ([`Outgoing`](crate::Outgoing), [`Incoming`](crate::Incoming)) are
//! `AsyncIterable<T>` where the page reads them (a service's stream result,
//! as `Promise<AsyncIterable<T>>`, read with `for await`, leaving early
//! disposes of it; a callback's stream parameter) and any
//! `AsyncIterable<T> | Iterable<T>` where the page sends them (a service's
//! stream parameter, a callback's stream result).
//!
//! Named types used by parameters, results and error data become exported
//! type aliases, in the shape each travels in (`Point` as the server reads
//! it, `PointOut` as it writes it, when serde makes the two differ). Integers are `number`: values past 2^53 lose precision in
//! JavaScript.
//!
//! ```
//! #[wsduplex::service(namespace = "calc")]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: i64, b: i64) -> i64;
//! }
//!
//! let ts = wsduplex::codegen::typescript::render(&[CalculatorClient::contract()]);
//! assert!(ts.declarations.contains("add(a: number, b: number, options?: wsduplex.CallOptions): Promise<number>;"));
//! assert!(ts.javascript.contains(r#"return this.peer.call("calc.add", { a, b }, options);"#));
//! ```

mod types;

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde_json::Value;

use crate::codegen::schemas::{Schemas, Side, identifier};
use crate::contract::{ContractInfo, ContractKind, MethodInfo};
use types::{doc_comment, type_of};

/// A generated module: its JavaScript and its TypeScript declarations.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeScript {
    /// The ES module (`NAME.js`).
    pub javascript: String,
    /// Its declarations (`NAME.d.ts`).
    pub declarations: String,
}

impl TypeScript {
    /// Writes `NAME.js` and `NAME.d.ts` into `dir` (next to `wsduplex.js`).
    pub fn write(&self, dir: &Path, name: &str) -> io::Result<()> {
        std::fs::write(dir.join(format!("{name}.js")), &self.javascript)?;
        std::fs::write(dir.join(format!("{name}.d.ts")), &self.declarations)
    }
}

/// The module specifier generated clients import `wsduplex.js` by: the npm package's name.
pub const PACKAGE: &str = "wsduplex";

/// Renders clients for `contracts`: a class per service, an interface and a
/// handlers function per callback contract (each service's included),
/// importing the package by its name, [`PACKAGE`].
pub fn render(contracts: &[&ContractInfo]) -> TypeScript {
    render_importing(contracts, PACKAGE)
}

/// Like [`render`], importing `wsduplex.js` as `module` (a path such as
/// `./wsduplex.js`, or another package name).
pub fn render_importing(contracts: &[&ContractInfo], module: &str) -> TypeScript {
    let mut services: Vec<&ContractInfo> = Vec::new();
    let mut callbacks: Vec<&ContractInfo> = Vec::new();
    for &contract in contracts {
        match contract.kind {
            ContractKind::Service => {
                push_once(&mut services, contract);
                if let Some(callback) = contract.callback() {
                    push_once(&mut callbacks, callback);
                }
            }
            ContractKind::Callback => push_once(&mut callbacks, contract),
        }
    }

    // Type names the module itself uses, which no definition may take.
    let mut reserved: Vec<String> = GLOBALS.iter().map(|g| (*g).to_owned()).collect();
    for service in &services {
        reserved.push(format!("{}Client", service.name));
        if !errors_of(service).is_empty() {
            reserved.extend(error_names(service));
        }
    }
    for callback in &callbacks {
        reserved.push(callback.name.to_owned());
        reserved.push(handlers_function(callback));
    }
    let reserved: Vec<&str> = reserved.iter().map(String::as_str).collect();
    let mut schemas = Schemas::new(&reserved);
    let render_all = |schemas: &mut Schemas| {
        let mut js = Output::default();
        let mut dts = Output::default();
        for service in &services {
            service_class(service, schemas, &mut js, &mut dts);
            service_errors(service, schemas, &mut js, &mut dts);
        }
        for callback in &callbacks {
            callback_interface(callback, schemas, &mut js, &mut dts);
        }
        (js, dts)
    };
    // A first pass meets every type so each gets its name; the second writes.
    render_all(&mut schemas);
    schemas.name();
    let (js, mut dts) = render_all(&mut schemas);
    for (name, schema) in schemas.finish() {
        let description = schema.get("description").and_then(Value::as_str).unwrap_or("");
        dts.text.push_str(&doc_comment(description, 0));
        writeln!(dts.text, "export type {name} = {};\n", type_of(&schema, 0)).unwrap();
    }

    let names: Vec<&str> = services.iter().chain(&callbacks).map(|c| c.name).collect();
    let header = format!(
        "// Generated by wsduplex from the Rust contract{} {}; do not edit.\n// Regenerate with wsduplex::codegen::typescript::render.\n",
        if names.len() == 1 { "" } else { "s" },
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
    );
    let js_import = match js.imports().as_slice() {
        [] => String::new(),
        names => format!("import {{ {} }} from {};\n\n", names.join(", "), Value::from(module)),
    };
    // One namespace for the module's types, so no definition can shadow them.
    let dts_import = format!("import type * as {MODULE} from {};\n\n", Value::from(module));
    TypeScript {
        javascript: format!("{header}{js_import}{}", js.text.trim_end()) + "\n",
        declarations: format!("{header}{dts_import}{}", dts.text.trim_end()) + "\n",
    }
}

/// The namespace the declarations import `wsduplex.d.ts` under.
const MODULE: &str = "wsduplex";

/// Global names the declarations use, and the namespace: never a definition's name.
const GLOBALS: &[&str] = &[
    MODULE,
    "Promise",
    "Omit",
    "Record",
    "Array",
    "Object",
    "String",
    "Number",
    "Boolean",
    "Error",
    "AsyncIterable",
    "Iterable",
];

/// Text being written, and the names it needs from `wsduplex.js`.
#[derive(Default)]
struct Output {
    text: String,
    uses: Vec<&'static str>,
}

impl Output {
    fn uses(&mut self, names: &[&'static str]) {
        for name in names {
            if !self.uses.contains(name) {
                self.uses.push(name);
            }
        }
    }

    fn imports(&self) -> Vec<&str> {
        let mut names = self.uses.clone();
        names.sort_unstable();
        names
    }
}

fn push_once<'a>(list: &mut Vec<&'a ContractInfo>, contract: &'a ContractInfo) {
    if !list.iter().any(|c| std::ptr::eq(*c, contract)) {
        list.push(contract);
    }
}

/// One method's parameters as TypeScript sees them.
struct Params {
    /// Wire names (the keys of a by-name call).
    wire: Vec<&'static str>,
    /// The JavaScript names, free of reserved words.
    names: Vec<String>,
    /// `name?: T` or `name: T`, in order.
    typed: Vec<String>,
    /// Wire names that may be missing.
    optional: Vec<&'static str>,
    /// Positions of the stream parameters.
    streams: Vec<usize>,
}

impl Params {
    /// `more_follow`: a required parameter of ours comes after theirs (a
    /// handler's context), so none of theirs can be marked optional.
    fn of(method: &MethodInfo, schemas: &mut Schemas, side: Side, more_follow: bool) -> Params {
        let wire: Vec<&'static str> = method.params.iter().map(|p| p.name).collect();
        // camelCase can merge two Rust names (`room_id`, `roomId`): keep them apart.
        let mut names: Vec<String> = Vec::with_capacity(wire.len());
        for w in &wire {
            let name = apart(local_name(w), &names);
            names.push(name);
        }
        // Only a trailing run of optional parameters can be left out in TypeScript.
        let trailing = if more_follow { 0 } else { method.optional_tail() };
        let first_trailing = method.params.len() - trailing;
        let mut streams = Vec::new();
        let typed = method
            .params
            .iter()
            .zip(&names)
            .enumerate()
            .map(|(i, (param, name))| {
                let schema = schemas.schema(param.schema, side);
                if stream_items(&schema).is_some() {
                    streams.push(i);
                }
                let ty = typescript_type(&schema, side);
                match (param.optional, i >= first_trailing) {
                    (true, true) => format!("{name}?: {ty}"),
                    (true, false) => format!("{name}: {ty} | undefined"),
                    (false, _) => format!("{name}: {ty}"),
                }
            })
            .collect();
        let optional = method.params.iter().filter(|p| p.optional).map(|p| p.name).collect();
        Params { wire, names, typed, optional, streams }
    }

    /// `{ room, nick }`, or `{ room_id: roomId }` where the names differ; a
    /// stream parameter is sent with `outgoing`.
    fn by_name(&self) -> String {
        if self.wire.is_empty() {
            return "{}".into();
        }
        let entries: Vec<String> = self
            .wire
            .iter()
            .zip(&self.names)
            .enumerate()
            .map(|(i, (wire, name))| {
                let key = types::property_key(wire);
                match self.streams.contains(&i) {
                    true => format!("{key}: this.peer.outgoing({name})"),
                    false if key == *name => key,
                    false => format!("{key}: {name}"),
                }
            })
            .collect();
        format!("{{ {} }}", entries.join(", "))
    }

    /// A name for one more parameter of ours that no parameter of theirs has.
    fn fresh(&self, base: &str) -> String {
        let mut name = base.to_owned();
        while self.names.contains(&name) {
            name.insert(0, '_');
        }
        name
    }
}

fn service_class(service: &ContractInfo, schemas: &mut Schemas, js: &mut Output, dts: &mut Output) {
    let class = format!("{}Client", service.name);
    let callback = service.callback_with_methods();
    let docs =
        if service.docs.is_empty() { format!("A client of `{}`.", service.name) } else { service.docs.to_owned() };
    dts.text.push_str(&doc_comment(&docs, 0));
    js.text.push_str(&doc_comment(&docs, 0));
    js.uses(&["connect"]);
    writeln!(dts.text, "export declare class {class} {{").unwrap();
    writeln!(dts.text, "  /** Wraps a connection made with `connect`. */\n  constructor(peer: {MODULE}.Peer);")
        .unwrap();
    writeln!(dts.text, "  /** The connection. */\n  readonly peer: {MODULE}.Peer;").unwrap();
    writeln!(js.text, "export class {class} {{\n  constructor(peer) {{\n    this.peer = peer;\n  }}\n").unwrap();
    match callback {
        Some(callback) => {
            let handlers = handlers_function(callback);
            writeln!(
                dts.text,
                "  /** Connects to a `{}` server at `url`; `events` answers its callbacks. */\n  static connect(url: string, events: {}, options?: Omit<{MODULE}.ConnectOptions, \"handlers\">): {class};",
                service.name, callback.name
            )
            .unwrap();
            writeln!(
                js.text,
                "  static connect(url, events, options = {{}}) {{\n    return new {class}(connect(url, {{ ...options, handlers: {handlers}(events) }}));\n  }}"
            )
            .unwrap();
        }
        None => {
            writeln!(
                dts.text,
                "  /** Connects to a `{}` server at `url`. */\n  static connect(url: string, options?: Omit<{MODULE}.ConnectOptions, \"handlers\">): {class};",
                service.name
            )
            .unwrap();
            writeln!(
                js.text,
                "  static connect(url, options = {{}}) {{\n    return new {class}(connect(url, options));\n  }}"
            )
            .unwrap();
        }
    }
    let names = member_names(service);
    for (method, name) in service.methods.iter().zip(names) {
        // A service reads its parameters and writes its result.
        let params = Params::of(method, schemas, Side::Read, false);
        let docs = method_docs(method, schemas);
        dts.text.push('\n');
        dts.text.push_str(&doc_comment(&docs, 1));
        let by_name = params.by_name();
        let wire = Value::from(method.wire_name);
        if method.oneway {
            writeln!(dts.text, "  {name}({}): void;", params.typed.join(", ")).unwrap();
            writeln!(
                js.text,
                "\n  {name}({}) {{\n    this.peer.notify({wire}, {by_name});\n  }}",
                params.names.join(", ")
            )
            .unwrap();
        } else {
            let options = params.fresh("options");
            let result = result_type(method, schemas, Side::Written);
            let mut typed = params.typed.clone();
            typed.push(format!("{options}?: {MODULE}.CallOptions"));
            writeln!(dts.text, "  {name}({}): Promise<{result}>;", typed.join(", ")).unwrap();
            let mut names = params.names.clone();
            names.push(options.clone());
            let call = format!("this.peer.call({wire}, {by_name}, {options})");
            // A stream result is read from the connection as the page iterates it.
            let body = match returns_stream(method, schemas, Side::Written) {
                true => {
                    format!("async {name}({}) {{\n    return this.peer.incoming(await {call});\n  }}", names.join(", "))
                }
                false => format!("{name}({}) {{\n    return {call};\n  }}", names.join(", ")),
            };
            writeln!(js.text, "\n  {body}").unwrap();
        }
    }
    dts.text.push_str("}\n\n");
    js.text.push_str("}\n\n");
}

/// A documented error as the generated module names it.
struct ServiceError {
    info: crate::contract::ErrorInfo,
    /// Its name, with its code added when another error has the name.
    name: String,
}

/// The errors `service`'s methods document (those that answer), each code
/// once (the first documentation of a code wins).
fn errors_of(service: &ContractInfo) -> Vec<ServiceError> {
    let mut errors: Vec<ServiceError> = Vec::new();
    for method in service.methods.iter().filter(|m| !m.oneway) {
        let refused = (!method.roles.is_empty()).then(|| {
            crate::contract::ErrorInfo::new(crate::codes::NOT_AUTHORIZED, "NotAuthorized")
                .with_docs("The connection has none of the roles the method requires.")
        });
        for info in method.documented_errors().into_iter().chain(refused) {
            if errors.iter().any(|e| e.info.code == info.code) {
                continue;
            }
            let name = match errors.iter().any(|e| e.info.name == info.name) {
                true => format!("{}{}", info.name, info.code.unsigned_abs()),
                false => info.name.to_owned(),
            };
            errors.push(ServiceError { info, name });
        }
    }
    errors
}

/// `ChatError`, `ChatErrors` and `isChatError` for `Chat`.
fn error_names(service: &ContractInfo) -> [String; 3] {
    let name = service.name;
    [format!("{name}Error"), format!("{name}Errors"), format!("is{name}Error")]
}

/// The errors a service documents, for `catch`: their codes by name
/// (`ChatErrors.NickTaken`), a union of them told apart by `code` (with
/// each one's `data` type), and a type guard.
fn service_errors(service: &ContractInfo, schemas: &mut Schemas, js: &mut Output, dts: &mut Output) {
    let errors = errors_of(service);
    if errors.is_empty() {
        return;
    }
    let [union, codes, guard] = error_names(service);
    let name = service.name;
    js.uses(&["RpcError"]);
    let entries: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.name, e.info.code)).collect();
    let docs = format!("The error codes `{name}`'s methods document, by name.");
    let guard_docs = format!(
        "True for an `RpcError` with a code `{name}` documents: then its `code` tells which, and types its `data`. \
         (-32020 and -32021 also come from this side: a call's own timeout, a connection that closed.)"
    );

    js.text.push_str(&doc_comment(&docs, 0));
    writeln!(js.text, "export const {codes} = Object.freeze({{ {} }});\n", entries.join(", ")).unwrap();
    js.text.push_str(&doc_comment(&guard_docs, 0));
    writeln!(js.text, "export function {guard}(error) {{").unwrap();
    writeln!(js.text, "  return error instanceof RpcError && Object.values({codes}).includes(error.code);\n}}\n")
        .unwrap();

    dts.text.push_str(&doc_comment(&docs, 0));
    writeln!(dts.text, "export declare const {codes}: {{").unwrap();
    for error in &errors {
        writeln!(dts.text, "  readonly {}: {};", error.name, error.info.code).unwrap();
    }
    dts.text.push_str("};\n\n");
    let union_docs = format!("An error `{name}`'s methods document, told apart by `code`.");
    dts.text.push_str(&doc_comment(&union_docs, 0));
    writeln!(dts.text, "export type {union} =").unwrap();
    for error in &errors {
        // Error data is written by the service; a missing role's is the roles.
        let data = match (error.info.data, error.info.code) {
            (Some(data), _) => format!("; readonly data: {}", type_of(&schemas.schema(data, Side::Written), 1)),
            (None, crate::codes::NOT_AUTHORIZED) => "; readonly data: { roles: string[] }".to_owned(),
            (None, _) => String::new(),
        };
        let summary = format!("{}: {}", error.name, error.info.summary());
        dts.text.push_str(&doc_comment(&summary, 1));
        writeln!(dts.text, "  | ({MODULE}.RpcError & {{ readonly code: {}{data} }})", error.info.code).unwrap();
    }
    dts.text.truncate(dts.text.trim_end().len());
    dts.text.push_str(";\n\n");
    dts.text.push_str(&doc_comment(&guard_docs, 0));
    writeln!(dts.text, "export declare function {guard}(error: unknown): error is {union};\n").unwrap();
}

fn callback_interface(callback: &ContractInfo, schemas: &mut Schemas, js: &mut Output, dts: &mut Output) {
    let handlers = handlers_function(callback);
    let docs = if callback.docs.is_empty() {
        format!("What a `{}` server calls on its clients.", callback.name)
    } else {
        callback.docs.to_owned()
    };
    dts.text.push_str(&doc_comment(&docs, 0));
    js.uses(&["argumentsOf"]);
    writeln!(dts.text, "export interface {} {{", callback.name).unwrap();
    let mut entries = Vec::new();
    let names = member_names(callback);
    for (i, (method, name)) in callback.methods.iter().zip(names).enumerate() {
        // A callback's parameters are written by the server, its result read.
        let params = Params::of(method, schemas, Side::Written, true);
        let context = params.fresh("context");
        let result = result_type(method, schemas, Side::Read);
        if i > 0 {
            dts.text.push('\n');
        }
        dts.text.push_str(&doc_comment(method.docs, 1));
        let mut typed = params.typed.clone();
        typed.push(format!("{context}: {MODULE}.HandlerContext"));
        writeln!(dts.text, "  {name}({}): {result} | Promise<{result}>;", typed.join(", ")).unwrap();
        let wire_names = Value::from(params.wire.clone());
        let optional = match params.optional.is_empty() {
            true => String::new(),
            false => format!(", {}", Value::from(params.optional.clone())),
        };
        let mut args = format!("argumentsOf(params, {wire_names}{optional})");
        if !params.streams.is_empty() {
            js.uses(&["incomingAt"]);
            args = format!("incomingAt({args}, {}, context.peer)", Value::from(params.streams.clone()));
        }
        let call = format!("events.{name}(...{args}, context)");
        // A stream the page returns is sent as one, whatever iterable it is.
        let entry = match returns_stream(method, schemas, Side::Read) {
            true => format!("async (params, context) => context.peer.outgoing(await {call})"),
            false => format!("(params, context) => {call}"),
        };
        entries.push(format!("    {}: {entry},", Value::from(method.wire_name)));
    }
    dts.text.push_str("}\n\n");
    let fn_docs = format!(
        "`connect`'s handlers, answering the `{}` methods with `events` (parameters by name or by position).",
        callback.name
    );
    dts.text.push_str(&doc_comment(&fn_docs, 0));
    writeln!(
        dts.text,
        "export declare function {handlers}(events: {}): Record<string, {MODULE}.Handler>;\n",
        callback.name
    )
    .unwrap();
    js.text.push_str(&doc_comment(&fn_docs, 0));
    writeln!(js.text, "export function {handlers}(events) {{\n  return {{\n{}\n  }};\n}}\n", entries.join("\n"))
        .unwrap();
}

/// What a method gives back: `void` for one-way methods and `()`; `side`
/// is the server's (it writes a service's result, reads a callback's).
fn result_type(method: &MethodInfo, schemas: &mut Schemas, side: Side) -> String {
    if method.oneway {
        return "void".into();
    }
    match typescript_type(&schemas.schema(method.result, side), side) {
        unit if unit == "null" => "void".into(),
        result => result,
    }
}

/// True when the method returns a stream.
fn returns_stream(method: &MethodInfo, schemas: &mut Schemas, side: Side) -> bool {
    !method.oneway && stream_items(&schemas.schema(method.result, side)).is_some()
}

/// The items of a stream's schema (marked `x-wsduplex-stream`), if it is one.
fn stream_items(schema: &Value) -> Option<&Value> {
    if schema.get("x-wsduplex-stream") != Some(&Value::Bool(true)) {
        return None;
    }
    schema.pointer("/properties/values/items")
}

/// The type of a value the server reads or writes (`side`): a stream is an
/// `AsyncIterable` where the page reads it (the server wrote it: a service's
/// result, a callback's parameter), and any iterable where the page writes it.
fn typescript_type(schema: &Value, side: Side) -> String {
    match (stream_items(schema), side) {
        (Some(items), Side::Written) => format!("AsyncIterable<{}>", type_of(items, 1)),
        (Some(items), Side::Read) => {
            let items = type_of(items, 1);
            format!("AsyncIterable<{items}> | Iterable<{items}>")
        }
        (None, _) => type_of(schema, 1),
    }
}

/// A method's doc comment, with its documented errors as `@throws`.
fn method_docs(method: &MethodInfo, schemas: &mut Schemas) -> String {
    let mut docs = method.docs.to_owned();
    if !method.roles.is_empty() {
        let roles: Vec<String> = method.roles.iter().map(|role| format!("`{role}`")).collect();
        if !docs.is_empty() {
            docs.push_str("\n\n");
        }
        write!(docs, "Requires the role {} (else -32030).", roles.join(" or ")).unwrap();
    }
    // A one-way call gets no reply, so no error either.
    let errors = if method.oneway { Vec::new() } else { method.documented_errors() };
    if !errors.is_empty() && !docs.is_empty() {
        docs.push_str("\n\n");
    }
    for error in errors {
        let data = match error.data {
            Some(data) => {
                // Error data is written by the service.
                let ty =
                    type_of(&schemas.schema(data, Side::Written), 0).split_whitespace().collect::<Vec<_>>().join(" ");
                format!(" (`data`: `{ty}`)")
            }
            None => String::new(),
        };
        writeln!(docs, "@throws {{RpcError}} {} {}: {}{data}", error.code, error.name, error.summary()).unwrap();
    }
    docs
}

/// `chatEventsHandlers` for `ChatEvents`.
fn handlers_function(callback: &ContractInfo) -> String {
    let mut name = camel_case(callback.name);
    name.push_str("Handlers");
    name
}

/// `join_room` → `joinRoom`; `ChatEvents` → `chatEvents`; `get-price` → `getPrice`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for (i, c) in name.chars().enumerate() {
        match c {
            '_' | '-' | '.' | '/' | ' ' if i > 0 => upper = true,
            _ if i == 0 => out.extend(c.to_lowercase()),
            _ if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            _ => out.push(c),
        }
    }
    out
}

/// The members of a contract's class or interface, one per method, none twice
/// (a renamed method may land on another's name).
fn member_names(contract: &ContractInfo) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(contract.methods.len());
    for method in contract.methods {
        let name = apart(member_name(method, contract.namespace), &names);
        names.push(name);
    }
    names
}

/// `name`, with `_` added until no name in `taken` is the same.
fn apart(mut name: String, taken: &[String]) -> String {
    while taken.contains(&name) {
        name.push('_');
    }
    name
}

/// A method's name in a class or interface: its wire name without the
/// namespace, camelCase, clear of what the class itself has.
fn member_name(method: &MethodInfo, namespace: Option<&str>) -> String {
    let wire = method.wire_name;
    let base = namespace.and_then(|ns| wire.strip_prefix(ns)?.strip_prefix('.')).unwrap_or(wire);
    let name = identifier(&camel_case(base));
    if matches!(name.as_str(), "peer" | "constructor") { format!("{name}_") } else { name }
}

/// A JavaScript binding name for `name`: camelCase, and never a reserved word.
fn local_name(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "arguments",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "eval",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
    ];
    let name = camel_case(name);
    if RESERVED.contains(&name.as_str()) { format!("{name}_") } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_camel_case_and_avoid_reserved_words() {
        assert_eq!(camel_case("join_room"), "joinRoom");
        assert_eq!(camel_case("ChatEvents"), "chatEvents");
        assert_eq!(camel_case("_private"), "_private");
        assert_eq!(local_name("new"), "new_");
        assert_eq!(local_name("room_id"), "roomId");
        assert_eq!(camel_case("get-price"), "getPrice");
    }

    /// A method without parameters, results or docs: only its wire name matters here.
    const fn unit_method(wire_name: &'static str) -> MethodInfo {
        MethodInfo {
            name: "rust_name",
            wire_name,
            params: &[],
            returns: "()",
            result: crate::contract::info::schema_of::<()>,
            errors: Vec::new,
            oneway: false,
            roles: &[],
            docs: "",
        }
    }

    #[test]
    fn members_are_named_after_the_wire_name_without_the_namespace() {
        let method = unit_method;
        assert_eq!(member_name(&method("chat.join_room"), Some("chat")), "joinRoom");
        assert_eq!(member_name(&method("size"), None), "size");
        assert_eq!(member_name(&method("ns.peer"), Some("ns")), "peer_");
        assert_eq!(member_name(&method("other.x"), Some("ns")), "otherX");
        assert_eq!(member_name(&method("9lives"), None), "_9lives");

        static METHODS: [MethodInfo; 2] = [unit_method("get_price"), unit_method("getPrice")];
        let contract = ContractInfo {
            name: "Prices",
            namespace: None,
            kind: ContractKind::Service,
            docs: "",
            version: "0",
            methods: &METHODS,
            callback: None,
        };
        assert_eq!(member_names(&contract), ["getPrice", "getPrice_"]);
    }

    #[test]
    fn a_service_s_errors_are_listed_once_with_a_role_s_refusal() {
        use crate::contract::ErrorInfo;
        fn full() -> Vec<ErrorInfo> {
            vec![ErrorInfo::new(1001, "Full"), ErrorInfo::new(1002, "Closed")]
        }
        fn closed() -> Vec<ErrorInfo> {
            // The same code again (listed once), and the same name for another code.
            vec![ErrorInfo::new(1002, "Closed").with_docs("Shut */ already."), ErrorInfo::new(1003, "Closed")]
        }
        static METHODS: [MethodInfo; 4] = [
            MethodInfo { errors: full, ..unit_method("r.enter") },
            MethodInfo { errors: closed, roles: &["admin"], ..unit_method("r.shut") },
            // One-way: nothing answers, so it throws nothing.
            MethodInfo { errors: || vec![ErrorInfo::new(7, "Never")], oneway: true, ..unit_method("r.note") },
            unit_method("r.plain"),
        ];
        let contract = ContractInfo {
            name: "Rooms",
            namespace: Some("r"),
            kind: ContractKind::Service,
            docs: "",
            version: "0",
            methods: &METHODS,
            callback: None,
        };
        let listed: Vec<(i32, String)> = errors_of(&contract).into_iter().map(|e| (e.info.code, e.name)).collect();
        let expected = [(1001, "Full"), (1002, "Closed"), (1003, "Closed1003"), (-32030, "NotAuthorized")];
        assert_eq!(listed, expected.map(|(code, name)| (code, name.to_owned())));
        let ts = render(&[&contract]);
        assert!(ts.javascript.contains(
            "export const RoomsErrors = Object.freeze({ Full: 1001, Closed: 1002, Closed1003: 1003, NotAuthorized: -32030 });"
        ));
        assert!(ts.declarations.contains("readonly code: -32030; readonly data: { roles: string[] }"));
        assert!(!ts.declarations.contains("Shut */"), "a comment's end in docs is escaped");
        assert!(ts.declarations.contains("export declare function isRoomsError(error: unknown): error is RoomsError;"));
        assert!(ts.declarations.contains("  | (wsduplex.RpcError & { readonly code: 1001 })"));
        // A contract that documents none gets none of it.
        let quiet = ContractInfo { name: "Quiet", methods: &METHODS[3..], ..contract };
        assert!(!render(&[&quiet]).javascript.contains("Errors"));
    }
}
