//! Provider news as lifecycle events, under the one key scheme every path
//! shares.

use serde_json::Value;

use crate::call::{CallId, RemoteStatus, Reply};
use crate::failure::FailureKind;
use crate::lifecycle::EventKind;
use crate::store::NewEvent;

/// The key the runtime appends a lifecycle event of `kind` under.
///
/// Keys are unique per call, so each is recorded at most once per call:
///
/// | kind | key |
/// | --- | --- |
/// | `initialized` | `"initialized"` |
/// | `processing` | `"processing"` |
/// | `completed`, `failed` | `"terminal"` |
///
/// Every path that records provider news (the worker's start and polls,
/// webhooks, [`Runtime::record_reply`](crate::Runtime::record_reply), an
/// operator's refresh) appends under these keys, and both terminal kinds
/// share one: whichever records a terminal event first wins, and every later
/// one is a duplicate, so a call never has two terminal events in its log.
/// Where an event came from is kept in its payload
/// ([`EventPayload::source`](crate::EventPayload::source)), not in its key.
pub fn lifecycle_event_key(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Initialized => "initialized",
        EventKind::Processing => "processing",
        EventKind::Completed | EventKind::Failed => "terminal",
    }
}

/// The external id of a call whose provider gives none (sync endpoints
/// with `external_id = "generated"`, failures before an answer): the call
/// id itself, a UUID that stays the same when the call is re-executed.
pub(crate) fn generated_external_id(id: CallId) -> String {
    id.to_string()
}

pub(crate) fn initialized(external_id: &str) -> NewEvent {
    NewEvent::initialized(lifecycle_event_key(EventKind::Initialized), external_id)
}

pub(crate) fn processing() -> NewEvent {
    NewEvent::processing(lifecycle_event_key(EventKind::Processing))
}

pub(crate) fn completed(result: Value) -> NewEvent {
    NewEvent::completed(lifecycle_event_key(EventKind::Completed), result)
}

pub(crate) fn failed(kind: FailureKind, error: impl Into<String>) -> NewEvent {
    NewEvent::failed(lifecycle_event_key(EventKind::Failed), error).error_kind(kind)
}

/// What a failed status says when the provider gave no message.
const UNEXPLAINED_FAILURE: &str = "the provider reports that the call failed";

/// What a cancelled status says when the provider gave no message.
const UNEXPLAINED_CANCEL: &str = "the provider reports that the call was cancelled";

/// The events a status reply implies: `processing` first, so a reply that
/// already says the end still shows the whole sequence; none without a
/// status.
pub(crate) fn events_of(reply: &Reply<Value>) -> Vec<NewEvent> {
    match reply.status {
        None => Vec::new(),
        Some(status) => {
            let mut events = vec![processing()];
            events.extend(terminal_of(status, reply));
            events
        }
    }
}

/// The terminal event a status implies, if it is terminal.
pub(crate) fn terminal_of(status: RemoteStatus, reply: &Reply<Value>) -> Option<NewEvent> {
    match status {
        RemoteStatus::Processing => None,
        RemoteStatus::Completed => Some(completed(reply.result.clone().unwrap_or(Value::Null))),
        RemoteStatus::Failed => Some(failed(
            FailureKind::ProviderFailed,
            reply.error.clone().unwrap_or_else(|| UNEXPLAINED_FAILURE.to_owned()),
        )),
        RemoteStatus::Cancelled => Some(failed(
            FailureKind::Cancelled,
            reply.error.clone().unwrap_or_else(|| UNEXPLAINED_CANCEL.to_owned()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<RemoteStatus>) -> Reply<Value> {
        Reply {
            http_status: 200,
            external_id: Some("x".into()),
            status,
            result: Some(serde_json::json!({"ok": true})),
            error: None,
        }
    }

    #[test]
    fn a_status_reply_implies_processing_then_its_end() {
        let kinds = |status| {
            events_of(&reply(status))
                .into_iter()
                .map(|e| (e.kind, e.key))
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(None), vec![]);
        assert_eq!(
            kinds(Some(RemoteStatus::Processing)),
            vec![(EventKind::Processing, "processing".to_owned())]
        );
        assert_eq!(
            kinds(Some(RemoteStatus::Completed)),
            vec![
                (EventKind::Processing, "processing".to_owned()),
                (EventKind::Completed, "terminal".to_owned())
            ]
        );
        let failed = events_of(&reply(Some(RemoteStatus::Failed)));
        assert_eq!(failed[1].key, "terminal");
        assert_eq!(failed[1].payload.error.as_deref(), Some(UNEXPLAINED_FAILURE));
        assert_eq!(failed[1].payload.error_kind, Some(FailureKind::ProviderFailed));
        let cancelled = events_of(&reply(Some(RemoteStatus::Cancelled)));
        assert_eq!(
            (cancelled[1].kind, cancelled[1].key.as_str()),
            (EventKind::Failed, "terminal")
        );
        assert_eq!(cancelled[1].payload.error_kind, Some(FailureKind::Cancelled));
    }
}
