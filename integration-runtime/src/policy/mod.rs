//! In-process resilience policies applied around each attempt of
//! [`HttpClient::send`](crate::__private::HttpClient::send): a circuit breaker,
//! a GCRA rate limit and a concurrency limit (bulkhead).
//!
//! Each component exists once per integration (per `HttpClient`, shared by its
//! clones). An endpoint whose effective policy has a *different* setting than
//! the integration's gets its own instance of that component, keyed by the
//! endpoint's name. When the client was built without the integration's
//! descriptor, instances are keyed by their setting: endpoints with equal
//! settings share one.
//!
//! With `RuntimeBuilder::shared_protection`, rate limits and circuit
//! breakers are shared by every process through the store instead (see
//! [`shared`]); concurrency limits stay per process.
//!
//! A connection's client has policies of its own derived from the
//! integration's ([`Policies::for_connection`], see [`connection`]): what
//! the spec scopes per connection is the connection's own, the rest is the
//! integration's.
//!
//! Retries are not made here: a refused attempt comes back as an error the
//! engine reschedules (`is_circuit_open()`, `is_rate_limited()`), after a
//! delay computed by [`backoff`] (as are retries and polls).

pub(crate) mod backoff;
mod circuit_breaker;
mod connection;
#[cfg(test)]
mod connection_tests;
mod rate_limit;
mod shared;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use circuit_breaker::CircuitState;
pub(crate) use circuit_breaker::Outcome;
use circuit_breaker::{BreakerPermit, CircuitBreaker};
use rate_limit::Gcra;
use shared::{Backend, CircuitView, SharedLimiter};

use crate::descriptor::{CircuitBreakerPolicy, PolicyDescriptor, PolicyScope, RateLimitPolicy};
use crate::store::Store;

/// Which instance of a component an attempt uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key<C> {
    /// The integration's (or, without a descriptor, everyone's with this setting).
    Shared(C),
    /// An endpoint whose setting differs from the integration's.
    Endpoint(&'static str, C),
}

impl<C: Copy> Key<C> {
    fn setting(self) -> C {
        let (Key::Shared(setting) | Key::Endpoint(_, setting)) = self;
        setting
    }
}

/// Instances of one component, created on first use.
#[derive(Debug)]
struct Registry<C, T> {
    entries: Mutex<Vec<(Key<C>, Arc<T>)>>,
}

impl<C: PartialEq + Copy, T> Registry<C, T> {
    fn new() -> Self {
        Registry {
            entries: Mutex::new(Vec::new()),
        }
    }

    fn get(&self, key: Key<C>, make: impl FnOnce(C) -> T) -> Arc<T> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, value)) = entries.iter().find(|(k, _)| *k == key) {
            return Arc::clone(value);
        }
        let value = Arc::new(make(key.setting()));
        entries.push((key, Arc::clone(&value)));
        value
    }

    fn all(&self) -> Vec<(Key<C>, Arc<T>)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().map(|(key, value)| (*key, Arc::clone(value))).collect()
    }
}

/// Why an attempt was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The circuit is open; it may admit an attempt after this long.
    CircuitOpen(Duration),
    /// The rate limit would delay the attempt by this much, beyond its timeout.
    RateLimited(Duration),
    /// `limit` attempts stayed in flight for the whole timeout.
    Busy {
        /// The concurrency limit.
        limit: u32,
        /// How long the attempt waited for a slot.
        waited: Duration,
    },
}

/// An admitted attempt: holds its concurrency slot and circuit breaker permit.
#[derive(Debug)]
pub(crate) struct Admission {
    breaker: Option<BreakerPermit>,
    /// Where to tell the other processes that this attempt opened the circuit.
    shared_circuit: Option<(Arc<CircuitView>, Backend)>,
    _slot: Option<OwnedSemaphorePermit>,
    /// How long admission waited (rate limit and concurrency limit).
    pub(crate) waited: Duration,
}

impl Admission {
    /// Reports the attempt's outcome to the circuit breaker (and, when this
    /// outcome opened a shared circuit, to the store) and frees the slot.
    pub(crate) async fn finish(self, outcome: Outcome) {
        let Some(permit) = self.breaker else { return };
        let opened = permit.finish(outcome, Instant::now());
        if let (Some(open_for), Some((circuit, backend))) = (opened, self.shared_circuit) {
            circuit.publish(&*backend.store, open_for).await;
        }
    }
}

