//! Procedural macros for [wsduplex](https://docs.rs/wsduplex): `#[service]` and
//! `#[callback]`. Use them through the `wsduplex` crate, which re-exports them
//! and documents them with examples.
//!
//! Each runs parse → model → check → render: `attrs` reads arguments,
//! `model` keeps the trait's syn nodes, `check` gathers every validation error,
//! and `render` emits one item per function. On error the user's trait is
//! emitted unchanged but for our attributes, so there is no cascade of errors.

mod attrs;
mod check;
mod model;
mod render;
mod rpc_error;

use proc_macro::TokenStream;

use crate::model::Kind;

/// Declares a service contract. See `wsduplex::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Service, args.into(), item.into()).into()
}

/// Declares a callback contract. See `wsduplex::callback`.
#[proc_macro_attribute]
pub fn callback(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Callback, args.into(), item.into()).into()
}

/// Derives the error object and documented codes of an error enum. See `wsduplex::RpcError`.
#[proc_macro_derive(RpcError, attributes(rpc))]
pub fn derive_rpc_error(input: TokenStream) -> TokenStream {
    rpc_error::derive(input.into()).into()
}

fn expand(kind: Kind, args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let item = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Trait(item)) => item,
        Ok(other) => {
            let message = format!("#[wsduplex::{}] goes on a trait", kind.macro_name());
            let error = syn::Error::new_spanned(item_keyword(&other), message).to_compile_error();
            return quote::quote!(#error #other);
        }
        Err(e) => {
            let error = e.to_compile_error();
            return quote::quote!(#error #item);
        }
    };
    let mut errors = check::Errors::default();
    let args = attrs::ContractArgs::parse(kind, args, &mut errors);
    let contract = model::Contract::new(kind, args, item, &mut errors);
    check::contract(&contract, &mut errors);
    match errors.combine() {
        Some(error) => {
            let error = error.to_compile_error();
            let stripped = render::stripped_trait(&contract);
            quote::quote!(#error #stripped)
        }
        None => render::contract(&contract),
    }
}

/// The tokens to point at when the item is not a trait: its keyword, roughly.
fn item_keyword(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::ToTokens;
    match item {
        syn::Item::Struct(s) => s.struct_token.to_token_stream(),
        syn::Item::Enum(e) => e.enum_token.to_token_stream(),
        syn::Item::Fn(f) => f.sig.fn_token.to_token_stream(),
        syn::Item::Impl(i) => i.impl_token.to_token_stream(),
        syn::Item::Mod(m) => m.mod_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}
