//! The worker loop: claim due calls in bounded batches, execute each under
//! its lease, and schedule what comes next through the store.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::connected::Resolution;
use super::events::news::{events_of, failed, generated_external_id, initialized, processing, terminal_of};
use super::handoff::Handed;
use super::retry::{is_retryable_class, may_retry_start};
use super::runtime::Inner;
use super::spec_change::{failure_message, stranded_under};
use crate::call::{CallId, CallOptions, RemoteStatus};
use crate::descriptor::{EndpointDescriptor, Mode, RetryOn};
use crate::error::ClientError;
use crate::failure::FailureKind;
use crate::integration::{BoxFuture, Integration};
use crate::lifecycle::CallStatus;
use crate::policy::backoff::{poll_delay, retry_delay, unit_random};
use crate::store::{CallRecord, EventSource, NewEvent, StoreError};

/// How long a call of an integration this runtime does not know waits
/// before it is offered again (to a runtime that may know it).
const FOREIGN_CALL_DELAY: Duration = Duration::from_secs(30);

/// The idempotency key sent with every attempt of call `id`: its id text,
/// the same for retries and for re-executions after a crash.
pub fn provider_idempotency_key(id: CallId) -> String {
    id.to_string()
}

/// A claim under way: the calls a store is leasing to this worker.
type ClaimFuture<'a> = BoxFuture<'a, Result<Vec<CallRecord>, StoreError>>;

