//! `#[derive(RpcError)]`: an error enum whose variants name their wire codes.
//! It converts into the JSON-RPC error object (message from `Display`, `data`
//! from the variant's fields) and documents every code for schemas.
//!
//! Same discipline as the contract macros: read the enum into a model, check
//! every rule and report all errors together, then render.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Ident};

use crate::attrs;
use crate::check::Errors;
use crate::model::{docs, is_option};

/// One variant as the derive understands it.
struct Variant {
    ident: Ident,
    docs: String,
    mapping: Mapping,
    fields: Fields,
}

enum Mapping {
    /// `#[rpc(code = N)]`: its own error object.
    Code(Expr),
    /// `#[rpc(transparent)]`: the single field's own error object.
    Transparent,
    /// No usable attribute (already reported).
    Missing,
}

pub fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    let krate = attrs::runtime_crate(container_crate(&input.attrs, &mut errors));
    let variants = model(&input, &mut errors);
    check(&variants, &mut errors);
    match errors.combine() {
        Some(error) => error.to_compile_error(),
        None => render(&krate, &input.ident, &variants),
    }
}

/// `#[rpc(crate = "...")]` on the enum: the path to the runtime crate.
fn container_crate(attrs: &[Attribute], errors: &mut Errors) -> Option<syn::Path> {
    let mut krate = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("rpc")) {
        match attr.meta.require_list() {
            Ok(list) => {
                for arg in attrs::parse_args(list.tokens.clone(), &["crate"], errors) {
                    krate = attrs::crate_path(&arg, errors);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    krate
}

fn model(input: &DeriveInput, errors: &mut Errors) -> Vec<Variant> {
    if !input.generics.params.is_empty() {
        errors.spanned(&input.generics, "#[derive(RpcError)] does not support generic enums");
    }
    let Data::Enum(data) = &input.data else {
        errors.error(input.ident.span(), "#[derive(RpcError)] goes on an enum whose variants name their codes");
        return Vec::new();
    };
    data.variants
        .iter()
        .map(|v| Variant {
            ident: v.ident.clone(),
            docs: docs(&v.attrs),
            mapping: mapping(&v.ident, &v.attrs, errors),
            fields: v.fields.clone(),
        })
        .collect()
}

/// Reads the variant's one `#[rpc(...)]`.
fn mapping(variant: &Ident, attrs: &[Attribute], errors: &mut Errors) -> Mapping {
    let mut found = attrs.iter().filter(|a| a.path().is_ident("rpc"));
    let Some(attr) = found.next() else {
        errors.error(
            variant.span(),
            format!("`{variant}` needs `#[rpc(code = ...)]` (its error code) or `#[rpc(transparent)]`"),
        );
        return Mapping::Missing;
    };
    if let Some(extra) = found.next() {
        errors.error(extra.span(), "one `#[rpc(...)]` per variant");
    }
    let list = match attr.meta.require_list() {
        Ok(list) => list,
        Err(e) => {
            errors.push(e);
            return Mapping::Missing;
        }
    };
    if let Ok(flag) = syn::parse2::<Ident>(list.tokens.clone())
        && flag == "transparent"
    {
        return Mapping::Transparent;
    }
    let mut code = None;
    for arg in attrs::parse_args(list.tokens.clone(), &["code", "transparent"], errors) {
        match arg.key.as_str() {
            "code" => code = Some(arg.value),
            _ => errors.error(arg.key_span, "write `#[rpc(transparent)]`, without a value"),
        }
    }
    match code {
        Some(code) => Mapping::Code(code),
        None => {
            // Arguments that were there are reported already.
            if list.tokens.is_empty() {
                errors.error(attr.span(), "expected `#[rpc(code = ...)]` or `#[rpc(transparent)]`");
            }
            Mapping::Missing
        }
    }
}

/// JSON-RPC keeps -32768..=-32000 for itself and for implementations (wsduplex's own codes).
const RESERVED_CODES: std::ops::RangeInclusive<i64> = -32768..=-32000;

fn check(variants: &[Variant], errors: &mut Errors) {
    let mut codes: Vec<(i64, &Ident)> = Vec::new();
    for variant in variants {
        match &variant.mapping {
            Mapping::Code(code) => {
                if let Some(value) = literal_code(code) {
                    if RESERVED_CODES.contains(&value) {
                        errors.spanned(
                            code,
                            format!("code {value} is reserved (-32768..=-32000 belong to JSON-RPC and wsduplex); pick another"),
                        );
                    }
                    match codes.iter().find(|(seen, _)| *seen == value) {
                        Some((_, first)) => {
                            errors.spanned(code, format!("code {value} is already the code of `{first}`"))
                        }
                        None => codes.push((value, &variant.ident)),
                    }
                }
                if matches!(&variant.fields, Fields::Unnamed(f) if f.unnamed.len() > 1) {
                    errors.spanned(
                        &variant.fields,
                        "a variant's `data` is one unnamed field or named fields; name these fields",
                    );
                }
            }
            Mapping::Transparent => {
                if variant.fields.len() != 1 {
                    errors.error(
                        variant.ident.span(),
                        "a `#[rpc(transparent)]` variant holds exactly one field: the error it passes on",
                    );
                }
            }
            Mapping::Missing => {}
        }
    }
}

/// The value of a code written as an integer literal (possibly negative).
fn literal_code(code: &Expr) -> Option<i64> {
    match code {
        Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(int), .. }) => int.base10_parse().ok(),
        Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), expr, .. }) => literal_code(expr).map(|v| -v),
        _ => None,
    }
}

