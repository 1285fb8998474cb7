use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use super::{callback_alias, type_text};
use crate::model::{Contract, Kind, Method};

/// `Contract` for the stub, with the metadata recorded at compile time.
pub fn contract_impl(contract: &Contract) -> TokenStream {
    let stub = contract.stub_ident();
    let info = info(contract);
    quote! {
        impl<__C> ::wsduplex::Contract for #stub<__C> {
            type Caller = __C;
            type Stub<__T> = #stub<__T>;

            fn from_caller(caller: __C) -> Self {
                #stub::new(caller)
            }

            fn info() -> &'static ::wsduplex::ContractInfo {
                static INFO: ::wsduplex::ContractInfo = #info;
                &INFO
            }
        }
    }
}

/// `ServiceContract` (naming the callback stub) or the callback marker.
pub fn kind_impl(contract: &Contract) -> TokenStream {
    let stub = contract.stub_ident();
    match contract.kind {
        Kind::Service => {
            let callback = match &contract.callback {
                Some(_) => {
                    let alias = callback_alias(contract);
                    quote!(#alias)
                }
                None => quote!(::wsduplex::NoCallbacks),
            };
            quote! {
                impl<__C> ::wsduplex::ServiceContract for #stub<__C> {
                    type Callback = #callback;
                }
            }
        }
        Kind::Callback => quote! {
            impl<__C> ::wsduplex::__private::CallbackContract for #stub<__C> {}
        },
    }
}

fn info(contract: &Contract) -> TokenStream {
    let name = contract.ident().to_string();
    let namespace = match &contract.namespace {
        Some(ns) => quote!(::core::option::Option::Some(#ns)),
        None => quote!(::core::option::Option::None),
    };
    let kind = match contract.kind {
        Kind::Service => quote!(::wsduplex::ContractKind::Service),
        Kind::Callback => quote!(::wsduplex::ContractKind::Callback),
    };
    let docs = &contract.docs;
    let methods = contract.methods.iter().map(method_info);
    quote! {
        ::wsduplex::ContractInfo {
            name: #name,
            namespace: #namespace,
            kind: #kind,
            docs: #docs,
            methods: &[#(#methods),*],
        }
    }
}

fn method_info(method: &Method) -> TokenStream {
    let name = method.ident().to_string();
    let wire = &method.wire_name;
    let params = method.params.iter().map(|p| {
        let name = p.wire_name();
        let ty = type_text(p.ty.to_token_stream());
        quote!(::wsduplex::ParamInfo { name: #name, ty: #ty })
    });
    let returns = match &method.item.sig.output {
        syn::ReturnType::Default => "()".to_owned(),
        syn::ReturnType::Type(_, ty) => type_text(ty.to_token_stream()),
    };
    let oneway = method.oneway.is_some();
    let docs = &method.docs;
    quote! {
        ::wsduplex::MethodInfo {
            name: #name,
            wire_name: #wire,
            params: &[#(#params),*],
            returns: #returns,
            oneway: #oneway,
            docs: #docs,
        }
    }
}
