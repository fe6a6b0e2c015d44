//! The static descriptor: facts about the integration the engine reads.

use proc_macro2::TokenStream;
use quote::quote;

use super::Names;
use crate::ir::*;

pub(super) fn generate(spec: &Spec, _names: &Names) -> TokenStream {
    let name = &spec.integration.name;
    let fingerprint = &spec.fingerprint;
    let module = crate::case::to_snake(name);
    // Endpoints without overrides share the integration's policy constant.
    let endpoints = spec.endpoints.iter().map(|e| endpoint(e, spec));
    let policy = policy(&spec.policy);
    let polling = match &spec.polling {
        Some(p) => {
            let Polling {
                endpoint,
                interval_ms,
                backoff,
                max_interval_ms,
                give_up_after_s,
            } = p;
            quote!(__rt::Some(__rt::PollingDescriptor {
                endpoint: #endpoint,
                interval_ms: #interval_ms,
                backoff: #backoff,
                max_interval_ms: #max_interval_ms,
                give_up_after_s: #give_up_after_s,
            }))
        }
        None => quote!(__rt::None),
    };
    let webhook = match &spec.webhook {
        Some(w) => {
            let path = &w.path;
            let secret_env = &w.verify.secret.env;
            let tolerance_s = w.verify.tolerance_s;
            let max_body_bytes = w.max_body_bytes as usize;
            let scheme = match &w.verify.scheme {
                SignatureScheme::StandardWebhooks => quote!(__rt::SignatureScheme::StandardWebhooks),
                SignatureScheme::Stripe => quote!(__rt::SignatureScheme::Stripe),
                SignatureScheme::HmacSha256 {
                    header,
                    encoding,
                    prefix,
                } => {
                    let encoding = match encoding {
                        SignatureEncoding::Hex => quote!(__rt::SignatureEncoding::Hex),
                        SignatureEncoding::Base64 => quote!(__rt::SignatureEncoding::Base64),
                    };
                    quote!(__rt::SignatureScheme::HmacSha256 { header: #header, encoding: #encoding, prefix: #prefix })
                }
            };
            quote!(__rt::Some(__rt::WebhookDescriptor {
                path: #path,
                scheme: #scheme,
                secret_env: #secret_env,
                tolerance_s: #tolerance_s,
                max_body_bytes: #max_body_bytes,
            }))
        }
        None => quote!(__rt::None),
    };
    quote! {
        const __POLICY: __rt::PolicyDescriptor = #policy;

        #[doc(hidden)]
        pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
            name: #name,
            module: #module,
            endpoints: &[#(#endpoints),*],
            policy: __POLICY,
            polling: #polling,
            webhook: #webhook,
            fingerprint: #fingerprint,
        };
    }
}

fn endpoint(e: &Endpoint, spec: &Spec) -> TokenStream {
    let integration_policy = &spec.policy;
    let name = &e.name;
    let method = e.method.as_str();
    let path = &e.path_text;
    let mode = match e.mode {
        Mode::Sync => quote!(__rt::Mode::Sync),
        Mode::Async => quote!(__rt::Mode::Async),
    };
    let starts_calls = e.starts_calls();
    let idempotent = e.idempotent;
    let idempotency_key = match &e.idempotency_key {
        Some(IdempotencyKey::Header(h)) => {
            quote!(__rt::Some(__rt::IdempotencyKeyPlacement::Header(#h)))
        }
        Some(IdempotencyKey::Body(path)) => {
            quote!(__rt::Some(__rt::IdempotencyKeyPlacement::Body(&[#(#path),*])))
        }
        None => quote!(__rt::None),
    };
    let policy = if e.policy == *integration_policy {
        quote!(__POLICY)
    } else {
        policy(&e.policy)
    };
    // Only what differs from `EndpointDescriptor::new`'s defaults.
    let mut fields = Vec::new();
    if e.mode == Mode::Async {
        fields.push(quote!(mode: #mode));
    }
    if starts_calls {
        fields.push(quote!(starts_calls: true));
    }
    if !idempotent {
        fields.push(quote!(idempotent: false));
    }
    if e.idempotency_key.is_some() {
        fields.push(quote!(idempotency_key: #idempotency_key));
    }
    if let Some(request_fields) = request_fields(e, spec) {
        fields.push(quote!(request_fields: #request_fields));
    }
    if let Some(seconds) = deadline(e, spec) {
        fields.push(quote!(give_up_after_s: __rt::Some(#seconds)));
    }
    if let Some((cancel, _)) = &e.cancel {
        fields.push(quote!(cancel: __rt::Some(#cancel)));
    }
    let base = quote!(__rt::EndpointDescriptor::new(#name, #method, #path, #policy));
    if fields.is_empty() {
        return base;
    }
    quote!(__rt::EndpointDescriptor { #(#fields,)* ..#base })
}

/// How long the calls `e` starts may take, in seconds from when they are
/// due: the endpoint's own `give_up_after_s`; for an async endpoint, else
/// `[polling]`'s, else `[webhook]`'s, else a day. `None`: no deadline (a
/// sync endpoint without one, whose calls end with their answer).
fn deadline(e: &Endpoint, spec: &Spec) -> Option<u64> {
    /// The deadline of webhook-only calls when the spec sets none.
    const WEBHOOK_DEFAULT_S: u64 = 86_400;
    if !e.starts_calls() {
        return None;
    }
    e.give_up_after_s.or_else(|| match e.mode {
        Mode::Sync => None,
        Mode::Async => Some(match (&spec.polling, &spec.webhook) {
            (Some(polling), _) => polling.give_up_after_s,
            (None, Some(webhook)) => webhook.give_up_after_s.unwrap_or(WEBHOOK_DEFAULT_S),
            (None, None) => WEBHOOK_DEFAULT_S,
        }),
    })
}

/// The request entity's field names, and those the path and headers read;
/// `None` without a request entity.
fn request_fields(e: &Endpoint, spec: &Spec) -> Option<TokenStream> {
    let entity = e
        .request
        .as_ref()
        .and_then(|name| spec.entities.iter().find(|entity| &entity.name == name));
    // The path and headers read only the request entity's fields.
    let entity = entity?;
    let all = entity.fields.iter().map(|field| &field.name);
    let path = e.path.iter().filter_map(|part| match part {
        PathPart::Field(name) => Some(name),
        _ => None,
    });
    let mut headers: Vec<&String> = e
        .headers
        .iter()
        .flat_map(|mapping| match &mapping.value {
            MappingValue::Field(name) | MappingValue::WithDefault { field: name, .. } => vec![name],
            MappingValue::Template(parts) => parts
                .iter()
                .filter_map(|part| match part {
                    TemplatePart::Field(name) => Some(name),
                    _ => None,
                })
                .collect(),
            // Constants only, from the spec.
            MappingValue::Constant(_) | MappingValue::ValueMap { .. } => Vec::new(),
        })
        .collect();
    headers.sort();
    headers.dedup();
    Some(quote!(__rt::RequestFields {
        all: &[#(#all),*],
        path: &[#(#path),*],
        headers: &[#(#headers),*],
    }))
}

/// The policy as the fields that differ from the spec's defaults, which
/// `PolicyDescriptor::DEFAULT` repeats but for the retry policy (there
/// `RetryPolicy::NONE`, here `RetryPolicy::SPEC_DEFAULT`).
fn policy(p: &Policy) -> TokenStream {
    let default = Policy::default();
    let mut fields = Vec::new();
    if p.timeout_ms != default.timeout_ms {
        let v = p.timeout_ms;
        fields.push(quote!(timeout_ms: #v));
    }
    if p.connect_timeout_ms != default.connect_timeout_ms {
        let v = p.connect_timeout_ms;
        fields.push(quote!(connect_timeout_ms: #v));
    }
    let retry = retry(&p.retry);
    fields.push(quote!(retry: #retry));
    if let Some(CircuitBreaker {
        failure_threshold,
        open_for_ms,
        half_open_probes,
        scope,
    }) = &p.circuit_breaker
    {
        let scope = policy_scope(*scope);
        fields.push(quote!(circuit_breaker: __rt::Some(__rt::CircuitBreakerPolicy {
            failure_threshold: #failure_threshold,
            open_for_ms: #open_for_ms,
            half_open_probes: #half_open_probes,
            scope: #scope,
        })));
    }
    if let Some(RateLimit {
        per_second,
        burst,
        scope,
    }) = &p.rate_limit
    {
        let scope = policy_scope(*scope);
        fields.push(quote!(rate_limit: __rt::Some(__rt::RateLimitPolicy {
            per_second: #per_second,
            burst: #burst,
            scope: #scope,
        })));
    }
    if let Some(c) = p.concurrency {
        fields.push(quote!(concurrency: __rt::Some(#c)));
    }
    if p.max_response_bytes != default.max_response_bytes {
        let v = p.max_response_bytes;
        fields.push(quote!(max_response_bytes: #v));
    }
    if p.redirects != default.redirects {
        let redirects = match p.redirects {
            Redirects::None => quote!(__rt::RedirectPolicy::None),
            Redirects::SameOrigin => quote!(__rt::RedirectPolicy::SameOrigin),
            Redirects::AnyOrigin => quote!(__rt::RedirectPolicy::AnyOrigin),
        };
        fields.push(quote!(redirects: #redirects));
    }
    quote!(__rt::PolicyDescriptor { #(#fields,)* ..__rt::PolicyDescriptor::DEFAULT })
}

fn policy_scope(scope: Scope) -> TokenStream {
    match scope {
        Scope::Integration => quote!(__rt::PolicyScope::Integration),
        Scope::Connection => quote!(__rt::PolicyScope::Connection),
    }
}

/// A retry policy as the fields that differ from `RetryPolicy::SPEC_DEFAULT`.
fn retry(r: &Retry) -> TokenStream {
    let default = Retry::default();
    let mut fields = Vec::new();
    if r.max_attempts != default.max_attempts {
        let v = r.max_attempts;
        fields.push(quote!(max_attempts: #v));
    }
    if r.initial_backoff_ms != default.initial_backoff_ms {
        let v = r.initial_backoff_ms;
        fields.push(quote!(initial_backoff_ms: #v));
    }
    if r.max_backoff_ms != default.max_backoff_ms {
        let v = r.max_backoff_ms;
        fields.push(quote!(max_backoff_ms: #v));
    }
    if r.multiplier.to_bits() != default.multiplier.to_bits() {
        let v = r.multiplier;
        fields.push(quote!(multiplier: #v));
    }
    let on = [
        r.on_server_errors,
        r.on_too_many_requests,
        r.on_timeouts,
        r.on_connect_errors,
        r.on_transport_errors,
        r.on_too_large,
    ];
    let default_on = [
        default.on_server_errors,
        default.on_too_many_requests,
        default.on_timeouts,
        default.on_connect_errors,
        default.on_transport_errors,
        default.on_too_large,
    ];
    if on != default_on {
        let [server_errors, too_many_requests, timeouts, connect_errors, transport_errors, too_large] = on;
        fields.push(quote!(on: __rt::RetryOn {
            server_errors: #server_errors,
            too_many_requests: #too_many_requests,
            timeouts: #timeouts,
            connect_errors: #connect_errors,
            transport_errors: #transport_errors,
            too_large: #too_large,
        }));
    }
    if fields.is_empty() {
        return quote!(__rt::RetryPolicy::SPEC_DEFAULT);
    }
    quote!(__rt::RetryPolicy { #(#fields,)* ..__rt::RetryPolicy::SPEC_DEFAULT })
}
