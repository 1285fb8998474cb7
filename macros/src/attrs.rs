//! The one allow-list parser for `name = value` arguments, used for the macro's
//! own arguments and for `#[method(...)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr, Meta, Path, Token};

use crate::check::Errors;
use crate::model::Kind;

/// One `key = value` argument that passed the allow-list.
pub struct Arg {
    pub key: String,
    pub key_span: Span,
    pub value: Expr,
}

/// Parses `key = value, …`, keeping only allowed keys; every unknown, repeated
/// or malformed argument becomes an error spanned at its key.
pub fn parse_args(tokens: TokenStream, allowed: &[&str], errors: &mut Errors) -> Vec<Arg> {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let expected = allowed.join(", ");
    let mut args: Vec<Arg> = Vec::new();
    for meta in metas {
        let path = meta.path().clone();
        let key = path.get_ident().map(ToString::to_string).unwrap_or_default();
        if !allowed.contains(&key.as_str()) {
            let shown = quote::quote!(#path).to_string().replace(' ', "");
            errors.error(path.span(), format!("unknown argument `{shown}`, expected one of: {expected}"));
            continue;
        }
        let Meta::NameValue(name_value) = meta else {
            errors.error(path.span(), format!("expected `{key} = ...`"));
            continue;
        };
        if args.iter().any(|a| a.key == key) {
            errors.error(path.span(), format!("duplicate argument `{key}`"));
            continue;
        }
        args.push(Arg { key, key_span: path.span(), value: name_value.value });
    }
    args
}

/// The value of an argument that must be a string literal.
pub fn lit_str(arg: &Arg, errors: &mut Errors) -> Option<LitStr> {
    match &arg.value {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
        other => {
            errors.error(other.span(), format!("`{}` takes a string literal", arg.key));
            None
        }
    }
}

/// The value of an argument that must be a path.
fn path(arg: &Arg, errors: &mut Errors) -> Option<Path> {
    match &arg.value {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        other => {
            errors.error(other.span(), format!("`{}` takes the path of a #[wsduplex::callback] trait", arg.key));
            None
        }
    }
}

/// The value of `crate = "path"`: the path generated code names the runtime crate by.
pub fn crate_path(arg: &Arg, errors: &mut Errors) -> Option<Path> {
    let literal = lit_str(arg, errors)?;
    match literal.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.error(literal.span(), "`crate` takes a path, for example `crate = \"my_facade::wsduplex\"`");
            None
        }
    }
}

/// The path generated code names the runtime crate by: `crate = "..."` when
/// given, else the name the user's Cargo.toml gives `wsduplex` (a renamed
/// dependency included), else `::wsduplex`.
pub fn runtime_crate(explicit: Option<Path>) -> Path {
    use proc_macro_crate::{FoundCrate, crate_name};
    if let Some(path) = explicit {
        return path;
    }
    match crate_name("wsduplex") {
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, Span::call_site());
            syn::parse_quote!(::#ident)
        }
        // `Itself` is the runtime crate's own tests, examples and doctests
        // (the library never uses its macros), which all see it as `wsduplex`;
        // when it is not found, the user re-exports it and names it with `crate = ...`.
        Ok(FoundCrate::Itself) | Err(_) => syn::parse_quote!(::wsduplex),
    }
}

/// `krate` with every token at `span`, for paths that start an expression
/// whose errors should point at the user's tokens (`quote_spanned!`).
pub fn crate_at(krate: &Path, span: Span) -> Path {
    use quote::ToTokens;
    let tokens: TokenStream = krate
        .to_token_stream()
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect();
    syn::parse2(tokens).unwrap_or_else(|_| krate.clone())
}

/// The arguments of `#[service(...)]` or `#[callback(...)]`.
#[derive(Default)]
pub struct ContractArgs {
    pub namespace: Option<LitStr>,
    pub callback: Option<Path>,
    pub krate: Option<Path>,
}

impl ContractArgs {
    pub fn parse(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> Self {
        let allowed: &[&str] = match kind {
            Kind::Service => &["namespace", "callback", "crate"],
            Kind::Callback => &["namespace", "crate"],
        };
        let mut parsed = ContractArgs::default();
        for arg in parse_args(tokens, allowed, errors) {
            match arg.key.as_str() {
                "namespace" => parsed.namespace = lit_str(&arg, errors),
                "callback" => parsed.callback = path(&arg, errors),
                "crate" => parsed.krate = crate_path(&arg, errors),
                _ => errors.error(arg.key_span, "unreachable argument"),
            }
        }
        parsed
    }
}
