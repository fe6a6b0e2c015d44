//! The [`Runtime`]: its builder, call creation, queries and lifecycle control.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnection;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sqlx::{Database, Transaction};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::error::EngineError;
use super::events::EventSink;
use super::hooks::{Hook, HookOn, HookResult};
use super::{StatusChange, DEFAULT_CHANGES_CAPACITY};
use crate::call::{CallId, IntoCall, TypedCall};
use crate::error::invalid_request;
use crate::integration::Integration;
use crate::metrics::Metrics;
#[cfg(feature = "postgres")]
use crate::store::PostgresStore;
#[cfg(feature = "sqlite")]
use crate::store::SqliteStore;
use crate::store::{CallRecord, CallWithEvents, ListQuery, NewCall, Page, StatusCounts, Store};
use crate::validate::{placement, Violations};

/// A store the builder accepts: any [`Store`] by value or in an `Arc`, or an
/// `Arc<dyn Store>`.
///
/// Given by value or as `Arc<SqliteStore>` / `Arc<PostgresStore>`, a
/// `SqliteStore` or `PostgresStore` also enables the transactional outbox
/// ([`Runtime::create_in_tx`]); behind an `Arc<dyn Store>` the runtime
/// cannot tell the backend, and the outbox is unsupported.
///
/// The impls below cover every store; the trait is not meant to be
/// implemented elsewhere (its result type cannot be named outside this crate).
pub trait IntoStore {
    /// The store as the runtime holds it, with the outbox backend behind it if any.
    fn into_store(self) -> held::HeldStore;
}

impl<S: Store + 'static> IntoStore for S {
    fn into_store(self) -> held::HeldStore {
        Arc::new(self).into_store()
    }
}

impl<S: Store + 'static> IntoStore for Arc<S> {
    fn into_store(self) -> held::HeldStore {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        let outbox = Outbox::of(self.clone());
        // Without a database store there is no outbox.
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        let outbox = Outbox::None;
        held::HeldStore::new(self, outbox)
    }
}

impl IntoStore for Arc<dyn Store> {
    fn into_store(self) -> held::HeldStore {
        held::HeldStore::new(self, Outbox::None)
    }
}

mod held {
    use super::{Outbox, Store};
    use std::sync::Arc;

    /// A store as held: the trait object, and the outbox backend behind it.
    /// Public only because [`IntoStore`](super::IntoStore) returns it; not
    /// nameable outside the crate.
    pub struct HeldStore {
        pub(super) store: Arc<dyn Store>,
        pub(super) outbox: Outbox,
    }

    impl HeldStore {
        pub(super) fn new(store: Arc<dyn Store>, outbox: Outbox) -> Self {
            HeldStore { store, outbox }
        }
    }
}

/// The concrete store behind the runtime's `Arc<dyn Store>`, for the
/// transactional outbox (which needs the backend's own connection type).
pub(crate) enum Outbox {
    /// Neither SQLite nor PostgreSQL, or hidden behind an `Arc<dyn Store>`.
    None,
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<SqliteStore>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<PostgresStore>),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Outbox {
    /// The outbox backend of `store`, when its concrete type is a database store.
    fn of(store: Arc<dyn Any + Send + Sync>) -> Outbox {
        #[cfg(feature = "sqlite")]
        let store = match store.downcast::<SqliteStore>() {
            Ok(sqlite) => return Outbox::Sqlite(sqlite),
            Err(other) => other,
        };
        #[cfg(feature = "postgres")]
        let store = match store.downcast::<PostgresStore>() {
            Ok(postgres) => return Outbox::Postgres(postgres),
            Err(other) => other,
        };
        // A store of another type: no outbox.
        drop(store);
        Outbox::None
    }

    /// The backend whose connections the outbox takes, if any.
    fn backend(&self) -> Option<&'static str> {
        match self {
            Outbox::None => None,
            #[cfg(feature = "sqlite")]
            Outbox::Sqlite(_) => Some(SQLITE),
            #[cfg(feature = "postgres")]
            Outbox::Postgres(_) => Some(POSTGRES),
        }
    }

    /// Why the outbox cannot create a call on `conn`.
    fn unsupported(&self, conn: &OutboxConn<'_>) -> EngineError {
        let given = conn.backend();
        EngineError::outbox_unsupported(match self {
            Outbox::None => format!(
                "the transactional outbox needs the runtime's store to be {STORES} (given to the builder by \
                 value or in an `Arc` of its own type, not as `Arc<dyn Store>`); this runtime's store is neither, so \
                 the {given} connection cannot be used"
            ),
            #[cfg(feature = "sqlite")]
            Outbox::Sqlite(_) => format!(
                "the runtime's store is a `SqliteStore`: the transactional outbox needs a {SQLITE} connection \
                 (a transaction on that store's database), not a {given} one"
            ),
            #[cfg(feature = "postgres")]
            Outbox::Postgres(_) => format!(
                "the runtime's store is a `PostgresStore`: the transactional outbox needs a {POSTGRES} connection \
                 (a transaction on that store's database), not a {given} one"
            ),
        })
    }
}