/// Runs the claim loop until shutdown, then drains in-flight calls.
///
/// The loop keeps up to half a claim batch of calls claimed ahead of its
/// free slots (`ready`), and claims again while calls run: a finished call's
/// slot is refilled at once instead of after a store round trip. Calls wait
/// there for milliseconds, far less than a lease.
pub(crate) async fn run(inner: Arc<Inner>) {
    let settings = inner.settings.clone();
    let worker = settings.worker_id.as_str();
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let ahead = (settings.claim_batch as usize).min(settings.concurrency) / 2;
    let in_flight: Arc<Mutex<Running>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut shutdown = inner.shutdown.subscribe();
    let mut ready: VecDeque<CallRecord> = VecDeque::new();
    let mut handed = inner.handoff.open(slots.clone());
    // The claim in progress, with how many calls it asked for.
    let mut claiming: Option<(usize, ClaimFuture<'_>)> = None;
    // Created with each claim, so a wake-up between a claim that found
    // too little and the wait that follows is not lost.
    let mut work: Option<BoxFuture<'_, ()>> = None;
    // The last claim found fewer calls than it asked for: wait for work,
    // or until the next call is due (`pause`), whichever comes first.
    let mut idle = false;
    let mut pause: Option<BoxFuture<'_, ()>> = None;

    loop {
        if shutdown.borrow().is_some() {
            break;
        }
        // Reap finished tasks so the set stays as small as the slots.
        while tasks.try_join_next().is_some() {}
        while !ready.is_empty() {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let call = ready.pop_front().expect("not empty");
            if lease_left(&inner, &call).is_some_and(|left| left.is_zero()) {
                // Another worker may own it by now; if not, it is claimable
                // again. The slot goes back.
                tracing::debug!(call = %call.id, "lease ran out while the call waited for a slot");
                continue;
            }
            start_task(&mut tasks, &inner, &in_flight, permit, call);
        }
        let room = (slots.available_permits() + ahead).saturating_sub(ready.len());
        if claiming.is_none() && !idle && room > 0 {
            let limit = room.min(settings.claim_batch as usize);
            work = Some(inner.store.wait_for_work());
            let claim = inner
                .store
                .claim(worker, u32::try_from(limit).unwrap_or(u32::MAX), settings.lease);
            claiming = Some((limit, claim));
        }
        let full = slots.available_permits() == 0;
        tokio::select! {
            claimed = async { (&mut claiming.as_mut().expect("guarded by the condition").1).await }, if claiming.is_some() => {
                let (limit, _) = claiming.take().expect("just polled");
                match claimed {
                    Ok(calls) => {
                        idle = calls.len() < limit;
                        ready.extend(not_running(calls, &in_flight));
                        pause = idle.then(|| until_next_due(&inner));
                    }
                    Err(error) => {
                        // The store is unavailable: try again after the idle delay.
                        tracing::warn!(worker, %error, "claiming due calls failed");
                        idle = true;
                        pause = Some(Box::pin(tokio::time::sleep(settings.poll_idle)));
                    }
                }
            }
            // A call created by this runtime, leased to this worker, in a slot reserved for it.
            Some(Handed { slot, call }) = handed.recv() => start_task(&mut tasks, &inner, &in_flight, slot, call),
            // A slot came free.
            permit = slots.clone().acquire_owned(), if full => drop(permit),
            // `work` was created with the claim that made the loop idle.
            () = async { work.as_mut().expect("guarded by the condition").await }, if idle => {
                idle = false;
            }
            () = async { pause.as_mut().expect("set with `idle`").await }, if idle => idle = false,
            _ = shutdown.changed() => {}
        }
    }

    // Shutdown: no more claims or handoffs. Calls claimed or handed but not
    // started go back at once.
    inner.handoff.close();
    handed.close();
    while let Ok(Handed { call, .. }) = handed.try_recv() {
        ready.push_back(call);
    }
    if let Some((_, claim)) = claiming.take() {
        ready.extend(not_running(claim.await.unwrap_or_default(), &in_flight));
    }
    for call in ready {
        let _ = inner.store.release(call.id, worker).await;
    }
    // Let in-flight calls finish until the deadline.
    let deadline = (*shutdown.borrow()).unwrap_or_else(tokio::time::Instant::now);
    let drained = tokio::time::timeout_at(deadline, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let unfinished: Vec<_> = lock(&in_flight).keys().copied().collect();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in unfinished {
            // Lease lost or already finished: nothing to give back.
            let _ = inner.store.release(id, worker).await;
        }
    }
}

/// The shortest an idle worker sleeps when the store says a call is due
/// now (one another claimer has locked, or came due meanwhile): claiming
/// again at once would spin.
const SHORTEST_PAUSE: Duration = Duration::from_millis(1);

/// Sleeps until the next call is due ([`Store::next_due`](crate::Store::next_due)), at most `poll_idle`:
/// polls, retries and scheduled calls start on time, not on the next tick
/// of a timer. `poll_idle` stays the bound, for what no store wake-up
/// announces (another process's writes without `LISTEN`, an expired lease).
fn until_next_due(inner: &Arc<Inner>) -> BoxFuture<'static, ()> {
    let inner = inner.clone();
    Box::pin(async move {
        let poll_idle = inner.settings.poll_idle;
        let clock = &inner.settings.clock;
        let due = match inner.store.next_due().await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "reading when the next call is due failed");
                None
            }
        };
        match due {
            Some(due) if due <= clock.now() => tokio::time::sleep(SHORTEST_PAUSE).await,
            // The runtime's clock: a test clock advanced to `due` wakes it.
            Some(due) => {
                tokio::select! {
                    () = clock.sleep_until(due) => {}
                    () = tokio::time::sleep(poll_idle) => {}
                }
            }
            None => tokio::time::sleep(poll_idle.max(SHORTEST_PAUSE)).await,
        }
    })
}

/// How much of the call's lease is left (zero: none), when it has one.
fn lease_left(inner: &Inner, call: &CallRecord) -> Option<Duration> {
    let until = call.lease_expires_at?;
    Some((until - inner.settings.clock.now()).to_std().unwrap_or(Duration::ZERO))
}

/// The calls running on this worker, each with whether a claim found it
/// again while it ran.
type Running = HashMap<crate::CallId, bool>;

