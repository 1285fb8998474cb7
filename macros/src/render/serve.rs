use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{callback_alias, local};
use crate::attrs::crate_at;
use crate::model::{Contract, Kind, Method, Returns};

/// `ServeX<S>`: the server-side type that answers calls with an
/// implementation `S` of `X` (the stub `XClient` only calls).
pub fn serve_struct(contract: &Contract) -> TokenStream {
    let vis = &contract.item.vis;
    let ident = contract.ident();
    let serve = contract.serve_ident();
    let doc = format!(
        "Answers calls to the [`{ident}`] contract with an implementation `S`, one instance per connection.\n\n\
         Made by `{ident}::into_service` or [`{serve}::new`]; a server's factory returns one for each \
         connection, and a client serves its callbacks with one."
    );
    quote! {
        #[doc = #doc]
        #vis struct #serve<S>(::std::sync::Arc<S>);

        impl<S> #serve<S> {
            /// Binds `service` to the contract.
            pub fn new(service: S) -> Self {
                #serve(::std::sync::Arc::new(service))
            }

            /// The implementation.
            pub fn service(&self) -> &::std::sync::Arc<S> {
                &self.0
            }
        }

        /// Another handle to the same implementation (a reconnecting client
        /// serves each of its connections with it).
        impl<S> ::core::clone::Clone for #serve<S> {
            fn clone(&self) -> Self {
                #serve(::core::clone::Clone::clone(&self.0))
            }
        }

        impl<S> ::core::fmt::Debug for #serve<S> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#serve))
            }
        }
    }
}

/// `Serve` for `ServeX<S>`: one match arm per method, each handing the
/// decoding and reply to `wsduplex::__private::handle`.
pub fn serve_impl(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let stub = contract.stub_ident();
    let serve = contract.serve_ident();
    let contract_trait = contract.ident();
    let service = local("service");
    let method = local("method");
    let call = local("call");
    let callback = match (&contract.callback, contract.kind) {
        (Some(_), Kind::Service) => {
            let alias = callback_alias(contract);
            quote!(#alias)
        }
        _ => quote!(#krate::contract::NoCallbacks),
    };
    let arms = contract.methods.iter().map(|m| arm(contract, m));
    quote! {
        impl<__S: #contract_trait> #krate::contract::Serve for #serve<__S> {
            type Contract = #stub;
            type Callback = #callback;

            fn dispatch<'a>(
                &self,
                #method: &str,
                #call: #krate::__private::IncomingCall<'a>,
            ) -> ::core::result::Result<#krate::__private::HandlerFuture, #krate::__private::IncomingCall<'a>> {
                let #service = &self.0;
                match #method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#call),
                }
            }
        }
    }
}

fn arm(contract: &Contract, method: &Method) -> TokenStream {
    let krate = &contract.krate;
    let contract_trait = contract.ident();
    let service = local("service");
    let call = local("call");
    let wire = &method.wire_name;
    let rust_name = method.ident();
    let names = method.params.iter().map(|p| p.wire_name());
    let idents: Vec<_> = method.params.iter().map(|p| &p.ident).collect();
    let types = method.params.iter().map(|p| &p.ty);
    let invoke = quote!(<__S as #contract_trait>::#rust_name(&#service, #(#idents),*).await);
    let reply = match &method.returns {
        Returns::Fallible { .. } => invoke,
        Returns::Unit => quote!(::core::result::Result::<_, ::core::convert::Infallible>::Ok(#invoke)),
        Returns::Value(ty) => {
            // A `Result` under another name would be sent as `{"Ok": …}`: refuse it at compile time.
            let at = crate_at(krate, ty.span());
            let assertion = quote_spanned! {ty.span()=>
                <#ty as #at::__private::ReturnTypeIsAResultAlias<_>>::assert_not_a_result();
            };
            quote!({
                #assertion
                ::core::result::Result::<_, ::core::convert::Infallible>::Ok(#invoke)
            })
        }
    };
    let roles = method.authorize.iter().flat_map(|(roles, _)| roles);
    quote! {
        #wire => ::core::result::Result::Ok(#krate::__private::handle(
            #service,
            #wire,
            #call,
            &[#(#roles),*],
            &[#(#names),*],
            |#service: ::std::sync::Arc<__S>, (#(#idents,)*): (#(#types,)*)| async move { #reply },
        )),
    }
}
