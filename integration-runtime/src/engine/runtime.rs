//! The [`Runtime`]: its builder, call creation, queries and lifecycle control.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::cancel::CancelError;
use super::error::EngineError;
use super::events::EventSink;
use super::handoff::Handoff;
use super::hooks::{Hook, HookOn, HookResult};
use super::retention::Retention;
use super::spec_change::{SpecChangePolicy, StrandedCall};
use super::{StatusChange, DEFAULT_CHANGES_CAPACITY};
use crate::call::{CallId, IntoCall, TypedCall};
use crate::clock::Clock;
use crate::error::invalid_request;
use crate::integration::Integration;
use crate::metrics::Metrics;
use crate::store::truncate;
use crate::store::{CallRecord, CallWithEvents, ListQuery, NewCall, Page, StatusCounts, Store};
use crate::validate::{placement, Violations};

/// A store the builder accepts: any [`Store`] by value or in an `Arc`, or an
/// `Arc<dyn Store>`.
///
/// Keep an `Arc` of your own (`builder.store(store.clone())`) to reach the
/// store's own methods later, such as `SqliteStore::create_in_tx` or
/// `PostgresStore::create_in_tx` for the transactional outbox.
pub trait IntoStore {
    /// The store as the runtime holds it.
    fn into_store(self) -> Arc<dyn Store>;
}

impl<S: Store + 'static> IntoStore for S {
    fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

impl<S: Store + 'static> IntoStore for Arc<S> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

impl IntoStore for Arc<dyn Store> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

/// Settings of the worker loop.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) worker_id: String,
    pub(crate) concurrency: usize,
    pub(crate) claim_batch: u32,
    pub(crate) lease: Duration,
    pub(crate) poll_idle: Duration,
    pub(crate) hook_retry: Duration,
    /// Real time per spec time for polling (1.0: as the spec says).
    pub(crate) polling_time_scale: f64,
    /// What startup does with stored calls a changed spec cannot finish.
    pub(crate) spec_change: SpecChangePolicy,
    /// Where a call's time is read (the store reads the same one).
    pub(crate) clock: Clock,
    /// How long finished calls are kept (default: forever).
    pub(crate) retention: Retention,
    /// Where the runtime's router is reached from browsers and providers,
    /// without a trailing slash (the connect flow's links and callbacks).
    pub(crate) public_url: Option<String>,
}

/// What the worker loop, the hook dispatcher and the runtime's handles share.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) integrations: HashMap<&'static str, Arc<dyn Integration>>,
    pub(crate) settings: Settings,
    pub(crate) hooks: RwLock<Vec<Hook>>,
    /// Process counters for `/metrics` (calls created and finished, attempts).
    pub(crate) metrics: Metrics,
    /// The one way provider news reaches the store (see `events`).
    pub(crate) events: EventSink,
    /// `Some(deadline)` once shutdown was requested.
    pub(crate) shutdown: watch::Sender<Option<Instant>>,
    pub(crate) running: AtomicBool,
    /// `true` while `run` is running.
    pub(crate) stopped: watch::Sender<bool>,
    /// From `create` to this runtime's running worker.
    pub(crate) handoff: Handoff,
    /// The connections' vault and connected integrations.
    pub(crate) connections: Arc<super::connected::Connections>,
}

