//! The static descriptor: facts about the integration the engine reads.

use proc_macro2::TokenStream;
use quote::quote;

use super::Names;
use crate::ir::*;

pub(super) fn generate(spec: &Spec, _names: &Names) -> TokenStream {
    let name = &spec.integration.name;
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
        #[doc(hidden)]
        const __POLICY: __rt::PolicyDescriptor = #policy;

        #[doc(hidden)]
        pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
            name: #name,
            module: #module,
            endpoints: &[#(#endpoints),*],
            policy: __POLICY,
            polling: #polling,
            webhook: #webhook,
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
    let request_fields = request_fields(e, spec);
    quote!(__rt::EndpointDescriptor {
        name: #name,
        method: #method,
        path: #path,
        mode: #mode,
        starts_calls: #starts_calls,
        idempotent: #idempotent,
        idempotency_key: #idempotency_key,
        policy: #policy,
        request_fields: #request_fields,
    })
}

/// The request entity's field names, and those the path and headers read.
fn request_fields(e: &Endpoint, spec: &Spec) -> TokenStream {
    let entity = e
        .request
        .as_ref()
        .and_then(|name| spec.entities.iter().find(|entity| &entity.name == name));
    // The path and headers read only the request entity's fields.
    let Some(entity) = entity else {
        return quote!(__rt::RequestFields::NONE);
    };
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
    quote!(__rt::RequestFields {
        all: &[#(#all),*],
        path: &[#(#path),*],
        headers: &[#(#headers),*],
    })
}

fn policy(p: &Policy) -> TokenStream {
    let Policy {
        timeout_ms,
        connect_timeout_ms,
        retry,
        circuit_breaker,
        rate_limit,
        concurrency,
        max_response_bytes,
        redirects,
    } = p;
    let Retry {
        max_attempts,
        initial_backoff_ms,
        max_backoff_ms,
        multiplier,
        on_server_errors,
        on_too_many_requests,
        on_timeouts,
        on_connect_errors,
        on_transport_errors,
        on_too_large,
    } = retry;
    let transient_only = [
        on_server_errors,
        on_too_many_requests,
        on_timeouts,
        on_connect_errors,
        on_transport_errors,
    ]
    .into_iter()
    .all(|on| *on)
        && !on_too_large;
    let retry_on = if transient_only {
        quote!(__rt::RetryOn::TRANSIENT)
    } else {
        quote!(__rt::RetryOn {
            server_errors: #on_server_errors,
            too_many_requests: #on_too_many_requests,
            timeouts: #on_timeouts,
            connect_errors: #on_connect_errors,
            transport_errors: #on_transport_errors,
            too_large: #on_too_large,
        })
    };
    let circuit_breaker = match circuit_breaker {
        Some(CircuitBreaker {
            failure_threshold,
            open_for_ms,
            half_open_probes,
        }) => quote!(__rt::Some(__rt::CircuitBreakerPolicy {
            failure_threshold: #failure_threshold,
            open_for_ms: #open_for_ms,
            half_open_probes: #half_open_probes,
        })),
        None => quote!(__rt::None),
    };
    let rate_limit = match rate_limit {
        Some(RateLimit { per_second, burst }) => {
            quote!(__rt::Some(__rt::RateLimitPolicy {
                per_second: #per_second,
                burst: #burst,
            }))
        }
        None => quote!(__rt::None),
    };
    let concurrency = match concurrency {
        Some(c) => quote!(__rt::Some(#c)),
        None => quote!(__rt::None),
    };
    let redirects = match redirects {
        Redirects::None => quote!(__rt::RedirectPolicy::None),
        Redirects::SameOrigin => quote!(__rt::RedirectPolicy::SameOrigin),
        Redirects::AnyOrigin => quote!(__rt::RedirectPolicy::AnyOrigin),
    };
    quote!(__rt::PolicyDescriptor {
        timeout_ms: #timeout_ms,
        connect_timeout_ms: #connect_timeout_ms,
        retry: __rt::RetryPolicy {
            max_attempts: #max_attempts,
            initial_backoff_ms: #initial_backoff_ms,
            max_backoff_ms: #max_backoff_ms,
            multiplier: #multiplier,
            on: #retry_on,
        },
        circuit_breaker: #circuit_breaker,
        rate_limit: #rate_limit,
        concurrency: #concurrency,
        max_response_bytes: #max_response_bytes,
        redirects: #redirects,
    })
}
