//! The call record, its event type, request and response enums.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{variant, Names};
use crate::ir::Spec;

pub(super) fn generate(spec: &Spec, names: &Names) -> TokenStream {
    let Names { call, event, status, request, response, .. } = names;
    let integration_name = &spec.integration.name;
    let call_endpoints: Vec<_> = spec.call_endpoints().collect();

    let request_variants = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        let doc = format!(" Parameters of `{}` ({} {}).", e.name, e.method.as_str(), e.path_text);
        quote!(#[doc = #doc] #v(#entity),)
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
    let request_parse_arms = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let name = &e.name;
        quote!(#name => __rt::serde_json::from_value(params.clone()).map(#request::#v),)
    });
    // A request entity used by exactly one endpoint can start calls on its own.
    let single_use = call_endpoints.iter().filter(|e| {
        call_endpoints.iter().filter(|o| o.request == e.request).count() == 1
    });
    let entity_impls = single_use.map(|e| {
        let v = variant(&e.name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        let name = &e.name;
        quote! {
            impl ::std::convert::From<#entity> for #request {
                fn from(params: #entity) -> Self {
                    #request::#v(params)
                }
            }

            impl ::integration_runtime::IntoCall for #entity {
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
    let response_parse_arms = call_endpoints.iter().map(|e| {
        let v = variant(&e.name);
        let name = &e.name;
        quote!(#name => __rt::serde_json::from_value(value.clone()).map(#response::#v),)
    });

    let request_doc = format!(" The typed request parameters of a `{integration_name}` call, one variant per endpoint that starts calls.");
    let response_doc = format!(" The typed response data of a finished `{integration_name}` call.");
    let call_doc = format!(" One call to `{integration_name}`: the record business code creates and the runtime drives to a terminal state.");
    let event_doc = format!(" A lifecycle event of a `{integration_name}` call: `initialized -> processing -> completed | failed`.");
    let status_doc = format!(" Where a `{integration_name}` call is in its lifecycle.");

    quote! {
        #[doc = #status_doc]
        pub type #status = ::integration_runtime::CallStatus;

        #[doc = #request_doc]
        #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
        #[serde(crate = "::integration_runtime::__private::serde", tag = "endpoint", content = "params", rename_all = "snake_case")]
        pub enum #request {
            #(#request_variants)*
        }

        impl #request {
            /// Reads stored parameters of a call of `endpoint`.
            pub fn from_params(endpoint: &str, params: &__rt::serde_json::Value) -> ::std::result::Result<Self, ::integration_runtime::ClientError> {
                let parsed: ::std::result::Result<Self, __rt::serde_json::Error> = match endpoint {
                    #(#request_parse_arms)*
                    _ => return ::std::result::Result::Err(__rt::unknown_endpoint(#integration_name, endpoint)),
                };
                parsed.map_err(|e| __rt::decode_error(endpoint, ::std::format!("stored request parameters do not fit the spec: {e}")))
            }
        }

        impl ::integration_runtime::IntoCall for #request {
            const INTEGRATION: &'static str = #integration_name;
            fn endpoint(&self) -> &'static str {
                match self {
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
        #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize)]
        #[serde(crate = "::integration_runtime::__private::serde", untagged)]
        pub enum #response {
            #(#response_variants)*
        }

        impl #response {
            /// Reads stored response data of a call of `endpoint`.
            pub fn from_result(endpoint: &str, value: &__rt::serde_json::Value) -> ::std::result::Result<Self, ::integration_runtime::ClientError> {
                let parsed: ::std::result::Result<Self, __rt::serde_json::Error> = match endpoint {
                    #(#response_parse_arms)*
                    _ => return ::std::result::Result::Err(__rt::unknown_endpoint(#integration_name, endpoint)),
                };
                parsed.map_err(|e| __rt::decode_error(endpoint, ::std::format!("stored response data does not fit the spec: {e}")))
            }
        }

        #[doc = #call_doc]
        #[derive(Debug, Clone, PartialEq)]
        pub struct #call {
            /// The call's id, chosen when it is created.
            pub id: ::integration_runtime::CallId,
            /// Where it is in its lifecycle (the fold of its events).
            pub status: #status,
            /// The provider's id (or a generated one), known from `initialized` on.
            pub external_id: ::std::option::Option<::std::string::String>,
            /// What business code asked for.
            pub request_params: #request,
            /// What the provider answered, once completed.
            pub response_data: ::std::option::Option<#response>,
            /// When the call was created.
            pub created_at: __rt::chrono::DateTime<__rt::chrono::Utc>,
            /// When it reached a terminal state.
            pub completed_at: ::std::option::Option<__rt::chrono::DateTime<__rt::chrono::Utc>>,
            /// Why it failed.
            pub error: ::std::option::Option<::std::string::String>,
            /// How many times the runtime has sent it.
            pub attempts: u32,
        }

        impl #call {
            /// A new, pending call.
            pub fn new(request: impl ::std::convert::Into<#request>) -> Self {
                #call {
                    id: ::integration_runtime::CallId::new(),
                    status: ::integration_runtime::CallStatus::Pending,
                    external_id: ::std::option::Option::None,
                    request_params: request.into(),
                    response_data: ::std::option::Option::None,
                    created_at: __rt::chrono::Utc::now(),
                    completed_at: ::std::option::Option::None,
                    error: ::std::option::Option::None,
                    attempts: 0,
                }
            }

            /// The endpoint this call was created for.
            pub fn endpoint(&self) -> &'static str {
                ::integration_runtime::IntoCall::endpoint(&self.request_params)
            }

            /// Applies one event through the lifecycle state machine.
            ///
            /// Late, duplicated and out-of-order events, and events for
            /// another call, are ignored: the status never moves backwards
            /// or out of a terminal state.
            pub fn apply(&mut self, event: &#event) -> ::integration_runtime::Transition {
                let ignored = ::integration_runtime::Transition::Ignored(self.status);
                match (event, &self.external_id) {
                    (#event::Initialized { call_id, .. }, _) if *call_id != self.id => return ignored,
                    (_, ::std::option::Option::Some(known)) if known != event.external_id() => return ignored,
                    _ => {}
                }
                if self.external_id.is_none() {
                    self.external_id = ::std::option::Option::Some(event.external_id().to_owned());
                }
                let transition = self.status.transition(event.kind());
                if let ::integration_runtime::Transition::Moved(_, to) = transition {
                    self.status = to;
                    match event {
                        #event::Completed { result, .. } => {
                            self.response_data = result.clone();
                            self.completed_at = ::std::option::Option::Some(__rt::chrono::Utc::now());
                        }
                        #event::Failed { error, .. } => {
                            self.error = ::std::option::Option::Some(error.clone());
                            self.completed_at = ::std::option::Option::Some(__rt::chrono::Utc::now());
                        }
                        _ => {}
                    }
                }
                transition
            }
        }

        impl ::integration_runtime::TypedCall for #call {
            const INTEGRATION: &'static str = #integration_name;
            fn from_record(record: &::integration_runtime::CallRecord) -> ::std::result::Result<Self, ::integration_runtime::ClientError> {
                let response_data = match &record.response_data {
                    ::std::option::Option::Some(value) => ::std::option::Option::Some(#response::from_result(&record.endpoint, value)?),
                    ::std::option::Option::None => ::std::option::Option::None,
                };
                ::std::result::Result::Ok(#call {
                    id: record.id,
                    status: record.status,
                    external_id: record.external_id.clone(),
                    request_params: #request::from_params(&record.endpoint, &record.params)?,
                    response_data,
                    created_at: record.created_at,
                    completed_at: record.completed_at,
                    error: record.error.clone(),
                    attempts: record.attempts,
                })
            }
        }

        #[doc = #event_doc]
        #[derive(Debug, Clone, PartialEq)]
        pub enum #event {
            /// The provider accepted the call.
            Initialized {
                /// The call's id.
                call_id: ::integration_runtime::CallId,
                /// The provider's id, or a generated one.
                external_id: ::std::string::String,
            },
            /// The provider works on the call.
            Processing {
                /// Finds the call.
                external_id: ::std::string::String,
            },
            /// The call finished successfully.
            Completed {
                /// Finds the call.
                external_id: ::std::string::String,
                /// The typed result, when the endpoint has one.
                result: ::std::option::Option<#response>,
            },
            /// The call failed.
            Failed {
                /// Finds the call.
                external_id: ::std::string::String,
                /// Why.
                error: ::std::string::String,
            },
        }

        impl #event {
            /// The event's kind, for the state machine.
            pub fn kind(&self) -> ::integration_runtime::EventKind {
                match self {
                    #event::Initialized { .. } => ::integration_runtime::EventKind::Initialized,
                    #event::Processing { .. } => ::integration_runtime::EventKind::Processing,
                    #event::Completed { .. } => ::integration_runtime::EventKind::Completed,
                    #event::Failed { .. } => ::integration_runtime::EventKind::Failed,
                }
            }

            /// The external id every event carries.
            pub fn external_id(&self) -> &str {
                match self {
                    #event::Initialized { external_id, .. }
                    | #event::Processing { external_id }
                    | #event::Completed { external_id, .. }
                    | #event::Failed { external_id, .. } => external_id,
                }
            }
        }
    }
}

pub(super) fn response_type(spec: &Spec, endpoint: &crate::ir::Endpoint) -> TokenStream {
    match spec.response_entity(endpoint) {
        Some(entity) => {
            let entity = format_ident!("{}", entity);
            quote!(#entity)
        }
        None => quote!(__rt::serde_json::Value),
    }
}