/// The policies of one integration, or of one of its connections.
#[derive(Debug)]
pub(crate) struct Policies {
    /// The integration-wide policy, when the client knows its descriptor.
    integration: Option<&'static PolicyDescriptor>,
    /// Set for a connection's policies: the integration's, and the connection.
    connection: Option<connection::ConnectionScope>,
    breakers: Registry<CircuitBreakerPolicy, CircuitBreaker>,
    limiters: Registry<RateLimitPolicy, Option<Mutex<Gcra>>>,
    bulkheads: Registry<u32, Semaphore>,
    /// Set when rate limits and breakers are shared through a store.
    shared: OnceLock<Shared>,
}

/// The shared counterparts of the rate limiters and breakers, by the same keys.
#[derive(Debug)]
struct Shared {
    backend: Backend,
    limiters: Registry<RateLimitPolicy, Option<SharedLimiter>>,
    circuits: Registry<CircuitBreakerPolicy, CircuitView>,
}

impl Shared {
    fn new(backend: Backend) -> Self {
        Shared {
            backend,
            limiters: Registry::new(),
            circuits: Registry::new(),
        }
    }
}

/// The name of a component's instance: `integration`, or
/// `integration.endpoint` for an endpoint with a setting of its own;
/// followed by `@connection` for a connection's own instance.
fn name_of<C>(integration: &str, connection: Option<&str>, key: Key<C>) -> String {
    let name = match key {
        Key::Shared(_) => integration.to_owned(),
        Key::Endpoint(endpoint, _) => format!("{integration}.{endpoint}"),
    };
    match connection {
        Some(connection) => format!("{name}@{connection}"),
        None => name,
    }
}

/// The most restrictive of `states` (open before half open before closed).
fn worst(states: impl IntoIterator<Item = CircuitState>) -> CircuitState {
    states
        .into_iter()
        .fold(CircuitState::Closed, |worst, state| match (worst, state) {
            (CircuitState::Open { until: a }, CircuitState::Open { until: b }) => {
                CircuitState::Open { until: a.max(b) }
            }
            (open @ CircuitState::Open { .. }, _) | (_, open @ CircuitState::Open { .. }) => open,
            (CircuitState::HalfOpen, _) | (_, CircuitState::HalfOpen) => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        })
}

/// The key of an endpoint's `setting`, given the integration's (`None`: unknown).
fn key<C: PartialEq + Copy>(integration: Option<Option<C>>, endpoint: &'static str, setting: C) -> Key<C> {
    match integration {
        Some(Some(shared)) if shared != setting => Key::Endpoint(endpoint, setting),
        Some(None) => Key::Endpoint(endpoint, setting),
        _ => Key::Shared(setting),
    }
}

fn timeout_of(policy: &PolicyDescriptor) -> Option<Duration> {
    (policy.timeout_ms > 0).then(|| Duration::from_millis(policy.timeout_ms))
}

impl Policies {
    /// Policies of an integration whose integration-wide policy is `integration`
    /// (`None`: unknown, instances keyed by setting).
    pub(crate) fn new(integration: Option<&'static PolicyDescriptor>) -> Self {
        let policies = Policies {
            integration,
            connection: None,
            breakers: Registry::new(),
            limiters: Registry::new(),
            bulkheads: Registry::new(),
            shared: OnceLock::new(),
        };
        // The integration's breaker exists from the start, for health checks.
        if let Some(setting) = integration.and_then(|p| p.circuit_breaker) {
            policies.breakers.get(Key::Shared(setting), CircuitBreaker::new);
        }
        policies
    }

    /// Shares the rate limits and circuit breakers through `store`, under
    /// the name `integration`, from now on. `false` (nothing changes) when
    /// the integration's policy is unknown (no stable names to share
    /// under), they are shared already, or these are a connection's
    /// policies (they follow their integration's).
    pub(crate) fn share_through(&self, integration: &'static str, store: Arc<dyn Store>) -> bool {
        if self.integration.is_none() || integration.is_empty() || self.connection.is_some() {
            return false;
        }
        self.shared.set(Shared::new(Backend { store, integration })).is_ok()
    }

    /// The shared counterparts of this client's own instances, when they
    /// are shared. A connection's are when its integration's are, as read
    /// now: the integration may have become shared after the connection's
    /// policies were made.
    fn shared(&self) -> Option<&Shared> {
        match &self.connection {
            None => self.shared.get(),
            Some(scope) => {
                let backend = &scope.parent.shared.get()?.backend;
                Some(self.shared.get_or_init(|| Shared::new(backend.clone())))
            }
        }
    }

