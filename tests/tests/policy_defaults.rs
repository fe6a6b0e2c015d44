//! Generated descriptors spell out only the policy fields that differ from the
//! spec's defaults and take the rest from the runtime's constants, so the two
//! must agree.

use integration_runtime::{PolicyDescriptor, RedirectPolicy, RetryPolicy};
use integration_spec::ir::{Policy, Redirects, Retry};

#[test]
fn the_runtime_starts_from_the_specs_default_policy() {
    let spec = Policy::default();
    let runtime = PolicyDescriptor::DEFAULT;
    assert_eq!(runtime.timeout_ms, spec.timeout_ms);
    assert_eq!(runtime.connect_timeout_ms, spec.connect_timeout_ms);
    assert_eq!(runtime.circuit_breaker, None);
    assert!(spec.circuit_breaker.is_none());
    assert_eq!(runtime.rate_limit, None);
    assert!(spec.rate_limit.is_none());
    assert_eq!(runtime.concurrency, spec.concurrency);
    assert_eq!(runtime.max_response_bytes, spec.max_response_bytes);
    assert_eq!(runtime.redirects, RedirectPolicy::SameOrigin);
    assert_eq!(spec.redirects, Redirects::SameOrigin);
}

#[test]
fn the_runtime_starts_from_the_specs_default_retry_policy() {
    let spec = Retry::default();
    let runtime = RetryPolicy::SPEC_DEFAULT;
    assert_eq!(runtime.max_attempts, spec.max_attempts);
    assert_eq!(runtime.initial_backoff_ms, spec.initial_backoff_ms);
    assert_eq!(runtime.max_backoff_ms, spec.max_backoff_ms);
    assert_eq!(runtime.multiplier.to_bits(), spec.multiplier.to_bits());
    let on = runtime.on;
    assert_eq!(
        [
            on.server_errors,
            on.too_many_requests,
            on.timeouts,
            on.connect_errors,
            on.transport_errors,
            on.too_large
        ],
        [
            spec.on_server_errors,
            spec.on_too_many_requests,
            spec.on_timeouts,
            spec.on_connect_errors,
            spec.on_transport_errors,
            spec.on_too_large
        ]
    );
}
