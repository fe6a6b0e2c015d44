//! The durable store: every call, its lifecycle snapshot and its event log.
//!
//! # Model
//!
//! A *call* is one request business code asked for. Its status is the fold
//! of its *events* through [`CallStatus::transition`](crate::CallStatus::transition); the store keeps the
//! append-only event log and, for fast reads, the folded snapshot in the call
//! record, updated in the same transaction as the append.
//!
//! - **Idempotent appends.** Every event has a key chosen by the caller (a
//!   webhook's delivery id, or [`NewEvent::key_for`] for the runtime's own
//!   steps). A key already stored for the call is a no-op reported as
//!   [`AppendOutcome::Duplicate`]: providers and retries may deliver twice.
//! - **Ignored events are kept.** An event the state machine ignores (late,
//!   out of order, after a terminal status) is still recorded, with
//!   `applied = false`, so the log shows everything the provider said; it
//!   never moves the snapshot, which only goes forward.
//! - **Terminal exactly once.** Only the event that moves the call into
//!   `completed`/`failed` sets `completed_at` and `response_data`/`error`.
//! - **External ids** are set by the first event that carries one (normally
//!   `initialized`, appended by call id) and are unique per integration; later
//!   events (webhooks, polls) are appended by `(integration, external id)`.
//!   An event carrying a *different* external id than the call's is a
//!   conflict, not silently recorded.
//! - **Creation is idempotent** on the caller's key, unique per integration;
//!   reusing a key for a different endpoint or parameters is a conflict.
//!
//! # Claiming, and why memory does not grow with the backlog
//!
//! Workers never load "all pending calls". [`Store::claim`] takes at most
//! `limit` calls that are due (`pending` or `processing`, `next_run_at <=
//! now`, lease free or expired), in `next_run_at` order, and leases them to
//! the worker in the same atomic statement. In SQLite this is one `UPDATE ...
//! WHERE seq IN (SELECT ... ORDER BY next_run_at LIMIT n) RETURNING`, served
//! by a partial index that holds only scheduled calls (terminal calls leave
//! it, since their `next_run_at` is cleared), so the scan stops after `n`
//! claimable rows, skipping at most the calls currently leased; a worker's
//! memory is bounded by `limit` whether the backlog holds ten calls or ten
//! million. Two claimers never get the same call because the selection and
//! the lease are one write (SQLite serializes writers; PostgreSQL uses
//! `FOR UPDATE SKIP LOCKED` in the subquery).
//!
//! A lease is a deadline, not a lock: a worker that dies simply lets it
//! expire, and the call becomes claimable again. Every later write by the
//! worker ([`Store::extend_lease`], [`Store::release`],
//! [`Store::reschedule`]) checks that it still owns the lease and fails with
//! [`StoreError::is_lease_lost`] otherwise, so a slow worker cannot clobber
//! the schedule set by the worker that took over.
//!
//! # Terminal notifications (hooks)
//!
//! The event that moves a call into `completed`/`failed` also marks it *to
//! notify*, in the same transaction (`notify_at`, due at once). The
//! engine's hook dispatcher takes marked calls with
//! [`Store::claim_notifications`] (bounded and leased like [`Store::claim`])
//! and clears the mark with [`Store::finish_notification`] only after every
//! hook ran, or sets a retry time: at-least-once delivery that survives
//! crashes, whatever made the call terminal (worker, poll, webhook).
//!
//! # Why a boxed-future trait
//!
//! The engine holds its store as `Arc<dyn Store>`: the backend is chosen at
//! run time (SQLite file, PostgreSQL URL, in-memory in tests), and other crates
//! may bring their own. `async fn` in traits is not dyn-compatible, so every
//! method returns the crate's [`BoxFuture`] (`Pin<Box<dyn Future + Send>>`); one
//! allocation per operation is noise next to a database round trip. An enum
//! over the known backends would close the set and buy nothing measurable.
//!
//! # Designed for PostgreSQL
//!
//! Nothing here assumes a single process: claims are leases with deadlines
//! (no in-process locks), appends are keyed so they can be replayed, cursors
//! are sequence numbers (an identity column in PostgreSQL), and
//! [`Store::wait_for_work`] is the hook for `LISTEN/NOTIFY`. The PostgreSQL
//! store (feature `postgres`, on by default) is documented on its type,
//! `PostgresStore`. Writes are batched where it matters: one claim statement
//! leases a whole batch, and [`Store::finish_turn`] records a worker's turn
//! (its events and the reschedule) in one transaction. Both SQL stores also
//! group-commit: concurrent writes share one transaction (see
//! `SqliteStore`; on PostgreSQL, creates and turns, see `PostgresStore`),
//! and the in-memory fold of a batch's appends is shared (`folding`).
//!
//! # Provider protection shared by processes
//!
//! [`Store::lease_rate`], [`Store::open_circuit`] and
//! [`Store::circuit_open_for`] hold the state of rate limits and circuit
//! breakers that every process of a deployment shares
//! ([`RuntimeBuilder::shared_protection`](crate::RuntimeBuilder::shared_protection)). A process leases a slice of a rate
//! limit's budget per store round trip, not one request, and reads the
//! circuits through a short cache: the store is not asked once per request.
//!
//! # Time
//!
//! Stores read a call's time from their clock ([`Store::use_clock`]: the
//! system clock, or the runtime's) and keep timestamps to the millisecond,
//! so every backend returns the same values.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod connection_rows;
mod connections;
mod error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod folding;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod protection;
mod prune;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

