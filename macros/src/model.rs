//! The contract as the macros understand it, keeping the original syn nodes
//! so every error can point at the user's own tokens.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitStr, Pat, Path, PathArguments, ReturnType, TraitItem,
    TraitItemFn, Type,
};

use crate::attrs::{self, ContractArgs};
use crate::check::Errors;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Callback,
}

impl Kind {
    pub fn macro_name(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Callback => "callback",
        }
    }
}

pub struct Contract {
    pub kind: Kind,
    /// The user's trait, with our attributes removed from its methods.
    pub item: ItemTrait,
    pub namespace: Option<LitStr>,
    pub callback: Option<Path>,
    pub methods: Vec<Method>,
    pub docs: String,
    /// The path generated code names the runtime crate by.
    pub krate: Path,
}

pub struct Method {
    /// The user's method, without our attributes.
    pub item: TraitItemFn,
    pub wire_name: String,
    /// Where the wire name comes from: the `name = "…"` literal, or the method's ident.
    pub wire_span: Span,
    pub params: Vec<Param>,
    pub returns: Returns,
    /// The `#[oneway]` attribute's span, when present.
    pub oneway: Option<Span>,
    /// `#[authorize(role = "..")]` / `#[authorize(roles = "a, b")]`: the
    /// roles of which the caller needs one, and the attribute's span.
    pub authorize: Option<(Vec<String>, Span)>,
    /// The variants of the error enum named by `#[errors(..)]`: the only
    /// errors the method documents. `None` documents every one.
    pub errors: Option<DocumentedVariants>,
    pub docs: String,
}

/// A method's `#[errors(A, B)]`.
pub struct DocumentedVariants {
    /// The attribute, for errors about it.
    pub attr: Attribute,
    pub variants: Vec<Ident>,
}

pub struct Param {
    /// `None` when the parameter is a pattern rather than a plain name (an error).
    pub ident: Option<Ident>,
    pub pat: Pat,
    pub ty: Type,
}

impl Param {
    /// An `Option<T>`: the caller may leave it out.
    pub fn is_option(&self) -> bool {
        is_option(&self.ty)
    }

    /// `T` when the parameter is a stream, `Incoming<T>`.
    pub fn stream_item(&self) -> Option<&Type> {
        stream_item(&self.ty, "Incoming")
    }

    /// The name on the wire: the Rust name without `r#`.
    pub fn wire_name(&self) -> String {
        self.ident.as_ref().map(|i| i.unraw().to_string()).unwrap_or_default()
    }
}

/// What a method's declared return type means for the wire.
#[allow(clippy::large_enum_variant, reason = "a handful per macro call, at compile time")]
pub enum Returns {
    /// No return type: the result is `null`.
    Unit,
    /// A plain value: always a success.
    Value(Type),
    /// `Result<T, E>` or an alias ending in `Result`: an error becomes an error object.
    Fallible { ty: Type, ok: OkType },
}

/// The success type of a fallible return.
#[allow(clippy::large_enum_variant, reason = "a handful per macro call, at compile time")]
pub enum OkType {
    /// Written out, as in `Result<T, E>`.
    Written(Type),
    /// Only the reply trait knows it, as in `MyResult<T>` for an arbitrary alias.
    Projected,
}

impl Returns {
    fn of(output: &ReturnType) -> Returns {
        let ty = match output {
            ReturnType::Default => return Returns::Unit,
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        if let Type::Tuple(t) = &ty
            && t.elems.is_empty()
        {
            return Returns::Unit;
        }
        let Type::Path(path) = &ty else { return Returns::Value(ty) };
        let Some(last) = path.path.segments.last() else { return Returns::Value(ty) };
        let name = last.ident.to_string();
        let first_arg = match &last.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            }),
            _ => None,
        };
        match first_arg {
            Some(ok) if name == "Result" => Returns::Fallible { ty, ok: OkType::Written(ok) },
            Some(_) if name.ends_with("Result") => Returns::Fallible { ty, ok: OkType::Projected },
            _ => Returns::Value(ty),
        }
    }

    /// The error type as written: `E` in `Result<T, E>`.
    pub fn written_error(&self) -> Option<&Type> {
        let Returns::Fallible { ty: Type::Path(path), ok: OkType::Written(_) } = self else { return None };
        let PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else { return None };
        args.args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .nth(1)
    }

    /// True when nothing but `()` can come back (a valid one-way signature).
    pub fn is_unit_success(&self) -> bool {
        match self {
            Returns::Unit => true,
            Returns::Value(_) => false,
            Returns::Fallible { ok: OkType::Written(Type::Tuple(t)), .. } => t.elems.is_empty(),
            Returns::Fallible { .. } => false,
        }
    }
}

/// `T` in `Name<T>`, recognised by the last path segment: `Incoming<T>` in a
/// parameter, `Outgoing<T>` in a result.
pub fn stream_item<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last().filter(|s| path.qself.is_none() && s.ident == name)?;
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(item)] => Some(item),
        _ => None,
    }
}

/// True for `Option<T>`, recognised by its last path segment (as serde does).
pub fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// Extracts the doc comment of a set of attributes.
pub fn docs(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| line.strip_prefix(' ').map(str::to_owned).unwrap_or(line))
        .collect();
    lines.join("\n").trim().to_owned()
}

