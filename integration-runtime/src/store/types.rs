//! The records a store keeps and the requests it takes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{lease_deadline, truncate, CallId};
use crate::failure::FailureKind;
use crate::lifecycle::{CallStatus, EventKind, Transition};

/// A call to create: what business code asked for, not yet sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCall {
    /// The integration's name (the spec's `name`).
    pub integration: String,
    /// The endpoint of that integration that starts the call.
    pub endpoint: String,
    /// The request parameters, as JSON.
    pub params: Value,
    /// The caller's idempotency key, unique per integration: creating again
    /// with the same key returns the existing call instead of a new one.
    pub idempotency_key: Option<String>,
    /// When a worker may first claim the call; `None` means now.
    pub run_at: Option<DateTime<Utc>>,
    /// A lease the call is created under: see [`NewCall::leased_to`].
    pub lease: Option<InitialLease>,
    /// How long the call may take from when it is due (`run_at`, or its
    /// creation) before it fails with [`FailureKind::Timeout`]: the store
    /// keeps the deadline as [`CallRecord::deadline_at`]. `None`: no deadline.
    pub give_up_after: Option<Duration>,
    /// The fingerprint of the spec the call is created under (see
    /// [`IntegrationDescriptor::fingerprint`](crate::IntegrationDescriptor::fingerprint)).
    pub spec_fingerprint: Option<String>,
    /// The connection whose credentials, base URL and budget the call is
    /// sent with; `None`: the integration's default connection (its
    /// settings from the environment).
    pub connection: Option<String>,
}

/// A lease a call is created under ([`NewCall::leased_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialLease {
    /// The worker the call is leased to.
    pub owner: String,
    /// How long the lease lasts from the creation.
    pub duration: Duration,
}

impl NewCall {
    /// A call of `endpoint` of `integration` with `params`, due now.
    pub fn new(integration: impl Into<String>, endpoint: impl Into<String>, params: Value) -> Self {
        NewCall {
            integration: integration.into(),
            endpoint: endpoint.into(),
            params,
            idempotency_key: None,
            run_at: None,
            lease: None,
            give_up_after: None,
            spec_fingerprint: None,
            connection: None,
        }
    }

    /// Sends the call with the connection `id` of its integration (see
    /// [`NewCall::connection`](NewCall#structfield.connection)).
    #[must_use]
    pub fn on_connection(mut self, id: impl Into<String>) -> Self {
        self.connection = Some(id.into());
        self
    }

    /// Sets the caller's idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Delays the first run until `at`.
    #[must_use]
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Fails the call with [`FailureKind::Timeout`] when it has not ended
    /// within `limit` of when it is due (the runtime sets it from the spec's
    /// `give_up_after_s`).
    #[must_use]
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// When the call is first due, if stored at `now`.
    pub(crate) fn due_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.run_at.map_or(now, truncate)
    }

    /// The deadline of the call, if stored at `now`.
    pub(crate) fn deadline_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.give_up_after.map(|limit| lease_deadline(self.due_at(now), limit))
    }

    /// Records the fingerprint of the spec the call is created under.
    #[must_use]
    pub fn spec_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.spec_fingerprint = Some(fingerprint.into());
        self
    }

    /// Creates the call already leased to `owner` for `duration`, in the
    /// same write: the creating process hands it to its own worker without
    /// a claim, and no other worker claims it until the lease ends (then
    /// it is claimable as usual, so a crash of `owner` loses nothing). An
    /// idempotency key that names an existing call leases nothing.
    #[must_use]
    pub fn leased_to(mut self, owner: impl Into<String>, duration: Duration) -> Self {
        self.lease = Some(InitialLease {
            owner: owner.into(),
            duration,
        });
        self
    }
}

/// What [`Store::create`](super::Store::create) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The call's id: the new call's, or the existing one's.
    pub id: CallId,
    /// `false` when the idempotency key named an existing call and nothing was created.
    pub created: bool,
}

