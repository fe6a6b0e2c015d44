//! A store in process memory, for tests and examples: same contract as the
//! durable stores (it runs the same conformance suite), nothing survives the
//! process.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{
    check_same_request, lease_deadline, new_call_id, notification_columns, oldest, page_of, plan_append, truncate,
    AppendOutcome, BoxFuture, CallId, CallRecord, CallWithEvents, Created, EventRecord, ListOrder, ListQuery, NewCall,
    NewEvent, NotificationOutcome, Page, PruneRule, RateRequest, RateSlice, StatusCounts, Store, StoreError,
};
use super::{micros, now_micros, open_for, protection};
use crate::clock::SharedClock;
use crate::lifecycle::{CallStatus, Transition};

mod connections;

/// A [`Store`] that keeps everything in memory.
///
/// Operations run under one mutex, never held across an `.await`, which is
/// what makes claims and appends atomic here.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    work: Notify,
    /// The runtime's clock, once one uses the store.
    clock: SharedClock,
}

#[derive(Debug, Default)]
struct State {
    /// Calls by creation sequence: the listing order and the cursor.
    calls: BTreeMap<i64, CallRecord>,
    /// Events of each call (by creation sequence), in recording order.
    events: HashMap<i64, Vec<EventRecord>>,
    by_id: HashMap<CallId, i64>,
    by_external_id: HashMap<(String, String), i64>,
    by_idempotency_key: HashMap<(String, String), i64>,
    last_call_seq: i64,
    last_event_id: i64,
    /// Calls (by creation sequence) whose terminal notification is due at the time.
    notify_at: HashMap<i64, DateTime<Utc>>,
    /// Shared rate limiters: their theoretical arrival time (microseconds).
    limiters: HashMap<String, i64>,
    /// Shared circuit breakers: open until (microseconds).
    breakers: HashMap<String, i64>,
    /// Connections, their tokens and pending authorizations.
    connections: connections::Connections,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change:
        // every operation checks first and mutates last (a multi-event
        // append undoes its earlier events when a later one fails).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create_now(&self, call: NewCall) -> Result<Created, StoreError> {
        let mut state = self.state();
        if let Some(key) = &call.idempotency_key {
            if let Some(seq) = state.by_idempotency_key.get(&(call.integration.clone(), key.clone())) {
                let existing = &state.calls[seq];
                check_same_request(existing, &call)?;
                return Ok(Created {
                    id: existing.id,
                    created: false,
                });
            }
        }
        let now = self.clock.now();
        let id = new_call_id();
        state.last_call_seq += 1;
        let seq = state.last_call_seq;
        if let Some(key) = &call.idempotency_key {
            state
                .by_idempotency_key
                .insert((call.integration.clone(), key.clone()), seq);
        }
        state.by_id.insert(id, seq);
        state.calls.insert(seq, CallRecord::created(id, call, now));
        Ok(Created { id, created: true })
    }

    fn claim_now(&self, worker: &str, limit: u32, lease: Duration) -> Vec<CallRecord> {
        let mut guard = self.state();
        let state = &mut *guard;
        let now = self.clock.now();
        let limit = limit as usize;
        if limit == 0 {
            return Vec::new();
        }
        // Keep only the `limit` earliest due calls while scanning (a max-heap
        // of size `limit`), so the extra memory is bounded like the SQL claim.
        let mut earliest: BinaryHeap<(DateTime<Utc>, i64)> = BinaryHeap::with_capacity(limit + 1);
        for (&seq, call) in &state.calls {
            if is_claimable(call, now) {
                earliest.push((call.next_run_at.unwrap_or(now), seq));
                if earliest.len() > limit {
                    earliest.pop();
                }
            }
        }
        let deadline = lease_deadline(now, lease);
        let mut claimed: Vec<_> = earliest.into_vec();
        claimed.sort_unstable();
        claimed
            .into_iter()
            .map(|(_, seq)| {
                let call = state.calls.get_mut(&seq).expect("indexed call exists");
                call.lease_owner = Some(worker.to_owned());
                call.lease_expires_at = Some(deadline);
                call.updated_at = now;
                call.clone()
            })
            .collect()
    }

    /// Runs `change` on `id` if `worker` holds its lease.
    fn with_lease(
        &self,
        id: CallId,
        worker: &str,
        change: impl FnOnce(&mut CallRecord, DateTime<Utc>),
    ) -> Result<(), StoreError> {
        self.with_leased_state(id, worker, |state, seq, now| {
            change(state.call_mut(seq), now);
            Ok(())
        })
    }

    /// Runs `change` on the whole state for call `id` (by creation sequence)
    /// if `worker` holds its lease, under one lock; stamps the call's
    /// `updated_at` when `change` succeeds.
    fn with_leased_state<T>(
        &self,
        id: CallId,
        worker: &str,
        change: impl FnOnce(&mut State, i64, DateTime<Utc>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let seq = *state
            .by_id
            .get(&id)
            .ok_or_else(|| StoreError::not_found(format_args!("call {id}")))?;
        if state.calls[&seq].lease_owner.as_deref() != Some(worker) {
            return Err(StoreError::lease_lost(id, worker));
        }
        let now = self.clock.now();
        let done = change(state, seq, now)?;
        state.call_mut(seq).updated_at = now;
        Ok(done)
    }

    fn append_now(
        &self,
        seq: Option<i64>,
        what: &dyn Fn() -> String,
        event: NewEvent,
    ) -> Result<AppendOutcome, StoreError> {
        let seq = seq.ok_or_else(|| StoreError::not_found(what()))?;
        self.state().append(seq, event, self.clock.now())
    }

    fn list_now(&self, query: &ListQuery) -> Page {
        let state = self.state();
        let limit = query.clamped_limit() as usize;
        let matches = |call: &&CallRecord| {
            call.integration == query.integration
                && query.status.is_none_or(|s| call.status == s)
                && query
                    .connection
                    .as_ref()
                    .is_none_or(|id| call.connection.as_ref() == Some(id))
        };
        // One row more than the page tells whether another page exists.
        let rows: Vec<(i64, CallRecord)> = match query.order {
            ListOrder::OldestFirst => {
                let start = query.after.map_or(i64::MIN, |c| c.0.saturating_add(1));
                state
                    .calls
                    .range(start..)
                    .filter(|(_, call)| matches(call))
                    .take(limit + 1)
                    .map(|(&seq, call)| (seq, call.clone()))
                    .collect()
            }
            ListOrder::NewestFirst => {
                let end = query.after.map_or(i64::MAX, |c| c.0);
                state
                    .calls
                    .range(..end)
                    .rev()
                    .filter(|(_, call)| matches(call))
                    .take(limit + 1)
                    .map(|(&seq, call)| (seq, call.clone()))
                    .collect()
            }
        };
        page_of(rows, limit)
    }
}