/// Starts `call` in a task holding its slot, tracked as in flight. When a
/// claim found the call again while it ran, the same task takes the next
/// turn, if the lease of that claim is still this worker's.
fn start_task(
    tasks: &mut JoinSet<()>,
    inner: &Arc<Inner>,
    in_flight: &Arc<Mutex<Running>>,
    slot: OwnedSemaphorePermit,
    call: CallRecord,
) {
    let mut tracked = InFlight::new(in_flight.clone(), call.id);
    let inner = inner.clone();
    tasks.spawn(async move {
        // Dropped last, also when the task panics or is aborted.
        let _slot = slot;
        let mut next = Some(call);
        loop {
            if let Some(call) = next.take() {
                execute(&inner, call).await;
            }
            // Asked again after every look at the store, so a claim that
            // came meanwhile is never left unrun.
            if !tracked.claimed_again() {
                break;
            }
            next = still_leased(&inner, tracked.id).await;
            if let Some(call) = next.take_if(|_| inner.shutdown.borrow().is_some()) {
                let _ = inner.store.release(call.id, &inner.settings.worker_id).await;
            }
        }
    });
}

/// Call `id` as the store has it now, when this worker still holds a lease
/// on it that has time left.
async fn still_leased(inner: &Inner, id: crate::CallId) -> Option<CallRecord> {
    match inner.store.get(id).await {
        Ok(Some(call))
            if call.lease_owner.as_deref() == Some(inner.settings.worker_id.as_str())
                && lease_left(inner, &call).is_some_and(|left| !left.is_zero()) =>
        {
            Some(call)
        }
        Ok(_) => None,
        Err(error) => {
            // The lease runs out and the call is claimed again then.
            tracing::warn!(call = %id, %error, "could not read a call claimed again while it ran");
            None
        }
    }
}

/// The claimed calls that are not running here already.
///
/// A running call is claimed again in two ways. Its lease ran out while a
/// slow store held it up; the running execution owns it again, and its last
/// write will end that lease. Or its last write took effect (a retry came
/// due) before the answer reached the task; then the claim's lease is the
/// only one, and nobody else will run the call until it runs out. Both wait
/// for the running turn to end, which then runs the call again if it still
/// holds a lease ([`start_task`]).
fn not_running(calls: Vec<CallRecord>, in_flight: &Mutex<Running>) -> Vec<CallRecord> {
    let mut running = lock(in_flight);
    calls
        .into_iter()
        .filter_map(|call| match running.get_mut(&call.id) {
            Some(claimed_again) => {
                *claimed_again = true;
                None
            }
            None => Some(call),
        })
        .collect()
}

/// Membership of a call in the in-flight set, for as long as it runs.
struct InFlight {
    set: Arc<Mutex<Running>>,
    id: crate::CallId,
    /// Left the set already: the id may be another task's entry by now.
    left: bool,
}

impl InFlight {
    fn new(set: Arc<Mutex<Running>>, id: crate::CallId) -> Self {
        lock(&set).insert(id, false);
        InFlight { set, id, left: false }
    }