impl Contract {
    pub fn new(kind: Kind, args: ContractArgs, mut item: ItemTrait, errors: &mut Errors) -> Self {
        let namespace = args.namespace;
        let mut methods = Vec::new();
        for trait_item in &mut item.items {
            if let TraitItem::Fn(method) = trait_item {
                methods.push(Method::new(method, namespace.as_ref(), errors));
            }
        }
        let docs = docs(&item.attrs);
        let krate = attrs::runtime_crate(args.krate);
        Contract { kind, item, namespace, callback: args.callback, methods, docs, krate }
    }

    pub fn ident(&self) -> &Ident {
        &self.item.ident
    }

    /// `XClient`, the stub of contract `X`.
    pub fn stub_ident(&self) -> Ident {
        stub_ident(&self.item.ident)
    }

    /// `ServeX`, the server-side type that answers calls with an implementation of `X`.
    pub fn serve_ident(&self) -> Ident {
        Ident::new(&format!("Serve{}", self.item.ident.unraw()), self.item.ident.span())
    }

    /// True when a method of the contract has the Rust name `name` (so a
    /// generated helper of that name is left out).
    pub fn has_method(&self, name: &str) -> bool {
        self.methods.iter().any(|m| m.ident() == name)
    }
}

/// The stub's name for a contract's name: `X` → `XClient`.
pub fn stub_ident(contract: &Ident) -> Ident {
    Ident::new(&format!("{}Client", contract.unraw()), contract.span())
}

/// The stub path for a contract path: `a::X` → `a::XClient`.
pub fn stub_path(contract: &Path) -> Path {
    let mut path = contract.clone();
    if let Some(last) = path.segments.last_mut() {
        last.ident = stub_ident(&last.ident);
        last.arguments = PathArguments::None;
    }
    path
}

impl Method {
    /// Reads the method and strips our attributes (`#[oneway]`, `#[method]`,
    /// `#[errors]`) from it.
    fn new(method: &mut TraitItemFn, namespace: Option<&LitStr>, errors: &mut Errors) -> Self {
        let mut oneway = None;
        let mut documented = None;
        let mut rename: Option<LitStr> = None;
        let mut authorize: Option<(Vec<String>, Span)> = None;
        method.attrs.retain(|attr| {
            if attr.path().is_ident("authorize") {
                if authorize.is_some() {
                    errors
                        .error(attr.span(), "one `#[authorize(..)]` per method: list the roles in `roles = \"a, b\"`");
                    return false;
                }
                let mut roles = Vec::new();
                match &attr.meta {
                    syn::Meta::List(list) => {
                        for arg in attrs::parse_args(list.tokens.clone(), &["role", "roles"], errors) {
                            if let Some(value) = attrs::lit_str(&arg, errors) {
                                roles.extend(value.value().split(',').map(str::trim).map(str::to_owned));
                            }
                        }
                    }
                    _ => errors.error(
                        attr.span(),
                        "expected `#[authorize(role = \"...\")]` or `#[authorize(roles = \"a, b\")]`",
                    ),
                }
                if roles.iter().any(String::is_empty) {
                    errors.error(attr.span(), "a role name may not be empty");
                }
                authorize = Some((roles, attr.span()));
                return false;
            }
            if attr.path().is_ident("oneway") {
                if !matches!(attr.meta, syn::Meta::Path(_)) {
                    errors.error(attr.span(), "`#[oneway]` takes no arguments");
                }
                oneway = Some(attr.span());
                false
            } else if attr.path().is_ident("errors") {
                let parsed =
                    attr.parse_args_with(syn::punctuated::Punctuated::<Ident, syn::Token![,]>::parse_terminated);
                match (&attr.meta, parsed) {
                    (syn::Meta::List(_), Ok(variants)) => {
                        documented =
                            Some(DocumentedVariants { attr: attr.clone(), variants: variants.into_iter().collect() })
                    }
                    _ => errors.spanned(
                        attr,
                        "expected `#[errors(Variant, ...)]`: the error enum's variants this method returns",
                    ),
                }
                false
            } else if attr.path().is_ident("method") {
                match &attr.meta {
                    syn::Meta::List(list) => {
                        for arg in attrs::parse_args(list.tokens.clone(), &["name"], errors) {
                            rename = attrs::lit_str(&arg, errors);
                        }
                    }
                    _ => errors.error(attr.span(), "expected `#[method(name = \"...\")]`"),
                }
                false
            } else {
                true
            }
        });

        let base = rename.as_ref().map(LitStr::value).unwrap_or_else(|| method.sig.ident.unraw().to_string());
        let wire_name = match namespace {
            Some(ns) => format!("{}.{base}", ns.value()),
            None => base,
        };
        let wire_span = rename.as_ref().map(LitStr::span).unwrap_or_else(|| method.sig.ident.span());

        let params = method
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(typed) => Some(Param {
                    ident: match &*typed.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(p.ident.clone()),
                        _ => None,
                    },
                    pat: (*typed.pat).clone(),
                    ty: (*typed.ty).clone(),
                }),
                FnArg::Receiver(_) => None,
            })
            .collect();

        Method {
            wire_name,
            wire_span,
            params,
            returns: Returns::of(&method.sig.output),
            oneway,
            authorize,
            errors: documented,
            docs: docs(&method.attrs),
            item: method.clone(),
        }
    }

    pub fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }
}
