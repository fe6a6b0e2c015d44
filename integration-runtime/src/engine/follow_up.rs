//! Turning provider answers into lifecycle events, with the event keys that
//! make polls, webhooks and re-executions agree.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::runtime::{Inner, Runtime};
use super::{EngineError, StatusChange};
use crate::call::{CallId, RemoteStatus, Reply};
use crate::lifecycle::EventKind;
use crate::store::{AppendOutcome, CallRecord, NewEvent, StoreError};

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
/// Both terminal kinds share one key: whichever source (the worker's start
/// or poll, a webhook, a re-execution after a crash) records a terminal
/// event first, every later one is a duplicate, so a call never has two
/// terminal events in its log. Webhook receivers should append with these
/// keys too (see [`Runtime::record_reply`]); a delivery id is for
/// deduplicating deliveries, not events.
pub fn lifecycle_event_key(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Initialized => "initialized",
        EventKind::Processing => "processing",
        EventKind::Completed | EventKind::Failed => "terminal",
    }
}

/// The idempotency key sent with every attempt of call `id`: its id text,
/// the same for retries and for re-executions after a crash.
pub fn provider_idempotency_key(id: CallId) -> String {
    id.to_string()
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

pub(crate) fn failed(error: impl Into<String>) -> NewEvent {
    NewEvent::failed(lifecycle_event_key(EventKind::Failed), error)
}

/// The events a status reply implies (none without a status).
pub(crate) fn events_of(reply: &Reply<Value>) -> Vec<NewEvent> {
    match reply.status {
        None => Vec::new(),
        Some(RemoteStatus::Processing) => vec![processing()],
        Some(RemoteStatus::Completed) => vec![processing(), completed(reply.result.clone().unwrap_or(Value::Null))],
        Some(RemoteStatus::Failed) => vec![
            processing(),
            failed(
                reply
                    .error
                    .clone()
                    .unwrap_or_else(|| "the provider reports that the call failed".to_owned()),
            ),
        ],
    }
}

/// The first wait before a failed turn-ending write is tried again; it
/// doubles up to [`TURN_WRITE_MAX_DELAY`].
const TURN_WRITE_FIRST_DELAY: Duration = Duration::from_millis(100);

/// The longest wait between two tries of a turn-ending write.
const TURN_WRITE_MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a worker keeps trying to record its turn before giving the call
/// up (see [`Inner::finish_turn`]).
const TURN_WRITE_GIVE_UP: Duration = Duration::from_secs(120);

impl Inner {
    /// Ends the worker's turn on `call`: records `events` and the next run
    /// in one store write (see [`Store::finish_turn`](crate::Store::finish_turn)),
    /// then publishes what they changed.
    ///
    /// A write the store failed ([`StoreError::is_backend`]: locked, full,
    /// unreachable) is tried again, after 100 ms, doubling up to 5 s apart,
    /// for up to 2 minutes: the events hold what the provider answered, and
    /// giving the call up instead would send its request again. Retrying is
    /// safe: the events' keys make a second append of them a no-op, and the
    /// lease check stops the worker once another owns the call.
    pub(crate) async fn finish_turn(
        &self,
        call: &CallRecord,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let kinds: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
        let worker = &self.settings.worker_id;
        let started = Instant::now();
        let mut delay = TURN_WRITE_FIRST_DELAY;
        let outcomes = loop {
            match self
                .store
                .finish_turn(call.id, worker, events.clone(), next_run_at)
                .await
            {
                Ok(outcomes) => break outcomes,
                Err(error) if error.is_backend() && started.elapsed() + delay < TURN_WRITE_GIVE_UP => {
                    tracing::warn!(call = %call.id, %error, retry_in_ms = delay.as_millis() as u64,
                        "recording the worker's turn failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(TURN_WRITE_MAX_DELAY);
                }
                Err(error) => return Err(error),
            }
        };
        for (kind, outcome) in kinds.into_iter().zip(&outcomes) {
            self.publish(&call.integration, kind, outcome);
        }
        Ok(outcomes)
    }

    pub(crate) fn publish(&self, integration: &str, event: EventKind, outcome: &AppendOutcome) {
        if let AppendOutcome::Applied { call_id, from, to, .. } = *outcome {
            // No receiver is fine: the broadcast is best-effort.
            let _ = self.changes.send(StatusChange {
                call_id,
                integration: integration.to_owned(),
                event,
                from,
                to,
                at: Utc::now(),
            });
            if to.is_terminal() {
                self.metrics.call_finished(integration, to);
                self.terminal.notify_one();
            }
        }
    }
}

impl Runtime {
    /// Records what a provider said about the call of `integration` it
    /// knows as `external_id` (a verified webhook payload read with
    /// [`Integration::read_webhook`](crate::Integration::read_webhook), or a
    /// status fetched elsewhere), with the runtime's event keys, and
    /// publishes the changes.
    ///
    /// Returns the outcome of each event appended (none when the reply has
    /// no status). Fails with a store error that
    /// [`is_not_found`](StoreError::is_not_found) when no call has that
    /// external id (yet: `initialized` may still be on its way).
    pub async fn record_reply(
        &self,
        integration: &str,
        external_id: &str,
        reply: &Reply<Value>,
    ) -> Result<Vec<AppendOutcome>, EngineError> {
        let mut outcomes = Vec::new();
        for event in events_of(reply) {
            let kind = event.kind;
            let outcome = self
                .inner
                .store
                .append_event_by_external_id(integration, external_id, event)
                .await?;
            self.inner.publish(integration, kind, &outcome);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
