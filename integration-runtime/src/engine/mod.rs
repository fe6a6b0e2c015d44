//! The engine: the [`Runtime`] that creates calls and the workers that drive
//! them through `initialized -> processing -> completed | failed`.
//!
//! # Life of a call
//!
//! [`Runtime::create`] validates the request against its spec
//! ([`Integration::validate`](crate::Integration::validate)) and stores a
//! `pending` call due now. A worker claims it and sends the starting request
//! through [`Integration::start`](crate::Integration::start) with
//! [`CallOptions::idempotency_key`](crate::CallOptions) set to the call id
//! ([`provider_idempotency_key`]): the same key for every retry and every
//! re-execution after a crash, so a provider that honours it performs the
//! call once.
//!
//! - **Sync endpoint**: `initialized` (the reply's external id, or the call
//!   id as generated id), `processing`, then `completed` with the result
//!   (or `failed` when the reply's status says so), all in one turn.
//! - **Async endpoint**: `initialized` with the reply's external id (a reply
//!   without one fails the call, saying so), plus `processing` / `completed`
//!   / `failed` when the reply already carries a status. A call still
//!   running is scheduled for polling.
//! - **No answer** (the request failed for good): `initialized` with the
//!   generated id, then `failed` with the error. Every call ends terminal.
//!
//! # One event pipeline
//!
//! Every piece of provider news (the start reply, a poll, a webhook through
//! [`Runtime::router`] or [`Runtime::webhook_receiver`], an operator's
//! refresh, [`Runtime::record_reply`]) is recorded by one event sink, which
//! appends with [`lifecycle_event_key`] (`initialized`, `processing`, and
//! one key, `terminal`, shared by `completed` and `failed`), stamps the
//! event's [`EventSource`](crate::EventSource) and delivery id, and
//! publishes what moved (to [`Runtime::subscribe`], the finished counter and
//! the hook dispatcher). Keys are unique per call in the store, so whoever
//! records a terminal event first wins and every later one is a no-op
//! duplicate: a call never has two terminal events, and the state machine
//! ignores anything stale.
//!
//! # Retries
//!
//! A failed start is retried when its class is in the endpoint's
//! `RetryPolicy::on` (5xx, 429, timeouts, connection failures; never other
//! 4xx, invalid requests or decode errors) and repeating it is safe (the
//! endpoint is idempotent or sends the idempotency key). The retry is
//! rescheduled in the store (`next_run_at`), not slept on: delay =
//! `random(0 ..= min(max_backoff_ms, initial_backoff_ms * multiplier^(n-1)))`
//! (full jitter), but at least the provider's `Retry-After`
//! ([`ClientError::retry_after`](crate::ClientError::retry_after)). After
//! `max_attempts` requests the call fails with the last error. The store's
//! `attempts` counts worker turns that sent a request (starts and polls);
//! a turn the integration's own circuit breaker or rate limit refused
//! ([`ClientError::is_circuit_open`](crate::ClientError::is_circuit_open),
//! [`is_rate_limited`](crate::ClientError::is_rate_limited)) sent nothing and
//! is postponed by its [`admit_after`](crate::ClientError::admit_after)
//! without counting an attempt.
//!
//! # Polling
//!
//! A call in `processing` is polled through
//! [`Integration::poll`](crate::Integration::poll), scheduled through the
//! store so polls survive restarts. The delay is `interval_ms` growing by
//! `backoff` up to `max_interval_ms`, computed from the call's age
//! (`interval + (backoff - 1) * age`, which is the geometric sequence
//! without a per-call counter). Transient poll failures (5xx, 429, timeouts,
//! connection) keep polling; others (4xx, an unmapped status) fail the call
//! with the poll's error.
//!
//! # Deadlines, failure kinds, cancellation, spec changes
//!
//! Every call of an endpoint with a deadline stores it at creation
//! ([`CallRecord::deadline_at`](crate::CallRecord::deadline_at):
//! `give_up_after_s` after the call is due). Polls and retries are never
//! scheduled past it; an async call without `[polling]` is scheduled *for*
//! it, so a lost webhook still ends the call. The turn at the deadline fails
//! the call with [`FailureKind::Timeout`](crate::FailureKind::Timeout); a
//! completion recorded later is a duplicate of the terminal key. Every
//! `failed` event carries a [`FailureKind`](crate::FailureKind).
//! [`Runtime::cancel`] stops a call (see `cancel`), and a call created under
//! another version of its spec that the current one cannot finish fails with
//! the kind `spec_changed`, at startup or at its next turn (see
//! `spec_change`).
//!
//! # Claiming, and why memory does not grow with the backlog
//!
//! The worker loop asks the store for at most `min(claim_batch, free
//! slots)` due calls per round trip ([`Store::claim`](crate::Store::claim):
//! one atomic statement over an index of scheduled calls, leasing what it
//! returns). A claimed call starts at once in a task holding one of
//! `concurrency` semaphore permits, so never more than `concurrency` calls
//! are in flight and never more than that many are held in memory, however
//! many millions are due. A full batch is followed by another claim at
//! once; a short one means the backlog is drained, and the loop waits for
//! the store's wake-up or until the next call is due
//! ([`Store::next_due`](crate::Store::next_due)), at most `poll_idle`: polls,
//! retries and scheduled calls start on time, not on a timer's next tick.
//!
//! A call created through a runtime whose worker is running and has a free
//! slot skips the claim: [`Runtime::create`] reserves the slot, stores the
//! call already leased to this worker
//! ([`NewCall::leased_to`](crate::NewCall::leased_to), in the same write),
//! and hands it to the worker in memory, which starts it at once. The lease
//! is stored, so the handoff is as durable as a claim: if the process dies
//! first, the lease runs out and any worker claims the call. With every
//! slot busy, or no worker running, calls are created unleased and claimed
//! as usual.
//!
//! # Crash safety
//!
//! A claim is a lease, renewed every third of `lease` while the call runs.
//! A worker that dies stops renewing; once the lease runs out another
//! worker (or the restarted one) claims the call again and re-executes the
//! same step with the same idempotency key. Its events are keyed, so
//! nothing is recorded twice; a worker that lost its lease stops working on
//! the call and cannot overwrite the new owner's schedule. A request that
//! reached a provider which ignores idempotency keys may run twice: that is
//! the price of never losing a call (at-least-once execution).
//!
//! [`Runtime::shutdown`] stops claiming, lets in-flight calls finish until
//! its deadline, then aborts them and releases their leases, so another
//! worker picks them up at once.
//!
//! # Hooks: what is promised
//!
//! [`Runtime::on_completed`] / [`Runtime::on_failed`] hooks are delivered
//! **at least once, surviving restarts**: when a call becomes terminal (by
//! any path: worker, poll, webhook) the store marks it *to notify* in the
//! same transaction. The dispatcher started by [`Runtime::run`] claims
//! marked calls in batches under a lease, runs every matching hook, and
//! clears the mark only after all of them returned `Ok`/`()`. A hook that
//! fails or panics is run again after `hook_retry` (together with the
//! call's other hooks); a process that dies mid-delivery leaves the mark,
//! and the delivery is repeated once the lease expires. So a hook may run
//! more than once for a call (make it idempotent, e.g. keyed by call id);
//! it is never skipped while some runtime with that hook keeps running.
//!
//! One exception is bounded: a call whose stored record no longer decodes
//! into a hook's type (the spec changed since the call was stored) cannot
//! be delivered by this deployment. It is tried 5 times, `hook_retry`
//! apart, and then *dead-lettered*: its notification is cleared, the error
//! kept on the call as [`CallRecord::notification_error`](crate::CallRecord::notification_error)
//! (shown by `calls show` and the operations API), logged at error level
//! and counted in `integration_hook_dead_letters_total`. Every failed
//! delivery is counted durably in `notification_attempts`.
//! A terminal call whose integration has no hook registered in the
//! delivering process is marked delivered: register the same hooks in every
//! process that calls [`Runtime::run`], before calling it.
//!
//! [`Runtime::subscribe`] is different: a live, lossy broadcast of the
//! status changes made through this process, for dashboards and tests.