    /// The name of this client's own instance `key`.
    fn instance_name<C>(&self, integration: &str, key: Key<C>) -> String {
        name_of(
            integration,
            self.connection.as_ref().map(|scope| scope.name.as_str()),
            key,
        )
    }

    /// The breaker of an attempt, and its shared view when shared.
    fn breaker(
        &self,
        endpoint: &'static str,
        policy: &PolicyDescriptor,
    ) -> Option<(Arc<CircuitBreaker>, Option<Arc<CircuitView>>)> {
        let setting = policy.circuit_breaker?;
        if let Some(parent) = self.integration_owned(setting.scope) {
            return parent.breaker(endpoint, policy);
        }
        let key = key(self.integration.map(|p| p.circuit_breaker), endpoint, setting);
        let view = self.shared().map(|shared| {
            shared.circuits.get(key, |_| {
                CircuitView::new(self.instance_name(shared.backend.integration, key))
            })
        });
        Some((self.breakers.get(key, CircuitBreaker::new), view))
    }

    /// Opens `breaker` while the circuit is open for every process.
    async fn follow_shared(&self, breaker: &CircuitBreaker, view: Option<&CircuitView>) {
        if let (Some(view), Some(shared)) = (view, self.shared()) {
            if let Some(until) = view.open_until(&*shared.backend.store).await {
                breaker.open_until(until);
            }
        }
    }

    /// The key of an endpoint's rate limit `setting` among this client's limiters.
    fn rate_key(&self, endpoint: &'static str, setting: RateLimitPolicy) -> Key<RateLimitPolicy> {
        key(self.integration.map(|p| p.rate_limit), endpoint, setting)
    }

    /// Waits for the rate limits (bounded, together, by the request's timeout).
    pub(crate) async fn pace(&self, endpoint: &'static str, policy: &PolicyDescriptor) -> Result<Duration, Refusal> {
        let timeout = timeout_of(policy);
        let (own, integration) = self.rate_limits(endpoint, policy);
        let mut waited = Duration::ZERO;
        // A connection's own limit first: when the integration's then
        // refuses, the slot lost is the connection's, not one of the
        // capacity every connection shares.
        if let Some(key) = own {
            waited += self.take(key, timeout).await?;
        }
        if let Some((parent, key)) = integration {
            let left = timeout.map(|timeout| timeout.saturating_sub(waited));
            waited += parent.take(key, left).await?;
        }
        Ok(waited)
    }

