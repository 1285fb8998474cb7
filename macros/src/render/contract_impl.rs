use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::{callback_alias, error_type, ok_type, type_text};
use crate::attrs::crate_at;
use crate::model::{Contract, Kind, Method};

/// `Contract` for the stub, with the metadata recorded at compile time.
pub fn contract_impl(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let stub = contract.stub_ident();
    let info = info(contract);
    quote! {
        impl<__C> #krate::contract::Contract for #stub<__C> {
            type Caller = __C;
            type Stub<__T> = #stub<__T>;

            fn from_caller(caller: __C) -> Self {
                #stub { caller, timeout: ::core::option::Option::None }
            }

            fn caller(&self) -> &__C {
                &self.caller
            }

            fn with_timeout(&self, timeout: ::core::time::Duration) -> Self
            where
                __C: ::core::clone::Clone,
            {
                #stub { caller: ::core::clone::Clone::clone(&self.caller), timeout: ::core::option::Option::Some(timeout) }
            }

            fn info() -> &'static #krate::contract::ContractInfo {
                static INFO: #krate::contract::ContractInfo = #info;
                &INFO
            }
        }
    }
}

/// Leads from the stub to `ServeX`, so a service's `connect` can serve a
/// handler of its callback contract; and marks a callback contract's stub,
/// so `#[service(callback = X)]` can check `X`.
pub fn kind_impl(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let stub = contract.stub_ident();
    let serve = contract.serve_ident();
    let contract_trait = contract.ident();
    let marker = (contract.kind == Kind::Callback).then(|| {
        quote! {
            impl<__C> #krate::__private::CallbackContract for #stub<__C> {}
        }
    });
    quote! {
        impl<__C, __H: #contract_trait> #krate::__private::ServeWith<__H> for #stub<__C> {
            type Serve = #serve<__H>;
            fn serve(handler: __H) -> #serve<__H> {
                #serve::new(handler)
            }
        }

        #marker
    }
}

fn info(contract: &Contract) -> TokenStream {
    let krate = &contract.krate;
    let name = contract.ident().to_string();
    let namespace = contract.namespace.as_ref().map(|ns| quote!(.with_namespace(#ns)));
    let kind = match contract.kind {
        Kind::Service => quote!(#krate::contract::ContractKind::Service),
        Kind::Callback => quote!(#krate::contract::ContractKind::Callback),
    };
    let docs = &contract.docs;
    let methods = contract.methods.iter().map(|m| method_info(krate, m));
    let callback = match (&contract.callback, contract.kind) {
        (Some(_), Kind::Service) => {
            let alias = callback_alias(contract);
            Some(quote!(.with_callback(<#alias as #krate::contract::Contract>::info)))
        }
        _ => None,
    };
    quote! {
        #krate::contract::ContractInfo::new(#name, #kind)
            #namespace
            .with_docs(#docs)
            .with_version(::core::env!("CARGO_PKG_VERSION"))
            .with_methods(&[#(#methods),*])
            #callback
    }
}

fn method_info(krate: &syn::Path, method: &Method) -> TokenStream {
    let name = method.ident().to_string();
    let wire = &method.wire_name;
    let params = method.params.iter().map(|p| {
        let name = p.wire_name();
        let ty = &p.ty;
        let text = type_text(ty.to_token_stream());
        let at = crate_at(krate, ty.span());
        let schema = quote_spanned!(ty.span()=> #at::__private::schema_of::<#ty>);
        let optional = p.is_option();
        quote!(#krate::contract::ParamInfo::new(#name, #text, #schema, #optional))
    });
    // Spanned at the return type, so a type that cannot be a reply or has no
    // schema is reported there, once.
    let ret_span = match &method.item.sig.output {
        syn::ReturnType::Default => method.ident().span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let ok = ok_type(krate, method);
    let error = error_type(krate, method);
    let at = crate_at(krate, ret_span);
    let result = quote_spanned!(ret_span=> #at::__private::schema_of::<#ok>);
    let documented = documented_errors(krate, method, &error, ret_span);
    let returns = match &method.item.sig.output {
        syn::ReturnType::Default => "()".to_owned(),
        syn::ReturnType::Type(_, ty) => type_text(ty.to_token_stream()),
    };
    let oneway = method.oneway.map(|_| quote!(.oneway()));
    let roles = method.authorize.as_ref().map(|(roles, _)| quote!(.with_roles(&[#(#roles),*])));
    let docs = &method.docs;
    quote! {
        #krate::contract::MethodInfo::new(#name, #wire, #result, || #documented)
        .with_params(&[#(#params),*])
        .with_returns(#returns)
        #oneway
        #roles
        .with_docs(#docs)
    }
}

/// The errors a method documents: the variants its `#[errors(..)]` names
/// (each checked to exist, at its name), or all of its error type's.
fn documented_errors(krate: &syn::Path, method: &Method, error: &TokenStream, ret_span: Span) -> TokenStream {
    let at = crate_at(krate, ret_span);
    let (Some(listed), Some(written)) = (&method.errors, method.returns.written_error()) else {
        let errors = quote_spanned!(ret_span=> #at::__private::Probe::<#error>::new());
        return quote!({
            use #krate::__private::{ErrorsUndocumented as _, ErrorsViaTrait as _};
            (&#errors).documented_errors()
        });
    };
    let names = listed.variants.iter().map(|v| v.unraw().to_string());
    let patterns = listed.variants.iter().map(|v| quote_spanned!(v.span()=> #written::#v { .. }));
    let exists = (!listed.variants.is_empty()).then(|| {
        // `{ .. }` matches every kind of variant; only the names are checked.
        quote! {
            #[allow(clippy::unneeded_struct_pattern)]
            let _ = |error: &#written| ::core::matches!(error, #(#patterns)|*);
        }
    });
    let span = listed.attr.span();
    let at = crate_at(krate, span);
    let lister = quote_spanned!(span=> <#written as #at::contract::DocumentedErrors>::errors_of);
    quote!({
        #exists
        #lister(&[#(#names),*])
    })
}
