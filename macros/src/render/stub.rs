use proc_macro2::TokenStream;
use quote::quote;

use super::{error_type, local, ok_type};
use crate::model::{Contract, Kind, Method, Returns};

/// `XClient<C>`: the typed stub that calls a remote implementor of `X`.
pub fn stub_struct(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let vis = &contract.item.vis;
    let ident = contract.ident();
    let stub = contract.stub_ident();
    let (default_caller, role) = match contract.kind {
        Kind::Service => {
            (quote!(#krate::Client), "A client calls a server with it: `connect` makes one over a new connection.")
        }
        Kind::Callback => (
            quote!(#krate::Peer),
            "A server calls its clients back with it: each `Connection` carries one, and a `Hub` makes them for groups.",
        ),
    };
    let doc = format!(
        "Typed stub of the [`{ident}`] contract: each method sends one JSON-RPC message to the peer that implements `{ident}`.\n\n{role} `C` is what it sends through; one-way methods need `C: OneWay`, the others `C: TwoWay`."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #stub<C = #default_caller> {
            caller: C,
            timeout: ::core::option::Option<::core::time::Duration>,
        }
    }
}

/// Constructors and settings every stub has, as inherent functions that
/// delegate to the `Contract` trait. One whose name a contract method takes
/// is left out (the method wins); the trait's function still does its job.
pub fn stub_basics(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let stub = contract.stub_ident();
    let ident = contract.ident();
    let contract_doc = format!(
        "The `{ident}` contract's metadata: methods, parameters, schemas and docs (for `wsduplex::codegen`: OpenRPC and TypeScript)."
    );
    let unless_taken = |name: &str, tokens: TokenStream| (!contract.has_method(name)).then_some(tokens);
    let info = unless_taken(
        "contract",
        quote! {
            impl #stub {
                #[doc = #contract_doc]
                pub fn contract() -> &'static #krate::contract::ContractInfo {
                    <Self as #krate::contract::Contract>::info()
                }
            }
        },
    );
    let new = unless_taken(
        "new",
        quote! {
            /// Wraps a caller: a `wsduplex::Client` or `Peer`, a hub target, or a
            /// jsonrpsee client in `wsduplex::interop::Jsonrpsee`.
            pub fn new(caller: __C) -> Self {
                <Self as #krate::contract::Contract>::from_caller(caller)
            }
        },
    );
    let caller = unless_taken(
        "caller",
        quote! {
            /// What this stub sends through.
            pub fn caller(&self) -> &__C {
                <Self as #krate::contract::Contract>::caller(self)
            }
        },
    );
    let with_timeout = unless_taken(
        "with_timeout",
        quote! {
            /// A copy of this stub whose calls fail with `Error::Timeout` after
            /// `timeout`, instead of the caller's default deadline.
            pub fn with_timeout(&self, timeout: ::core::time::Duration) -> Self
            where
                __C: ::core::clone::Clone,
            {
                <Self as #krate::contract::Contract>::with_timeout(self, timeout)
            }
        },
    );
    quote! {
        #info

        impl<__C> #stub<__C> {
            #new
            #caller
            #with_timeout
        }
    }
}

/// The contract's methods on the stub, each bound by what its caller must
/// support. The bound sits on the method, not on the impl block, so a call
/// through a caller without replies (a hub's fan-out) is an unmet `TwoWay`
/// bound, which `TwoWay`'s diagnostic explains, not a missing method.
pub fn stub_methods(contract: &Contract) -> TokenStream {
    let stub = contract.stub_ident();
    let methods = contract.methods.iter().map(|m| stub_method(&contract.krate, m));
    quote! {
        impl<__C> #stub<__C> {
            #(#methods)*
        }
    }
}

fn stub_method(krate: &syn::Path, method: &Method) -> TokenStream {
    let docs = method.item.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let ident = method.ident();
    let wire = &method.wire_name;
    let names = method.params.iter().map(|p| p.wire_name());
    let idents: Vec<_> = method.params.iter().map(|p| &p.ident).collect();
    // A stream parameter takes any stream, sent as an `Outgoing`.
    let types = method.params.iter().map(|p| match p.stream_item() {
        Some(item) => quote!(impl #krate::stream::IntoOutgoing<#item>),
        None => {
            let ty = &p.ty;
            quote!(#ty)
        }
    });
    let streams = method.params.iter().filter(|p| p.stream_item().is_some()).map(|p| {
        let ident = &p.ident;
        quote!(let #ident = #krate::stream::IntoOutgoing::into_outgoing(#ident);)
    });
    let params = quote!(#krate::__private::ByName(&[#(#names),*], (#(&#idents,)*)));
    let call = quote!(#krate::contract::TwoWay::call(&self.caller, #wire, #params, self.timeout).await);
    let ok = ok_type(krate, method);
    let (note, send, returns, bound) = match (method.oneway, &method.returns) {
        (Some(_), _) => (
            format!("Sends `{wire}` one-way: returns once the message is queued."),
            quote!(#krate::contract::OneWay::notify(&self.caller, #wire, #params).await),
            quote!(::core::result::Result<(), #krate::Error>),
            quote!(#krate::contract::OneWay),
        ),
        // The method's own error comes back decoded, when its type can decode.
        (None, Returns::Fallible { .. }) => {
            let error = error_type(krate, method);
            let error_local = local("error");
            (
                format!(
                    "Calls `{wire}` and awaits the reply; the method's own errors come back as `CallError::Method`."
                ),
                quote! {
                    match #call {
                        ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                        ::core::result::Result::Err(#error_local) => ::core::result::Result::Err({
                            use #krate::__private::{DecodeNothing as _, DecodeViaTrait as _};
                            (&#krate::__private::Probe::<#error>::new()).call_error(#error_local)
                        }),
                    }
                },
                quote!(::core::result::Result<#ok, #krate::CallError<#error>>),
                quote!(#krate::contract::TwoWay),
            )
        }
        (None, _) => (
            format!("Calls `{wire}` and awaits the reply."),
            call,
            quote!(::core::result::Result<#ok, #krate::Error>),
            quote!(#krate::contract::TwoWay),
        ),
    };
    quote! {
        #(#docs)*
        #[doc = ""]
        #[doc = #note]
        pub async fn #ident(&self, #(#idents: #types),*) -> #returns
        where
            __C: #bound,
        {
            #(#streams)*
            #send
        }
    }
}