    /// After a turn: whether a claim found the call while it ran (it stays
    /// in flight for the next turn). If not, the call leaves the set in the
    /// same step, so a later claim starts it anew instead of being missed.
    fn claimed_again(&mut self) -> bool {
        let mut running = lock(&self.set);
        let claimed = running.get_mut(&self.id).is_some_and(std::mem::take);
        if !claimed {
            running.remove(&self.id);
            self.left = true;
        }
        claimed
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.left {
            lock(&self.set).remove(&self.id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Executes one claimed call, renewing its lease meanwhile. Every path ends
/// with a store write that releases the lease, or gives the lease up.
///
/// The turn is traced as a `call_turn` span (`call_id`, `integration`,
/// `endpoint`, `attempt`, and `external_id` once known); the HTTP attempt
/// spans of the integration's client nest inside it.
pub(crate) async fn execute(inner: &Inner, call: CallRecord) {
    let span = tracing::info_span!(
        "call_turn",
        call_id = %call.id,
        integration = %call.integration,
        endpoint = %call.endpoint,
        attempt = call.attempts.saturating_add(1),
        external_id = tracing::field::Empty,
    );
    if let Some(external_id) = &call.external_id {
        span.record("external_id", external_id.as_str());
    }
    execute_turn(inner, call).instrument(span).await;
}

async fn execute_turn(inner: &Inner, call: CallRecord) {
    let id = call.id;
    let worker = inner.settings.worker_id.as_str();
    match with_heartbeat(inner, id, lease_left(inner, &call), step(inner, &call)).await {
        Ok(()) => {}
        Err(error) if error.is_lease_lost() || error.is_not_found() => {
            tracing::debug!(call = %id, %error, "lost the lease; another worker owns the call");
        }
        Err(error) => {
            // A store failure mid-way: give the call back at once; its
            // events are idempotent, so the next run repeats nothing twice.
            tracing::warn!(call = %id, %error, "store failure while executing a call; released it");
            let _ = inner.store.release(id, worker).await;
        }
    }
}

/// Runs `work`, extending the lease every third of it (the first time
/// sooner when only `left` of it is left). Stops the renewals when the lease
/// was lost (another worker owns the call now).
async fn with_heartbeat(
    inner: &Inner,
    id: crate::CallId,
    left: Option<Duration>,
    work: impl Future<Output = Result<(), StoreError>>,
) -> Result<(), StoreError> {
    let lease = inner.settings.lease;
    let period = (lease / 3).max(Duration::from_millis(10));
    // A call that waited for a slot has less than its whole lease left: the
    // first renewal comes halfway through what is left, before it runs out.
    let first = left.map_or(period, |left| period.min(left / 2));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    tokio::pin!(work);
    // The renewal runs NEXT TO the work, never instead of it: awaiting it in
    // the select arm would stop polling the work, and a work step holding the
    // call's row lock (an append's transaction) would then block the renewal
    // that waits for that very lock, forever.
    //
    // A lost lease stops the renewals but never cancels the work: dropping a
    // step in the middle of a store transaction could leave that transaction
    // (and SQLite's write lock) open. The step's own writes check the lease
    // and fail once another worker owns the call; its events are idempotent.
    let mut renewal: Option<crate::integration::BoxFuture<'_, Result<(), StoreError>>> = None;
    let mut renewing = true;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticker.tick(), if renewing && renewal.is_none() => {
                renewal = Some(inner.store.extend_lease(id, &inner.settings.worker_id, lease));
            }
            outcome = async { renewal.as_mut().expect("guarded by the condition").await }, if renewal.is_some() => {
                renewal = None;
                match outcome {
                    Err(error) if error.is_lease_lost() || error.is_not_found() => renewing = false,
                    // A transient store error: the next tick tries again.
                    _ => {}
                }
            }
        }
    }
}

async fn step(inner: &Inner, call: &CallRecord) -> Result<(), StoreError> {
    let worker = inner.settings.worker_id.as_str();
    let Some(integration) = inner.integrations.get(call.integration.as_str()) else {
        // Not ours: offer it again later, without counting an attempt.
        return inner
            .store
            .postpone(call.id, worker, inner.settings.clock.after(FOREIGN_CALL_DELAY))
            .await;
    };
    if let Some(reason) = stranded_under(call, integration.as_ref()) {
        tracing::warn!(%reason, "a stored call cannot be finished under the current spec");
        return fail_in_turn(inner, call, FailureKind::SpecChanged, failure_message(&reason)).await;
    }
    // A call of a connection is sent with that connection's integration
    // client and parameter overrides; the rest of the turn is the same.
    let connected;
    let (integration, call) = match call.connection.as_deref() {
        None => (integration, call),
        Some(id) => match inner.connections.resolve(integration, call, id, worker).await? {
            Resolution::Ready(client, params) => {
                connected = (client, CallRecord { params, ..call.clone() });
                (&connected.0, &connected.1)
            }
            Resolution::Fails(kind, message) => {
                tracing::warn!(connection = id, %message, "the call's connection cannot be used");
                return fail_in_turn(inner, call, kind, message).await;
            }
        },
    };
    let endpoint = integration.descriptor().endpoint(&call.endpoint);
    if let Some(deadline) = deadline(call, endpoint, inner.settings.polling_time_scale) {
        if !call.is_terminal() && inner.settings.clock.now() >= deadline {
            return time_out(inner, call, endpoint).await;
        }
    }
    match call.status {
        CallStatus::Pending => start(inner, integration.as_ref(), call).await,
        CallStatus::Processing => {
            let mode = endpoint.map(|endpoint| endpoint.mode);
            if mode == Some(Mode::Sync) {
                // A sync call is only `processing` when its worker died
                // between `initialized` and the result: send it again (same
                // key); the events already recorded are duplicates.
                start(inner, integration.as_ref(), call).await
            } else {
                follow_up(inner, integration.as_ref(), call).await
            }
        }
        CallStatus::Completed | CallStatus::Failed => inner.store.reschedule(call.id, worker, None).await,
    }
}

fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// The request was not sent: the integration's own circuit breaker or
/// rate/concurrency limit refused it. Not the call's failure.
fn refused_locally(error: &ClientError) -> bool {
    error.is_circuit_open() || error.is_rate_limited()
}

/// How long to wait after a local refusal.
fn refusal_wait(error: &ClientError, fallback: Duration) -> Duration {
    error.admit_after().unwrap_or(fallback).max(Duration::from_millis(10))
}

/// Sends the starting request and records what it says.
async fn start(inner: &Inner, integration: &dyn Integration, call: &CallRecord) -> Result<(), StoreError> {
    let worker = inner.settings.worker_id.as_str();
    let descriptor = integration.descriptor();
    let Some(endpoint) = descriptor
        .endpoint(&call.endpoint)
        .filter(|endpoint| endpoint.starts_calls)
    else {
        let message = format!(
            "endpoint `{}` of `{}` does not exist or does not start calls",
            call.endpoint, call.integration
        );
        return fail_unanswered(inner, call, FailureKind::SpecChanged, message).await;
    };
    let options = CallOptions {
        idempotency_key: Some(provider_idempotency_key(call.id)),
    };
    let attempt = call.attempts.saturating_add(1);
    let started = std::time::Instant::now();
    let result = integration.start(&call.endpoint, &call.params, &options).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) if refused_locally(error) => "refused",
        Err(error) if error.is_timeout() => "timeout",
        Err(error) if error.status().is_some() => "http_error",
        Err(_) => "error",
    };
    inner
        .metrics
        .attempt(&call.integration, &call.endpoint, outcome, started.elapsed());
    let reply = match result {
        Ok(reply) => reply,
        Err(error) => {
            if refused_locally(&error) {
                // Nothing was sent: wait for the circuit or limit, keep the attempt.
                let fallback = Duration::from_millis(endpoint.policy.retry.initial_backoff_ms.max(100));
                let wait = refusal_wait(&error, fallback);
                return inner
                    .store
                    .postpone(call.id, worker, inner.settings.clock.after(wait))
                    .await;
            }
            let retry = &endpoint.policy.retry;
            if attempt < retry.max_attempts && may_retry_start(endpoint, &error) {
                let delay = retry_delay(retry, attempt, error.retry_after(), unit_random());
                tracing::warn!(%error, retry_in_ms = millis(delay), "the attempt failed; the call will be retried");
                // Never past the deadline: the call times out then instead.
                let at = not_after_deadline(inner.settings.clock.after(delay), call, Some(endpoint), inner);
                return inner.store.reschedule(call.id, worker, Some(at)).await;
            }
            let (kind, message) = if attempt > 1 {
                (
                    FailureKind::Exhausted,
                    format!("{error} (gave up after {attempt} attempts)"),
                )
            } else {
                (FailureKind::of(&error), error.to_string())
            };
            tracing::warn!(error = %message, "the attempt failed; the call fails");
            return fail_unanswered(inner, call, kind, message).await;
        }
    };
    match endpoint.mode {
        Mode::Sync => {
            let external_id = reply
                .external_id
                .clone()
                .unwrap_or_else(|| generated_external_id(call.id));
            tracing::Span::current().record("external_id", external_id.as_str());
            // A sync reply is the end: anything but a failure is a completion.
            let status = match reply.status {
                Some(RemoteStatus::Failed) => RemoteStatus::Failed,
                _ => RemoteStatus::Completed,
            };
            let mut events = vec![initialized(&external_id), processing()];
            events.extend(terminal_of(status, &reply));
            record_answer(inner, call, &external_id, events, None).await
        }
        Mode::Async => {
            let Some(external_id) = reply.external_id.clone() else {
                let message = format!(
                    "endpoint `{}`: the provider's answer (HTTP {}) carries no external id \
                     where the spec's `external_id` path points, so the call cannot be followed",
                    call.endpoint, reply.http_status
                );
                return fail_unanswered(inner, call, FailureKind::InvalidAnswer, message).await;
            };
            tracing::Span::current().record("external_id", external_id.as_str());
            let mut events = vec![initialized(&external_id)];
            events.extend(events_of(&reply));
            // A terminal answer clears the schedule in the store.
            let next = next_turn(inner, integration, call, None);
            record_answer(inner, call, &external_id, events, next).await
        }
    }
}

