//! The typed call record and event of an integration.
//!
//! Every generated integration names these for its own request and response
//! types (`pub type VolcTtsCall = Call<VolcTtsRequest, VolcTtsResponse>`), so
//! the lifecycle logic exists once, here, and not once per spec.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::call::{CallId, IntoCall, TypedCall};
use crate::descriptor::IntegrationDescriptor;
use crate::error::{unknown_endpoint, ClientError};
use crate::failure::FailureKind;
use crate::integration::read_stored;
use crate::lifecycle::{CallStatus, EventKind};
use crate::store::CallRecord;

/// A generated request enum: one variant per endpoint that starts calls,
/// (de)serialized as `{"endpoint": ..., "params": ...}`.
pub trait CallRequest: IntoCall + Clone + Send + DeserializeOwned + 'static {
    /// The integration the request belongs to.
    const DESCRIPTOR: &'static IntegrationDescriptor;

    /// Reads stored parameters of a call of `endpoint`.
    ///
    /// # Errors
    ///
    /// [`ClientError::is_unknown_endpoint`] when `endpoint` starts no calls
    /// of the integration; a decode error when `params` do not fit its
    /// request entity.
    fn from_params(endpoint: &str, params: &Value) -> Result<Self, ClientError> {
        let descriptor = Self::DESCRIPTOR;
        if !descriptor
            .endpoints
            .iter()
            .any(|e| e.name == endpoint && e.starts_calls)
        {
            return Err(unknown_endpoint(descriptor.name, endpoint));
        }
        let tagged = serde_json::json!({ "endpoint": endpoint, "params": params });
        read_stored(endpoint, &tagged, "stored request parameters")
    }
}

/// A generated response enum: the typed response data of a finished call.
pub trait CallResponse: Clone + Send + 'static {
    /// Reads stored response data of a call of `endpoint`.
    fn from_result(endpoint: &str, value: &Value) -> Result<Self, ClientError>;
}

/// One call as the runtime stored it, typed: what hooks and
/// [`Runtime::get_typed`](crate::Runtime::get_typed) hand business code.
/// The runtime creates calls from requests ([`Runtime::create`](crate::Runtime::create))
/// and folds their events in the store; this is a read of the result. `R`
/// is the integration's request type, `S` its response type; generated code
/// names it `<Name>Call`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<R, S> {
    /// The call's id, chosen when it is created.
    pub id: CallId,
    /// Where it is in its lifecycle (the fold of its events, done by the store).
    pub status: CallStatus,
    /// The provider's id (or a generated one), known from `initialized` on.
    pub external_id: Option<String>,
    /// What business code asked for.
    pub request_params: R,
    /// What the provider answered, once completed.
    pub response_data: Option<S>,
    /// When the call was created.
    pub created_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it failed, as a value to branch on (`None` unless failed, and
    /// for calls that failed before kinds were stored).
    pub error_kind: Option<FailureKind>,
    /// When it fails with [`FailureKind::Timeout`] if it has not ended.
    pub deadline_at: Option<DateTime<Utc>>,
    /// How many times the runtime has sent it.
    pub attempts: u32,
    /// The connection it is sent with; `None`: the integration's default
    /// connection.
    pub connection: Option<String>,
}

/// A lifecycle event of a call: `initialized -> processing -> completed | failed`.
/// `initialized` carries the call id; every event carries the external id,
/// by which later events find their call. Generated code names it `<Name>Event`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<S> {
    /// The provider accepted the call.
    Initialized {
        /// The call's id.
        call_id: CallId,
        /// The provider's id, or a generated one.
        external_id: String,
    },
    /// The provider works on the call.
    Processing {
        /// Finds the call.
        external_id: String,
    },
    /// The call finished successfully.
    Completed {
        /// Finds the call.
        external_id: String,
        /// The typed result, when the endpoint has one.
        result: Option<S>,
    },
    /// The call failed.
    Failed {
        /// Finds the call.
        external_id: String,
        /// Why.
        error: String,
        /// Why, as a value to branch on.
        kind: Option<FailureKind>,
    },
}

impl<S> Event<S> {
    /// The event's kind, for the state machine.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Initialized { .. } => EventKind::Initialized,
            Event::Processing { .. } => EventKind::Processing,
            Event::Completed { .. } => EventKind::Completed,
            Event::Failed { .. } => EventKind::Failed,
        }
    }

    /// The external id every event carries.
    pub fn external_id(&self) -> &str {
        match self {
            Event::Initialized { external_id, .. }
            | Event::Processing { external_id }
            | Event::Completed { external_id, .. }
            | Event::Failed { external_id, .. } => external_id,
        }
    }
}

impl<R: IntoCall, S> Call<R, S> {
    /// The endpoint this call was created for.
    pub fn endpoint(&self) -> &'static str {
        self.request_params.endpoint()
    }
}

impl<R: CallRequest, S: CallResponse> TypedCall for Call<R, S> {
    const INTEGRATION: &'static str = R::INTEGRATION;

    fn from_record(record: &CallRecord) -> Result<Self, ClientError> {
        let response_data = match &record.response_data {
            Some(value) => Some(S::from_result(&record.endpoint, value)?),
            None => None,
        };
        Ok(Call {
            id: record.id,
            status: record.status,
            external_id: record.external_id.clone(),
            request_params: R::from_params(&record.endpoint, &record.params)?,
            response_data,
            created_at: record.created_at,
            completed_at: record.completed_at,
            error: record.error.clone(),
            error_kind: record.error_kind,
            deadline_at: record.deadline_at,
            connection: record.connection.clone(),
            attempts: record.attempts,
        })
    }
}
