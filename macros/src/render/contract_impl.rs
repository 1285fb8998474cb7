use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{callback_alias, error_type, ok_type, type_text};
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
    let callback = match (&contract.callback, contract.kind) {
        (Some(_), Kind::Service) => {
            let alias = callback_alias(contract);
            quote!(::core::option::Option::Some(<#alias as ::wsduplex::Contract>::info))
        }
        _ => quote!(::core::option::Option::None),
    };
    quote! {
        ::wsduplex::ContractInfo {
            name: #name,
            namespace: #namespace,
            kind: #kind,
            docs: #docs,
            version: ::core::env!("CARGO_PKG_VERSION"),
            methods: &[#(#methods),*],
            callback: #callback,
        }
    }
}

fn method_info(method: &Method) -> TokenStream {
    let name = method.ident().to_string();
    let wire = &method.wire_name;
    let params = method.params.iter().map(|p| {
        let name = p.wire_name();
        let ty = &p.ty;
        let text = type_text(ty.to_token_stream());
        let schema = quote_spanned!(ty.span()=> ::wsduplex::__private::schema_of::<#ty>);
        let optional = p.is_option();
        quote!(::wsduplex::ParamInfo { name: #name, ty: #text, schema: #schema, optional: #optional })
    });
    // Spanned at the return type, so a type that cannot be a reply or has no
    // schema is reported there, once.
    let ret_span = match &method.item.sig.output {
        syn::ReturnType::Default => method.ident().span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let ok = ok_type(method);
    let error = error_type(method);
    let result = quote_spanned!(ret_span=> ::wsduplex::__private::schema_of::<#ok>);
    let errors = quote_spanned!(ret_span=> ::wsduplex::__private::ErrorsOf::<#error>::new());
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
            result: #result,
            errors: || {
                use ::wsduplex::__private::{ErrorsUndocumented as _, ErrorsViaTrait as _};
                (&#errors).documented_errors()
            },
            oneway: #oneway,
            docs: #docs,
        }
    }
}