/// Ends the turn with the events of the provider's first answer (starting
/// with `initialized`), in one store write. When the provider's external id
/// already belongs to another call, the call fails instead.
async fn record_answer(
    inner: &Inner,
    call: &CallRecord,
    external_id: &str,
    events: Vec<NewEvent>,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    match finish_turn(inner, call, EventSource::Start, events, next_run_at).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_conflict() && !error.is_lease_lost() => {
            let message =
                format!("the provider's id `{external_id}` for this call already belongs to another call: {error}");
            fail_unanswered(inner, call, FailureKind::InvalidAnswer, message).await
        }
        Err(error) => Err(error),
    }
}

/// Fails a call the provider never acknowledged: `initialized` with a
/// generated id (every call has one), then `failed`, and unschedules it, in
/// one store write.
async fn fail_unanswered(
    inner: &Inner,
    call: &CallRecord,
    kind: FailureKind,
    message: String,
) -> Result<(), StoreError> {
    let events = vec![
        initialized(&generated_external_id(call.id)),
        failed(kind, message.clone()),
    ];
    match finish_turn(inner, call, EventSource::Start, events, None).await {
        // The call already has another external id: `failed` still applies.
        Err(error) if error.is_conflict() && !error.is_lease_lost() => {
            finish_turn(inner, call, EventSource::Start, vec![failed(kind, message)], None)
                .await
                .map(drop)
        }
        result => result.map(drop),
    }
}