#[cfg(feature = "sqlite")]
const SQLITE: &str = "SQLite";
#[cfg(feature = "postgres")]
const POSTGRES: &str = "PostgreSQL";
/// The stores the outbox works with, for error messages.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
const STORES: &str = "a `SqliteStore` or a `PostgresStore`";
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
const STORES: &str = "a `SqliteStore`";
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
const STORES: &str = "a `PostgresStore`";

/// A database connection [`Runtime::create_in_tx`] creates calls on: a
/// SQLite connection (feature `sqlite`) or a PostgreSQL one (feature
/// `postgres`), in the caller's open transaction.
///
/// Implemented for
/// - `SqliteConnection` and `PgConnection`: what `&mut *tx` gives for a
///   `sqlx::Transaction<'_, Sqlite>` / `sqlx::Transaction<'_, Postgres>`;
/// - `sqlx::Transaction<'_, DB>` of those backends (so `&mut tx` works too).
///
/// Sealed: the runtime can only write to backends it has a store for, so the
/// trait cannot be implemented outside this crate.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub trait OutboxConnection: sealed::Sealed + Send {}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sealed {
    /// Seals [`OutboxConnection`](super::OutboxConnection).
    pub trait Sealed {
        /// The connection, by backend.
        fn outbox_connection(&mut self) -> OutboxConn<'_>;
    }

    /// The connection behind an [`OutboxConnection`](super::OutboxConnection), by
    /// backend. Public only as the result of [`Sealed`]; not nameable outside
    /// the crate.
    pub enum OutboxConn<'c> {
        #[cfg(feature = "sqlite")]
        Sqlite(&'c mut super::SqliteConnection),
        #[cfg(feature = "postgres")]
        Postgres(&'c mut super::PgConnection),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use sealed::OutboxConn;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl OutboxConn<'_> {
    /// The connection's backend.
    fn backend(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            OutboxConn::Sqlite(_) => SQLITE,
            #[cfg(feature = "postgres")]
            OutboxConn::Postgres(_) => POSTGRES,
        }
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for SqliteConnection {
    fn outbox_connection(&mut self) -> OutboxConn<'_> {
        OutboxConn::Sqlite(self)
    }
}
#[cfg(feature = "sqlite")]
impl OutboxConnection for SqliteConnection {}

#[cfg(feature = "postgres")]
impl sealed::Sealed for PgConnection {
    fn outbox_connection(&mut self) -> OutboxConn<'_> {
        OutboxConn::Postgres(self)
    }
}
#[cfg(feature = "postgres")]
impl OutboxConnection for PgConnection {}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: Database> sealed::Sealed for Transaction<'_, DB>
where
    DB::Connection: OutboxConnection,
{
    fn outbox_connection(&mut self) -> OutboxConn<'_> {
        (**self).outbox_connection()
    }
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl<DB: Database> OutboxConnection for Transaction<'_, DB> where DB::Connection: OutboxConnection {}

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
}

