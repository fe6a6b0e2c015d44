//! Static descriptions of integrations, generated as `static` items.
//!
//! Every field is public and every reference `'static`, so that generated
//! code can write the whole description as one constant expression.

/// One integration: its endpoints and how calls to it behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntegrationDescriptor {
    /// The integration's name, as in the spec (`VolcTts`).
    pub name: &'static str,
    /// The generated module's name (`volc_tts`).
    pub module: &'static str,
    /// Every endpoint of the spec.
    pub endpoints: &'static [EndpointDescriptor],
    /// The integration-wide policy.
    pub policy: PolicyDescriptor,
    /// How calls are polled, when the spec has `[polling]`.
    pub polling: Option<PollingDescriptor>,
    /// How webhooks are received, when the spec has `[webhook]`.
    pub webhook: Option<WebhookDescriptor>,
    /// The fingerprint of the spec's text (`integration_spec::fingerprint`),
    /// recorded with every call created under it; empty for a hand-written
    /// descriptor.
    pub fingerprint: &'static str,
}

impl IntegrationDescriptor {
    /// The endpoint called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&'static EndpointDescriptor> {
        self.endpoints.iter().find(|endpoint| endpoint.name == name)
    }
}

/// One endpoint of an integration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointDescriptor {
    /// The endpoint's name, as in the spec (`synthesize`).
    pub name: &'static str,
    /// The HTTP method: `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path template as written in the spec (`/tasks/{external_id}`).
    pub path: &'static str,
    /// Whether the response finishes the call.
    pub mode: Mode,
    /// Whether business code creates calls for it (it has a `request`).
    pub starts_calls: bool,
    /// Whether repeating the request is safe.
    pub idempotent: bool,
    /// Where the call's idempotency key is sent, if anywhere.
    pub idempotency_key: Option<IdempotencyKeyPlacement>,
    /// The effective policy (the integration's, with this endpoint's overrides).
    pub policy: PolicyDescriptor,
    /// The request entity's fields, and which go to the path and headers.
    pub request_fields: RequestFields,
    /// How long a call of this endpoint may take, in seconds from when it
    /// is due, before it fails with [`FailureKind::Timeout`](crate::FailureKind::Timeout);
    /// `None`: no deadline (sync endpoints, unless the spec sets one).
    pub give_up_after_s: Option<u64>,
    /// The endpoint that asks the provider to stop a call of this one
    /// (the spec's `cancel`), if any.
    pub cancel: Option<&'static str>,
}

/// The fields of an endpoint's request entity, by their JSON names, and
/// which of them end up in the path or in headers: what creating a call
/// checks beyond the entity's own constraints (an empty path segment, a
/// line break in a header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestFields {
    /// Every field of the request entity; empty when the endpoint has none.
    pub all: &'static [&'static str],
    /// The fields of the path template, each one path segment.
    pub path: &'static [&'static str],
    /// The fields sent in a header, alone or interpolated into text.
    pub headers: &'static [&'static str],
}

impl EndpointDescriptor {
    /// A synchronous, idempotent endpoint that starts no calls, sends no
    /// idempotency key and has no request entity; generated descriptors
    /// spell out only what differs.
    pub const fn new(name: &'static str, method: &'static str, path: &'static str, policy: PolicyDescriptor) -> Self {
        EndpointDescriptor {
            name,
            method,
            path,
            mode: Mode::Sync,
            starts_calls: false,
            idempotent: true,
            idempotency_key: None,
            policy,
            request_fields: RequestFields::NONE,
            give_up_after_s: None,
            cancel: None,
        }
    }
}

impl RequestFields {
    /// An endpoint without a request entity.
    pub const NONE: RequestFields = RequestFields {
        all: &[],
        path: &[],
        headers: &[],
    };
}

/// Whether an endpoint's response finishes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The response finishes the call.
    Sync,
    /// The call finishes later, by polling or webhook.
    Async,
}

/// Where an idempotency key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdempotencyKeyPlacement {
    /// In the header of that name.
    Header(&'static str),
    /// In the JSON body, at this key path (`["meta", "key"]`).
    Body(&'static [&'static str]),
}

