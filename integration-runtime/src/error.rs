//! The errors of calls, validation and configuration.

use std::fmt;

/// A call to a provider failed, or could not be made.
///
/// The error is opaque; ask it what happened with the `is_*` methods,
/// [`status`](ClientError::status) and [`provider_message`](ClientError::provider_message).
/// Its `Display` names the endpoint, the HTTP status and the provider's message,
/// and never contains a credential.
#[derive(Debug, Clone)]
pub struct ClientError {
    endpoint: String,
    kind: Kind,
    /// The provider's `Retry-After`, when its answer had one.
    retry_after: Option<std::time::Duration>,
}

#[derive(Debug, Clone, thiserror::Error)]
enum Kind {
    #[error("the request timed out{}", duration(*.after_ms))]
    Timeout { connect: bool, after_ms: Option<u64> },
    #[error("could not connect to the provider: {detail}")]
    Connect { detail: String },
    #[error("the request failed: {detail}")]
    Transport { detail: String },
    #[error("the provider's answer is larger than the limit of {limit} bytes (`max_response_bytes`)")]
    TooLarge { limit: u64 },
    #[error("redirect not followed: {detail}")]
    Redirect { detail: String },
    #[error("the provider answered HTTP {}{}", status_text(*.status), message_text(.message))]
    Status { status: u16, message: Option<String> },
    #[error("could not obtain an access token{}: {detail}", .status.map(|s| format!(" (HTTP {})", status_text(s))).unwrap_or_default())]
    Auth { status: Option<u16>, detail: String },
    #[error("could not read the provider's answer: {detail}")]
    Decode { detail: String },
    #[error("invalid request: {0}")]
    InvalidRequest(ValidationError),
    #[error("no such endpoint in integration `{integration}`")]
    UnknownEndpoint { integration: String },
    #[error("configuration problem: {detail}")]
    Config { detail: String },
    #[error("not sent: the circuit breaker is open after repeated failures; the next attempt is allowed in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
    #[error("not sent: the rate limit would delay the request by {wait_ms} ms, more than its timeout")]
    RateLimited { wait_ms: u64 },
    #[error("not sent: {limit} requests were in flight (the concurrency limit) for the whole {waited_ms} ms timeout")]
    Busy { limit: u32, waited_ms: u64 },
}

fn duration(after_ms: Option<u64>) -> String {
    after_ms.map(|ms| format!(" after {ms} ms")).unwrap_or_default()
}

fn status_text(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn message_text(message: &Option<String>) -> String {
    message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint `{}`: {}", self.endpoint, self.kind)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::InvalidRequest(error) => Some(error),
            _ => None,
        }
    }
}

impl ClientError {
    fn new(endpoint: &str, kind: Kind) -> Self {
        ClientError {
            endpoint: endpoint.to_owned(),
            kind,
            retry_after: None,
        }
    }

    /// The same error, carrying the provider's `Retry-After`.
    pub(crate) fn with_retry_after(mut self, retry_after: Option<std::time::Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// How long the provider asked to wait before trying again: its
    /// `Retry-After` header (delta-seconds, or an HTTP date turned into the
    /// time left until then), typically on a 429 or 503. `None` without one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    pub(crate) fn timeout(endpoint: &str, connect: bool, after_ms: Option<u64>) -> Self {
        ClientError::new(endpoint, Kind::Timeout { connect, after_ms })
    }

    pub(crate) fn connect(endpoint: &str, detail: String) -> Self {
        ClientError::new(endpoint, Kind::Connect { detail })
    }

    pub(crate) fn transport(endpoint: &str, detail: String) -> Self {
        ClientError::new(endpoint, Kind::Transport { detail })
    }

    pub(crate) fn too_large(endpoint: &str, limit: u64) -> Self {
        ClientError::new(endpoint, Kind::TooLarge { limit })
    }

    pub(crate) fn redirect(endpoint: &str, detail: String) -> Self {
        ClientError::new(endpoint, Kind::Redirect { detail })
    }