/// The engine: creates calls, runs workers that drive them to a terminal
/// state, and tells business code about it.
///
/// Cheap to clone (an `Arc` inside): one clone can [`run`](Runtime::run) the
/// workers while others create calls or [`shutdown`](Runtime::shutdown).
/// See the [module docs](crate::engine) for scheduling, retries, crash
/// safety and delivery promises.
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo(tts: impl integration_runtime::Integration, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use integration_runtime::{Runtime, SqliteStore};
///
/// let rt = Runtime::builder()
///     .store(SqliteStore::open("calls.db").await?)
///     .integration(tts)
///     .concurrency(16)
///     .build()
///     .await?;
/// let id = rt.create(request).await?;
/// let worker = tokio::spawn({ let rt = rt.clone(); async move { rt.run().await } });
/// // ... later:
/// rt.shutdown(Duration::from_secs(10)).await;
/// worker.await??;
/// # let _ = id; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.inner.integrations.keys().collect();
        names.sort();
        f.debug_struct("Runtime")
            .field("integrations", &names)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Runtime`]; see [`Runtime::builder`].
#[must_use]
pub struct RuntimeBuilder {
    store: Option<Arc<dyn Store>>,
    integrations: Vec<Arc<dyn Integration>>,
    settings: Settings,
    changes_capacity: usize,
    metrics: Metrics,
    shared_protection: bool,
    /// Given by [`RuntimeBuilder::clock`]: handed to the store at build.
    clock_given: bool,
    /// The credential keyring, when given (else read from the environment).
    keyring: Option<crate::connection::Keyring>,
}

impl fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("has_store", &self.store.is_some())
            .field("integrations", &self.integrations.len())
            .field("settings", &self.settings)
            .field("shared_protection", &self.shared_protection)
            .finish()
    }
}

impl RuntimeBuilder {
    /// Counters to report in `/metrics` (calls created and finished,
    /// attempts and their latency). Defaults to a fresh set; pass your own to
    /// share one set with other components. Whichever set, every number
    /// also goes to the `metrics` facade's global recorder, if the
    /// application installed one (see [`Metrics`]).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Compresses the polling schedule for tests: with `0.01`, a spec's
    /// `interval_ms = 2000` polls after 20 ms, and `give_up_after_s = 600`
    /// gives up after 6 s. The schedule keeps its shape (growth, cap,
    /// deadline), so a test drives the same polling a user gets, without
    /// waiting. Must be in `(0, 1]`; the default is `1.0`.
    ///
    /// ```no_run
    /// # async fn demo(tts: impl integration_runtime::Integration) -> Result<(), integration_runtime::EngineError> {
    /// let rt = integration_runtime::Runtime::builder()
    ///     .store(integration_runtime::MemoryStore::new())
    ///     .integration(tts)
    ///     .polling_time_scale(0.01)
    ///     .build()
    ///     .await?;
    /// # let _ = rt; Ok(()) }
    /// ```
    pub fn polling_time_scale(mut self, scale: f64) -> Self {
        self.settings.polling_time_scale = scale;
        self
    }

    /// What [`Runtime::run`] does at startup with the stored calls the
    /// registered specs can no longer finish (see
    /// [`Runtime::stranded_calls`]): fail them with the kind `spec_changed`
    /// (the default) or only log them.
    pub fn on_spec_change(mut self, policy: SpecChangePolicy) -> Self {
        self.settings.spec_change = policy;
        self
    }

    /// The clock every call's time is read from (when it is due, when its
    /// lease, retries, polls and deadline come, when it may be pruned),
    /// handed to the store at [`build`](RuntimeBuilder::build): the system
    /// clock unless a test gives another, such as the test kit's
    /// `TestClock`, which it then advances. See [`Clock`] for what stays in
    /// real time.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self.clock_given = true;
        self
    }

    /// The store calls live in (required).
    pub fn store(mut self, store: impl IntoStore) -> Self {
        self.store = Some(store.into_store());
        self
    }

    /// Registers an integration (at least one; names must be unique).
    pub fn integration(mut self, integration: impl Integration) -> Self {
        self.integrations.push(Arc::new(integration));
        self
    }

    /// Registers an integration held in an `Arc`.
    pub fn integration_arc(mut self, integration: Arc<dyn Integration>) -> Self {
        self.integrations.push(integration);
        self
    }

    /// The name this process's leases are taken under (default: a fresh
    /// `worker-<uuid>`). Give every concurrently running worker its own.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.settings.worker_id = id.into();
        self
    }

    /// Most calls executed at once (default 16, at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// Most calls claimed in one store round trip (default 32, at least 1).
    /// A worker claims for its free execution slots plus half a batch
    /// (bounded by `concurrency`) ahead, so a slot that comes free starts
    /// its next call without waiting for the store.
    pub fn claim_batch(mut self, n: u32) -> Self {
        self.settings.claim_batch = n;
        self
    }

    /// How long a claim is valid without renewal (default 60 s). A running
    /// call's lease is renewed every third of it; a crashed worker's calls
    /// are claimed again once it runs out.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// The longest an idle worker waits before looking for due calls again
    /// (default 1 s). It sleeps until the next call is due when that is
    /// sooner, and calls created or rescheduled through this store (on
    /// PostgreSQL, through any process's) wake it at once: this bound is for
    /// what nothing announces.
    pub fn poll_idle(mut self, idle: Duration) -> Self {
        self.settings.poll_idle = idle;
        self
    }

    /// How long a failed hook waits before it is run again (default 10 s).
    pub fn hook_retry(mut self, delay: Duration) -> Self {
        self.settings.hook_retry = delay;
        self
    }

    /// How long finished calls are kept before [`Runtime::run`] deletes
    /// them, with their events (default: forever, nothing is deleted).
    ///
    /// `run` then starts a background task that deletes the calls past
    /// their age at once and then every [`Retention::every`], in batches of
    /// [`Retention::batch`] calls [`Retention::pause`] apart, so that
    /// workers are never held up for long. Calls still running, and those
    /// whose hooks are not delivered yet, are kept whatever their age.
    /// Deleted calls are counted in `integration_calls_pruned_total`.
    ///
    /// ```no_run
    /// # async fn demo(tts: impl integration_runtime::Integration) -> Result<(), integration_runtime::EngineError> {
    /// use std::time::Duration;
    /// use integration_runtime::{MemoryStore, Retention, Runtime};
    ///
    /// const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    /// let rt = Runtime::builder()
    ///     .store(MemoryStore::new())
    ///     .integration(tts)
    ///     .retention(Retention::new().completed_after(30 * DAY).failed_after(90 * DAY))
    ///     .build()
    ///     .await?;
    /// # let _ = rt; Ok(()) }
    /// ```
    pub fn retention(mut self, retention: Retention) -> Self {
        self.settings.retention = retention;
        self
    }

    /// How many status changes a slow [`Runtime::subscribe`] receiver may
    /// fall behind before it misses some (default 1024).
    pub fn changes_capacity(mut self, capacity: usize) -> Self {
        self.changes_capacity = capacity;
        self
    }

    /// Whether the rate limits and circuit breakers of the integrations are
    /// shared by every process on the store (default `false`: per process).
    ///
    /// Per process, `N` worker processes let `N` times a rate limit reach
    /// the provider, and each breaker counts only its own process's
    /// failures. Shared, each limiter is one GCRA in the store: a process
    /// leases about 100 ms of the budget per store round trip, so the
    /// provider sees at most `burst + rate * (T + 0.1 s)` requests in any
    /// window `T`, from all processes together. A process whose breaker
    /// opens records it in the store; the others read it at most every
    /// 250 ms, so they stop sending within 250 ms (plus the requests they
    /// already had in flight). While the store cannot be reached, requests
    /// are refused as rate limited (tried again a second later), never sent
    /// unlimited; breakers then count their own failures. Concurrency
    /// limits stay per process.
    ///
    /// Off by default: a single process (the embedded case) gains nothing
    /// and would pay a store write per slice. Turn it on for several
    /// processes on one PostgreSQL database (or one SQLite file). Every
    /// integration must be able to share (generated ones can: the build
    /// fails otherwise), and its client must not share through another
    /// store already.
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # async fn demo(tts: impl integration_runtime::Integration) -> Result<(), Box<dyn std::error::Error>> {
    /// let store = integration_runtime::PostgresStore::connect("postgres://app@db.internal/app").await?;
    /// let rt = integration_runtime::Runtime::builder()
    ///     .store(store)
    ///     .integration(tts)
    ///     .shared_protection(true)
    ///     .build()
    ///     .await?;
    /// # let _ = rt; Ok(()) }
    /// ```
    pub fn shared_protection(mut self, shared: bool) -> Self {
        self.shared_protection = shared;
        self
    }

    /// The URL at which browsers and providers reach [`Runtime::router`]
    /// (say `https://app.example.com/integrations`): the connect flow's
    /// links ([`Runtime::connect_link`]) and the OAuth2 redirect URI
    /// registered with the provider (`<url>/connect/<Integration>/callback`)
    /// start with it. Without it the connect flow is not served.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.settings.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The keys connections' credentials are sealed with in the store (see
    /// [`connection`](crate::connection)). Without this, the runtime reads
    /// them from [`CREDENTIAL_KEY_ENV`](crate::connection::CREDENTIAL_KEY_ENV)
    /// and [`OLD_CREDENTIAL_KEYS_ENV`](crate::connection::OLD_CREDENTIAL_KEYS_ENV)
    /// when set; with neither, connections cannot be stored or used (calls
    /// without a connection run as always).
    pub fn keyring(mut self, keyring: crate::connection::Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Checks the settings and builds the runtime.
    ///
    /// Describes the runtime's metrics (help texts, units) to the `metrics`
    /// recorder installed at this point, if any.
    ///
    /// Fails when the store or every integration is missing, two
    /// integrations share a name, a number is zero, or an integration
    /// cannot share its protection when [`shared_protection`](Self::shared_protection) is on.
    /// Fails too when a credential key variable is set but is not a key,
    /// or the keys do not open the credentials the store holds (or the
    /// store holds some and no key is set).
    pub async fn build(self) -> Result<Runtime, EngineError> {
        let Some(store) = self.store else {
            return Err(EngineError::config("no store: call `.store(..)`"));
        };
        if self.integrations.is_empty() {
            return Err(EngineError::config("no integration: call `.integration(..)`"));
        }
        let settings = self.settings;
        if self.clock_given {
            store.use_clock(settings.clock.clone());
        }
        if settings.concurrency == 0 || settings.claim_batch == 0 {
            return Err(EngineError::config(
                "`concurrency` and `claim_batch` must be at least 1",
            ));
        }
        if !(settings.polling_time_scale > 0.0 && settings.polling_time_scale <= 1.0) {
            return Err(EngineError::config("`polling_time_scale` must be in (0, 1]"));
        }
        if settings.lease < Duration::from_millis(30) {
            return Err(EngineError::config("`lease` must be at least 30 ms"));
        }
        if settings.worker_id.is_empty() {
            return Err(EngineError::config("`worker_id` must not be empty"));
        }
        let mut integrations = HashMap::new();
        for integration in self.integrations {
            let name = integration.descriptor().name;
            if integrations.insert(name, integration).is_some() {
                return Err(EngineError::config(format!("integration `{name}` is registered twice")));
            }
        }
        if self.shared_protection {
            for (name, integration) in &integrations {
                if !integration.share_protection(&store) {
                    return Err(EngineError::config(format!(
                        "integration `{name}` cannot share its rate limits and circuit breakers \
                         (no HTTP client of the runtime, or one shared already): \
                         turn `shared_protection` off or give it a fresh client"
                    )));
                }
            }
        }
        let keyring = match self.keyring {
            Some(keyring) => Some(Arc::new(keyring)),
            None => match crate::connection::Keyring::from_env() {
                Ok(keyring) => Some(Arc::new(keyring)),
                Err(error) if error.is_missing() => None,
                Err(error) => return Err(EngineError::config(error.to_string())),
            },
        };
        let connections = super::connected::connections_at_build(&store, keyring, &integrations, &settings).await?;
        crate::metrics::describe();
        let events = EventSink::new(Arc::clone(&store), self.metrics.clone(), self.changes_capacity);
        let (shutdown, _) = watch::channel(None);
        let (stopped, _) = watch::channel(true);
        Ok(Runtime {
            inner: Arc::new(Inner {
                store,
                integrations,
                settings,
                hooks: RwLock::new(Vec::new()),
                metrics: self.metrics,
                events,
                shutdown,
                running: AtomicBool::new(false),
                stopped,
                handoff: Handoff::default(),
                connections: Arc::new(connections),
            }),
        })
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            store: None,
            integrations: Vec::new(),
            settings: Settings {
                worker_id: format!("worker-{}", uuid::Uuid::new_v4()),
                concurrency: 16,
                claim_batch: 32,
                lease: Duration::from_secs(60),
                poll_idle: Duration::from_secs(1),
                hook_retry: Duration::from_secs(10),
                polling_time_scale: 1.0,
                public_url: None,
                spec_change: SpecChangePolicy::default(),
                clock: Clock::system(),
                retention: Retention::new(),
            },
            changes_capacity: DEFAULT_CHANGES_CAPACITY,
            metrics: Metrics::new(),
            shared_protection: false,
            clock_given: false,
            keyring: None,
        }
    }

    // ----- creating calls -------------------------------------------------

    /// Validates `request` against its spec and stores it as a pending call;
    /// a worker sends it. Nothing is stored when it is invalid.
    ///
    /// Errors: [`EngineError::is_unknown_integration`],
    /// [`EngineError::is_invalid`] (with every violation), [`EngineError::is_store`].
    pub async fn create<R: IntoCall>(&self, request: R) -> Result<CallId, EngineError> {
        let call = self.prepare(request, None)?;
        self.store_new(call).await
    }

    /// Stores `call`; when this runtime's worker has a free slot, under its
    /// lease, and hands it over (see `handoff`).
    async fn store_new(&self, mut call: NewCall) -> Result<CallId, EngineError> {
        let integration = call.integration.clone();
        let reserved = call.run_at.is_none().then(|| self.inner.handoff.reserve()).flatten();
        let handed = match reserved {
            Some(reserved) => {
                let settings = &self.inner.settings;
                call = call.leased_to(settings.worker_id.clone(), settings.lease);
                Some((reserved, call.clone()))
            }
            None => None,
        };
        let created = self.inner.store.create(call).await?;
        if !created.created {
            // An existing call (a replayed key): not leased to us, and the slot goes back.
            return Ok(created.id);
        }
        self.inner.metrics.call_created(&integration);
        if let Some((reserved, call)) = handed {
            if let Err(id) = reserved.hand(CallRecord::created(
                created.id,
                call,
                truncate(self.inner.settings.clock.now()),
            )) {
                // The worker stopped after the reservation: give the lease up
                // so that any runtime claims the call now, not after the lease.
                let _ = self.inner.store.release(id, &self.inner.settings.worker_id).await;
            }
        }
        Ok(created.id)
    }

    /// As [`create`](Runtime::create) (validated the same way), but the
    /// call is not sent before `when`: a worker claims it once it is due,
    /// and an idle worker sleeps until then, so it starts on time. A time
    /// in the past means now.
    ///
    /// The call is stored now, so it survives restarts; it is never handed
    /// to this runtime's worker early (a call due later is created
    /// unleased, for whichever worker is free when it is due).
    pub async fn create_at<R: IntoCall>(&self, when: DateTime<Utc>, request: R) -> Result<CallId, EngineError> {
        let call = self.prepare(request, None)?;
        self.store_new(scheduled(call, when, self.inner.settings.clock.now()))
            .await
    }

    /// As [`create_at`](Runtime::create_at), `delay` from now.
    pub async fn create_after<R: IntoCall>(&self, delay: Duration, request: R) -> Result<CallId, EngineError> {
        let call = self.prepare(request, None)?;
        self.store_new(scheduled(
            call,
            self.inner.settings.clock.after(delay),
            self.inner.settings.clock.now(),
        ))
        .await
    }

    /// As [`create`](Runtime::create), idempotent on the caller's `key`
    /// (unique per integration): the same key returns the call created
    /// first, and creates nothing. Reusing a key for another request is a
    /// store conflict ([`EngineError::store_error`]`.is_conflict()`).
    pub async fn create_with_key<R: IntoCall>(
        &self,
        request: R,
        key: impl Into<String>,
    ) -> Result<CallId, EngineError> {
        let call = self.prepare(request, Some(key.into()))?;
        self.store_new(call).await
    }

    /// Creates a call from JSON parameters, for code that only knows the
    /// integration and endpoint by name. Validated like [`create`](Runtime::create).
    pub async fn create_json(
        &self,
        integration: &str,
        endpoint: &str,
        params: Value,
        key: Option<String>,
    ) -> Result<CallId, EngineError> {
        let call = self.prepare_json(integration, endpoint, params, key)?;
        self.store_new(call).await
    }

    /// Validates `request` against its spec exactly as
    /// [`create`](Runtime::create) does, and returns the call to store,
    /// without storing it: for the transactional outbox, where the call is
    /// created inside the caller's own database transaction by the store
    /// itself, so it exists if and only if the caller commits and business
    /// data and the calls it implies cannot disagree.
    ///
    /// Give the call a key with [`NewCall::idempotency_key`]; a replayed key
    /// returns the existing call and never raises an error inside the
    /// caller's transaction. Calls created this way are not counted in
    /// `integration_calls_created_total`: the runtime does not see the
    /// store write.
    ///
    /// - **SQLite**: [`SqliteStore::create_in_tx`](crate::SqliteStore::create_in_tx),
    ///   on a transaction of the store's [`pool`](crate::SqliteStore::pool) (or
    ///   the pool it was made [`from`](crate::SqliteStore::from_pool)). Nothing
    ///   wakes the workers: they see the call at their next claim after the
    ///   commit (within `poll_idle`).
    /// - **PostgreSQL**: `PostgresStore::create_in_tx`, on a transaction of
    ///   the store's database, in the default `READ COMMITTED` isolation.
    ///   The `NOTIFY` that wakes listening workers (of every process) is part
    ///   of the transaction: delivered when the caller commits, never on a
    ///   rollback. Notifications are a hint, so workers also claim on their
    ///   timer and see the call within `poll_idle` at the latest.
    ///
    /// Errors: as [`create`](Runtime::create), but never
    /// [`EngineError::is_store`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn demo(tts: impl integration_runtime::Integration, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use integration_runtime::{Runtime, SqliteStore};
    ///
    /// let store = Arc::new(SqliteStore::open("app.db").await?);
    /// let rt = Runtime::builder().store(store.clone()).integration(tts).build().await?;
    ///
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
    /// let call = store.create_in_tx(&mut tx, rt.new_call(request)?.idempotency_key("order-1")).await?;
    /// tx.commit().await?; // the order and its call, or neither
    /// # let _ = call; Ok(()) }
    /// ```
    pub fn new_call<R: IntoCall>(&self, request: R) -> Result<NewCall, EngineError> {
        self.prepare(request, None)
    }

    /// As [`new_call`](Runtime::new_call), for a call not sent before
    /// `when` (see [`create_at`](Runtime::create_at)): the outbox's
    /// scheduled call. A time in the past means now. On PostgreSQL, the
    /// `NOTIFY` that tells idle workers of every process when it is due is
    /// part of the caller's transaction.
    pub fn new_call_at<R: IntoCall>(&self, when: DateTime<Utc>, request: R) -> Result<NewCall, EngineError> {
        Ok(scheduled(
            self.prepare(request, None)?,
            when,
            self.inner.settings.clock.now(),
        ))
    }

    fn prepare<R: IntoCall>(&self, request: R, key: Option<String>) -> Result<NewCall, EngineError> {
        let endpoint = request.endpoint();
        let connection = request.connection().map(str::to_owned);
        let mut call = self.prepare_json(R::INTEGRATION, endpoint, request.into_params(), key)?;
        if let Some(id) = connection {
            if let Some(problem) = crate::connection::id_problem(&id) {
                let mut violations = Violations::new();
                violations.push("connection".to_owned(), problem);
                return Err(EngineError::invalid(invalid_request(
                    endpoint,
                    violations.finish().expect_err("one violation"),
                )));
            }
            call.connection = Some(id);
        }
        Ok(call)
    }

    fn prepare_json(
        &self,
        integration: &str,
        endpoint: &str,
        params: Value,
        key: Option<String>,
    ) -> Result<NewCall, EngineError> {
        let found = self
            .inner
            .integrations
            .get(integration)
            .ok_or_else(|| EngineError::unknown_integration(integration))?;
        let descriptor = match found.descriptor().endpoint(endpoint) {
            Some(descriptor) if descriptor.starts_calls => descriptor,
            _ => return Err(EngineError::not_a_starting_endpoint(integration, endpoint)),
        };
        let mut violations = Violations::new();
        placement(&descriptor.request_fields, &params, &mut violations);
        // A non-object has no fields to check further (and serde would read
        // a list as the entity).
        if params.is_object() {
            if let Err(error) = found.validate(endpoint, &params) {
                let Some(invalid) = error.validation() else {
                    return Err(EngineError::invalid(error));
                };
                for (field, message) in invalid.violations() {
                    violations.push(field.clone(), message.clone());
                }
            }
        }
        violations
            .finish()
            .map_err(|error| EngineError::invalid(invalid_request(endpoint, error)))?;
        let mut call = NewCall::new(integration, endpoint, params);
        call.idempotency_key = key;
        if let Some(seconds) = descriptor.give_up_after_s {
            // The deadline runs in spec time, as polls do.
            let limit = seconds as f64 * self.inner.settings.polling_time_scale;
            call.give_up_after = Some(Duration::try_from_secs_f64(limit).unwrap_or(Duration::MAX));
        }
        let fingerprint = found.descriptor().fingerprint;
        if !fingerprint.is_empty() {
            call.spec_fingerprint = Some(fingerprint.to_owned());
        }
        Ok(call)
    }

    // ----- cancelling -----------------------------------------------------

    /// Cancels call `id`, for `reason` (kept in its error text; may be
    /// empty).
    ///
    /// - A `pending` call (never acknowledged by the provider) fails at once
    ///   with kind [`FailureKind::Cancelled`](crate::FailureKind::Cancelled)
    ///   and is never sent. (A start request already in flight at that
    ///   moment may still reach the provider; its answer is then recorded
    ///   as ignored events.)
    /// - A `processing` call is stopped by the provider: the runtime sends
    ///   the cancel endpoint the spec ties to the call's start endpoint
    ///   (`cancel = "..."`). Its answer decides: no status, `failed` or
    ///   `cancelled` fails the call with kind `cancelled`; `processing`
    ///   leaves it processing until its poll or webhook reports the end;
    ///   `completed` records the completion (the provider finished first).
    /// - A terminal call is refused ([`CancelError::is_terminal`]).
    ///
    /// Returns the call as it is afterwards. A cancellation racing a
    /// completion ends in exactly one terminal event, whichever is recorded
    /// first; when the other wins, the error
    /// [`is_terminal`](CancelError::is_terminal) says how the call ended.
    pub async fn cancel(&self, id: CallId, reason: &str) -> Result<CallRecord, CancelError> {
        let integrations = &self.inner.integrations;
        let connections = Some((&*self.inner.connections, self.inner.settings.worker_id.as_str()));
        super::cancel(
            &self.inner.events,
            |name| integrations.get(name).cloned(),
            connections,
            id,
            reason,
        )
        .await
    }

    /// The stored calls the registered specs can no longer finish: created
    /// under another version of a spec whose endpoint is gone, that can no
    /// longer be followed, or whose parameters no longer decode. What
    /// `run` does with them is the builder's
    /// [`on_spec_change`](RuntimeBuilder::on_spec_change).
    pub async fn stranded_calls(&self) -> Result<Vec<StrandedCall>, EngineError> {
        let mut stranded = Vec::new();
        for integration in self.inner.integrations.values() {
            let spec: &dyn Integration = integration.as_ref();
            stranded.extend(super::stranded_calls(&*self.inner.store, spec).await?);
        }
        Ok(stranded)
    }

    // ----- queries --------------------------------------------------------

    /// The call `id`, if it exists.
    pub async fn get(&self, id: CallId) -> Result<Option<CallRecord>, EngineError> {
        Ok(self.inner.store.get(id).await?)
    }

    /// The call `id` with its event log, oldest event first.
    pub async fn get_with_events(&self, id: CallId) -> Result<Option<CallWithEvents>, EngineError> {
        Ok(self.inner.store.get_with_events(id).await?)
    }

    /// The call `id` as its integration's generated record type
    /// (`rt.get_typed::<volc_tts::VolcTtsCall>(id)`).
    ///
    /// Fails with [`EngineError::is_type_mismatch`] when the call belongs
    /// to another integration or its stored data does not fit the types.
    pub async fn get_typed<T: TypedCall>(&self, id: CallId) -> Result<Option<T>, EngineError> {
        match self.inner.store.get(id).await? {
            None => Ok(None),
            Some(record) => typed(&record).map(Some),
        }
    }

    /// The call of `integration` the provider knows as `external_id`.
    pub async fn find_by_external_id(
        &self,
        integration: &str,
        external_id: &str,
    ) -> Result<Option<CallRecord>, EngineError> {
        Ok(self.inner.store.find_by_external_id(integration, external_id).await?)
    }

    /// One page of an integration's calls (filter by status, paginate with
    /// [`Page::next`]); see [`ListQuery`].
    pub async fn list(&self, query: &ListQuery) -> Result<Page, EngineError> {
        Ok(self.inner.store.list(query).await?)
    }

    /// How many calls are in each status, for one integration or all.
    pub async fn count_by_status(&self, integration: Option<&str>) -> Result<StatusCounts, EngineError> {
        Ok(self.inner.store.count_by_status(integration).await?)
    }

    // ----- accessors (for the webhook receiver and tools) -----------------

    /// The counters reported in `/metrics` (see [`Runtime::router`]).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The store (to append webhook events, or query directly).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The registered integration called `name`.
    pub fn integration(&self, name: &str) -> Option<&Arc<dyn Integration>> {
        self.inner.integrations.get(name)
    }

    /// Every registered integration.
    pub fn integrations(&self) -> impl Iterator<Item = &Arc<dyn Integration>> + '_ {
        self.inner.integrations.values()
    }

    /// This runtime's worker id (the lease owner it claims under).
    pub fn worker_id(&self) -> &str {
        &self.inner.settings.worker_id
    }

    // ----- notifications --------------------------------------------------

    /// Every status change made through this runtime (its workers, its
    /// [webhook receiver](Runtime::webhook_receiver), its
    /// [router](Runtime::router) and [`Runtime::record_reply`]), as it happens.
    ///
    /// Live and lossy: a receiver sees changes after it subscribed, and one
    /// that falls more than `changes_capacity` behind gets
    /// `RecvError::Lagged` and misses some. For guaranteed delivery use
    /// [`on_completed`](Runtime::on_completed) / [`on_failed`](Runtime::on_failed).
    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.inner.events.subscribe()
    }

    /// Runs `hook` with the typed record of every call of `T`'s integration
    /// that completes, at least once (see the [module docs](crate::engine)
    /// for the promise).
    ///
    /// The hook may return `()` or `Result<(), E: Display>`; an `Err` or a
    /// panic runs it again after `hook_retry`. Register hooks before
    /// [`run`](Runtime::run).
    ///
    /// ```no_run
    /// # mod volc_tts { pub struct VolcTtsCall { pub id: integration_runtime::CallId } impl integration_runtime::TypedCall for VolcTtsCall {
    /// #   const INTEGRATION: &'static str = "VolcTts";
    /// #   fn from_record(r: &integration_runtime::CallRecord) -> Result<Self, integration_runtime::ClientError> { Ok(VolcTtsCall { id: r.id }) } } }
    /// # fn demo(rt: &integration_runtime::Runtime) {
    /// rt.on_completed::<volc_tts::VolcTtsCall, _>(|call| async move {
    ///     // Store the audio URL, notify the user, ... idempotently: a hook
    ///     // may run more than once for a call.
    ///     println!("call {} completed", call.id);
    /// });
    /// rt.on_failed::<volc_tts::VolcTtsCall, _>(|call| async move {
    ///     // An `Err` runs the hook again later.
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// # }
    /// ```
    pub fn on_completed<T, Fut>(&self, hook: impl Fn(T) -> Fut + Send + Sync + 'static)
    where
        T: TypedCall,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.add_hook(Hook::new(HookOn::Completed, hook));
    }

    /// Runs `hook` with the typed record of every call of `T`'s integration
    /// that fails, at least once; as [`on_completed`](Runtime::on_completed).
    pub fn on_failed<T, Fut>(&self, hook: impl Fn(T) -> Fut + Send + Sync + 'static)
    where
        T: TypedCall,
        Fut: Future + Send + 'static,
        Fut::Output: HookResult,
    {
        self.add_hook(Hook::new(HookOn::Failed, hook));
    }

    fn add_hook(&self, hook: Hook) {
        self.inner
            .hooks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(hook);
    }

    // ----- running --------------------------------------------------------

    /// Deletes, now, the finished calls `retention` lets go (with their
    /// events), in its batches and pauses, and returns how many; as the
    /// background task of [`RuntimeBuilder::retention`] does, for a one-off
    /// pass (from an operator's tool, a scheduled job) whatever retention
    /// the runtime runs with. Calls still running, and those whose hooks
    /// are not delivered yet, are kept.
    ///
    /// Errors: [`EngineError::is_store`]; the batches deleted before the
    /// failure stay deleted.
    pub async fn prune(&self, retention: &Retention) -> Result<u64, EngineError> {
        Ok(super::retention::prune_once(&self.inner, retention).await?)
    }

    /// Runs the workers and the hook dispatcher (and the pruning of old
    /// calls, with a [`RuntimeBuilder::retention`]) until [`shutdown`](Runtime::shutdown).
    ///
    /// Returns once every in-flight call finished or the shutdown deadline
    /// passed (remaining calls are released for another worker).
    pub async fn run(&self) -> Result<(), EngineError> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(EngineError::already_running());
        }
        self.inner.stopped.send_replace(false);
        let inner = self.inner.clone();
        // Next to the workers, not before them: a large store is read a page at a time.
        tokio::spawn(async move { super::spec_change::settle(&inner).await });
        let dispatcher = tokio::spawn(super::hooks::dispatch(self.inner.clone()));
        let retention = &self.inner.settings.retention;
        let pruner = (!retention.keeps_everything())
            .then(|| tokio::spawn(super::retention::run(self.inner.clone(), retention.clone())));
        super::worker::run(self.inner.clone()).await;
        // The dispatcher and the pruner stop on the same signal; they never fail.
        let _ = dispatcher.await;
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        self.inner.running.store(false, Ordering::SeqCst);
        self.inner.stopped.send_replace(true);
        Ok(())
    }

    /// Runs until `signal` resolves (say `tokio::signal::ctrl_c()`), then
    /// shuts down, giving in-flight calls `grace` to finish.
    pub async fn run_until(&self, signal: impl Future<Output = ()>, grace: Duration) -> Result<(), EngineError> {
        let run = self.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return result,
            () = signal => {}
        }
        self.request_shutdown(grace);
        run.await
    }

    /// Stops claiming new calls, lets in-flight calls finish for up to
    /// `grace`, releases the rest, and waits until [`run`](Runtime::run)
    /// returned. Without a running `run`, only prevents future ones from
    /// claiming anything. Idempotent.
    pub async fn shutdown(&self, grace: Duration) {
        self.request_shutdown(grace);
        let mut stopped = self.inner.stopped.subscribe();
        // Returns at once when nothing runs; `run` always ends after a request.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    fn request_shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.inner.shutdown.send_modify(|current| {
            // The first request's deadline stands; a later one may only shorten it.
            *current = Some(current.map_or(deadline, |at| at.min(deadline)));
        });
    }

    /// Whether shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.borrow().is_some()
    }
}

/// `call`, not due before `when`; a time in the past leaves it due now
/// (and so free to be handed to the local worker).
fn scheduled(call: NewCall, when: DateTime<Utc>, now: DateTime<Utc>) -> NewCall {
    if when > now {
        call.run_at(when)
    } else {
        call
    }
}

/// Reads the typed record of a stored call.
pub(crate) fn typed<T: TypedCall>(record: &CallRecord) -> Result<T, EngineError> {
    if record.integration != T::INTEGRATION {
        return Err(EngineError::wrong_integration(
            record.id,
            T::INTEGRATION,
            &record.integration,
        ));
    }
    T::from_record(record).map_err(|e| EngineError::decode(record.id, T::INTEGRATION, e))
}