/// The checks of the conformance suite; reached through the crate's private
/// module by `store_conformance_tests!`.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod conformance;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use connections::{AuthorizationRow, ConnectionRow, ConnectionStore, SealedPlace, SealedValue, TokenRow};
pub use error::StoreError;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use protection::{RateRequest, RateSlice};
pub use prune::{NotTerminal, PruneRule};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use types::{
    AppendOutcome, CallRecord, CallWithEvents, Created, Cursor, EventPayload, EventRecord, EventSource, InitialLease,
    ListOrder, ListQuery, NewCall, NewEvent, NotificationOutcome, Page, StatusCounts, MAX_PAGE_SIZE,
};

use crate::call::CallId;
pub(crate) use crate::integration::BoxFuture;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use protection::LeaseBinds;
pub(crate) use protection::{micros, now_micros, open_for};
pub(crate) use prune::oldest;
#[cfg(feature = "sqlite")]
pub(crate) use shared::from_millis;
#[cfg(any(feature = "sqlite", feature = "postgres", test, feature = "testing"))]
pub(crate) use shared::system_now;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use shared::{
    call_from_row, from_json, status_counts, stored_count, terminal_fields, to_json, CallRow, Target, Terminal,
};
pub(crate) use shared::{
    check_same_request, lease_deadline, new_call_id, notification_columns, page_of, plan_append, truncate,
};

/// Durable storage of calls and their append-only event logs.
///
/// A call's `status` is the fold of its events through
/// [`CallStatus::transition`](crate::CallStatus::transition), kept as a snapshot in the call record.
/// Appending is idempotent on the event key; events the state machine
/// ignores are recorded with `applied = false` and never move the snapshot.
/// Claiming leases at most `limit` due calls in one atomic step, so a
/// worker's memory is bounded by its batch, not by the backlog.
///
/// Dyn-compatible (every method returns a boxed future): an engine holds it
/// as `Arc<dyn Store>`, whatever the backend.
///
/// Every method is required: no default quietly does less than the
/// contract (a non-atomic turn, a postponement that counts an attempt,
/// hooks that never fire). A store written elsewhere proves it meets the
/// contract with the conformance suite (feature `testing`).
pub trait Store: ConnectionStore + Send + Sync {
    /// Creates a pending call, due at `call.run_at` (or now).
    ///
    /// With an idempotency key that already names a call of the same
    /// integration, returns that call (`created: false`); a conflict if that
    /// call was created for another endpoint or other parameters.
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>>;