    pub(crate) fn status_error(endpoint: &str, status: u16, message: Option<String>) -> Self {
        ClientError::new(endpoint, Kind::Status { status, message })
    }

    pub(crate) fn auth(endpoint: &str, status: Option<u16>, detail: String) -> Self {
        ClientError::new(endpoint, Kind::Auth { status, detail })
    }

    pub(crate) fn config(endpoint: &str, detail: String) -> Self {
        ClientError::new(endpoint, Kind::Config { detail })
    }

    pub(crate) fn circuit_open(endpoint: &str, retry_in: std::time::Duration) -> Self {
        let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
        ClientError::new(endpoint, Kind::CircuitOpen { retry_in_ms })
    }

    pub(crate) fn rate_limited(endpoint: &str, wait: std::time::Duration) -> Self {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        ClientError::new(endpoint, Kind::RateLimited { wait_ms })
    }

    pub(crate) fn busy(endpoint: &str, limit: u32, waited: std::time::Duration) -> Self {
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        ClientError::new(endpoint, Kind::Busy { limit, waited_ms })
    }

    /// Whether the failure says the provider is in trouble: a 5xx, a timeout, a
    /// connection or transport failure. These count against the circuit breaker.
    pub(crate) fn is_provider_failure(&self) -> bool {
        match &self.kind {
            Kind::Timeout { .. } | Kind::Connect { .. } | Kind::Transport { .. } => true,
            Kind::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The request (or its connection) took longer than the policy allows.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// No connection could be made (refused, DNS failure, TLS failure, or connect timeout).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect { .. } | Kind::Timeout { connect: true, .. })
    }

    /// The connection broke after it was made: reset in the middle of the
    /// answer, or closed before the whole body (shorter than its
    /// `Content-Length`) arrived. Transient; the retry class `"transport"`.
    pub fn is_transport(&self) -> bool {
        matches!(self.kind, Kind::Transport { .. })
    }

    /// The provider's answer was larger than the policy's `max_response_bytes`
    /// (by its `Content-Length`, or while it was read); the rest was not read.
    /// The retry class `"too_large"`.
    pub fn is_response_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge { .. })
    }

    /// The provider redirected the request somewhere the policy's `redirects`
    /// does not allow: to another origin (scheme, host and port) by default,
    /// with a body to another origin, or more than ten times. The target was
    /// not requested. Never retried.
    pub fn is_redirect(&self) -> bool {
        matches!(self.kind, Kind::Redirect { .. })
    }

    /// The provider answered with a non-2xx status; see [`status`](ClientError::status).
    pub fn is_status(&self) -> bool {
        matches!(self.kind, Kind::Status { .. })
    }

    /// The provider's answer did not have the shape the spec describes.
    pub fn is_decode(&self) -> bool {
        matches!(self.kind, Kind::Decode { .. })
    }

    /// The request was not sent because it is invalid (a violated constraint,
    /// a header value with a control character, ...).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self.kind, Kind::InvalidRequest(_))
    }

    /// The integration is misconfigured (bad credentials format, HTTP client setup).
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config { .. })
    }

    /// An OAuth2 access token could not be obtained.
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, Kind::Auth { .. })
    }

    /// The endpoint is not part of the integration.
    pub fn is_unknown_endpoint(&self) -> bool {
        matches!(self.kind, Kind::UnknownEndpoint { .. })
    }

    /// The request was not sent because the integration's circuit breaker is open
    /// (the provider failed repeatedly). Not a failure of the call: try again after
    /// [`admit_after`](ClientError::admit_after).
    pub fn is_circuit_open(&self) -> bool {
        matches!(self.kind, Kind::CircuitOpen { .. })
    }

    /// The request was not sent because the integration's own limits would have held
    /// it longer than its timeout: the rate limit (then [`admit_after`](ClientError::admit_after)
    /// says how long it would have waited) or the concurrency limit. Not a failure
    /// of the call: try again later. (A provider's HTTP 429 is a status error.)
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.kind, Kind::RateLimited { .. } | Kind::Busy { .. })
    }

    /// For a request the local policies did not let through: how long until they
    /// would (the circuit half-opens, the rate limit has a slot). `None` otherwise,
    /// and for the concurrency limit, which depends on other requests finishing.
    pub fn admit_after(&self) -> Option<std::time::Duration> {
        match self.kind {
            Kind::CircuitOpen { retry_in_ms } => Some(std::time::Duration::from_millis(retry_in_ms)),
            Kind::RateLimited { wait_ms } => Some(std::time::Duration::from_millis(wait_ms)),
            _ => None,
        }
    }

    /// The HTTP status the provider (or its token endpoint) answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            Kind::Status { status, .. } => Some(*status),
            Kind::Auth { status, .. } => *status,
            _ => None,
        }
    }

    /// The provider's error message, read at the endpoint's `error` path.
    pub fn provider_message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Status { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// The constraints the request violated, when it is an invalid request.
    pub fn validation(&self) -> Option<&ValidationError> {
        match &self.kind {
            Kind::InvalidRequest(error) => Some(error),
            _ => None,
        }
    }

    /// The endpoint the call was for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A request violated constraints of its spec; lists every violation.
///
/// ```text
/// 2 constraints violated:
///   text: length must be at least 1 (got 0)
///   speed: must be at most 2 (got 3.5)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    violations: Vec<(String, String)>,
}

