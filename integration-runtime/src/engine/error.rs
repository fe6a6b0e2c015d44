//! The error of runtime operations.

use crate::error::ClientError;
use crate::store::StoreError;

/// What went wrong in a [`Runtime`](super::Runtime) operation.
///
/// Branch on the `is_*` methods; the `Display` text says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct EngineError {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error(
        "integration `{0}` is not registered with this runtime (register it with `Runtime::builder().integration(..)`)"
    )]
    UnknownIntegration(String),
    #[error("endpoint `{endpoint}` of `{integration}` does not start calls (it has no `request` in the spec)")]
    NotAStartingEndpoint { integration: String, endpoint: String },
    #[error(transparent)]
    Invalid(ClientError),
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    #[error("call {id} belongs to `{actual}`, not to `{expected}`")]
    WrongIntegration {
        id: String,
        expected: &'static str,
        actual: String,
    },
    #[error("stored call {id} could not be read as `{integration}`: {error}")]
    Decode {
        id: String,
        integration: &'static str,
        #[source]
        error: ClientError,
    },
    #[error("the runtime is misconfigured: {0}")]
    Config(String),
    #[error("the runtime is already running (`run` was called twice)")]
    AlreadyRunning,
}

impl EngineError {
    pub(crate) fn unknown_integration(name: &str) -> Self {
        Kind::UnknownIntegration(name.to_owned()).into()
    }

    pub(crate) fn not_a_starting_endpoint(integration: &str, endpoint: &str) -> Self {
        Kind::NotAStartingEndpoint {
            integration: integration.to_owned(),
            endpoint: endpoint.to_owned(),
        }
        .into()
    }

    pub(crate) fn invalid(error: ClientError) -> Self {
        Kind::Invalid(error).into()
    }

    pub(crate) fn wrong_integration(id: impl ToString, expected: &'static str, actual: &str) -> Self {
        Kind::WrongIntegration {
            id: id.to_string(),
            expected,
            actual: actual.to_owned(),
        }
        .into()
    }

    pub(crate) fn decode(id: impl ToString, integration: &'static str, error: ClientError) -> Self {
        Kind::Decode {
            id: id.to_string(),
            integration,
            error,
        }
        .into()
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Kind::Config(message.into()).into()
    }

    pub(crate) fn already_running() -> Self {
        Kind::AlreadyRunning.into()
    }

    /// The request names an integration the runtime does not know.
    pub fn is_unknown_integration(&self) -> bool {
        matches!(self.kind, Kind::UnknownIntegration(_))
    }

    /// The request was rejected before anything was stored: its parameters
    /// violate the spec ([`EngineError::client_error`] has every violation),
    /// or its endpoint does not start calls.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_) | Kind::NotAStartingEndpoint { .. })
    }

    /// The store failed; [`EngineError::store_error`] says how.
    pub fn is_store(&self) -> bool {
        matches!(self.kind, Kind::Store(_))
    }

    /// A typed read asked for a call of another integration, or the stored
    /// call does not fit the generated types.
    pub fn is_type_mismatch(&self) -> bool {
        matches!(self.kind, Kind::WrongIntegration { .. } | Kind::Decode { .. })
    }

    /// The builder's settings are incomplete or contradictory.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// `run` was called while the runtime was already running.
    pub fn is_already_running(&self) -> bool {
        matches!(self.kind, Kind::AlreadyRunning)
    }

    /// The validation error, when the request was invalid.
    pub fn client_error(&self) -> Option<&ClientError> {
        match &self.kind {
            Kind::Invalid(error) | Kind::Decode { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The store's error, when the store failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match &self.kind {
            Kind::Store(error) => Some(error),
            _ => None,
        }
    }
}

impl From<Kind> for EngineError {
    fn from(kind: Kind) -> Self {
        EngineError { kind }
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        Kind::Store(error).into()
    }
}