impl State {
    /// Deletes the `limit` oldest calls `rule` matches whose notification is
    /// not pending, with their events and every index entry.
    fn prune(&mut self, rule: &PruneRule, limit: u32) -> u64 {
        let candidates = self
            .calls
            .iter()
            .filter(|(seq, call)| !self.notify_at.contains_key(seq) && rule.matches(call.status, call.completed_at))
            .map(|(&seq, call)| ((call.completed_at, seq), seq));
        let doomed = oldest(candidates, limit as usize);
        for seq in &doomed {
            let call = self.calls.remove(seq).expect("a candidate call exists");
            self.events.remove(seq);
            self.by_id.remove(&call.id);
            if let Some(external_id) = call.external_id {
                self.by_external_id.remove(&(call.integration.clone(), external_id));
            }
            if let Some(key) = call.idempotency_key {
                self.by_idempotency_key.remove(&(call.integration, key));
            }
        }
        doomed.len() as u64
    }

    fn call_mut(&mut self, seq: i64) -> &mut CallRecord {
        self.calls.get_mut(&seq).expect("indexed call exists")
    }

    /// Appends `event` to the call `seq`, recorded at `now`. Checks first
    /// and mutates last: an error leaves the state unchanged.
    fn append(&mut self, seq: i64, event: NewEvent, now: DateTime<Utc>) -> Result<AppendOutcome, StoreError> {
        let call = &self.calls[&seq];
        let id = call.id;
        if let Some(earlier) = self
            .events
            .get(&seq)
            .and_then(|events| events.iter().find(|e| e.key == event.key))
        {
            return Ok(AppendOutcome::Duplicate {
                call_id: id,
                event_id: earlier.id,
                status: call.status,
            });
        }
        let plan = plan_append(id, call.status, call.external_id.as_deref(), &event)?;
        if let Some(external_id) = &plan.set_external_id {
            let key = (call.integration.clone(), external_id.clone());
            if self.by_external_id.get(&key).is_some_and(|&other| other != seq) {
                return Err(StoreError::conflict(format_args!(
                    "external id `{external_id}` of `{}` already belongs to another call",
                    key.0
                )));
            }
            self.by_external_id.insert(key, seq);
        }

        self.last_event_id += 1;
        let event_id = self.last_event_id;
        let call = self.calls.get_mut(&seq).expect("indexed call exists");
        if let Some(external_id) = plan.set_external_id {
            call.external_id = Some(external_id);
            call.updated_at = now;
        }
        if let Transition::Moved(_, to) = plan.transition {
            call.status = to;
            call.updated_at = now;
            match to {
                CallStatus::Completed => call.response_data = event.payload.result.clone(),
                CallStatus::Failed => {
                    call.error = event.payload.error.clone();
                    call.error_kind = event.payload.error_kind;
                }
                CallStatus::Pending | CallStatus::Processing => {}
            }
            if to.is_terminal() {
                call.completed_at = Some(now);
                call.next_run_at = None;
                self.notify_at.insert(seq, now);
            }
        }
        self.events.entry(seq).or_default().push(EventRecord {
            id: event_id,
            call_id: id,
            kind: event.kind,
            key: event.key,
            payload: event.payload,
            applied: plan.transition.is_moved(),
            recorded_at: now,
        });
        Ok(AppendOutcome::recorded(id, event_id, plan.transition))
    }