    /// Leases up to `limit` due calls to `worker` for `lease`, earliest
    /// `next_run_at` first.
    ///
    /// A call is due when it is `pending` or `processing`, its `next_run_at`
    /// has passed, and no unexpired lease is held on it.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: u32,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<CallRecord>, StoreError>>;

    /// Moves the end of `worker`'s lease on `id` to now + `lease`.
    ///
    /// Fails with [`StoreError::is_lease_lost`] when another worker holds it
    /// (or nobody does), [`StoreError::is_not_found`] for an unknown call.
    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up `worker`'s lease on `id` without changing its schedule (a
    /// due call becomes claimable at once).
    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Finishes a worker's turn on `id`: sets `next_run_at` (`None`: do not
    /// run again until an event or an operator reschedules it), increments
    /// `attempts` and releases the lease. On a call that became terminal
    /// meanwhile, `next_run_at` stays cleared.
    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends `worker`'s turn on call `id` with one write: appends `events` in
    /// order (each exactly as [`Store::append_event`] would), then
    /// reschedules as [`Store::reschedule`] does (counts an attempt, clears
    /// `next_run_at` on a call that is terminal now, releases the lease).
    /// Returns one outcome per event.
    ///
    /// This is how a worker records what a provider answered: a sync call's
    /// `initialized`, `processing` and `completed` become durable together,
    /// in one commit instead of four.
    ///
    /// The lease is checked first: when `worker` does not hold it, nothing
    /// is written and the error [`StoreError::is_lease_lost`]. When an
    /// append fails (an external id that belongs to another call is a
    /// conflict), nothing is written either, and that error is returned.
    ///
    ///
    /// Required, like every method of this trait: a store that cannot do it
    /// in one write cannot promise that a crash never splits a turn.
    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>>;

    /// Appends `event` to the log of call `id` (the runtime's own events:
    /// `initialized` with the external id, a sync call's `completed`, a
    /// `failed` after the last retry).
    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>>;

    /// Appends `event` to the call the provider knows as `external_id`
    /// (webhooks and polls). Not found until `initialized` set that id.
    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>>;

    /// The call `id`, if it exists.
    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>>;

    /// The call `id` with its event log, if it exists.
    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>>;

    /// The call of `integration` the provider knows as `external_id`.
    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>>;

    /// One page of the calls of an integration, in a stable order.
    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<Page, StoreError>>;

    /// How many calls are in each status, for one integration or all.
    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>>;

    /// Resolves when work may have become available (a call created,
    /// released or rescheduled through this store).
    ///
    /// A hint only: it may wake spuriously and misses changes made by other
    /// processes or inside a caller's transaction, so workers also claim on a
    /// timer. A write that schedules a call for later (a poll, a retry, a
    /// scheduled create) wakes the waiters too, so that a worker sleeping
    /// until [`Store::next_due`] learns of the sooner time.
    fn wait_for_work(&self) -> BoxFuture<'_, ()>;

    /// When the next call becomes due: the earliest `next_run_at` of a
    /// `pending` or `processing` call that no lease holds at that time (or
    /// now, if later): in the past when one is due now; `None` when no such
    /// call is scheduled.
    ///
    /// An idle worker sleeps until then instead of a fixed tick, so polls,
    /// retries and scheduled calls start on time. Leased calls are left out:
    /// the worker holding one ends its turn with a write that wakes the
    /// workers (or, after a crash, the lease runs out and the worker's
    /// `poll_idle` bound finds the call). Served by the index that serves
    /// [`Store::claim`], in its order: one index entry read, skipping only
    /// the leased calls ahead of it.
    fn next_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>;

