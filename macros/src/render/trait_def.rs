use proc_macro2::TokenStream;
use quote::quote;
use syn::ReturnType;

use crate::model::{Contract, Method};

/// The user's trait, with `async fn` turned into methods returning `Send`
/// futures (so services run on a multi-threaded runtime) and `into_service`
/// (left out when a contract method has that name: `ServeX::new` does the same).
pub fn trait_def(contract: &Contract) -> TokenStream {
    let item = &contract.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let ident = &item.ident;
    let serve = contract.serve_ident();
    let methods = contract.methods.iter().map(method);
    let into_service = (!contract.has_method("into_service")).then(|| {
        quote! {
            /// Binds this implementation to its contract, ready to answer calls
            /// on one connection.
            fn into_service(self) -> #serve<Self>
            where
                Self: ::core::marker::Sized,
            {
                #serve::new(self)
            }
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
            #into_service
        }
    }
}

fn method(method: &Method) -> TokenStream {
    let attrs = &method.item.attrs;
    let sig = &method.item.sig;
    let ident = &sig.ident;
    let inputs = &sig.inputs;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let body = match &method.item.default {
        Some(block) => quote!({ async move #block }),
        None => quote!(;),
    };
    quote! {
        #(#attrs)*
        fn #ident(#inputs) -> impl ::core::future::Future<Output = #output> + ::core::marker::Send #body
    }
}