/// Timeouts, retries and limits of an integration or endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyDescriptor {
    /// Whole-request timeout in milliseconds (0: none).
    pub timeout_ms: u64,
    /// Connect timeout in milliseconds (0: none).
    pub connect_timeout_ms: u64,
    /// When and how failed attempts are repeated.
    pub retry: RetryPolicy,
    /// The circuit breaker, if any.
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// The rate limit, if any.
    pub rate_limit: Option<RateLimitPolicy>,
    /// Most calls in flight at once, if limited.
    pub concurrency: Option<u32>,
    /// Largest response body read, in bytes; a larger answer fails the attempt.
    pub max_response_bytes: u64,
    /// Which HTTP redirects are followed.
    pub redirects: RedirectPolicy,
}

/// Which HTTP redirects a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectPolicy {
    /// None: a 3xx answer is the attempt's answer.
    None,
    /// Redirects within the request's origin (scheme, host and port), with
    /// credentials; a redirect to another origin is not followed. The default.
    SameOrigin,
    /// Redirects to any origin; once off the request's origin, without any
    /// credential, the request's own headers or its body.
    AnyOrigin,
}

impl PolicyDescriptor {
    /// The spec's defaults: 30 s timeout, 5 s connect timeout, one attempt, no
    /// limits, answers up to 10 MiB, redirects within the origin.
    pub const DEFAULT: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 30_000,
        connect_timeout_ms: 5_000,
        retry: RetryPolicy::NONE,
        circuit_breaker: None,
        rate_limit: None,
        concurrency: None,
        max_response_bytes: 10 * 1024 * 1024,
        redirects: RedirectPolicy::SameOrigin,
    };
}

impl Default for PolicyDescriptor {
    fn default() -> Self {
        PolicyDescriptor::DEFAULT
    }
}

/// When and how failed attempts are repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Cap of the delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Growth factor of the delay.
    pub multiplier: f64,
    /// Which failures are retried.
    pub on: RetryOn,
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff_ms: 0,
        max_backoff_ms: 0,
        multiplier: 1.0,
        on: RetryOn {
            server_errors: false,
            too_many_requests: false,
            timeouts: false,
            connect_errors: false,
            transport_errors: false,
            too_large: false,
        },
    };
}

impl RetryPolicy {
    /// What a spec's `[policy.retry]` starts from (generated descriptors
    /// spell out only what differs): one attempt; when the spec sets more,
    /// every failure that may pass on its own is retried (all but
    /// `too_large`, which the same request would meet again).
    pub const SPEC_DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff_ms: 200,
        max_backoff_ms: 20_000,
        multiplier: 2.0,
        on: RetryOn {
            server_errors: true,
            too_many_requests: true,
            timeouts: true,
            connect_errors: true,
            transport_errors: true,
            too_large: false,
        },
    };
}

/// Which failures a retry policy repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    /// HTTP 5xx answers (`"5xx"`).
    pub server_errors: bool,
    /// HTTP 429 answers (`"429"`).
    pub too_many_requests: bool,
    /// Timeouts (`"timeout"`).
    pub timeouts: bool,
    /// Connection failures (`"connect"`).
    pub connect_errors: bool,
    /// Transport faults after the connection was made: a reset mid-response,
    /// a body shorter than its `Content-Length` (`"transport"`).
    pub transport_errors: bool,
    /// Answers larger than the policy's `max_response_bytes` (`"too_large"`).
    pub too_large: bool,
}

impl RetryOn {
    /// Every transient failure class (5xx, 429, timeouts, connection and
    /// transport failures); not answers over the size limit.
    pub(crate) const TRANSIENT: RetryOn = RetryOn {
        server_errors: true,
        too_many_requests: true,
        timeouts: true,
        connect_errors: true,
        transport_errors: true,
        too_large: false,
    };
}

/// A circuit breaker: stop calling a failing provider for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open, in milliseconds.
    pub open_for_ms: u64,
    /// Trial requests let through while half open.
    pub half_open_probes: u32,
    /// Whose failures it counts: the integration's, or each connection's
    /// own (spec: `scope`).
    pub scope: PolicyScope,
}

/// A token-bucket rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitPolicy {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Whose budget it is: the integration's, or each connection's own
    /// (spec: `scope`); a connection's own budget may replace it
    /// (`RateBudget`).
    pub scope: PolicyScope,
}

/// Who a rate limit or circuit breaker is for (spec: `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PolicyScope {
    /// One for the integration, shared by all its connections: the
    /// provider's own capacity, an outage that hits everyone. The default.
    #[default]
    Integration,
    /// One per connection: a customer's quota at the provider is theirs,
    /// and one customer's failing credentials do not stop the others.
    Connection,
}

