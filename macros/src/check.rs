//! Every rule a contract must follow, checked before anything is rendered. All
//! errors are gathered and reported together, each at the offending tokens.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::{FnArg, TraitItem, Type};

use crate::model::{Contract, Kind, Method};

/// Collected errors, reported as one.
#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        self.0.push(error);
    }

    pub fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, message));
    }

    /// An error spanning all of `node`'s tokens.
    pub fn spanned(&mut self, node: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.0.push(syn::Error::new_spanned(node, message));
    }

    pub fn combine(self) -> Option<syn::Error> {
        self.0.into_iter().reduce(|mut all, next| {
            all.combine(next);
            all
        })
    }
}

/// Parameters a method may have: the stub's by-name encoding is implemented up to this many.
const MAX_PARAMS: usize = 12;

pub fn contract(contract: &Contract, errors: &mut Errors) {
    let item = &contract.item;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(&item.generics, "contract traits cannot be generic");
    }
    if let Some(colon) = &item.colon_token {
        let supertraits = &item.supertraits;
        errors.spanned(
            quote::quote!(#colon #supertraits),
            "contract traits cannot have supertraits (the macro adds `Send + Sync + 'static`)",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        errors.error(unsafety.span, "contract traits cannot be unsafe");
    }
    if let Some(auto) = &item.auto_token {
        errors.error(auto.span, "contract traits cannot be auto traits");
    }
    if let Some(namespace) = &contract.namespace {
        let ns = namespace.value();
        if ns.is_empty() || ns.chars().any(char::is_whitespace) {
            errors.error(namespace.span(), "a namespace is a non-empty name without spaces");
        }
    }
    if contract.kind == Kind::Callback && contract.callback.is_some() {
        errors.error(Span::call_site(), "a callback contract has no callback of its own");
    }
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(_) => {}
            other => errors.spanned(other, "contract traits hold only `async fn` methods"),
        }
    }

    let mut seen: HashMap<&str, &Method> = HashMap::new();
    for method in &contract.methods {
        self::method(method, contract.kind, errors);
        if let Some(first) = seen.insert(&method.wire_name, method) {
            errors.error(
                method.wire_span,
                format!(
                    "two methods have the wire name `{}`: `{}` and `{}`",
                    method.wire_name,
                    first.ident(),
                    method.ident()
                ),
            );
        }
    }
}

fn method(method: &Method, kind: Kind, errors: &mut Errors) {
    let sig = &method.item.sig;
    if sig.asyncness.is_none() {
        errors.error(sig.fn_token.span, "contract methods must be `async fn`");
    }
    if let Some(constness) = &sig.constness {
        errors.error(constness.span, "contract methods cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.error(unsafety.span, "contract methods cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "contract methods cannot have an ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "contract methods cannot be variadic");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(&sig.generics, "contract methods cannot be generic");
    }
    if method.wire_name.is_empty() || method.wire_name.ends_with('.') {
        errors.error(method.wire_span, "a wire name cannot be empty");
    }
    if method.wire_name.starts_with("rpc.") || method.wire_name.starts_with("$/") {
        errors.error(
            method.wire_span,
            format!("`{}` is reserved: JSON-RPC keeps `rpc.` names and wsduplex keeps `$/` names", method.wire_name),
        );
    }

    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() && receiver.colon_token.is_none() => {}
        Some(FnArg::Receiver(receiver)) => errors.spanned(receiver, "contract methods take `&self`"),
        _ => errors.error(sig.ident.span(), "contract methods take `&self` first"),
    }

    if method.params.len() > MAX_PARAMS {
        errors.spanned(&sig.inputs, format!("contract methods take at most {MAX_PARAMS} parameters"));
    }
    for param in &method.params {
        if param.ident.is_none() {
            errors.spanned(
                &param.pat,
                "parameters must be plain names (`name: Type`): the names are the parameter keys on the wire",
            );
        }
        if contains_reference(&param.ty) {
            errors.spanned(
                &param.ty,
                "parameters must be owned types (`String`, not `&str`): they are decoded from the message",
            );
        }
        if let Type::ImplTrait(t) = &param.ty {
            errors.spanned(t, "parameters cannot be `impl Trait`");
        }
    }

    if let Some(documented) = &method.errors
        && method.returns.written_error().is_none()
    {
        errors.spanned(
            &documented.attr,
            "#[errors(..)] names variants of the method's error enum: write the return type as `Result<T, E>`",
        );
    }

    if let (Some((_, span)), Kind::Callback) = (&method.authorize, kind) {
        errors.error(
            *span,
            "#[authorize] is for service methods: a client's callbacks are called by the server, \
             which has no roles of its own to check",
        );
    }

    if let Some(oneway) = method.oneway {
        for param in method.params.iter().filter(|p| p.stream_item().is_some()) {
            let message = "a #[oneway] method cannot take a stream: a notification gets no reply, \
                           so nothing would tell the caller when to release it; remove #[oneway]";
            errors.spanned(&param.ty, message);
            errors.error(oneway, "marked #[oneway] here");
        }
    }

    if let Some(oneway) = method.oneway
        && !method.returns.is_unit_success()
    {
        let message = "a #[oneway] method sends no reply: it returns nothing, \
                       or `Result<(), E>` to report errors to callers that send an id";
        errors.spanned(&sig.output, message);
        errors.error(oneway, "marked #[oneway] here");
    }
}

fn contains_reference(ty: &Type) -> bool {
    match ty {
        Type::Reference(_) => true,
        Type::Tuple(t) => t.elems.iter().any(contains_reference),
        Type::Array(a) => contains_reference(&a.elem),
        Type::Slice(s) => contains_reference(&s.elem),
        Type::Paren(p) => contains_reference(&p.elem),
        Type::Group(g) => contains_reference(&g.elem),
        Type::Path(p) => p.path.segments.iter().any(|segment| match &segment.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().any(|arg| match arg {
                syn::GenericArgument::Type(t) => contains_reference(t),
                syn::GenericArgument::Lifetime(_) => true,
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    }
}
