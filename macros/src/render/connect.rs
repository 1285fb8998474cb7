use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::callback_alias;
use crate::model::{Contract, Kind, stub_path};

/// `connect` and `connect_with` on a service's stub.
pub fn connect_impl(contract: &Contract) -> TokenStream {
    if contract.kind != Kind::Service {
        return TokenStream::new();
    }
    let stub = contract.stub_ident();
    let ident = contract.ident();
    match &contract.callback {
        Some(callback) => {
            let alias = callback_alias(contract);
            let doc = format!(
                "Connects to a `{ident}` server at `url` (`ws://host:port/path`); `handler` answers the server's callbacks."
            );
            quote! {
                impl #stub<::wsduplex::Client> {
                    #[doc = #doc]
                    pub async fn connect<__H: #callback>(url: &str, handler: __H) -> ::core::result::Result<Self, ::wsduplex::Error> {
                        Self::connect_with(::wsduplex::Client::builder(), url, handler).await
                    }

                    /// Like `connect`, with the client's settings (deadline, headers, limits).
                    pub async fn connect_with<__H: #callback>(
                        builder: ::wsduplex::ClientBuilder,
                        url: &str,
                        handler: __H,
                    ) -> ::core::result::Result<Self, ::wsduplex::Error> {
                        let handler = ::wsduplex::ServiceInstance::<#alias, __H>::new(handler);
                        let client = builder.connect(url, handler).await?;
                        ::core::result::Result::Ok(Self::new(client))
                    }
                }
            }
        }
        None => {
            let doc = format!("Connects to a `{ident}` server at `url` (`ws://host:port/path`).");
            quote! {
                impl #stub<::wsduplex::Client> {
                    #[doc = #doc]
                    pub async fn connect(url: &str) -> ::core::result::Result<Self, ::wsduplex::Error> {
                        Self::connect_with(::wsduplex::Client::builder(), url).await
                    }

                    /// Like `connect`, with the client's settings (deadline, headers, limits).
                    pub async fn connect_with(
                        builder: ::wsduplex::ClientBuilder,
                        url: &str,
                    ) -> ::core::result::Result<Self, ::wsduplex::Error> {
                        let client = builder.connect(url, ::wsduplex::NoCallbacks::service()).await?;
                        ::core::result::Result::Ok(Self::new(client))
                    }
                }
            }
        }
    }
}

/// The callback stub's alias, and a compile-time check, pointing at
/// `callback = X`, that `X` was declared with `#[wsduplex::callback]`.
pub fn callback_check(contract: &Contract) -> TokenStream {
    let Some(callback) = &contract.callback else { return TokenStream::new() };
    let stub = stub_path(callback);
    // Spanned at the path, so the check's error points at `callback = X`.
    let alias = syn::Ident::new(&callback_alias(contract).to_string(), callback.span());
    quote_spanned! {callback.span()=>
        #[doc(hidden)]
        type #alias = #stub<::wsduplex::Peer>;

        const _: () = {
            fn callback_contract<T: ::wsduplex::__private::CallbackContract>() {}
            let _ = callback_contract::<#alias>;
        };
    }
}