/// Compile-time checks for codes written as constants, which the macro
/// cannot read: none reserved, no two alike.
fn code_assertions(variants: &[Variant]) -> TokenStream {
    let codes: Vec<&Expr> = variants
        .iter()
        .filter_map(|v| match &v.mapping {
            Mapping::Code(code) => Some(code),
            _ => None,
        })
        .collect();
    let mut checks = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        if literal_code(code).is_some() {
            continue;
        }
        // One item per check, so each failing one is reported.
        checks.push(quote_spanned! {code.span()=>
            const _: () = ::core::assert!(
                (#code) < -32768 || (#code) > -32000,
                "an error code in -32768..=-32000 is reserved (JSON-RPC and wsduplex); pick another",
            );
        });
        // Each pair once: a pair of constants from the first of the two.
        let others = codes.iter().enumerate().filter(|(j, other)| *j > i || (*j < i && literal_code(other).is_some()));
        for (_, other) in others {
            checks.push(quote_spanned! {code.span()=>
                const _: () = ::core::assert!((#code) != (#other), "two variants have the same error code");
            });
        }
    }
    quote!(#(#checks)*)
}

fn render(krate: &syn::Path, ident: &Ident, variants: &[Variant]) -> TokenStream {
    let assertions = code_assertions(variants);
    let arms = variants.iter().map(|v| conversion_arm(krate, ident, v));
    let documented: Vec<TokenStream> = variants.iter().map(|v| documentation(krate, v)).collect();
    let names = variants.iter().map(|v| v.ident.unraw().to_string());
    let requested = Ident::new("variants", Span::mixed_site());
    let variant = Ident::new("variant", Span::mixed_site());
    let object = Ident::new("object", Span::mixed_site());
    let data = Ident::new("data", Span::mixed_site());
    // The variants with codes first: a pass-through variant may take any object.
    let coded = variants.iter().filter(|v| matches!(v.mapping, Mapping::Code(_)));
    let passed = variants.iter().filter(|v| matches!(v.mapping, Mapping::Transparent));
    let decoders = coded.chain(passed).map(|v| decoding(krate, ident, v));
    let error = Ident::new("error", Span::mixed_site());
    let message = Ident::new("message", Span::mixed_site());
    let list = Ident::new("errors", Span::mixed_site());
    quote! {
        #assertions

        impl ::core::convert::From<#ident> for #krate::ErrorObjectOwned {
            fn from(#error: #ident) -> Self {
                let #message = ::std::string::ToString::to_string(&#error);
                match #error {
                    #(#arms)*
                }
            }
        }

        impl #krate::contract::FromErrorObject for #ident {
            fn from_error_object(#object: &#krate::ErrorObjectOwned) -> ::core::option::Option<Self> {
                let #data = #krate::__private::data_value(#object);
                #(#decoders)*
                let _ = &#data;
                ::core::option::Option::None
            }
        }

        impl #krate::contract::DocumentedErrors for #ident {
            fn errors() -> ::std::vec::Vec<#krate::contract::ErrorInfo> {
                let mut #list = ::std::vec::Vec::new();
                #(#documented)*
                #list
            }

            fn errors_of(#requested: &[&str]) -> ::std::vec::Vec<#krate::contract::ErrorInfo> {
                let mut #list = ::std::vec::Vec::new();
                for #variant in #requested {
                    match *#variant {
                        #(#names => { #documented })*
                        _ => {}
                    }
                }
                #list
            }
        }
    }
}

