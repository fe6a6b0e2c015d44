//! Why a call failed, as a value business code can branch on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// Why a call failed: stored with the `failed` event and on the call
/// ([`CallRecord::error_kind`](crate::CallRecord::error_kind)), shown by the
/// operations API and the CLI, and a label of
/// `integration_calls_finished_total`.
///
/// The error text says the details; the kind says what to do about it
/// without parsing that text. Calls that failed before kinds were stored
/// have none.
///
/// ```
/// use integration_runtime::FailureKind;
///
/// assert_eq!(FailureKind::Timeout.as_str(), "timeout");
/// assert_eq!("cancelled".parse::<FailureKind>(), Ok(FailureKind::Cancelled));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The call's deadline passed (`give_up_after_s`), or its request timed
    /// out and was not retried.
    Timeout,
    /// Cancelled by business code or an operator
    /// ([`Runtime::cancel`](crate::Runtime::cancel)), or the provider
    /// reports it cancelled (a status the spec maps to `"cancelled"`).
    Cancelled,
    /// The provider reports that the call failed.
    ProviderFailed,
    /// The provider refused the request with a 4xx answer.
    Rejected,
    /// The provider answered 5xx and the request was not retried.
    ServerError,
    /// The provider could not be reached (connection or transport
    /// failure), and the request was not retried.
    Unreachable,
    /// The request failed on every attempt its retry policy allows.
    Exhausted,
    /// The provider refused the credentials, or they could not be obtained.
    Auth,
    /// The call's parameters do not satisfy the spec.
    InvalidParams,
    /// The provider's answer could not be read: not the shape the spec
    /// describes, no external id where the spec says, a redirect not
    /// followed, or an external id that belongs to another call.
    InvalidAnswer,
    /// The provider's answer was larger than the policy's `max_response_bytes`.
    ResponseTooLarge,
    /// The integration is misconfigured in this process (a missing
    /// setting), so the request could not be built.
    Config,
    /// The spec changed since the call was created, and the current spec
    /// cannot finish it (its endpoint is gone, it can no longer be polled
    /// or receive webhooks, its parameters no longer decode).
    SpecChanged,
    /// The call's connection was revoked (before or while it ran): its
    /// credentials are no longer used.
    Revoked,
    /// The call names a connection its integration does not have.
    UnknownConnection,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 15] = [
        FailureKind::Timeout,
        FailureKind::Cancelled,
        FailureKind::ProviderFailed,
        FailureKind::Rejected,
        FailureKind::ServerError,
        FailureKind::Unreachable,
        FailureKind::Exhausted,
        FailureKind::Auth,
        FailureKind::InvalidParams,
        FailureKind::InvalidAnswer,
        FailureKind::ResponseTooLarge,
        FailureKind::Config,
        FailureKind::SpecChanged,
        FailureKind::Revoked,
        FailureKind::UnknownConnection,
    ];

    /// The kind as stored and shown: `timeout`, `cancelled`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Cancelled => "cancelled",
            FailureKind::ProviderFailed => "provider_failed",
            FailureKind::Rejected => "rejected",
            FailureKind::ServerError => "server_error",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Exhausted => "exhausted",
            FailureKind::Auth => "auth",
            FailureKind::InvalidParams => "invalid_params",
            FailureKind::InvalidAnswer => "invalid_answer",
            FailureKind::ResponseTooLarge => "response_too_large",
            FailureKind::Config => "config",
            FailureKind::SpecChanged => "spec_changed",
            FailureKind::Revoked => "revoked",
            FailureKind::UnknownConnection => "unknown_connection",
        }
    }

    /// The kind of a request that failed with `error` and is not retried.
    pub fn of(error: &ClientError) -> FailureKind {
        if error.is_timeout() {
            FailureKind::Timeout
        } else if error.is_connect() || error.is_transport() || error.is_circuit_open() || error.is_rate_limited() {
            FailureKind::Unreachable
        } else if error.is_response_too_large() {
            FailureKind::ResponseTooLarge
        } else if error.is_auth() {
            FailureKind::Auth
        } else if error.is_invalid_request() {
            FailureKind::InvalidParams
        } else if error.is_unknown_endpoint() {
            FailureKind::SpecChanged
        } else if error.is_config() {
            FailureKind::Config
        } else {
            match error.status() {
                Some(400..=499) => FailureKind::Rejected,
                Some(500..=599) => FailureKind::ServerError,
                _ => FailureKind::InvalidAnswer,
            }
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a known failure kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure kind `{0}` (known: timeout, cancelled, provider_failed, rejected, server_error, unreachable, exhausted, auth, invalid_params, invalid_answer, response_too_large, config, spec_changed, revoked, unknown_connection)")]
pub struct ParseFailureKindError(String);

impl FromStr for FailureKind {
    type Err = ParseFailureKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ParseFailureKindError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in FailureKind::ALL {
            assert_eq!(kind.as_str().parse::<FailureKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        let error = "late".parse::<FailureKind>().unwrap_err();
        assert!(error.to_string().contains("`late`"), "{error}");
    }

    #[test]
    fn client_errors_map_to_their_kind() {
        let status = |status: u16| ClientError::status_error("send", status, None);
        assert_eq!(FailureKind::of(&status(404)), FailureKind::Rejected);
        assert_eq!(FailureKind::of(&status(429)), FailureKind::Rejected);
        assert_eq!(FailureKind::of(&status(503)), FailureKind::ServerError);
        assert_eq!(FailureKind::of(&status(302)), FailureKind::InvalidAnswer);
        let timeout = ClientError::timeout("send", false, Some(10));
        assert_eq!(FailureKind::of(&timeout), FailureKind::Timeout);
        let connect = ClientError::connect("send", "refused".into());
        assert_eq!(FailureKind::of(&connect), FailureKind::Unreachable);
        let large = ClientError::too_large("send", 10);
        assert_eq!(FailureKind::of(&large), FailureKind::ResponseTooLarge);
    }
}
