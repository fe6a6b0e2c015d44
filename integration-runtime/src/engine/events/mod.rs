//! The event sink: the one way provider news reaches the store.
//!
//! Whatever reports news about a call (the worker's start request and its
//! polls, a webhook delivery, [`Runtime::record_reply`], an operator's
//! refresh) hands it to an [`EventSink`], which:
//!
//! 1. keys every event with [`lifecycle_event_key`], so a call never has two
//!    terminal events in its log whichever paths race (the second is a
//!    duplicate of the first);
//! 2. stamps its [`EventSource`] and, for a webhook, the sender's delivery
//!    id, so the event log is the call's audit trail;
//! 3. answers a delivery under an id the call already recorded as a
//!    duplicate, whatever its body says;
//! 4. appends, then publishes what moved: a [`StatusChange`] to
//!    [`Runtime::subscribe`], the finished counter in the metrics, and a
//!    wake-up of the hook dispatcher when the call became terminal.
//!
//! Nothing else in the crate appends events, so a webhook through
//! [`Runtime::router`] is seen exactly as a worker's completion is.

mod delivery;
pub(crate) mod news;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{broadcast, Notify};

use super::{EngineError, Runtime, StatusChange};
use crate::call::{CallId, Reply};
use crate::failure::FailureKind;
use crate::lifecycle::EventKind;
use crate::metrics::Metrics;
use crate::store::{AppendOutcome, CallRecord, CallWithEvents, EventSource, NewEvent, Store, StoreError};
use delivery::DeliveryLocks;
pub use news::lifecycle_event_key;

/// The first wait before a failed turn-ending write is tried again; it
/// doubles up to [`TURN_WRITE_MAX_DELAY`].
const TURN_WRITE_FIRST_DELAY: Duration = Duration::from_millis(100);

/// The longest wait between two tries of a turn-ending write.
const TURN_WRITE_MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a worker keeps trying to record its turn before giving the call
/// up (see [`EventSink::finish_turn`]).
const TURN_WRITE_GIVE_UP: Duration = Duration::from_secs(120);

/// Which call news is about: its id, or the id its provider knows it by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    // Only the operations API's refresh names a call by id.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Call(CallId),
    External {
        external_id: &'a str,
    },
}

/// Records provider news and publishes what it changed; cheap to clone
/// (every clone records into the same store and publishes to the same
/// subscribers). See the [module docs](self).
#[derive(Clone)]
pub(crate) struct EventSink(Arc<Shared>);

struct Shared {
    store: Arc<dyn Store>,
    metrics: Metrics,
    changes: broadcast::Sender<StatusChange>,
    /// Woken when a call became terminal through this sink (hooks are due).
    terminal: Notify,
    deliveries: DeliveryLocks,
}

impl EventSink {
    /// A sink appending to `store`, counting in `metrics`, keeping up to
    /// `capacity` unread changes per subscriber.
    pub(crate) fn new(store: Arc<dyn Store>, metrics: Metrics, capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(capacity.max(1));
        EventSink(Arc::new(Shared {
            store,
            metrics,
            changes,
            terminal: Notify::new(),
            deliveries: DeliveryLocks::new(),
        }))
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    #[cfg(feature = "server")]
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.0.changes.subscribe()
    }

    /// Resolves once a call became terminal through this sink after the
    /// call (or one was already signalled and not yet awaited).
    pub(crate) async fn terminal(&self) {
        self.0.terminal.notified().await;
    }