mod cancel;
#[cfg(feature = "server")]
mod connect;
mod connected;
#[cfg(feature = "server")]
mod connections;
mod error;
pub(crate) mod events;
mod handoff;
mod hooks;
mod retention;
pub(crate) mod retry;
mod runtime;
#[cfg(feature = "server")]
mod serve;
mod spec_change;
mod worker;

use chrono::{DateTime, Utc};

pub(crate) use cancel::cancel;
pub use cancel::CancelError;
#[cfg(feature = "server")]
pub(crate) use connected::{revoke, shown, Connections};
pub use connected::{ConnectionError, Revoked};
#[cfg(feature = "server")]
pub use connections::ServeOptions;
pub use error::EngineError;
pub use events::lifecycle_event_key;
pub use hooks::HookResult;
pub use retention::Retention;
pub use runtime::{IntoStore, Runtime, RuntimeBuilder};
#[cfg(feature = "server")]
pub use serve::OPS_TOKEN_ENV;
pub use spec_change::{stranded_calls, stranded_reason, SpecChangePolicy, SpecView, StrandedCall};
pub use worker::provider_idempotency_key;

use crate::call::CallId;
use crate::lifecycle::{CallStatus, EventKind};

pub(crate) const DEFAULT_CHANGES_CAPACITY: usize = 1024;

/// One status change of a call, as broadcast by [`Runtime::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The call.
    pub call_id: CallId,
    /// Its integration's name.
    pub integration: String,
    /// The event that moved it.
    pub event: EventKind,
    /// The status before.
    pub from: CallStatus,
    /// The status after.
    pub to: CallStatus,
    /// When the runtime saw the change.
    pub at: DateTime<Utc>,
}
