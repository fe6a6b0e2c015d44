//! A store wrapper for engine tests: the in-memory store, with quirks a
//! real store shows only now and then (claims that find nothing, answers
//! that arrive late), made to happen every time.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_runtime::store::{
    AuthorizationRow, ConnectionRow, ConnectionStore, Created, NewEvent, NotificationOutcome, RateRequest, RateSlice,
    SealedValue, TokenRow,
};
use integration_runtime::{
    AppendOutcome, BoxFuture, CallId, CallRecord, CallWithEvents, ListQuery, MemoryStore, Page, StatusCounts, Store,
    StoreError,
};

/// The in-memory store with the quirks a test asks for. Claims are counted.
pub struct Quirky {
    store: MemoryStore,
    claims: AtomicUsize,
    claims_find_nothing: bool,
    late_turn_answers: Duration,
}

impl Quirky {
    /// No quirks yet: the in-memory store as it is.
    pub fn new() -> Self {
        Quirky {
            store: MemoryStore::new(),
            claims: AtomicUsize::new(0),
            claims_find_nothing: false,
            late_turn_answers: Duration::ZERO,
        }
    }

    /// Claims find nothing: a call that runs anyway was handed over.
    pub fn claims_find_nothing(mut self) -> Self {
        self.claims_find_nothing = true;
        self
    }

    /// The writes that end a turn take effect at once but answer `delay`
    /// later, as over a slow network: the worker still counts the call as
    /// running while the store already offers it again.
    pub fn late_turn_answers(mut self, delay: Duration) -> Self {
        self.late_turn_answers = delay;
        self
    }

    /// How many claims the worker made.
    pub fn claims(&self) -> usize {
        self.claims.load(Ordering::Relaxed)
    }

    /// `write`, answered [`Quirky::late_turn_answers`] after it took effect.
    fn late<'a, T: Send + 'a>(
        &'a self,
        write: BoxFuture<'a, Result<T, StoreError>>,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(async move {
            let result = write.await;
            tokio::time::sleep(self.late_turn_answers).await;
            result
        })
    }
}

impl Store for Quirky {
    fn use_clock(&self, clock: integration_runtime::Clock) {
        self.store.use_clock(clock);
    }
    fn create(&self, call: integration_runtime::NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        self.store.create(call)
    }
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: u32,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<CallRecord>, StoreError>> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        if self.claims_find_nothing {
            return Box::pin(async { Ok(Vec::new()) });
        }
        self.store.claim(worker, limit, lease)
    }
    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.store.extend_lease(id, worker, lease)
    }
    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.late(self.store.release(id, worker))
    }
    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next: Option<chrono::DateTime<chrono::Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.late(self.store.reschedule(id, worker, next))
    }
    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next: Option<chrono::DateTime<chrono::Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>> {
        self.late(self.store.finish_turn(id, worker, events, next))
    }
    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        self.store.append_event(id, event)
    }
    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        self.store.append_event_by_external_id(integration, external_id, event)
    }
    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        self.store.get(id)
    }
    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        self.store.get_with_events(id)
    }
    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        self.store.find_by_external_id(integration, external_id)
    }
    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<Page, StoreError>> {
        self.store.list(query)
    }
    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        self.store.count_by_status(integration)
    }
    fn wait_for_work(&self) -> BoxFuture<'_, ()> {
        self.store.wait_for_work()
    }
    fn next_due(&self) -> BoxFuture<'_, Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>> {
        self.store.next_due()
    }
    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.store.probe_write()
    }
    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.late(self.store.postpone(id, worker, until))
    }
    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        self.store.claim_notifications(limit, lease)
    }
    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        self.store.finish_notification(id, outcome)
    }
    fn lease_rate<'a>(
        &'a self,
        limiter: &'a str,
        request: RateRequest,
    ) -> BoxFuture<'a, Result<RateSlice, StoreError>> {
        self.store.lease_rate(limiter, request)
    }
    fn open_circuit<'a>(&'a self, breaker: &'a str, open_for: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        self.store.open_circuit(breaker, open_for)
    }
    fn circuit_open_for<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        self.store.circuit_open_for(breaker)
    }

    fn prune<'a>(
        &'a self,
        rule: &'a integration_runtime::PruneRule,
        limit: u32,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.store.prune(rule, limit)
    }
}

/// Connections have no quirks: the in-memory store's, as they are.
impl ConnectionStore for Quirky {
    fn put_connection(&self, row: ConnectionRow) -> BoxFuture<'_, Result<ConnectionRow, StoreError>> {
        self.store.put_connection(row)
    }
    fn connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        self.store.connection(integration, id)
    }
    fn connections<'a>(
        &'a self,
        integration: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ConnectionRow>, StoreError>> {
        self.store.connections(integration)
    }
    fn revoke_connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        self.store.revoke_connection(integration, id)
    }
    fn token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>> {
        self.store.token(integration, connection)
    }
    fn lease_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.store.lease_token(integration, connection, owner, lease)
    }
    fn save_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        tokens: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.store.save_token(integration, connection, owner, tokens)
    }
    fn release_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.store.release_token(integration, connection, owner)
    }
    fn put_authorization(&self, row: AuthorizationRow) -> BoxFuture<'_, Result<(), StoreError>> {
        self.store.put_authorization(row)
    }
    fn take_authorization<'a>(
        &'a self,
        state_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthorizationRow>, StoreError>> {
        self.store.take_authorization(state_digest)
    }
    fn sealed_values(&self) -> BoxFuture<'_, Result<Vec<SealedValue>, StoreError>> {
        self.store.sealed_values()
    }
    fn replace_sealed<'a>(
        &'a self,
        value: &'a SealedValue,
        resealed: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.store.replace_sealed(value, resealed)
    }
}