    /// Appends `events` to the call `seq` in order, all or nothing: when one
    /// fails, the appends before it are undone and its error returned.
    fn append_all(
        &mut self,
        seq: i64,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let savepoint = self.savepoint(seq);
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            match self.append(seq, event, now) {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    self.roll_back(savepoint);
                    return Err(error);
                }
            }
        }
        Ok(outcomes)
    }

    /// Everything appending to the call `seq` may change.
    fn savepoint(&self, seq: i64) -> Savepoint {
        Savepoint {
            seq,
            call: self.calls[&seq].clone(),
            events: self.events.get(&seq).map_or(0, Vec::len),
            last_event_id: self.last_event_id,
            notify_at: self.notify_at.get(&seq).copied(),
        }
    }

    fn roll_back(&mut self, savepoint: Savepoint) {
        let Savepoint {
            seq,
            call,
            events,
            last_event_id,
            notify_at,
        } = savepoint;
        let current = self.call_mut(seq);
        // An external id is set once: one the call did not have was set since.
        if call.external_id.is_none() {
            if let Some(external_id) = current.external_id.take() {
                self.by_external_id.remove(&(call.integration.clone(), external_id));
            }
        }
        if let Some(log) = self.events.get_mut(&seq) {
            log.truncate(events);
        }
        match notify_at {
            Some(at) => self.notify_at.insert(seq, at),
            None => self.notify_at.remove(&seq),
        };
        self.last_event_id = last_event_id;
        self.calls.insert(seq, call);
    }
}

/// The state of one call before a multi-event append, to undo it.
struct Savepoint {
    seq: i64,
    call: CallRecord,
    /// How many events the call had.
    events: usize,
    last_event_id: i64,
    notify_at: Option<DateTime<Utc>>,
}

/// Ends a worker's turn on `call`: the next run (none on a terminal call),
/// an attempt counted if `attempt`, the lease released.
fn end_turn(call: &mut CallRecord, next_run_at: Option<DateTime<Utc>>, attempt: bool) {
    call.next_run_at = if call.status.is_terminal() {
        None
    } else {
        next_run_at.map(truncate)
    };
    if attempt {
        call.attempts = call.attempts.saturating_add(1);
    }
    call.lease_owner = None;
    call.lease_expires_at = None;
}

fn is_claimable(call: &CallRecord, now: DateTime<Utc>) -> bool {
    matches!(call.status, CallStatus::Pending | CallStatus::Processing)
        && call.next_run_at.is_some_and(|at| at <= now)
        && call.lease_expires_at.is_none_or(|until| until <= now)
}