    /// Takes the next request of this client's limiter `key` and waits for
    /// it; refused when that wait would be longer than `max_wait`.
    async fn take(&self, key: Key<RateLimitPolicy>, max_wait: Option<Duration>) -> Result<Duration, Refusal> {
        let now = Instant::now();
        let wait = match self.shared() {
            Some(shared) => {
                let name = || self.instance_name(shared.backend.integration, key);
                let limiter = shared.limiters.get(key, |setting| SharedLimiter::new(name(), setting));
                let Some(limiter) = limiter.as_ref() else {
                    return Ok(Duration::ZERO);
                };
                limiter.reserve(&*shared.backend.store, max_wait).await?
            }
            None => {
                let limiter = self.limiters.get(key, |setting| Gcra::new(setting).map(Mutex::new));
                let Some(limiter) = limiter.as_ref() else {
                    return Ok(Duration::ZERO);
                };
                let reserved = limiter
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .reserve(now, max_wait);
                reserved.map_err(Refusal::RateLimited)?
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep_until(now + wait).await;
        }
        Ok(wait)
    }

    /// Admits an attempt: the circuit must not be open, the rate limit is waited
    /// for, and a concurrency slot is taken (each wait bounded by the timeout).
    pub(crate) async fn admit(&self, endpoint: &'static str, policy: &PolicyDescriptor) -> Result<Admission, Refusal> {
        let breaker = self.breaker(endpoint, policy);
        let started = Instant::now();
        // Fail fast, before spending a rate-limit slot on an attempt that cannot go.
        if let Some((breaker, view)) = &breaker {
            self.follow_shared(breaker, view.as_deref()).await;
            breaker
                .check(Instant::now())
                .map_err(|rejected| self.circuit_refusal(rejected, policy))?;
        }
        self.pace(endpoint, policy).await?;
        let slot = match policy.concurrency {
            None => None,
            Some(limit) => {
                // Concurrency limits are the integration's, connections included.
                let owner = self.connection.as_ref().map_or(self, |scope| &*scope.parent);
                let shared = owner.integration.map(|p| p.concurrency);
                let semaphore = owner.bulkheads.get(key(shared, endpoint, limit), |limit| {
                    Semaphore::new(limit.max(1) as usize)
                });
                let acquire = semaphore.acquire_owned();
                let permit = match timeout_of(policy) {
                    Some(timeout) => tokio::time::timeout(timeout, acquire)
                        .await
                        .map_err(|_| Refusal::Busy { limit, waited: timeout })?,
                    None => acquire.await,
                };
                // The semaphore is never closed.
                permit.ok()
            }
        };
        let (permit, shared_circuit) = match breaker {
            Some((breaker, view)) => {
                // The rate limit may have made it wait: another process may
                // have opened the circuit meanwhile.
                self.follow_shared(&breaker, view.as_deref()).await;
                let permit = breaker
                    .acquire(Instant::now())
                    .map_err(|rejected| self.circuit_refusal(rejected, policy))?;
                let backend = self.shared().map(|shared| shared.backend.clone());
                (Some(permit), view.zip(backend))
            }
            None => (None, None),
        };
        Ok(Admission {
            breaker: permit,
            shared_circuit,
            _slot: slot,
            waited: started.elapsed(),
        })
    }

    /// A refusal of the breaker; while half-open probes are out, the next decision
    /// comes at the latest when they time out.
    fn circuit_refusal(&self, rejected: circuit_breaker::Rejected, policy: &PolicyDescriptor) -> Refusal {
        let hint = rejected.0.unwrap_or_else(|| {
            timeout_of(policy).unwrap_or_else(|| {
                Duration::from_millis(policy.circuit_breaker.map_or(1_000, |cb| cb.open_for_ms.max(1)))
            })
        });
        Refusal::CircuitOpen(hint)
    }

    /// The circuit of this client: the most restrictive state of the
    /// breakers its attempts go through (open before half open before
    /// closed). For a connection: its own and the integration-scoped ones of
    /// its integration.
    pub(crate) fn circuit_state(&self) -> CircuitState {
        let now = Instant::now();
        let own = self.breakers.all().into_iter();
        let integration = self.connection.iter().flat_map(|scope| {
            let breakers = scope.parent.breakers.all().into_iter();
            breakers.filter(|(key, _)| key.setting().scope == PolicyScope::Integration)
        });
        worst(own.chain(integration).map(|(_, breaker)| breaker.state(now)))
    }

    /// Every breaker's state of this client's own, named `integration` or
    /// `integration.endpoint` (followed by `@connection` for a connection's).
    pub(crate) fn circuit_states(&self, integration: &str) -> Vec<(String, CircuitState)> {
        let now = Instant::now();
        self.breakers
            .all()
            .into_iter()
            .map(|(key, breaker)| (self.instance_name(integration, key), breaker.state(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::PolicyScope;

    static LIMITED: PolicyDescriptor = PolicyDescriptor {
        rate_limit: Some(RateLimitPolicy {
            per_second: 2.0,
            burst: 1,
            scope: PolicyScope::Integration,
        }),
        circuit_breaker: Some(CircuitBreakerPolicy {
            failure_threshold: 1,
            open_for_ms: 60_000,
            half_open_probes: 1,
            scope: PolicyScope::Integration,
        }),
        concurrency: Some(1),
        ..PolicyDescriptor::DEFAULT
    };
    static OTHER: PolicyDescriptor = PolicyDescriptor {
        rate_limit: Some(RateLimitPolicy {
            per_second: 1.0,
            burst: 1,
            scope: PolicyScope::Integration,
        }),
        circuit_breaker: Some(CircuitBreakerPolicy {
            failure_threshold: 2,
            open_for_ms: 60_000,
            half_open_probes: 1,
            scope: PolicyScope::Integration,
        }),
        ..LIMITED
    };

    #[test]
    fn endpoints_share_the_integration_setting_and_differing_ones_get_their_own() {
        let cb = CircuitBreakerPolicy {
            failure_threshold: 1,
            open_for_ms: 1,
            half_open_probes: 1,
            scope: PolicyScope::Integration,
        };
        let other = CircuitBreakerPolicy {
            failure_threshold: 2,
            ..cb
        };
        assert_eq!(key(Some(Some(cb)), "a", cb), Key::Shared(cb));
        assert_eq!(key(Some(Some(cb)), "a", other), Key::Endpoint("a", other));
        assert_eq!(key(Some(None), "a", cb), Key::Endpoint("a", cb));
        assert_eq!(key(None, "a", other), Key::Shared(other));
    }

    #[tokio::test(start_paused = true)]
    async fn admission_waits_for_the_rate_and_refuses_beyond_the_timeout() {
        let policies = Policies::new(Some(&LIMITED));
        let first = policies.admit("a", &LIMITED).await.unwrap();
        assert_eq!(first.waited, Duration::ZERO);
        first.finish(Outcome::Success).await;
        // Same setting: the same limiter, 500 ms later.
        let second = policies.admit("b", &LIMITED).await.unwrap();
        assert_eq!(second.waited, Duration::from_millis(500));
        second.finish(Outcome::Success).await;
        // A differing endpoint setting: its own limiter, no wait.
        let own = policies.admit("c", &OTHER).await.unwrap();
        assert_eq!(own.waited, Duration::ZERO);
        own.finish(Outcome::Success).await;

        static SHORT: PolicyDescriptor = PolicyDescriptor {
            timeout_ms: 100,
            ..LIMITED
        };
        let policies = Policies::new(None);
        policies
            .admit("a", &SHORT)
            .await
            .unwrap()
            .finish(Outcome::Success)
            .await;
        assert_eq!(
            policies.admit("a", &SHORT).await.unwrap_err(),
            Refusal::RateLimited(Duration::from_millis(500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_refuses_with_the_time_left() {
        let policies = Policies::new(Some(&LIMITED));
        policies
            .admit("a", &LIMITED)
            .await
            .unwrap()
            .finish(Outcome::Failure)
            .await;
        assert!(matches!(policies.circuit_state(), CircuitState::Open { .. }));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            policies.admit("a", &LIMITED).await.unwrap_err(),
            Refusal::CircuitOpen(Duration::from_secs(50))
        );
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(policies.circuit_state(), CircuitState::HalfOpen);
        let probe = policies.admit("a", &LIMITED).await.unwrap();
        probe.finish(Outcome::Success).await;
        assert_eq!(policies.circuit_state(), CircuitState::Closed);
        // An endpoint with its own breaker is reported on its own.
        policies
            .admit("b", &OTHER)
            .await
            .unwrap()
            .finish(Outcome::Failure)
            .await;
        assert_eq!(
            policies.circuit_states("Tts"),
            [
                ("Tts".to_owned(), CircuitState::Closed),
                ("Tts.b".to_owned(), CircuitState::Closed)
            ]
        );
    }

    #[tokio::test]
    async fn clients_sharing_a_store_share_their_breakers_and_limits() {
        let store: Arc<dyn Store> = Arc::new(crate::MemoryStore::new());
        let (a, b) = (Policies::new(Some(&LIMITED)), Policies::new(Some(&LIMITED)));
        assert!(a.share_through("Tts", Arc::clone(&store)));
        assert!(b.share_through("Tts", Arc::clone(&store)));
        assert!(!a.share_through("Tts", Arc::clone(&store)), "shared already");
        assert!(!Policies::new(None).share_through("Tts", store), "no stable names");
        // `a` sends and fails once (the threshold): its circuit opens for all.
        a.admit("send", &LIMITED).await.unwrap().finish(Outcome::Failure).await;
        assert!(matches!(
            b.admit("send", &LIMITED).await.unwrap_err(),
            Refusal::CircuitOpen(left) if left > Duration::from_secs(59)
        ));
        assert!(matches!(b.circuit_state(), CircuitState::Open { .. }));
    }

    #[test]
    fn the_integration_breaker_exists_before_any_request() {
        let policies = Policies::new(Some(&LIMITED));
        assert_eq!(
            policies.circuit_states("Tts"),
            [("Tts".to_owned(), CircuitState::Closed)]
        );
        assert!(Policies::new(None).circuit_states("").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bulkhead_wait_is_bounded() {
        static ONE: PolicyDescriptor = PolicyDescriptor {
            timeout_ms: 200,
            concurrency: Some(1),
            ..PolicyDescriptor::DEFAULT
        };
        let policies = Policies::new(Some(&ONE));
        let held = policies.admit("a", &ONE).await.unwrap();
        assert_eq!(
            policies.admit("a", &ONE).await.unwrap_err(),
            Refusal::Busy {
                limit: 1,
                waited: Duration::from_millis(200)
            }
        );
        held.finish(Outcome::Success).await;
        policies.admit("a", &ONE).await.unwrap().finish(Outcome::Success).await;
    }
}