/// A stored call: the snapshot of its lifecycle and its scheduling state.
///
/// Timestamps are kept to the millisecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's id.
    pub id: CallId,
    /// The integration's name.
    pub integration: String,
    /// The endpoint that starts the call.
    pub endpoint: String,
    /// The fold of the call's applied events.
    pub status: CallStatus,
    /// The provider's id of the call, once known; unique per integration.
    pub external_id: Option<String>,
    /// The request parameters.
    pub params: Value,
    /// The result, once completed.
    pub response_data: Option<Value>,
    /// The error, once failed.
    pub error: Option<String>,
    /// Why the call failed, once failed (`None` for calls that failed
    /// before kinds were stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<FailureKind>,
    /// How many times the call was rescheduled by a worker.
    pub attempts: u32,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When the call was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the call reached a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    /// When a worker may claim the call; `None`: not scheduled (terminal, or
    /// waiting for a webhook).
    pub next_run_at: Option<DateTime<Utc>>,
    /// The worker holding the lease, if any (possibly expired).
    pub lease_owner: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the call fails with [`FailureKind::Timeout`] if it has not
    /// ended; `None`: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The fingerprint of the spec the call was created under; `None` for
    /// calls created before fingerprints were stored, or through a store
    /// directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_fingerprint: Option<String>,
    /// The connection the call is sent with; `None`: the integration's
    /// default connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// How many deliveries of the call's terminal notification (its hooks)
    /// failed so far.
    #[serde(default)]
    pub notification_attempts: u32,
    /// Why the call's hooks were given up ([`NotificationOutcome::DeadLetter`]):
    /// set once, when the notification is dead-lettered; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_error: Option<String>,
}

impl CallRecord {
    /// The record `call` is stored as when created at `now` with `id`.
    pub(crate) fn created(id: CallId, call: NewCall, now: DateTime<Utc>) -> CallRecord {
        let lease_expires_at = call.lease.as_ref().map(|lease| lease_deadline(now, lease.duration));
        let (next_run_at, deadline_at) = (call.due_at(now), call.deadline_at(now));
        CallRecord {
            id,
            integration: call.integration,
            endpoint: call.endpoint,
            status: CallStatus::Pending,
            external_id: None,
            params: call.params,
            response_data: None,
            error: None,
            error_kind: None,
            attempts: 0,
            idempotency_key: call.idempotency_key,
            created_at: now,
            updated_at: now,
            completed_at: None,
            next_run_at: Some(next_run_at),
            lease_owner: call.lease.map(|lease| lease.owner),
            lease_expires_at,
            deadline_at,
            spec_fingerprint: call.spec_fingerprint,
            connection: call.connection,
            notification_attempts: 0,
            notification_error: None,
        }
    }

    /// Whether the call reached `completed` or `failed`.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// How a delivery of a terminal call's notification (its hooks) ended, for
/// [`Store::finish_notification`](super::Store::finish_notification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Every hook ran: the notification is cleared for good.
    Delivered,
    /// A hook failed: deliver again at this time. Counts a failed attempt
    /// (`notification_attempts`).
    Retry(DateTime<Utc>),
    /// Give up: the notification is cleared for good, this error is kept on
    /// the call as `notification_error`, and a failed attempt counted.
    DeadLetter(String),
}

/// What an event says besides its kind, stored as JSON in the event log.
///
/// Unknown fields are ignored when read, so later versions may add some.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The provider's id of the call (`initialized`, or a sync call's generated id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The result (`completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the call failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<FailureKind>,
    /// The sender's id of the webhook delivery that reported the event
    /// (Standard Webhooks `webhook-id`, Stripe event id): a later delivery
    /// under the same id is a duplicate, whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// What reported the event; `None` in events recorded before sources
    /// were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
}

/// What reported an event: the event log is the call's audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The answer to the request that starts the call (or the runtime
    /// failing a call whose start never got an answer).
    Start,
    /// A poll of the provider by a worker (or the worker giving up polling).
    Poll,
    /// A webhook delivery through the runtime's receiver.
    Webhook,
    /// An operator's refresh through the operations API.
    Refresh,
    /// Application code, through `Runtime::record_reply`.
    Manual,
    /// A cancellation (`Runtime::cancel`, the operations API), and the
    /// provider's answer to it.
    Cancel,
    /// The runtime's check of stored calls against a changed spec, at startup.
    SpecCheck,
    /// The revocation of the call's connection.
    Revoke,
}