/// The match arm turning one variant into its error object.
fn conversion_arm(krate: &syn::Path, ident: &Ident, variant: &Variant) -> TokenStream {
    let name = &variant.ident;
    let message = Ident::new("message", Span::mixed_site());
    let bindings: Vec<Ident> = match &variant.fields {
        Fields::Named(f) => f.named.iter().filter_map(|f| f.ident.clone()).collect(),
        Fields::Unnamed(f) => {
            (0..f.unnamed.len()).map(|i| format_ident!("__field{i}", span = Span::mixed_site())).collect()
        }
        Fields::Unit => Vec::new(),
    };
    let pattern = match &variant.fields {
        Fields::Named(_) => quote!(#ident::#name { #(#bindings),* }),
        Fields::Unnamed(_) => quote!(#ident::#name(#(#bindings),*)),
        Fields::Unit => quote!(#ident::#name),
    };
    let code = match &variant.mapping {
        Mapping::Code(code) => code,
        Mapping::Transparent => {
            let inner = &bindings[0];
            return quote!(#pattern => ::core::convert::Into::into(#inner),);
        }
        Mapping::Missing => return TokenStream::new(),
    };
    let object = match &variant.fields {
        Fields::Unit => {
            quote!(#krate::__private::error_object(#code, #message, ::core::option::Option::None::<()>))
        }
        Fields::Unnamed(_) => {
            let field = &bindings[0];
            quote!(#krate::__private::error_object(#code, #message, ::core::option::Option::Some(&#field)))
        }
        Fields::Named(fields) => {
            // A struct of references, so `data` keeps the fields' order.
            let types = fields.named.iter().map(|f| &f.ty);
            let serde = format!("{}::__private::serde", quote!(#krate).to_string().replace(' ', ""));
            quote!({
                #[derive(#krate::__private::serde::Serialize)]
                #[serde(crate = #serde)]
                struct __WsduplexErrorData<'__a> {
                    #(#bindings: &'__a #types,)*
                }
                #krate::__private::error_object(
                    #code,
                    #message,
                    ::core::option::Option::Some(__WsduplexErrorData { #(#bindings: &#bindings,)* }),
                )
            })
        }
    };
    quote!(#pattern => #object,)
}

/// The statement that returns the variant when the error object is one of
/// its own: its code and data that decodes into its fields, or (passed
/// through) an object its field's type decodes.
fn decoding(krate: &syn::Path, ident: &Ident, variant: &Variant) -> TokenStream {
    let object = Ident::new("object", Span::mixed_site());
    let data = Ident::new("data", Span::mixed_site());
    let name = &variant.ident;
    let types: Vec<_> = variant.fields.iter().map(|f| &f.ty).collect();
    let bindings: Vec<Ident> =
        (0..types.len()).map(|i| format_ident!("__field{i}", span = Span::mixed_site())).collect();
    let built = match &variant.fields {
        Fields::Named(fields) => {
            let names = fields.named.iter().map(|f| &f.ident);
            quote!(#ident::#name { #(#names: #bindings),* })
        }
        Fields::Unnamed(_) => quote!(#ident::#name(#(#bindings),*)),
        Fields::Unit => quote!(#ident::#name),
    };
    match &variant.mapping {
        Mapping::Code(code) => {
            let reads = variant.fields.iter().zip(&types).map(|(field, ty)| {
                let value = match &field.ident {
                    Some(key) => {
                        let key = key.unraw().to_string();
                        quote!(#krate::__private::data_member(&#data, #key))
                    }
                    None => quote!(&#data),
                };
                quote!({
                    use #krate::__private::{FieldOpaque as _, FieldViaSerde as _};
                    (&#krate::__private::Probe::<#ty>::new()).read(#value)
                })
            });
            quote! {
                if #object.code() == (#code) {
                    if let (#(::core::option::Option::Some(#bindings),)*) = (#(#reads,)*) {
                        return ::core::option::Option::Some(#built);
                    }
                }
            }
        }
        Mapping::Transparent => {
            let ty = types[0];
            let inner = &bindings[0];
            quote! {
                if let ::core::option::Option::Some(#inner) = {
                    use #krate::__private::{DecodeNothing as _, DecodeViaTrait as _};
                    (&#krate::__private::Probe::<#ty>::new()).decode(#object)
                } {
                    return ::core::option::Option::Some(#built);
                }
            }
        }
        Mapping::Missing => TokenStream::new(),
    }
}

/// The statement adding one variant's documented errors to the list.
fn documentation(krate: &syn::Path, variant: &Variant) -> TokenStream {
    let list = Ident::new("errors", Span::mixed_site());
    let name = variant.ident.unraw().to_string();
    let docs = &variant.docs;
    match &variant.mapping {
        Mapping::Code(code) => {
            let data = data_schema(krate, &variant.fields);
            quote! {
                #list.push(#krate::contract::ErrorInfo::new(#code, #name).with_docs(#docs) #data);
            }
        }
        Mapping::Transparent => {
            let ty = &variant.fields.iter().next().map(|f| f.ty.clone());
            quote! {
                ::core::iter::Extend::extend(&mut #list, {
                    use #krate::__private::{ErrorsUndocumented as _, ErrorsViaTrait as _};
                    (&#krate::__private::Probe::<#ty>::new()).documented_errors()
                });
            }
        }
        Mapping::Missing => TokenStream::new(),
    }
}

/// The schema of a variant's `data` (`.with_data(..)`): its one unnamed
/// field, or an object of its named fields; nothing for a unit variant.
fn data_schema(krate: &syn::Path, fields: &Fields) -> TokenStream {
    match fields {
        Fields::Unit => TokenStream::new(),
        Fields::Unnamed(f) => {
            let ty = &f.unnamed[0].ty;
            let at = attrs::crate_at(krate, ty.span());
            let schema = quote_spanned!(ty.span()=> #at::__private::schema_of::<#ty>);
            quote!(.with_data(#schema))
        }
        Fields::Named(f) => {
            let entries = f.named.iter().map(|field| {
                let key = field.ident.as_ref().map(|i| i.unraw().to_string()).unwrap_or_default();
                let ty = &field.ty;
                let required = !is_option(ty);
                let at = attrs::crate_at(krate, ty.span());
                let schema = quote_spanned!(ty.span()=> #at::__private::schema_of::<#ty>);
                quote!((#key, #schema as #krate::contract::SchemaFn, #required))
            });
            quote!(.with_data(|generator: &mut #krate::contract::schemars::SchemaGenerator| {
                #krate::__private::object_schema(generator, &[#(#entries),*])
            }))
        }
    }
}
