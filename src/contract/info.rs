//! A contract's metadata: what the macros record at compile time so schemas,
//! generated clients and introspection can be derived from the Rust traits.

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::probe::Probe;

/// Writes the JSON Schema of one type: a reference to a definition the
/// generator keeps, or the schema inline.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// Which side of the socket implements a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContractKind {
    /// Implemented by the server; clients call it.
    Service,
    /// Implemented by clients; the server calls it.
    Callback,
}

/// A contract's metadata, recorded by the macros at compile time and
/// available at run time (for schemas, generated clients and introspection).
///
/// Its fields are public to read; it is built with [`ContractInfo::new`] and
/// the `with_` functions, in a `const` context, so fields can be added.
#[derive(Debug)]
#[non_exhaustive]
pub struct ContractInfo {
    /// The Rust trait's name.
    pub name: &'static str,
    /// The wire namespace, if any.
    pub namespace: Option<&'static str>,
    /// Service or callback.
    pub kind: ContractKind,
    /// The trait's doc comment.
    pub docs: &'static str,
    /// The version of the crate that declares the contract.
    pub version: &'static str,
    /// Every method, in declaration order.
    pub methods: &'static [MethodInfo],
    /// A service's callback contract, when it declares one.
    pub callback: Option<fn() -> &'static ContractInfo>,
}

/// One method of a contract; built with [`MethodInfo::new`].
#[derive(Debug)]
#[non_exhaustive]
pub struct MethodInfo {
    /// The Rust method name.
    pub name: &'static str,
    /// The method name on the wire (`namespace.method` or the renamed name).
    pub wire_name: &'static str,
    /// Parameters, in order.
    pub params: &'static [ParamInfo],
    /// The declared return type, as written in the trait.
    pub returns: &'static str,
    /// The schema of the success value (`null` for a method returning `()`).
    pub result: SchemaFn,
    /// The errors the method documents: those of its error type, when that
    /// type implements [`DocumentedErrors`] (as `#[derive(RpcError)]` does).
    pub errors: fn() -> Vec<ErrorInfo>,
    /// Sent as a notification, without a reply.
    pub oneway: bool,
    /// The roles of which a caller needs one (`#[authorize(..)]`); empty when
    /// anyone may call it.
    pub roles: &'static [&'static str],
    /// The method's doc comment.
    pub docs: &'static str,
}

/// One parameter of a method; built with [`ParamInfo::new`].
#[derive(Debug)]
#[non_exhaustive]
pub struct ParamInfo {
    /// The name, which is also its key on the wire.
    pub name: &'static str,
    /// The type, as written in the trait.
    pub ty: &'static str,
    /// The type's schema.
    pub schema: SchemaFn,
    /// An `Option`: the caller may leave it out.
    pub optional: bool,
}

/// One error a method may answer with; built with [`ErrorInfo::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ErrorInfo {
    /// The error object's `code`.
    pub code: i32,
    /// The variant's name (`NickTaken`), or a short name for wsduplex's own errors.
    pub name: &'static str,
    /// The variant's doc comment; its first line is the error's summary.
    pub docs: &'static str,
    /// The schema of the error object's `data`, when it carries any.
    pub data: Option<SchemaFn>,
}

impl ErrorInfo {
    /// The error with `code`, named `name`, without docs or `data`.
    pub const fn new(code: i32, name: &'static str) -> Self {
        ErrorInfo { code, name, docs: "", data: None }
    }

    /// With its doc comment.
    pub const fn with_docs(mut self, docs: &'static str) -> Self {
        self.docs = docs;
        self
    }

    /// With the schema of its `data`.
    pub const fn with_data(mut self, data: SchemaFn) -> Self {
        self.data = Some(data);
        self
    }

    /// One line describing the error: the first line of its docs, or its name.
    pub fn summary(&self) -> &'static str {
        self.docs.lines().next().map(str::trim).filter(|line| !line.is_empty()).unwrap_or(self.name)
    }
}

/// An error type that lists the error objects it converts into, for schemas
/// and generated clients. `#[derive(RpcError)]` implements it.
pub trait DocumentedErrors {
    /// Every error object this type answers with, one per code.
    fn errors() -> Vec<ErrorInfo>;

    /// The error objects of the variants named `variants` (as a method's
    /// `#[errors(..)]` lists them), in that order. By default the entries of
    /// [`errors`](Self::errors) with those names; `#[derive(RpcError)]` also
    /// expands a pass-through variant into its field's errors.
    fn errors_of(variants: &[&str]) -> Vec<ErrorInfo> {
        let all = Self::errors();
        variants.iter().flat_map(|name| all.iter().filter(move |info| info.name == *name).cloned()).collect()
    }
}

impl ContractInfo {
    /// A contract named `name`, with no namespace, docs, version, methods or
    /// callback contract yet.
    pub const fn new(name: &'static str, kind: ContractKind) -> Self {
        ContractInfo { name, namespace: None, kind, docs: "", version: "", methods: &[], callback: None }
    }

    /// With its wire namespace.
    pub const fn with_namespace(mut self, namespace: &'static str) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// With the trait's doc comment.
    pub const fn with_docs(mut self, docs: &'static str) -> Self {
        self.docs = docs;
        self
    }

    /// With the version of the crate that declares it.
    pub const fn with_version(mut self, version: &'static str) -> Self {
        self.version = version;
        self
    }

    /// With its methods, in declaration order.
    pub const fn with_methods(mut self, methods: &'static [MethodInfo]) -> Self {
        self.methods = methods;
        self
    }

    /// With a service's callback contract.
    pub const fn with_callback(mut self, callback: fn() -> &'static ContractInfo) -> Self {
        self.callback = Some(callback);
        self
    }

    /// The method with this wire name.
    pub fn method(&self, wire_name: &str) -> Option<&MethodInfo> {
        self.methods.iter().find(|m| m.wire_name == wire_name)
    }

    /// A service's callback contract, when it declares one.
    pub fn callback(&self) -> Option<&'static ContractInfo> {
        self.callback.map(|info| info())
    }