    /// Proves that the store can write now, for health checks: a read
    /// succeeding says nothing of a locked database or a full disk.
    ///
    /// SQLite writes one row of its probe table through its writer, so the
    /// probe waits for locks and queued writes as a create would (bounded
    /// by the writer's wait, 5 s); PostgreSQL runs, in its own transaction, a
    /// write statement that changes no row (it fails on a read-only server
    /// or one refusing writes). Errs, usually with
    /// [`StoreError::is_unavailable`], when the store cannot write.
    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// As [`Store::reschedule`], but does *not* count an attempt: for a
    /// worker turn that sent nothing (the integration's circuit breaker or
    /// rate limit refused the request, or the worker does not run the
    /// call's integration). Sets `next_run_at` (cleared on a terminal call)
    /// and releases the lease; lease checks as for `reschedule`.
    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Leases up to `limit` calls whose terminal notification is due, for
    /// `lease`, earliest first: the hook dispatcher's work queue.
    ///
    /// The event that makes a call terminal marks it *to notify* (due at
    /// once) in the same transaction. Claiming moves the due time to now +
    /// `lease`, so other dispatchers skip the call meanwhile and a crashed
    /// dispatcher's calls become due again when the lease runs out. Memory
    /// is bounded by `limit`, as for [`Store::claim`].
    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>>;

    /// Ends a delivery of the notification of call `id` with `outcome`:
    /// cleared for good when [`Delivered`](NotificationOutcome::Delivered),
    /// due again at the given time on a [`Retry`](NotificationOutcome::Retry),
    /// cleared with the error kept on the call on a
    /// [`DeadLetter`](NotificationOutcome::DeadLetter). A retry and a dead
    /// letter count a failed attempt in `notification_attempts`, durably, so
    /// the dispatcher can bound the retries of a call that can never be
    /// delivered. Fails with [`StoreError::is_not_found`] for an unknown call.
    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Leases `request.cells` consecutive requests of the shared GCRA rate
    /// limiter `limiter`, in one atomic write: the limiter's theoretical
    /// arrival time (TAT, created at now for a new limiter, taken as now
    /// when it lies in the past) moves `cells * interval` ahead. When the
    /// first cell would wait longer than `request.max_wait`, nothing changes
    /// and the slice has 0 cells (its [`RateSlice::wait`] says how long).
    ///
    /// Concurrent leases of one limiter, from any process, never get
    /// overlapping cells: together they are spaced as one limiter's.
    fn lease_rate<'a>(&'a self, limiter: &'a str, request: RateRequest)
        -> BoxFuture<'a, Result<RateSlice, StoreError>>;

    /// Records that the circuit breaker `breaker` is open for `open_for`
    /// from now, for every process: the circuit stays open until the later
    /// of this and an earlier recorded time (a shorter open never shortens
    /// a longer one). A closed circuit needs no write: an open one expires.
    fn open_circuit<'a>(&'a self, breaker: &'a str, open_for: Duration) -> BoxFuture<'a, Result<(), StoreError>>;

    /// How much longer the circuit breaker `breaker` stays open, as
    /// recorded by [`Store::open_circuit`]; `None` when it is not open.
    fn circuit_open_for<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<Option<Duration>, StoreError>>;

    /// Reads a call's time from `clock` from now on: when calls are due,
    /// when leases end, the times it records. A store starts on the system
    /// clock; a runtime hands it its own
    /// ([`RuntimeBuilder::clock`](crate::RuntimeBuilder::clock)). Shared
    /// rate limits and circuit breakers stay in real time: they protect a
    /// real provider.
    fn use_clock(&self, clock: crate::Clock);

    /// Deletes up to `limit` calls that `rule` matches, with their events,
    /// in one transaction, earliest `completed_at` first (then creation
    /// order); returns how many calls it deleted.
    ///
    /// Never deletes a call that is not terminal, nor one whose terminal
    /// notification is still pending (its hooks not yet delivered or given
    /// up): such a call waits for a later prune. A pruned call is gone for
    /// good: `get`, `find_by_external_id` and `list` no longer find it, it
    /// leaves the counts, and its idempotency key and external id are free
    /// again.
    ///
    /// `limit` bounds the work of one transaction (and, in SQLite, how long
    /// it holds the file's write lock): prune a large backlog in batches of
    /// a few hundred, as the runtime's retention does.
    fn prune<'a>(&'a self, rule: &'a PruneRule, limit: u32) -> BoxFuture<'a, Result<u64, StoreError>>;
}