impl ValidationError {
    pub(crate) fn from_violations(violations: Vec<(String, String)>) -> Self {
        ValidationError { violations }
    }

    pub(crate) fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            violations: vec![(field.into(), message.into())],
        }
    }

    /// Every violation: the field's path (`owner.name`, `tags[2]`) and what is wrong.
    pub fn violations(&self) -> &[(String, String)] {
        &self.violations
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.violations.as_slice() {
            [] => f.write_str("no constraint violated"),
            [(field, message)] => write!(f, "{field}: {message}"),
            all => {
                write!(f, "{} constraints violated:", all.len())?;
                for (field, message) in all {
                    write!(f, "\n  {field}: {message}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ValidationError {}

/// The integration's configuration is incomplete or wrong; lists every problem at once.
///
/// ```text
/// VolcTts is missing 2 environment variables:
///   VOLC_TTS_TOKEN: API token from the provider console
///   VOLC_TTS_APP_ID: application id from the provider console
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    integration: String,
    missing: Vec<(String, String)>,
    invalid: Vec<(String, String)>,
}

impl ConfigError {
    pub(crate) fn new(integration: &str, missing: Vec<(String, String)>, invalid: Vec<(String, String)>) -> Self {
        ConfigError {
            integration: integration.to_owned(),
            missing,
            invalid,
        }
    }

    /// The missing environment variables, each with its purpose.
    pub fn missing(&self) -> &[(String, String)] {
        &self.missing
    }

    /// The settings whose value is wrong, each with what is wrong.
    pub fn invalid(&self) -> &[(String, String)] {
        &self.invalid
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.integration.is_empty() {
            "the integration"
        } else {
            &self.integration
        };
        let mut first = true;
        if !self.missing.is_empty() {
            let count = plural(self.missing.len(), "environment variable", "environment variables");
            write!(f, "{who} is missing {count}:")?;
            for (var, purpose) in &self.missing {
                write!(f, "\n  {var}: {purpose}")?;
            }
            first = false;
        }
        if !self.invalid.is_empty() {
            if !first {
                f.write_str("\n")?;
            }
            let count = plural(self.invalid.len(), "invalid setting", "invalid settings");
            write!(f, "{who} has {count}:")?;
            for (var, problem) in &self.invalid {
                write!(f, "\n  {var}: {problem}")?;
            }
            first = false;
        }
        if first {
            write!(f, "{who} is misconfigured")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads a `Retry-After` header value: delta-seconds (`120`) or an HTTP
/// date (`Wed, 21 Oct 2015 07:28:00 GMT`, as the time left after `now`; a
/// date in the past is zero). Anything else is `None`.
pub(crate) fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<std::time::Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly large numbers saturate instead of failing.
        return Some(std::time::Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or_default())
}

/// The request failed its spec's constraints and was not sent.
pub fn invalid_request(endpoint: &str, error: ValidationError) -> ClientError {
    ClientError::new(endpoint, Kind::InvalidRequest(error))
}

/// The parameters stored for a call do not deserialize into the endpoint's request entity.
pub fn invalid_params(endpoint: &str, error: &serde_json::Error) -> ClientError {
    invalid_request(endpoint, ValidationError::single("params", error.to_string()))
}

/// The integration has no endpoint of that name.
pub fn unknown_endpoint(integration: &str, endpoint: &str) -> ClientError {
    ClientError::new(
        endpoint,
        Kind::UnknownEndpoint {
            integration: integration.to_owned(),
        },
    )
}

/// The provider's answer does not have the shape the spec describes.
pub fn decode_error(endpoint: &str, message: String) -> ClientError {
    ClientError::new(endpoint, Kind::Decode { detail: message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_show_status_and_provider_message() {
        let error = ClientError::status_error("synthesize", 401, Some("invalid token".into()));
        assert_eq!(
            error.to_string(),
            "endpoint `synthesize`: the provider answered HTTP 401 Unauthorized: invalid token"
        );
        assert!(error.is_status());
        assert!(!error.is_timeout() && !error.is_connect() && !error.is_decode());
        assert_eq!(error.status(), Some(401));
        assert_eq!(error.provider_message(), Some("invalid token"));
        assert_eq!(error.endpoint(), "synthesize");

        let bare = ClientError::status_error("query", 599, None);
        assert_eq!(bare.to_string(), "endpoint `query`: the provider answered HTTP 599");
        assert_eq!(bare.provider_message(), None);
    }

    #[test]
    fn each_kind_answers_only_its_question() {
        let timeout = ClientError::timeout("a", false, Some(250));
        assert!(timeout.is_timeout() && !timeout.is_connect());
        assert_eq!(timeout.to_string(), "endpoint `a`: the request timed out after 250 ms");
        let connect_timeout = ClientError::timeout("a", true, None);
        assert!(connect_timeout.is_timeout() && connect_timeout.is_connect());
        let connect = ClientError::connect("a", "connection refused".into());
        assert!(connect.is_connect() && !connect.is_timeout());
        assert_eq!(connect.status(), None);
        let decode = decode_error("a", "`$.id` is missing".into());
        assert!(decode.is_decode());
        assert_eq!(
            decode.to_string(),
            "endpoint `a`: could not read the provider's answer: `$.id` is missing"
        );
        let config = ClientError::config("a", "bad".into());
        assert!(config.is_config() && !config.is_invalid_request());
        let unknown = unknown_endpoint("VolcTts", "nope");
        assert!(unknown.is_unknown_endpoint());
        assert_eq!(
            unknown.to_string(),
            "endpoint `nope`: no such endpoint in integration `VolcTts`"
        );
        let auth = ClientError::auth("a", Some(400), "invalid_client".into());
        assert!(auth.is_auth() && !auth.is_status());
        assert_eq!(auth.status(), Some(400));
        assert_eq!(
            auth.to_string(),
            "endpoint `a`: could not obtain an access token (HTTP 400 Bad Request): invalid_client"
        );
    }

    #[test]
    fn refusals_of_the_local_policies_say_when_to_come_back() {
        use std::time::Duration;
        let open = ClientError::circuit_open("a", Duration::from_millis(1_500));
        assert!(open.is_circuit_open() && !open.is_rate_limited() && !open.is_provider_failure());
        assert_eq!(open.admit_after(), Some(Duration::from_millis(1_500)));
        assert_eq!(open.status(), None);
        assert_eq!(
            open.to_string(),
            "endpoint `a`: not sent: the circuit breaker is open after repeated failures; the next attempt is allowed in 1500 ms"
        );
        let limited = ClientError::rate_limited("a", Duration::from_millis(400));
        assert!(limited.is_rate_limited() && !limited.is_circuit_open());
        assert_eq!(limited.admit_after(), Some(Duration::from_millis(400)));
        let busy = ClientError::busy("a", 4, Duration::from_millis(1_000));
        assert!(busy.is_rate_limited() && busy.admit_after().is_none());
        assert_eq!(
            busy.to_string(),
            "endpoint `a`: not sent: 4 requests were in flight (the concurrency limit) for the whole 1000 ms timeout"
        );
        assert!(ClientError::status_error("a", 503, None).is_provider_failure());
        assert!(!ClientError::status_error("a", 429, None).is_provider_failure());
        assert!(ClientError::transport("a", "reset".into()).is_provider_failure());
        let large = ClientError::too_large("a", 1_024);
        assert!(large.is_response_too_large() && !large.is_provider_failure() && !large.is_transport());
        assert_eq!(
            large.to_string(),
            "endpoint `a`: the provider's answer is larger than the limit of 1024 bytes (`max_response_bytes`)"
        );
        let redirect = ClientError::redirect("a", "HTTP 307 to another origin, http://b:1".into());
        assert!(redirect.is_redirect() && !redirect.is_provider_failure() && !redirect.is_status());
        assert_eq!(
            redirect.to_string(),
            "endpoint `a`: redirect not followed: HTTP 307 to another origin, http://b:1"
        );
        assert!(ClientError::timeout("a", false, None).is_provider_failure());
        assert!(ClientError::status_error("a", 503, None).admit_after().is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        use std::time::Duration;
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let error = ClientError::status_error("a", 429, None).with_retry_after(Some(Duration::from_secs(2)));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(ClientError::status_error("a", 429, None).retry_after(), None);
    }

    #[test]
    fn validation_errors_list_every_violation() {
        let one = ValidationError::single("text", "length must be at least 1 (got 0)");
        assert_eq!(one.to_string(), "text: length must be at least 1 (got 0)");
        let two = ValidationError::from_violations(vec![
            ("text".into(), "length must be at least 1 (got 0)".into()),
            ("speed".into(), "must be at most 2 (got 3.5)".into()),
        ]);
        assert_eq!(
            two.to_string(),
            "2 constraints violated:\n  text: length must be at least 1 (got 0)\n  speed: must be at most 2 (got 3.5)"
        );
        let error = invalid_request("synthesize", two.clone());
        assert!(error.is_invalid_request());
        assert_eq!(error.validation(), Some(&two));
        assert!(error
            .to_string()
            .starts_with("endpoint `synthesize`: invalid request: 2 constraints violated:\n  text:"));
    }

    #[test]
    fn invalid_params_carry_the_serde_message() {
        let serde_error = serde_json::from_str::<u8>("\"x\"").unwrap_err();
        let error = invalid_params("synthesize", &serde_error);
        assert!(error.is_invalid_request());
        assert_eq!(error.validation().map(|v| v.violations()[0].0.as_str()), Some("params"));
    }

    #[test]
    fn config_errors_list_every_problem() {
        let error = ConfigError::new(
            "VolcTts",
            vec![
                ("VOLC_TTS_TOKEN".into(), "API token from the provider console".into()),
                ("VOLC_TTS_APP_ID".into(), "application id".into()),
            ],
            vec![],
        );
        assert_eq!(
            error.to_string(),
            "VolcTts is missing 2 environment variables:\n  VOLC_TTS_TOKEN: API token from the provider console\n  VOLC_TTS_APP_ID: application id"
        );
        let both = ConfigError::new(
            "X",
            vec![("A".into(), "a".into())],
            vec![("base URL".into(), "`ftp://x` is not an http(s) URL".into())],
        );
        assert_eq!(
            both.to_string(),
            "X is missing 1 environment variable:\n  A: a\nX has 1 invalid setting:\n  base URL: `ftp://x` is not an http(s) URL"
        );
        assert_eq!(both.missing().len(), 1);
        assert_eq!(both.invalid().len(), 1);
    }
}