    /// A service's callback contract, when it declares one with methods.
    pub fn callback_with_methods(&self) -> Option<&'static ContractInfo> {
        self.callback().filter(|callback| !callback.methods.is_empty())
    }
}

impl MethodInfo {
    /// The method `name`, sent as `wire_name`, whose success value has the
    /// schema `result` and whose documented errors `errors` lists; no
    /// parameters, not one-way, no docs yet.
    pub const fn new(
        name: &'static str,
        wire_name: &'static str,
        result: SchemaFn,
        errors: fn() -> Vec<ErrorInfo>,
    ) -> Self {
        MethodInfo { name, wire_name, params: &[], returns: "", result, errors, oneway: false, roles: &[], docs: "" }
    }

    /// With its parameters, in order.
    pub const fn with_params(mut self, params: &'static [ParamInfo]) -> Self {
        self.params = params;
        self
    }

    /// With its return type as written in the trait.
    pub const fn with_returns(mut self, returns: &'static str) -> Self {
        self.returns = returns;
        self
    }

    /// Sent as a notification (`#[oneway]`).
    pub const fn oneway(mut self) -> Self {
        self.oneway = true;
        self
    }

    /// Callable only by a connection with one of `roles` (`#[authorize(..)]`).
    pub const fn with_roles(mut self, roles: &'static [&'static str]) -> Self {
        self.roles = roles;
        self
    }

    /// With its doc comment.
    pub const fn with_docs(mut self, docs: &'static str) -> Self {
        self.docs = docs;
        self
    }

    /// How many parameters at the end are `Option`s: those a caller may
    /// leave out by position as well as by name.
    pub fn optional_tail(&self) -> usize {
        self.params.iter().rev().take_while(|p| p.optional).count()
    }

    /// The method's documented errors, each code once (the first one listed wins).
    pub fn documented_errors(&self) -> Vec<ErrorInfo> {
        let mut errors = (self.errors)();
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.code));
        errors
    }
}

impl ParamInfo {
    /// The parameter `name` of type `ty` (as written) with its schema;
    /// `optional` for an `Option` the caller may leave out.
    pub const fn new(name: &'static str, ty: &'static str, schema: SchemaFn, optional: bool) -> Self {
        ParamInfo { name, ty, schema, optional }
    }
}

/// A type a contract's parameters, results and error data may have: one
/// with a JSON Schema, so the contract's OpenRPC document and TypeScript
/// types are complete.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no JSON Schema, which every parameter, result and error `data` type of a contract needs",
    label = "`{Self}` does not implement `schemars::JsonSchema`",
    note = "derive it next to `Serialize`/`Deserialize`: `#[derive(schemars::JsonSchema)]`, with `schemars = \"1\"` in your [dependencies] (or `#[schemars(crate = \"wsduplex::contract::schemars\")]` to use wsduplex's)",
    note = "for a type from another crate, wrap it in a type of yours, or use `#[schemars(with = \"...\")]` on the field that holds it"
)]
pub trait ContractType {
    /// The type's schema (a reference to a definition the generator keeps).
    #[doc(hidden)]
    fn schema(generator: &mut SchemaGenerator) -> Schema;
}

impl<T: JsonSchema + ?Sized> ContractType for T {
    fn schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

/// The schema of `T`, as a [`SchemaFn`] generated code can point at.
#[doc(hidden)]
pub fn schema_of<T: ContractType + ?Sized>(generator: &mut SchemaGenerator) -> Schema {
    T::schema(generator)
}

// `E`'s documented errors when `E` implements [`DocumentedErrors`], and none
// otherwise (see `crate::probe`).
#[doc(hidden)]
pub trait ErrorsViaTrait {
    fn documented_errors(&self) -> Vec<ErrorInfo>;
}

impl<E: DocumentedErrors + ?Sized> ErrorsViaTrait for Probe<E> {
    fn documented_errors(&self) -> Vec<ErrorInfo> {
        E::errors()
    }
}

#[doc(hidden)]
pub trait ErrorsUndocumented {
    fn documented_errors(&self) -> Vec<ErrorInfo>;
}

impl<E: ?Sized> ErrorsUndocumented for &Probe<E> {
    fn documented_errors(&self) -> Vec<ErrorInfo> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Documented;
    impl DocumentedErrors for Documented {
        fn errors() -> Vec<ErrorInfo> {
            vec![ErrorInfo { code: 7, name: "Seven", docs: "", data: None }]
        }
    }
    struct Plain;

    #[test]
    #[allow(clippy::needless_borrow, reason = "the form generated code uses")]
    fn errors_of_picks_the_documented_list_when_there_is_one() {
        assert_eq!((&Probe::<Documented>::new()).documented_errors()[0].code, 7);
        assert!((&Probe::<Plain>::new()).documented_errors().is_empty());
    }

    #[test]
    fn a_summary_is_the_first_line_of_the_docs_or_the_name() {
        let mut info = ErrorInfo { code: 1, name: "NickTaken", docs: "Taken.\nBy someone else.", data: None };
        assert_eq!(info.summary(), "Taken.");
        info.docs = "";
        assert_eq!(info.summary(), "NickTaken");
    }
}
