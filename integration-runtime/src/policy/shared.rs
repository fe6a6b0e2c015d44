//! Rate limits and circuit breakers shared by every process of a deployment
//! through the store (`RuntimeBuilder::shared_protection`).
//!
//! - **Rate limits.** Each limiter is one GCRA in the store
//!   ([`Store::lease_rate`]). A process leases a slice of about
//!   [`SLICE_SPAN`] of the budget at once (at least one request) and spends
//!   it locally, in FIFO order: one store round trip per slice, not per
//!   request. A leased request not sent within [`LATE`] of its time is
//!   dropped (the provider sees fewer requests, never more). Over any
//!   window `T` the provider sees at most `burst + rate * (T + LATE)`
//!   requests, whatever the number of processes. When the store cannot be
//!   reached, requests are **refused** as rate limited (retried after
//!   [`STORE_RETRY`]), never sent unlimited and never on a per-process
//!   budget.
//! - **Circuit breakers.** Failures are counted per process, as without
//!   sharing. A process whose breaker opens records it in the store
//!   ([`Store::open_circuit`]); every process reads the shared state at most
//!   every [`CIRCUIT_TTL`] (before an attempt, and again after its rate
//!   limit wait) and opens its own breaker until the same time. So once one
//!   process opened, the others stop sending within `CIRCUIT_TTL`, plus the
//!   requests they already had in flight. After the open time each process
//!   half-opens on its own (up to `processes * half_open_probes` probes).
//!   When the store cannot be read, each breaker works on its own failures.
//!
//! Limiters and breakers are named by the integration (`Tts`), or by
//! integration and endpoint (`Tts.send`) for an endpoint with a setting of
//! its own: the same names in every process. A connection's own instances
//! (settings the spec scopes per connection, its rate budget) add the
//! connection: `Tts@acme`, `Tts.send@acme` (see [`connection`](super::connection)).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::rate_limit::spacing;
use super::Refusal;
use crate::descriptor::RateLimitPolicy;
use crate::store::{RateRequest, Store};

/// About how much of a limiter's budget one lease takes.
pub(super) const SLICE_SPAN: Duration = Duration::from_millis(100);

/// The most requests one lease takes (a very high rate).
const MAX_SLICE: u32 = 1_000;

/// How late after its time a leased request may still be sent.
pub(super) const LATE: Duration = SLICE_SPAN;

/// How long a request refused because the store failed waits before it is tried again.
pub(super) const STORE_RETRY: Duration = Duration::from_secs(1);

/// How long a process trusts the shared state of a circuit it read.
pub(super) const CIRCUIT_TTL: Duration = Duration::from_millis(250);

/// Where the shared state lives, and the integration's name.
#[derive(Clone)]
pub(super) struct Backend {
    pub(super) store: Arc<dyn Store>,
    pub(super) integration: &'static str,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("integration", &self.integration)
            .finish_non_exhaustive()
    }
}

/// A process's share of one shared rate limiter.
#[derive(Debug)]
pub(super) struct SharedLimiter {
    name: String,
    /// A lease of one slice.
    slice: RateRequest,
    /// The leased requests not sent yet: when each may go, in order.
    cells: Mutex<VecDeque<Instant>>,
}

impl SharedLimiter {
    /// The limiter `name` for `policy`, or `None` when it does not limit.
    pub(super) fn new(name: String, policy: RateLimitPolicy) -> Option<Self> {
        let (interval, tolerance) = spacing(policy)?;
        let per_slice = SLICE_SPAN.as_secs_f64() / interval.as_secs_f64().max(f64::MIN_POSITIVE);
        // Truncation intended: whole requests, within [1, MAX_SLICE].
        let cells = per_slice.clamp(1.0, f64::from(MAX_SLICE)) as u32;
        Some(SharedLimiter {
            name,
            slice: RateRequest::new(cells, interval, tolerance),
            cells: Mutex::new(VecDeque::new()),
        })
    }

    /// Takes the next request of the limiter (leasing a slice when none is
    /// left) and returns how long to wait for it; refused when that is
    /// longer than `max_wait`, or when the store failed.
    pub(super) async fn reserve(&self, store: &dyn Store, max_wait: Option<Duration>) -> Result<Duration, Refusal> {
        // Held across the lease: callers queue in order, and one round
        // trip serves everyone waiting.
        let mut cells = self.cells.lock().await;
        let now = Instant::now();
        while cells.front().is_some_and(|&at| at + LATE < now) {
            cells.pop_front();
        }
        let at = match cells.front() {
            Some(&at) => at,
            None => self.lease(&mut cells, store, max_wait).await?,
        };
        let wait = at.saturating_duration_since(Instant::now());
        if max_wait.is_some_and(|max| wait > max) {
            return Err(Refusal::RateLimited(wait));
        }
        cells.pop_front();
        Ok(wait)
    }

    /// Leases a slice into `cells` (empty); returns when its first request may go.
    async fn lease(
        &self,
        cells: &mut VecDeque<Instant>,
        store: &dyn Store,
        max_wait: Option<Duration>,
    ) -> Result<Instant, Refusal> {
        let request = self.slice.max_wait(max_wait);
        let slice = store.lease_rate(&self.name, request).await.map_err(|error| {
            tracing::warn!(limiter = %self.name, error = %error, "cannot lease from the shared rate limit; refusing");
            Refusal::RateLimited(STORE_RETRY)
        })?;
        if slice.cells == 0 {
            return Err(Refusal::RateLimited(slice.wait(0, &request)));
        }
        // From after the round trip: the requests can only go later.
        let leased = Instant::now();
        cells.extend((0..slice.cells).map(|index| leased + slice.wait(index, &request)));
        Ok(leased + slice.wait(0, &request))
    }
}

