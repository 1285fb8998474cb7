//! Emits the generated items, one function per item. Nothing here fails: every
//! rule was checked before rendering began.

mod connect;
mod contract_impl;
mod serve;
mod stub;
mod trait_def;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{FnArg, Ident, Pat, TraitItem, parse_quote};

use crate::model::{Contract, Method, OkType, Returns, stream_item};

/// Everything generated for one contract.
pub fn contract(contract: &Contract) -> TokenStream {
    let items = [
        trait_def::trait_def(contract),
        stub::stub_struct(contract),
        stub::stub_basics(contract),
        stub::stub_methods(contract),
        contract_impl::contract_impl(contract),
        contract_impl::kind_impl(contract),
        serve::serve_struct(contract),
        serve::serve_impl(contract),
        connect::connect_impl(contract),
        connect::callback_check(contract),
    ];
    quote!(#(#items)*)
}

/// The user's trait without our attributes: emitted next to errors so the
/// rest of the crate still compiles against it.
pub fn stripped_trait(contract: &Contract) -> TokenStream {
    let mut item = contract.item.clone();
    // A pattern parameter was reported already; rustc would repeat it
    // ("patterns aren't allowed in functions without bodies").
    for trait_item in &mut item.items {
        let TraitItem::Fn(method) = trait_item else { continue };
        if method.default.is_some() {
            continue;
        }
        for input in &mut method.sig.inputs {
            if let FnArg::Typed(typed) = input
                && !matches!(*typed.pat, Pat::Ident(_))
            {
                *typed.pat = parse_quote!(_);
            }
        }
    }
    quote!(#item)
}

/// The alias a service gives its callback stub, so a wrong `callback = X`
/// is reported once, at `X`.
fn callback_alias(contract: &Contract) -> Ident {
    quote::format_ident!("__WsduplexCallbackOf{}", contract.ident())
}

/// A name for generated local variables that cannot clash with the user's names.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// The success type a caller gets back: a stream the method returns
/// (`Outgoing<T>`) comes back as `Incoming<T>`.
fn ok_type(krate: &syn::Path, method: &Method) -> TokenStream {
    let written = |ty: &syn::Type| match stream_item(ty, "Outgoing") {
        Some(item) => quote!(#krate::Incoming<#item>),
        None => quote!(#ty),
    };
    match &method.returns {
        Returns::Unit => quote!(()),
        Returns::Value(ty) => written(ty),
        Returns::Fallible { ok: OkType::Written(ok), .. } => written(ok),
        Returns::Fallible { ty, ok: OkType::Projected } => quote!(<#ty as #krate::__private::IntoReply>::Ok),
    }
}

/// The error type a method's metadata documents (`Infallible` when it cannot fail).
fn error_type(krate: &syn::Path, method: &Method) -> TokenStream {
    match &method.returns {
        Returns::Unit | Returns::Value(_) => quote!(::core::convert::Infallible),
        Returns::Fallible { ty, .. } => quote!(<#ty as #krate::__private::IntoReply>::Error),
    }
}

/// A type as readable text, for metadata.
fn type_text(tokens: TokenStream) -> String {
    let mut text = tokens.to_string();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" :: ", "::"),
        (":: ", "::"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
    ] {
        text = text.replace(from, to);
    }
    text
}