/// When the worker takes the call up next: its next poll, never past its
/// deadline; without polling, the deadline itself (a webhook normally
/// finishes the call first); `None` without either. The poll schedule runs
/// in spec time; `polling_time_scale` maps it to real time (see
/// `RuntimeBuilder::polling_time_scale`).
fn next_turn(
    inner: &Inner,
    integration: &dyn Integration,
    call: &CallRecord,
    at_least: Option<Duration>,
) -> Option<DateTime<Utc>> {
    let descriptor = integration.descriptor();
    let scale = inner.settings.polling_time_scale;
    let deadline = deadline(call, descriptor.endpoint(&call.endpoint), scale);
    let Some(polling) = descriptor.polling else {
        return deadline;
    };
    let elapsed = (inner.settings.clock.now() - call.created_at)
        .to_std()
        .unwrap_or_default();
    let mut delay = poll_delay(&polling, elapsed.div_f64(scale)).mul_f64(scale);
    if let Some(floor) = at_least {
        delay = delay.max(floor);
    }
    let next = inner.settings.clock.after(delay);
    Some(deadline.map_or(next, |deadline| next.min(deadline)))
}

/// When the call fails with [`FailureKind::Timeout`] if it has not ended:
/// the deadline stored with it, or (a call stored before deadlines were)
/// its endpoint's `give_up_after_s` from its creation.
pub(crate) fn deadline(call: &CallRecord, endpoint: Option<&EndpointDescriptor>, scale: f64) -> Option<DateTime<Utc>> {
    call.deadline_at.or_else(|| {
        let seconds = endpoint?.give_up_after_s?;
        Some(deadline_from(call.created_at, seconds, scale))
    })
}