/// How calls of an async integration are polled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollingDescriptor {
    /// The status-query endpoint.
    pub endpoint: &'static str,
    /// First delay after `initialized`, in milliseconds.
    pub interval_ms: u64,
    /// Growth factor of the delay.
    pub backoff: f64,
    /// Cap of the delay, in milliseconds.
    pub max_interval_ms: u64,
    /// The deadline of polled calls, in seconds (the endpoints' effective
    /// deadline is [`EndpointDescriptor::give_up_after_s`]).
    pub give_up_after_s: u64,
}

/// How provider webhooks are received and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookDescriptor {
    /// Route of the receiver (`/webhooks/volc-tts`).
    pub path: &'static str,
    /// How signatures are checked.
    pub scheme: SignatureScheme,
    /// The environment variable holding the secret(s), comma-separated for rotation.
    pub secret_env: &'static str,
    /// Accepted clock skew of signed timestamps, in seconds.
    pub tolerance_s: u64,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
}

/// A webhook signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// The Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Stripe's `Stripe-Signature` scheme.
    Stripe,
    /// An HMAC-SHA256 of the raw body in one header.
    HmacSha256 {
        /// The header carrying the signature.
        header: &'static str,
        /// How the signature is encoded.
        encoding: SignatureEncoding,
        /// Text before the encoded signature (`sha256=`), possibly empty.
        prefix: &'static str,
    },
}

/// How an HMAC signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureEncoding {
    /// Lowercase or uppercase hexadecimal.
    Hex,
    /// Standard base64.
    Base64,
}

#[cfg(test)]
mod tests {
    use super::*;

    static ENDPOINTS: [EndpointDescriptor; 2] = [
        EndpointDescriptor {
            name: "synthesize",
            method: "POST",
            path: "/tasks",
            mode: Mode::Async,
            starts_calls: true,
            idempotent: false,
            idempotency_key: Some(IdempotencyKeyPlacement::Body(&["meta", "key"])),
            policy: PolicyDescriptor::DEFAULT,
            request_fields: RequestFields {
                all: &["text"],
                path: &[],
                headers: &[],
            },
            give_up_after_s: Some(600),
            cancel: None,
        },
        EndpointDescriptor {
            name: "query",
            method: "GET",
            path: "/tasks/{external_id}",
            mode: Mode::Sync,
            starts_calls: false,
            idempotent: true,
            idempotency_key: None,
            policy: PolicyDescriptor {
                timeout_ms: 1_000,
                ..PolicyDescriptor::DEFAULT
            },
            request_fields: RequestFields {
                all: &[],
                path: &[],
                headers: &[],
            },
            give_up_after_s: None,
            cancel: None,
        },
    ];

    static DESCRIPTOR: IntegrationDescriptor = IntegrationDescriptor {
        name: "VolcTts",
        module: "volc_tts",
        endpoints: &ENDPOINTS,
        policy: PolicyDescriptor::DEFAULT,
        polling: Some(PollingDescriptor {
            endpoint: "query",
            interval_ms: 1_000,
            backoff: 1.5,
            max_interval_ms: 10_000,
            give_up_after_s: 600,
        }),
        webhook: Some(WebhookDescriptor {
            path: "/hooks/tts",
            scheme: SignatureScheme::HmacSha256 {
                header: "X-Sig",
                encoding: SignatureEncoding::Hex,
                prefix: "sha256=",
            },
            secret_env: "TTS_HOOK_SECRET",
            tolerance_s: 300,
            max_body_bytes: 1 << 20,
        }),
        fingerprint: "",
    };

    #[test]
    fn descriptors_are_usable_in_statics() {
        assert_eq!(DESCRIPTOR.endpoint("query").map(|e| e.policy.timeout_ms), Some(1_000));
        assert_eq!(DESCRIPTOR.endpoint("synthesize").map(|e| e.mode), Some(Mode::Async));
        assert!(DESCRIPTOR.endpoint("missing").is_none());
    }

    #[test]
    fn default_policy_matches_the_spec_defaults() {
        let policy = PolicyDescriptor::default();
        assert_eq!(policy.timeout_ms, 30_000);
        assert_eq!(policy.connect_timeout_ms, 5_000);
        assert_eq!(policy.retry.max_attempts, 1);
        assert_eq!(policy.retry.on, RetryOn::default());
    }
}