    /// Ends a worker's turn on `call`: records `events` (from `source`) and
    /// the next run in one store write (see
    /// [`Store::finish_turn`](crate::Store::finish_turn)), then publishes
    /// what they changed.
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
        worker: &str,
        source: EventSource,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let events = stamped(events, source, None);
        let kinds: Vec<_> = events.iter().map(Published::of).collect();
        let started = Instant::now();
        let mut delay = TURN_WRITE_FIRST_DELAY;
        let outcomes = loop {
            match self
                .0
                .store
                .finish_turn(call.id, worker, events.clone(), next_run_at)
                .await
            {
                Ok(outcomes) => break outcomes,
                Err(error) if error.is_backend() && started.elapsed() + delay < TURN_WRITE_GIVE_UP => {
                    tracing::warn!(call_id = %call.id, %error, retry_in_ms = delay.as_millis() as u64,
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

    /// Records news from outside a worker's turn (a webhook, an operator's
    /// refresh, application code) about the call of `integration` named by
    /// `subject`, one event after the other, and publishes what they changed.
    ///
    /// With a `delivery_id` (the sender's id of a webhook delivery), a
    /// delivery the call already recorded under that id is answered with a
    /// duplicate of its event and nothing is written; deliveries sharing an
    /// id are handled one at a time within this process.
    pub(crate) async fn record(
        &self,
        integration: &str,
        subject: Subject<'_>,
        source: EventSource,
        events: Vec<NewEvent>,
        delivery_id: Option<&str>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        // Held until the appends, so that a concurrent delivery under the
        // same id finds this one's event.
        let _same_id = match delivery_id {
            Some(id) => Some(self.0.deliveries.lock(id).await),
            None => None,
        };
        if let Some(id) = delivery_id {
            if let Some(duplicate) = self
                .logged(integration, subject)
                .await?
                .and_then(|logged| delivery::earlier(&logged, id))
            {
                return Ok(vec![duplicate]);
            }
        }
        let mut outcomes = Vec::new();
        for event in stamped(events, source, delivery_id) {
            let kind = Published::of(&event);
            let store = &self.0.store;
            let outcome = match subject {
                Subject::Call(id) => store.append_event(id, event).await?,
                Subject::External { external_id } => {
                    store
                        .append_event_by_external_id(integration, external_id, event)
                        .await?
                }
            };
            self.publish(integration, kind, &outcome);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The call named by `subject` with its log; `None` when unknown (the
    /// append that follows says so).
    async fn logged(&self, integration: &str, subject: Subject<'_>) -> Result<Option<CallWithEvents>, StoreError> {
        let id = match subject {
            Subject::Call(id) => id,
            Subject::External { external_id } => {
                match self.0.store.find_by_external_id(integration, external_id).await? {
                    Some(call) => call.id,
                    None => return Ok(None),
                }
            }
        };
        self.0.store.get_with_events(id).await
    }

    fn publish(&self, integration: &str, event: Published, outcome: &AppendOutcome) {
        if let AppendOutcome::Applied { call_id, from, to, .. } = *outcome {
            // No receiver is fine: the broadcast is best-effort.
            let _ = self.0.changes.send(StatusChange {
                call_id,
                integration: integration.to_owned(),
                event: event.kind,
                from,
                to,
                at: Utc::now(),
            });
            if to.is_terminal() {
                self.0.metrics.call_finished(integration, to, event.error_kind);
                self.0.terminal.notify_one();
            }
        }
    }
}

/// What publishing needs of an appended event.
#[derive(Clone, Copy)]
struct Published {
    kind: EventKind,
    error_kind: Option<FailureKind>,
}

impl Published {
    fn of(event: &NewEvent) -> Self {
        Published {
            kind: event.kind,
            error_kind: event.payload.error_kind,
        }
    }
}

/// `events` with their source and delivery id written into their payloads.
fn stamped(mut events: Vec<NewEvent>, source: EventSource, delivery_id: Option<&str>) -> Vec<NewEvent> {
    for event in &mut events {
        event.payload.source = Some(source);
        event.payload.delivery_id = delivery_id.map(str::to_owned);
    }
    events
}

impl Runtime {
    /// Records what a provider said about the call of `integration` it
    /// knows as `external_id` (a verified webhook payload read with
    /// [`Integration::read_webhook`](crate::Integration::read_webhook) by a
    /// receiver of your own, or a status fetched elsewhere), through the
    /// same path as the runtime's own news: lifecycle keys, source
    /// `manual`, status changes published, hooks woken.
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
        let events = news::events_of(reply);
        Ok(self
            .inner
            .events
            .record(
                integration,
                Subject::External { external_id },
                EventSource::Manual,
                events,
                None,
            )
            .await?)
    }
}