impl Store for MemoryStore {
    fn use_clock(&self, clock: crate::Clock) {
        self.clock.set(clock);
    }

    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            // A leased call is not claimable yet: waking workers would be for nothing.
            let claimable = call.lease.is_none();
            let created = self.create_now(call)?;
            if created.created && claimable {
                self.work.notify_waiters();
            }
            Ok(created)
        })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: u32,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move { Ok(self.claim_now(worker, limit, lease)) })
    }

    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.with_lease(id, worker, |call, now| {
                call.lease_expires_at = Some(lease_deadline(now, lease));
            })
        })
    }

    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.with_lease(id, worker, |call, _| {
                call.lease_owner = None;
                call.lease_expires_at = None;
            })?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.with_lease(id, worker, |call, _| end_turn(call, next_run_at, true))?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>> {
        Box::pin(async move {
            // One lock for the lease check, the appends and the reschedule;
            // a failed append undoes the ones before it.
            let outcomes = self.with_leased_state(id, worker, |state, seq, now| {
                let outcomes = state.append_all(seq, events, now)?;
                end_turn(state.call_mut(seq), next_run_at, true);
                Ok(outcomes)
            })?;
            self.work.notify_waiters();
            Ok(outcomes)
        })
    }

    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(async move {
            let seq = self.state().by_id.get(&id).copied();
            self.append_now(seq, &|| format!("call {id}"), event)
        })
    }

    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        Box::pin(async move {
            let key = (integration.to_owned(), external_id.to_owned());
            let seq = self.state().by_external_id.get(&key).copied();
            self.append_now(
                seq,
                &|| format!("call of `{integration}` with external id `{external_id}`"),
                event,
            )
        })
    }

    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(state.by_id.get(&id).map(|seq| state.calls[seq].clone()))
        })
    }

    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(state.by_id.get(&id).map(|seq| CallWithEvents {
                call: state.calls[seq].clone(),
                events: state.events.get(seq).cloned().unwrap_or_default(),
            }))
        })
    }

    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            let key = (integration.to_owned(), external_id.to_owned());
            Ok(state.by_external_id.get(&key).map(|seq| state.calls[seq].clone()))
        })
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move { Ok(self.list_now(query)) })
    }

    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            let mut counts = StatusCounts::default();
            for call in state.calls.values() {
                if integration.is_none_or(|name| call.integration == name) {
                    counts.add(call.status, 1);
                }
            }
            Ok(counts)
        })
    }

    fn wait_for_work(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.work.notified())
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            let now = self.clock.now();
            // The claimable calls, and those that will be once their time comes.
            let due = self
                .state()
                .calls
                .values()
                .filter(|call| is_claimable(call, call.next_run_at.unwrap_or(now).max(now)))
                .filter_map(|call| call.next_run_at)
                .min();
            Ok(due)
        })
    }

    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Memory can always be written.
        Box::pin(async { Ok(()) })
    }

    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.with_lease(id, worker, |call, _| end_turn(call, Some(next_run_at), false))?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            let mut guard = self.state();
            let state = &mut *guard;
            let now = self.clock.now();
            let limit = limit as usize;
            if limit == 0 {
                return Ok(Vec::new());
            }
            // The `limit` earliest due notifications, in bounded memory.
            let mut earliest: BinaryHeap<(DateTime<Utc>, i64)> = BinaryHeap::with_capacity(limit + 1);
            for (&seq, &at) in &state.notify_at {
                if at <= now {
                    earliest.push((at, seq));
                    if earliest.len() > limit {
                        earliest.pop();
                    }
                }
            }
            let deadline = lease_deadline(now, lease);
            let mut claimed = earliest.into_vec();
            claimed.sort_unstable();
            Ok(claimed
                .into_iter()
                .map(|(_, seq)| {
                    state.notify_at.insert(seq, deadline);
                    state.calls[&seq].clone()
                })
                .collect())
        })
    }

    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut state = self.state();
            let seq = *state
                .by_id
                .get(&id)
                .ok_or_else(|| StoreError::not_found(format_args!("call {id}")))?;
            let (retry_at, failed, error) = notification_columns(outcome);
            let call = state.call_mut(seq);
            call.notification_attempts = call.notification_attempts.saturating_add(u32::from(failed));
            if error.is_some() {
                call.notification_error = error;
            }
            match retry_at {
                Some(at) => state.notify_at.insert(seq, at),
                None => state.notify_at.remove(&seq),
            };
            Ok(())
        })
    }

    fn lease_rate<'a>(
        &'a self,
        limiter: &'a str,
        request: RateRequest,
    ) -> BoxFuture<'a, Result<RateSlice, StoreError>> {
        Box::pin(async move {
            let mut state = self.state();
            let stored = state.limiters.get(limiter).copied();
            let (tat, slice) = protection::lease(stored, now_micros(), &request);
            if let Some(tat) = tat {
                state.limiters.insert(limiter.to_owned(), tat);
            }
            Ok(slice)
        })
    }

    fn open_circuit<'a>(&'a self, breaker: &'a str, open_for: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let until = now_micros().saturating_add(micros(open_for));
            let mut state = self.state();
            let stored = state.breakers.entry(breaker.to_owned()).or_insert(until);
            *stored = (*stored).max(until);
            Ok(())
        })
    }

    fn circuit_open_for<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(async move {
            let until = self.state().breakers.get(breaker).copied();
            Ok(open_for(until, now_micros()))
        })
    }

    fn prune<'a>(&'a self, rule: &'a PruneRule, limit: u32) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { Ok(self.state().prune(rule, limit)) })
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    crate::store_conformance_tests!(|| async { MemoryStore::new() });
}
