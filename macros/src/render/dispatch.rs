use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::local;
use crate::model::{Contract, Method, Returns};

/// `Dispatch<S>` for every `S` implementing the contract: one match arm per
/// method, each handing the decoding and reply to `wsduplex::__private::handle`.
pub fn dispatch_impl(contract: &Contract) -> TokenStream {
    let stub = contract.stub_ident();
    let contract_trait = contract.ident();
    let service = local("service");
    let method = local("method");
    let call = local("call");
    let arms = contract.methods.iter().map(|m| arm(contract, m));
    quote! {
        impl<__S: #contract_trait, __C> ::wsduplex::Dispatch<__S> for #stub<__C> {
            fn dispatch<'a>(
                #service: &::std::sync::Arc<__S>,
                #method: &str,
                #call: ::wsduplex::__private::IncomingCall<'a>,
            ) -> ::core::result::Result<::wsduplex::__private::HandlerFuture, ::wsduplex::__private::IncomingCall<'a>> {
                match #method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#call),
                }
            }
        }
    }
}

fn arm(contract: &Contract, method: &Method) -> TokenStream {
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
            let assertion = quote_spanned! {ty.span()=>
                <#ty as ::wsduplex::__private::ReturnTypeIsAResultAlias<_>>::assert_not_a_result();
            };
            quote!({
                #assertion
                ::core::result::Result::<_, ::core::convert::Infallible>::Ok(#invoke)
            })
        }
    };
    quote! {
        #wire => ::core::result::Result::Ok(::wsduplex::__private::handle(
            #service,
            #wire,
            #call,
            &[#(#names),*],
            |#service: ::std::sync::Arc<__S>, (#(#idents,)*): (#(#types,)*)| async move { #reply },
        )),
    }
}
