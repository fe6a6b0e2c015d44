//! Cancelling a call: the one way business code and operators stop one.
//!
//! A call that was never acknowledged (`pending`) fails at once with kind
//! [`FailureKind::Cancelled`]. A call the provider works on (`processing`)
//! is stopped by the provider: the runtime sends the cancel endpoint the
//! spec ties to the call's start endpoint (its `cancel` key) and records
//! what the answer says. A terminal call is refused.
//!
//! Every event goes through the event sink under the lifecycle keys, so a
//! cancellation racing a completion (a webhook, a poll, the start's answer)
//! ends in exactly one terminal event, whichever is recorded first.

use std::fmt;

use super::connected::{Connections, Resolution};
use super::events::news::{events_of, failed, generated_external_id};
use super::events::{EventSink, Subject};
use crate::call::{CallId, RemoteStatus, Reply};
use crate::error::ClientError;
use crate::failure::FailureKind;
use crate::integration::Integration;
use crate::lifecycle::{CallStatus, EventKind};
use crate::store::{CallRecord, EventSource, NewEvent, StoreError};

/// Why a call was not cancelled.
///
/// Branch on the `is_*` methods; the `Display` text says what happened.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct CancelError {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("call {0} not found")]
    NotFound(CallId),
    #[error("call {id} is already {status}; a finished call cannot be cancelled")]
    Terminal { id: CallId, status: CallStatus },
    #[error(
        "call {id} is processing at the provider, and endpoint `{endpoint}` of `{integration}` has no \
         cancel endpoint (the spec's `cancel` key): the provider cannot be asked to stop it"
    )]
    NotCancellable {
        id: CallId,
        integration: String,
        endpoint: String,
    },
    #[error(
        "integration `{integration}` of call {id} is not registered here, so its provider cannot be asked to stop it"
    )]
    UnknownIntegration { id: CallId, integration: String },
    #[error("call {id} runs under connection `{connection}`, which cannot be used here: {why}")]
    Connection {
        id: CallId,
        connection: String,
        why: String,
    },
    #[error("the provider did not cancel call {id}: {error}")]
    Provider {
        id: CallId,
        #[source]
        error: ClientError,
    },
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
}