/// What the worker loop, the hook dispatcher and the runtime's handles share.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    /// The backend the transactional outbox writes to, if any.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) outbox: Outbox,
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
    store: Option<held::HeldStore>,
    integrations: Vec<Arc<dyn Integration>>,
    settings: Settings,
    changes_capacity: usize,
    metrics: Metrics,
}

impl fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("has_store", &self.store.is_some())
            .field("integrations", &self.integrations.len())
            .field("settings", &self.settings)
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

    /// How long an idle worker waits before looking for due calls again
    /// (default 1 s). Calls created through this store wake it at once.
    pub fn poll_idle(mut self, idle: Duration) -> Self {
        self.settings.poll_idle = idle;
        self
    }

    /// How long a failed hook waits before it is run again (default 10 s).
    pub fn hook_retry(mut self, delay: Duration) -> Self {
        self.settings.hook_retry = delay;
        self
    }

    /// How many status changes a slow [`Runtime::subscribe`] receiver may
    /// fall behind before it misses some (default 1024).
    pub fn changes_capacity(mut self, capacity: usize) -> Self {
        self.changes_capacity = capacity;
        self
    }

    /// Checks the settings and builds the runtime.
    ///
    /// Describes the runtime's metrics (help texts, units) to the `metrics`
    /// recorder installed at this point, if any.
    ///
    /// Fails when the store or every integration is missing, two
    /// integrations share a name, or a number is zero.
    pub async fn build(self) -> Result<Runtime, EngineError> {
        let Some(held::HeldStore { store, outbox }) = self.store else {
            return Err(EngineError::config("no store: call `.store(..)`"));
        };
        if self.integrations.is_empty() {
            return Err(EngineError::config("no integration: call `.integration(..)`"));
        }
        let settings = self.settings;
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
        crate::metrics::describe();
        let events = EventSink::new(Arc::clone(&store), self.metrics.clone(), self.changes_capacity);
        let (shutdown, _) = watch::channel(None);
        let (stopped, _) = watch::channel(true);
        Ok(Runtime {
            inner: Arc::new(Inner {
                store,
                outbox,
                integrations,
                settings,
                hooks: RwLock::new(Vec::new()),
                metrics: self.metrics,
                events,
                shutdown,
                running: AtomicBool::new(false),
                stopped,
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
            },
            changes_capacity: DEFAULT_CHANGES_CAPACITY,
            metrics: Metrics::new(),
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

    async fn store_new(&self, call: NewCall) -> Result<CallId, EngineError> {
        let integration = call.integration.clone();
        let created = self.inner.store.create(call).await?;
        if created.created {
            self.inner.metrics.call_created(&integration);
        }
        Ok(created.id)
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

    /// The transactional outbox: creates the call inside the caller's own
    /// database transaction, so it exists if and only if the caller commits,
    /// and business data and the calls it implies cannot disagree.
    ///
    /// `conn` is the caller's open transaction ([`OutboxConnection`]: `&mut
    /// *tx`, or `&mut tx`, of a `sqlx::Transaction`) on the database of the
    /// runtime's store, of the same backend:
    ///
    /// - **SQLite**: a [`SqliteStore`]; the transaction is on its
    ///   [`pool`](SqliteStore::pool), or the pool it was made
    ///   [`from`](SqliteStore::from_pool). Nothing wakes the workers: they
    ///   see the call at their next claim after the commit (within
    ///   `poll_idle`).
    /// - **PostgreSQL** (feature `postgres`): a `PostgresStore`; the
    ///   transaction is on its database (its `pool`, or the application's
    ///   own pool it was made `from_pool`), in the default `READ COMMITTED`
    ///   isolation. The store's tables are named with their schema, so the
    ///   connection's `search_path` does not matter. The `NOTIFY` that wakes
    ///   listening workers (of every process) is part of the transaction: it
    ///   is delivered when the caller commits, and never on a rollback.
    ///   Notifications are a hint (no listener with
    ///   `PostgresOptions::listen(false)` or behind a transaction pooler,
    ///   one lost while the listener reconnects), so workers also claim on
    ///   their timer and see the call within `poll_idle` at the latest.
    ///
    /// The request is validated as in [`create`](Runtime::create). With a
    /// `key`, a replayed key returns the existing call and never raises an
    /// error inside the caller's transaction.
    ///
    /// Errors: [`EngineError::is_outbox_unsupported`] when the runtime's
    /// store is neither a `SqliteStore` nor a `PostgresStore` (or was given
    /// as an `Arc<dyn Store>`), or `conn` is of the other backend; and as
    /// [`create`](Runtime::create).
    ///
    /// SQLite:
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn demo(rt: integration_runtime::Runtime, pool: sqlx::SqlitePool, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
    /// // `rt` runs on `SqliteStore::from_pool(pool.clone())` (or `pool` is `store.pool().clone()`).
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
    /// let call = rt.create_in_tx(&mut *tx, request, None).await?;
    /// tx.commit().await?; // the order and its call, or neither
    /// # let _ = call; Ok(()) }
    /// ```
    ///
    /// PostgreSQL:
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # async fn demo(rt: integration_runtime::Runtime, pool: sqlx::PgPool, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
    /// // `rt` runs on `PostgresStore::from_pool(pool.clone(), PostgresOptions::default())`.
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
    /// let call = rt.create_in_tx(&mut *tx, request, Some("order-1".into())).await?;
    /// tx.commit().await?; // the order and its call, or neither; workers are notified now
    /// # let _ = call; Ok(()) }
    /// ```
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    pub async fn create_in_tx<R: IntoCall>(
        &self,
        conn: &mut (impl OutboxConnection + ?Sized),
        request: R,
        key: Option<String>,
    ) -> Result<CallId, EngineError> {
        let conn = conn.outbox_connection();
        let outbox = &self.inner.outbox;
        // Checked before the request, as a misconfiguration comes first.
        if outbox.backend() != Some(conn.backend()) {
            return Err(outbox.unsupported(&conn));
        }
        let call = self.prepare(request, key)?;
        let integration = call.integration.clone();
        let created = match (outbox, conn) {
            #[cfg(feature = "sqlite")]
            (Outbox::Sqlite(store), OutboxConn::Sqlite(conn)) => store.create_in_tx(conn, call).await?,
            #[cfg(feature = "postgres")]
            (Outbox::Postgres(store), OutboxConn::Postgres(conn)) => store.create_in_tx(conn, call).await?,
            (outbox, conn) => return Err(outbox.unsupported(&conn)),
        };
        // Counted when the caller's transaction is handed the call; a rollback
        // after this still counts (the counter is about requests, not commits).
        if created.created {
            self.inner.metrics.call_created(&integration);
        }
        Ok(created.id)
    }

    fn prepare<R: IntoCall>(&self, request: R, key: Option<String>) -> Result<NewCall, EngineError> {
        let endpoint = request.endpoint();
        self.prepare_json(R::INTEGRATION, endpoint, request.into_params(), key)
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
        Ok(call)
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

    /// The SQLite store, when the runtime runs on one.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_store(&self) -> Option<&Arc<SqliteStore>> {
        match &self.inner.outbox {
            Outbox::Sqlite(sqlite) => Some(sqlite),
            _ => None,
        }
    }

    /// The PostgreSQL store, when the runtime runs on one.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres_store(&self) -> Option<&Arc<PostgresStore>> {
        match &self.inner.outbox {
            Outbox::Postgres(postgres) => Some(postgres),
            _ => None,
        }
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

    /// Runs the workers and the hook dispatcher until [`shutdown`](Runtime::shutdown).
    ///
    /// Returns once every in-flight call finished or the shutdown deadline
    /// passed (remaining calls are released for another worker).
    pub async fn run(&self) -> Result<(), EngineError> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(EngineError::already_running());
        }
        self.inner.stopped.send_replace(false);
        let dispatcher = tokio::spawn(super::hooks::dispatch(self.inner.clone()));
        super::worker::run(self.inner.clone()).await;
        // The dispatcher stops on the same signal; it never fails.
        let _ = dispatcher.await;
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