impl EventSource {
    /// The name stored and shown: `start`, `poll`, `webhook`, `refresh`, `manual`, `cancel`, `spec_check`, `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Start => "start",
            EventSource::Poll => "poll",
            EventSource::Webhook => "webhook",
            EventSource::Refresh => "refresh",
            EventSource::Manual => "manual",
            EventSource::Cancel => "cancel",
            EventSource::SpecCheck => "spec_check",
            EventSource::Revoke => "revoke",
        }
    }
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append to a call's log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The kind of event.
    pub kind: EventKind,
    /// Makes appending idempotent: a key already stored for the call is a
    /// no-op. A webhook's delivery id, or [`NewEvent::key_for`].
    pub key: String,
    /// What the event carries.
    pub payload: EventPayload,
}

impl NewEvent {
    /// A bare event of `kind`.
    pub fn new(kind: EventKind, key: impl Into<String>) -> Self {
        NewEvent {
            kind,
            key: key.into(),
            payload: EventPayload::default(),
        }
    }

    /// The provider accepted the call under `external_id`.
    pub fn initialized(key: impl Into<String>, external_id: impl Into<String>) -> Self {
        Self::new(EventKind::Initialized, key).external_id(external_id)
    }

    /// The provider reports work in progress.
    pub fn processing(key: impl Into<String>) -> Self {
        Self::new(EventKind::Processing, key)
    }

    /// The call succeeded with `result`.
    pub fn completed(key: impl Into<String>, result: Value) -> Self {
        let mut event = Self::new(EventKind::Completed, key);
        event.payload.result = Some(result);
        event
    }

    /// The call failed with `error` (give its kind with [`NewEvent::error_kind`]).
    pub fn failed(key: impl Into<String>, error: impl Into<String>) -> Self {
        let mut event = Self::new(EventKind::Failed, key);
        event.payload.error = Some(error.into());
        event
    }

    /// Says why the call failed (a `failed` event); the store keeps it on
    /// the call as [`CallRecord::error_kind`].
    #[must_use]
    pub fn error_kind(mut self, kind: FailureKind) -> Self {
        self.payload.error_kind = Some(kind);
        self
    }

    /// Attaches the provider's id of the call; the store sets it on the call
    /// if the call has none yet.
    #[must_use]
    pub fn external_id(mut self, external_id: impl Into<String>) -> Self {
        self.payload.external_id = Some(external_id.into());
        self
    }

    /// The conventional key of an event the runtime itself derives:
    /// `"{kind}:{call}:{attempt}"`, so a retried step cannot record twice.
    pub fn key_for(kind: EventKind, call: CallId, attempt: u32) -> String {
        format!("{kind}:{call}:{attempt}")
    }
}

/// One entry of a call's append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the store's log; increases with every recorded event.
    pub id: i64,
    /// The call the event belongs to.
    pub call_id: CallId,
    /// The kind of event.
    pub kind: EventKind,
    /// The event key, unique per call.
    pub key: String,
    /// What the event carried.
    pub payload: EventPayload,
    /// Whether the event moved the call's status; `false` for late,
    /// repeated or out-of-order events, which are kept for the record only.
    pub applied: bool,
    /// When the event was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// What appending an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Recorded, and the call's status moved from `from` to `to`.
    Applied {
        /// The call.
        call_id: CallId,
        /// The new event's id.
        event_id: i64,
        /// The status before.
        from: CallStatus,
        /// The status after.
        to: CallStatus,
    },
    /// Recorded with `applied = false`: the state machine ignored it (late,
    /// out of order, or after a terminal status). The snapshot is unchanged.
    Ignored {
        /// The call.
        call_id: CallId,
        /// The new event's id.
        event_id: i64,
        /// The call's (unchanged) status.
        status: CallStatus,
    },
    /// An event with the same key was already stored for the call: nothing changed.
    Duplicate {
        /// The call.
        call_id: CallId,
        /// The id of the event stored earlier under that key.
        event_id: i64,
        /// The call's current status.
        status: CallStatus,
    },
}

impl AppendOutcome {
    pub(crate) fn recorded(call_id: CallId, event_id: i64, transition: Transition) -> Self {
        match transition {
            Transition::Moved(from, to) => AppendOutcome::Applied {
                call_id,
                event_id,
                from,
                to,
            },
            Transition::Ignored(status) => AppendOutcome::Ignored {
                call_id,
                event_id,
                status,
            },
        }
    }

