//! Which failures are retried: pure functions over the spec's policies.
//! When the retry happens is [`crate::policy::backoff`].

use crate::descriptor::{EndpointDescriptor, RetryOn};
use crate::error::ClientError;

/// Whether `error` belongs to one of the failure classes `on` retries:
/// 5xx, 429, timeouts, connection failures, transport faults (a reset or
/// truncated answer), answers over the size limit. Other 4xx answers,
/// refused redirects, invalid requests, decode, auth and configuration
/// errors never are.
pub(crate) fn is_retryable_class(error: &ClientError, on: &RetryOn) -> bool {
    if error.is_connect() {
        return on.connect_errors;
    }
    if error.is_transport() {
        return on.transport_errors;
    }
    if error.is_response_too_large() {
        return on.too_large;
    }
    if error.is_timeout() {
        return on.timeouts;
    }
    if error.is_status() {
        return match error.status() {
            Some(429) => on.too_many_requests,
            Some(status) if (500..600).contains(&status) => on.server_errors,
            _ => false,
        };
    }
    false
}

/// Whether a failed *starting* request of `endpoint` may be sent again:
/// its class is retried by the endpoint's policy, and repeating it is safe
/// (the endpoint is idempotent, or it carries the call's idempotency key).
pub(crate) fn may_retry_start(endpoint: &EndpointDescriptor, error: &ClientError) -> bool {
    (endpoint.idempotent || endpoint.idempotency_key.is_some()) && is_retryable_class(error, &endpoint.policy.retry.on)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::RetryPolicy;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 100,
        max_backoff_ms: 1_000,
        multiplier: 2.0,
        on: RetryOn::TRANSIENT,
    };

    #[test]
    fn only_the_configured_classes_are_retried() {
        let all = POLICY.on;
        let none = RetryOn::default();
        let cases = [
            (ClientError::status_error("e", 500, None), true),
            (ClientError::status_error("e", 503, None), true),
            (ClientError::status_error("e", 429, None), true),
            (ClientError::status_error("e", 400, None), false),
            (ClientError::status_error("e", 404, None), false),
            (ClientError::status_error("e", 409, None), false),
            (ClientError::timeout("e", false, Some(10)), true),
            (ClientError::timeout("e", true, Some(10)), true),
            (ClientError::connect("e", "refused".into()), true),
            (crate::error::decode_error("e", "bad".into()), false),
            (ClientError::transport("e", "connection reset".into()), true),
            (ClientError::too_large("e", 1024), false),
            (ClientError::redirect("e", "to another origin".into()), false),
        ];
        for (error, retried) in cases {
            assert_eq!(is_retryable_class(&error, &all), retried, "{error}");
            assert!(!is_retryable_class(&error, &none), "{error}");
        }
        let only_5xx = RetryOn {
            server_errors: true,
            ..RetryOn::default()
        };
        assert!(!is_retryable_class(
            &ClientError::status_error("e", 429, None),
            &only_5xx
        ));
        assert!(!is_retryable_class(&ClientError::timeout("e", false, None), &only_5xx));
    }

    #[test]
    fn transport_faults_and_too_large_answers_follow_their_own_switches() {
        let reset = ClientError::transport("e", "connection reset".into());
        let large = ClientError::too_large("e", 1024);
        let transport_only = RetryOn {
            transport_errors: true,
            ..RetryOn::default()
        };
        assert!(is_retryable_class(&reset, &transport_only));
        assert!(!is_retryable_class(&large, &transport_only));
        let too_large_only = RetryOn {
            too_large: true,
            ..RetryOn::default()
        };
        assert!(is_retryable_class(&large, &too_large_only));
        assert!(!is_retryable_class(&reset, &too_large_only));
        let redirect = ClientError::redirect("e", "to another origin".into());
        let everything = RetryOn {
            server_errors: true,
            too_many_requests: true,
            timeouts: true,
            connect_errors: true,
            transport_errors: true,
            too_large: true,
        };
        assert!(!is_retryable_class(&redirect, &everything));
    }

    #[test]
    fn non_idempotent_starts_are_retried_only_with_a_key() {
        use crate::descriptor::{EndpointDescriptor, IdempotencyKeyPlacement, Mode, PolicyDescriptor, RequestFields};
        let mut endpoint = EndpointDescriptor {
            name: "send",
            method: "POST",
            path: "/send",
            mode: Mode::Sync,
            starts_calls: true,
            idempotent: false,
            idempotency_key: None,
            policy: PolicyDescriptor {
                retry: POLICY,
                ..PolicyDescriptor::DEFAULT
            },
            request_fields: RequestFields {
                all: &[],
                path: &[],
                headers: &[],
            },
            give_up_after_s: None,
            cancel: None,
        };
        let error = ClientError::status_error("send", 502, None);
        let reset = ClientError::transport("send", "connection reset".into());
        assert!(!may_retry_start(&endpoint, &error));
        assert!(!may_retry_start(&endpoint, &reset));
        endpoint.idempotency_key = Some(IdempotencyKeyPlacement::Header("Idempotency-Key"));
        assert!(may_retry_start(&endpoint, &error));
        assert!(may_retry_start(&endpoint, &reset));
        endpoint.idempotency_key = None;
        endpoint.idempotent = true;
        assert!(may_retry_start(&endpoint, &error));
        assert!(!may_retry_start(
            &endpoint,
            &ClientError::status_error("send", 422, None)
        ));
    }
}