/// `seconds` of spec time after `start`, in real time.
pub(crate) fn deadline_from(start: DateTime<Utc>, seconds: u64, scale: f64) -> DateTime<Utc> {
    let millis = (seconds as f64 * 1000.0 * scale).min(i64::MAX as f64) as i64;
    chrono::Duration::try_milliseconds(millis)
        .and_then(|d| start.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at`, or the call's deadline when that comes first.
fn not_after_deadline(
    at: DateTime<Utc>,
    call: &CallRecord,
    endpoint: Option<&EndpointDescriptor>,
    inner: &Inner,
) -> DateTime<Utc> {
    deadline(call, endpoint, inner.settings.polling_time_scale).map_or(at, |deadline| at.min(deadline))
}

/// Fails a call whose deadline passed, with [`FailureKind::Timeout`].
async fn time_out(inner: &Inner, call: &CallRecord, endpoint: Option<&EndpointDescriptor>) -> Result<(), StoreError> {
    let limit = endpoint
        .and_then(|endpoint| endpoint.give_up_after_s)
        .map_or_else(String::new, |seconds| format!(" (`give_up_after_s` = {seconds})"));
    let message = format!("timed out: the call did not end by its deadline{limit}");
    tracing::warn!(error = %message, "the call fails");
    fail_in_turn(inner, call, FailureKind::Timeout, message).await
}

/// Fails a call in this worker's turn, whatever its status: one never
/// acknowledged as [`fail_unanswered`] does, one in `processing` with
/// `failed` alone.
async fn fail_in_turn(inner: &Inner, call: &CallRecord, kind: FailureKind, message: String) -> Result<(), StoreError> {
    match call.status {
        CallStatus::Pending => fail_unanswered(inner, call, kind, message).await,
        _ => finish_turn(inner, call, EventSource::Poll, vec![failed(kind, message)], None)
            .await
            .map(drop),
    }
}

/// Polls a call the provider acknowledged, or gives up on it.
async fn follow_up(inner: &Inner, integration: &dyn Integration, call: &CallRecord) -> Result<(), StoreError> {
    let worker = inner.settings.worker_id.as_str();
    let descriptor = integration.descriptor();
    let (Some(polling), Some(external_id)) = (descriptor.polling, call.external_id.as_deref()) else {
        // Nothing to poll: an event (webhook) finishes the call, or its
        // deadline does (checked before this turn).
        let next = next_turn(inner, integration, call, None);
        return inner.store.reschedule(call.id, worker, next).await;
    };
    let Some(poll) = integration.poll(external_id) else {
        let next = next_turn(inner, integration, call, None);
        return inner.store.reschedule(call.id, worker, next).await;
    };
    match poll.await {
        Ok(reply) => {
            // A terminal answer clears the schedule in the store.
            let next = next_turn(inner, integration, call, None);
            finish_turn(inner, call, EventSource::Poll, events_of(&reply), next)
                .await
                .map(drop)
        }
        Err(error) if refused_locally(&error) => {
            let wait = refusal_wait(&error, Duration::from_millis(polling.interval_ms));
            let next =
                next_turn(inner, integration, call, Some(wait)).unwrap_or_else(|| inner.settings.clock.after(wait));
            inner.store.postpone(call.id, worker, next).await
        }
        // Polls keep going through any transient failure, whatever the
        // start's retry policy says.
        Err(error) if is_retryable_class(&error, &RetryOn::TRANSIENT) => {
            tracing::warn!(%error, "the poll failed; polling again later");
            let next = next_turn(inner, integration, call, error.retry_after());
            inner.store.reschedule(call.id, worker, next).await
        }
        Err(error) => {
            let message = format!("polling `{}` failed: {error}", polling.endpoint);
            tracing::warn!(error = %message, "the poll failed; the call fails");
            let failure = failed(FailureKind::of(&error), message);
            finish_turn(inner, call, EventSource::Poll, vec![failure], None)
                .await
                .map(drop)
        }
    }
}

/// Ends this worker's turn on `call` through the event sink.
async fn finish_turn(
    inner: &Inner,
    call: &CallRecord,
    source: EventSource,
    events: Vec<NewEvent>,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<Vec<crate::store::AppendOutcome>, StoreError> {
    inner
        .events
        .finish_turn(call, &inner.settings.worker_id, source, events, next_run_at)
        .await
}