    /// The call the event belongs to.
    pub fn call_id(&self) -> CallId {
        match *self {
            AppendOutcome::Applied { call_id, .. }
            | AppendOutcome::Ignored { call_id, .. }
            | AppendOutcome::Duplicate { call_id, .. } => call_id,
        }
    }

    /// The id of the new event, or of the one stored earlier under the same key.
    pub fn event_id(&self) -> i64 {
        match *self {
            AppendOutcome::Applied { event_id, .. }
            | AppendOutcome::Ignored { event_id, .. }
            | AppendOutcome::Duplicate { event_id, .. } => event_id,
        }
    }

    /// The call's status after the append.
    pub fn status(&self) -> CallStatus {
        match *self {
            AppendOutcome::Applied { to, .. } => to,
            AppendOutcome::Ignored { status, .. } | AppendOutcome::Duplicate { status, .. } => status,
        }
    }

    /// Whether the event moved the status.
    pub fn is_applied(&self) -> bool {
        matches!(self, AppendOutcome::Applied { .. })
    }

    /// Whether the key was already stored.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, AppendOutcome::Duplicate { .. })
    }
}

/// A call with its whole event log, oldest event first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallWithEvents {
    /// The call.
    pub call: CallRecord,
    /// Its events, in the order they were recorded.
    pub events: Vec<EventRecord>,
}

/// The largest page [`Store::list`](super::Store::list) returns; larger limits are clamped.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// In which order [`Store::list`](super::Store::list) walks the calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// In creation order.
    #[default]
    OldestFirst,
    /// Most recently created first.
    NewestFirst,
}

/// Which calls to list, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only calls of this integration.
    pub integration: String,
    /// Only calls with this status; `None`: any.
    pub status: Option<CallStatus>,
    /// Only calls sent with this connection; `None`: any (those of the
    /// default connection included).
    pub connection: Option<String>,
    /// Continue after this position (the previous page's [`Page::next`]).
    pub after: Option<Cursor>,
    /// At most this many calls (clamped to 1..=[`MAX_PAGE_SIZE`]).
    pub limit: u32,
    /// The walking order.
    pub order: ListOrder,
}

impl ListQuery {
    /// The first 100 calls of `integration`, oldest first.
    pub fn new(integration: impl Into<String>) -> Self {
        ListQuery {
            integration: integration.into(),
            status: None,
            connection: None,
            after: None,
            limit: 100,
            order: ListOrder::OldestFirst,
        }
    }

    /// Only calls with `status`.
    #[must_use]
    pub fn status(mut self, status: CallStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only calls sent with the connection `id`.
    #[must_use]
    pub fn connection(mut self, id: impl Into<String>) -> Self {
        self.connection = Some(id.into());
        self
    }

    /// Continue after `cursor`.
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// At most `limit` calls per page.
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Walk in `order`.
    #[must_use]
    pub fn order(mut self, order: ListOrder) -> Self {
        self.order = order;
        self
    }

    pub(crate) fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

/// A position in a listing: opaque, but printable and parseable so it can
/// travel through a URL.
///
/// It is the creation sequence of the last call of a page, so pages neither
/// skip nor repeat calls when calls are created or change status meanwhile
/// (a call whose status changed simply shows up, or not, where it belongs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor(pub(crate) i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Cursor)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The calls, in the query's order.
    pub calls: Vec<CallRecord>,
    /// Where the next page starts; `None` when this was the last page.
    pub next: Option<Cursor>,
}

/// How many calls are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Calls not acknowledged by the provider yet.
    pub pending: u64,
    /// Calls the provider works on.
    pub processing: u64,
    /// Calls finished successfully.
    pub completed: u64,
    /// Calls finished unsuccessfully.
    pub failed: u64,
}

impl StatusCounts {
    /// The count of `status`.
    pub fn get(&self, status: CallStatus) -> u64 {
        match status {
            CallStatus::Pending => self.pending,
            CallStatus::Processing => self.processing,
            CallStatus::Completed => self.completed,
            CallStatus::Failed => self.failed,
        }
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.pending + self.processing + self.completed + self.failed
    }

    pub(crate) fn add(&mut self, status: CallStatus, count: u64) {
        match status {
            CallStatus::Pending => self.pending += count,
            CallStatus::Processing => self.processing += count,
            CallStatus::Completed => self.completed += count,
            CallStatus::Failed => self.failed += count,
        }
    }
}
