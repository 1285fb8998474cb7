use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::callback_alias;
use crate::attrs::crate_at;
use crate::model::{Contract, Kind, stub_path};

/// `connect` and `connect_with` on a service's stub, each left out when a
/// contract method takes its name (`ClientBuilder::connect` and
/// `Contract::from_caller` do the same).
pub fn connect_impl(contract: &Contract) -> TokenStream {
    if contract.kind != Kind::Service {
        return TokenStream::new();
    }
    let krate = &contract.krate;
    let stub = contract.stub_ident();
    let ident = contract.ident();
    let (handler_param, serving, doc) = match &contract.callback {
        Some(callback) => {
            // Through the callback stub's alias, so a wrong `callback = X` is reported once.
            let alias = callback_alias(contract);
            (
                quote!(handler: impl #callback,),
                quote!(<#alias as #krate::__private::ServeWith<_>>::serve(handler)),
                format!(
                    "Connects to a `{ident}` server at `url` (`ws://host:port/path`); `handler` answers the server's callbacks."
                ),
            )
        }
        None => (
            TokenStream::new(),
            quote!(#krate::contract::NoCallbacks::service()),
            format!("Connects to a `{ident}` server at `url` (`ws://host:port/path`)."),
        ),
    };
    let connect = (!contract.has_method("connect")).then(|| {
        quote! {
            #[doc = #doc]
            pub async fn connect(url: &str, #handler_param) -> ::core::result::Result<Self, #krate::Error> {
                let client = #krate::Client::builder().connect(url, #serving).await?;
                ::core::result::Result::Ok(<Self as #krate::contract::Contract>::from_caller(client))
            }
        }
    });
    let connect_with = (!contract.has_method("connect_with")).then(|| {
        quote! {
            /// Like `connect`, with the client's settings (deadline, headers, limits).
            pub async fn connect_with(
                builder: #krate::client::ClientBuilder,
                url: &str,
                #handler_param
            ) -> ::core::result::Result<Self, #krate::Error> {
                let client = builder.connect(url, #serving).await?;
                ::core::result::Result::Ok(<Self as #krate::contract::Contract>::from_caller(client))
            }
        }
    });
    quote! {
        impl #stub<#krate::Client> {
            #connect
            #connect_with
        }
    }
}

/// The callback stub's alias, and a compile-time check, pointing at
/// `callback = X`, that `X` was declared with `#[wsduplex::callback]`.
pub fn callback_check(contract: &Contract) -> TokenStream {
    let Some(callback) = &contract.callback else { return TokenStream::new() };
    let krate = crate_at(&contract.krate, callback.span());
    let stub = stub_path(callback);
    // Spanned at the path, so the check's error points at `callback = X`.
    let alias = syn::Ident::new(&callback_alias(contract).to_string(), callback.span());
    quote_spanned! {callback.span()=>
        #[doc(hidden)]
        type #alias = #stub<#krate::Peer>;

        const _: () = {
            fn callback_contract<T: #krate::__private::CallbackContract>() {}
            let _ = callback_contract::<#alias>;
        };
    }
}