impl CancelError {
    /// No call has that id.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, Kind::NotFound(_))
    }

    /// The call had ended already (or ended meanwhile, by another event
    /// that won the race): [`CancelError::status`] says how.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind, Kind::Terminal { .. })
    }

    /// The provider works on the call and the spec declares no way to stop
    /// it (no `cancel` endpoint), or its integration is not registered.
    pub fn is_not_cancellable(&self) -> bool {
        matches!(
            self.kind,
            Kind::NotCancellable { .. } | Kind::UnknownIntegration { .. } | Kind::Connection { .. }
        )
    }

    /// The cancel request failed or was refused; nothing was recorded and
    /// the call goes on. [`CancelError::client_error`] says how.
    pub fn is_provider(&self) -> bool {
        matches!(self.kind, Kind::Provider { .. })
    }

    /// The store failed.
    pub fn is_store(&self) -> bool {
        matches!(self.kind, Kind::Store(_))
    }

    /// The call's status, when it had ended already.
    pub fn status(&self) -> Option<CallStatus> {
        match self.kind {
            Kind::Terminal { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The provider's error, when the cancel request failed.
    pub fn client_error(&self) -> Option<&ClientError> {
        match &self.kind {
            Kind::Provider { error, .. } => Some(error),
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

impl From<Kind> for CancelError {
    fn from(kind: Kind) -> Self {
        CancelError { kind }
    }
}

impl From<StoreError> for CancelError {
    fn from(error: StoreError) -> Self {
        Kind::Store(error).into()
    }
}

/// Why, as stored in the `failed` event.
struct Reason<'a>(&'a str);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.trim() {
            "" => f.write_str("cancelled"),
            reason => write!(f, "cancelled: {reason}"),
        }
    }
}

/// Cancels call `id` (see the [module docs](self)); `integration` is the
/// call's integration when this process has it. A call of a connection is
/// cancelled at the provider with that connection's credentials, through
/// `connections` (with the process's worker id); without them it is not
/// cancelled there, never with the default connection's. Returns the call as it is
/// after the cancellation: `failed` with kind `cancelled`, or still
/// `processing` when the provider accepted to stop it but has not yet (its
/// poll or webhook reports the end), or `completed` when the provider's
/// answer says it finished first.
pub(crate) async fn cancel(
    events: &EventSink,
    find_integration: impl FnOnce(&str) -> Option<std::sync::Arc<dyn Integration>>,
    connections: Option<(&Connections, &str)>,
    id: CallId,
    reason: &str,
) -> Result<CallRecord, CancelError> {
    let store = events.store();
    let call = store.get(id).await?.ok_or(Kind::NotFound(id))?;
    let reason = Reason(reason);
    let news = match call.status {
        CallStatus::Completed | CallStatus::Failed => {
            return Err(Kind::Terminal {
                id,
                status: call.status,
            }
            .into())
        }
        // Never sent: it ends here, in one event (two appends would leave
        // a window in which a worker could take up a call that is
        // `processing` under an id no provider knows). It carries the
        // generated id every call gets. A start already in flight may
        // still reach the provider; its answer is then recorded as ignored
        // events.
        CallStatus::Pending => {
            vec![failed(FailureKind::Cancelled, reason.to_string()).external_id(generated_external_id(id))]
        }
        CallStatus::Processing => {
            let integration = find_integration(&call.integration).ok_or_else(|| Kind::UnknownIntegration {
                id,
                integration: call.integration.clone(),
            })?;
            let integration = match call.connection.as_deref() {
                None => integration,
                Some(connection) => {
                    let unusable = |why: String| Kind::Connection {
                        id,
                        connection: connection.to_owned(),
                        why,
                    };
                    let (connections, owner) =
                        connections.ok_or_else(|| unusable("this process does not open connections".to_owned()))?;
                    match connections.resolve(&integration, &call, connection, owner).await? {
                        Resolution::Ready(connected, _) => connected,
                        Resolution::Fails(_, why) => return Err(unusable(why).into()),
                    }
                }
            };
            let not_cancellable = || Kind::NotCancellable {
                id,
                integration: call.integration.clone(),
                endpoint: call.endpoint.clone(),
            };
            let external_id = call.external_id.as_deref().ok_or_else(not_cancellable)?;
            let request = integration
                .cancel(&call.endpoint, external_id)
                .ok_or_else(not_cancellable)?;
            let reply = request.await.map_err(|error| Kind::Provider { id, error })?;
            answer_events(&reply, &reason)
        }
    };
    let terminal = news
        .iter()
        .any(|event| matches!(event.kind, EventKind::Completed | EventKind::Failed));
    let outcomes = events
        .record(&call.integration, Subject::Call(id), EventSource::Cancel, news, None)
        .await?;
    let call = store.get(id).await?.ok_or(Kind::NotFound(id))?;
    // Another terminal event was recorded first: the race is lost, and the
    // caller hears how the call ended instead.
    let won = outcomes
        .iter()
        .any(|outcome| outcome.is_applied() && outcome.status().is_terminal());
    if terminal && !won {
        return Err(Kind::Terminal {
            id,
            status: call.status,
        }
        .into());
    }
    Ok(call)
}

/// What the cancel endpoint's answer means: it finished first (its status
/// says `completed`), it still works on stopping (`processing`), or it
/// stopped (any other answer: no status, `failed` or `cancelled`), which
/// fails the call with kind `cancelled`.
fn answer_events(reply: &Reply<serde_json::Value>, reason: &Reason<'_>) -> Vec<NewEvent> {
    match reply.status {
        Some(RemoteStatus::Completed | RemoteStatus::Processing) => events_of(reply),
        Some(RemoteStatus::Failed | RemoteStatus::Cancelled) | None => {
            let message = match &reply.error {
                Some(said) => format!("{reason} (the provider says: {said})"),
                None => reason.to_string(),
            };
            vec![failed(FailureKind::Cancelled, message)]
        }
    }
}