/// A process's cached view of one shared circuit breaker.
#[derive(Debug)]
pub(super) struct CircuitView {
    name: String,
    /// When the shared state was last read, and until when it was open then.
    cache: Mutex<Option<(Instant, Option<Instant>)>>,
}

impl CircuitView {
    pub(super) fn new(name: String) -> Self {
        CircuitView {
            name,
            cache: Mutex::new(None),
        }
    }

    /// Until when the circuit is open for every process, read from the
    /// store at most every [`CIRCUIT_TTL`]; `None`: not open (or unknown).
    pub(super) async fn open_until(&self, store: &dyn Store) -> Option<Instant> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some((read, until)) = *cache {
            if now < read + CIRCUIT_TTL {
                return until.filter(|&until| until > now);
            }
        }
        let until = match store.circuit_open_for(&self.name).await {
            Ok(open_for) => open_for.map(|open_for| Instant::now() + open_for),
            Err(error) => {
                tracing::warn!(breaker = %self.name, error = %error, "cannot read the shared circuit breaker");
                cache.and_then(|(_, until)| until)
            }
        };
        *cache = Some((Instant::now(), until));
        until.filter(|&until| until > Instant::now())
    }

    /// Tells every process that this process opened the circuit for `open_for`.
    pub(super) async fn publish(&self, store: &dyn Store, open_for: Duration) {
        let opened = Instant::now();
        match store.open_circuit(&self.name, open_for).await {
            Ok(()) => {
                let mut cache = self.cache.lock().await;
                let known = cache.and_then(|(_, until)| until);
                *cache = Some((opened, known.max(Some(opened + open_for))));
            }
            Err(error) => {
                tracing::warn!(breaker = %self.name, error = %error, "cannot share the open circuit breaker");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::PolicyScope;
    use crate::store::MemoryStore;

    fn limiter(per_second: f64, burst: u32) -> SharedLimiter {
        SharedLimiter::new(
            "Tts".to_owned(),
            RateLimitPolicy {
                per_second,
                burst,
                scope: PolicyScope::Integration,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_slice_is_about_a_tenth_of_a_second_of_budget() {
        assert_eq!(limiter(20.0, 1).slice.cells, 2);
        assert_eq!(limiter(1_000.0, 1).slice.cells, 100);
        assert_eq!(limiter(1.0, 5).slice.cells, 1);
        assert_eq!(limiter(1e9, 1).slice.cells, MAX_SLICE);
    }

    #[tokio::test(start_paused = true)]
    async fn two_processes_on_one_store_share_the_rate() {
        let store = MemoryStore::new();
        let (a, b) = (limiter(10.0, 1), limiter(10.0, 1));
        let mut waits = Vec::new();
        for _ in 0..3 {
            waits.push(a.reserve(&store, None).await.unwrap());
            waits.push(b.reserve(&store, None).await.unwrap());
        }
        // Each lease is one request (10/s): alternately leased, 100 ms apart
        // (less the few microseconds of the store's clock that passed).
        let rounded: Vec<u128> = waits.iter().map(|wait| (wait.as_micros() + 500) / 1_000).collect();
        assert_eq!(rounded, [0, 100, 200, 300, 400, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_beyond_the_bound_is_refused() {
        let store = MemoryStore::new();
        let a = limiter(1.0, 1);
        assert_eq!(
            a.reserve(&store, Some(Duration::from_millis(10))).await,
            Ok(Duration::ZERO)
        );
        assert!(matches!(
            a.reserve(&store, Some(Duration::from_millis(10))).await,
            Err(Refusal::RateLimited(wait)) if wait > Duration::from_millis(900)
        ));
    }

    /// A SQLite store whose protection tables are gone: every lease and
    /// read fails.
    #[cfg(feature = "sqlite")]
    async fn broken_store() -> (crate::SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("shared-protection-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::SqliteStore::open(dir.join("calls.db")).await.unwrap();
        sqlx::raw_sql("DROP TABLE integration_rate_limiters; DROP TABLE integration_circuit_breakers")
            .execute(store.pool())
            .await
            .unwrap();
        (store, dir)
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_store_failure_refuses_instead_of_sending_unlimited() {
        let (store, dir) = broken_store().await;
        let a = limiter(1_000.0, 10);
        assert_eq!(a.reserve(&store, None).await, Err(Refusal::RateLimited(STORE_RETRY)));
        // The breaker falls back on its own failures.
        let view = CircuitView::new("Tts".to_owned());
        view.publish(&store, Duration::from_secs(5)).await;
        assert_eq!(view.open_until(&store).await, None);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_is_seen_by_the_others() {
        let store = MemoryStore::new();
        let (a, b) = (CircuitView::new("Tts".to_owned()), CircuitView::new("Tts".to_owned()));
        assert_eq!(b.open_until(&store).await, None);
        a.publish(&store, Duration::from_secs(5)).await;
        assert!(a.open_until(&store).await.is_some());
        // `b` read a moment ago: it trusts that until the cache expires.
        assert_eq!(b.open_until(&store).await, None);
        tokio::time::advance(CIRCUIT_TTL).await;
        assert!(b.open_until(&store).await.is_some());
    }
}
