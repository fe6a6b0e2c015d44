//! The call record, its event type, request and response enums.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{variant, Names};
use crate::ir::Spec;

pub(super) fn generate(spec: &Spec, names: &Names) -> TokenStream {
    let Names {
        call,
        event,
        status,
        request,
        response,
        ..
    } = names;
    let integration_name = &spec.integration.name;
    let call_endpoints: Vec<_> = spec.call_endpoints().collect();

    let request_variants = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        let doc = format!(" Parameters of `{}` ({} {}).", e.name, e.method.as_str(), e.path_text);
        let name = &e.name;
        quote!(#[doc = #doc] #[serde(rename = #name)] #v(#entity),)
    });
    let request_endpoint_arms = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let name = &e.name;
        quote!(#request::#v(_) => #name,)
    });
    let request_params_arms = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        quote!(#request::#v(params) => __rt::to_value(&params),)
    });
    // A request entity used by exactly one endpoint can start calls on its own.
    let single_use = call_endpoints
        .iter()
        .filter(|e| call_endpoints.iter().filter(|o| o.request == e.request).count() == 1);
    let entity_impls = single_use.map(|e| {
        let v = variant(&e.name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        let name = &e.name;
        quote! {
            impl __rt::From<#entity> for #request {
                fn from(params: #entity) -> Self {
                    #request::#v(params)
                }
            }

            impl __rt::IntoCall for #entity {
                const INTEGRATION: &'static str = #integration_name;
                fn endpoint(&self) -> &'static str {
                    #name
                }
                fn into_params(self) -> __rt::serde_json::Value {
                    __rt::to_value(&self)
                }
            }
        }
    });

    let response_variants = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let ty = response_type(spec, e);
        let doc = format!(" Result of a `{}` call.", e.name);
        quote!(#[doc = #doc] #v(#ty),)
    });
    let from_result = from_result(integration_name, &call_endpoints, response);

    let request_doc = format!(
        " The typed request parameters of a `{integration_name}` call, one variant per endpoint that starts calls."
    );
    let response_doc = format!(" The typed response data of a finished `{integration_name}` call.");
    let call_doc = format!(" One call to `{integration_name}`: the record business code creates and the runtime drives to a terminal state.");
    let event_doc = format!(
        " A lifecycle event of a `{integration_name}` call: `initialized -> processing -> completed | failed`."
    );
    let status_doc = format!(" Where a `{integration_name}` call is in its lifecycle.");

    quote! {
        #[doc = #status_doc]
        pub type #status = __rt::CallStatus;

        #[doc = #request_doc]
        #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
        #[serde(crate = "::integration_runtime::__private::serde", tag = "endpoint", content = "params")]
        pub enum #request {
            #(#request_variants)*
        }

        impl __rt::CallRequest for #request {
            const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
        }

        impl __rt::IntoCall for #request {
            const INTEGRATION: &'static str = #integration_name;
            fn endpoint(&self) -> &'static str {
                match *self {
                    #(#request_endpoint_arms)*
                }
            }
            fn into_params(self) -> __rt::serde_json::Value {
                match self {
                    #(#request_params_arms)*
                }
            }
        }

        #(#entity_impls)*

        #[doc = #response_doc]
        #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
        #[serde(crate = "::integration_runtime::__private::serde", untagged)]
        pub enum #response {
            #(#response_variants)*
        }

        impl __rt::CallResponse for #response {
            fn from_result(endpoint: &str, value: &__rt::serde_json::Value) -> __rt::Result<Self, __rt::ClientError> {
                #from_result
            }
        }

        #[doc = #call_doc]
        pub type #call = __rt::Call<#request, #response>;

        #[doc = #event_doc]
        pub type #event = __rt::Event<#response>;
    }
}

/// The body of `from_result`: reads stored response data (`value`) as the
/// variant of `response` for the call's endpoint. (The request enum needs no
/// such match: it is tagged by endpoint, so serde reads it.)
fn from_result(
    integration_name: &str,
    call_endpoints: &[&crate::ir::Endpoint],
    response: &proc_macro2::Ident,
) -> TokenStream {
    // A spec whose endpoints start no calls (only listings and queries) has
    // empty enums: a match over them would be unreachable code.
    if call_endpoints.is_empty() {
        return quote! {
            let _ = value;
            __rt::Err(__rt::unknown_endpoint(#integration_name, endpoint))
        };
    }
    let arms = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let name = &e.name;
        quote!(#name => __rt::read_stored(endpoint, value, "stored response data").map(#response::#v),)
    });
    quote! {
        match endpoint {
            #(#arms)*
            _ => __rt::Err(__rt::unknown_endpoint(#integration_name, endpoint)),
        }
    }
}

/// The typed response data of a call of `endpoint`: its result entity, or
/// plain JSON when the spec extracts none.
pub(super) fn response_type(spec: &Spec, endpoint: &crate::ir::Endpoint) -> TokenStream {
    match spec.response_entity(endpoint) {
        Some(entity) => {
            let entity = format_ident!("{}", entity);
            quote!(#entity)
        }
        None => quote!(__rt::serde_json::Value),
    }
}
