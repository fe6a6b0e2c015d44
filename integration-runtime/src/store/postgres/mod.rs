//! The PostgreSQL store: many worker processes on one database.
//!
//! Everything a user needs to know (configuration, claiming with many
//! workers, notifications, database restarts, what stays per process) is on
//! [`PostgresStore`], since this module is private.

mod batch;
#[cfg(test)]
mod batch_tests;
mod connections;
mod listen;
mod protection;
mod prune;
mod rows;
mod schema;
mod store_impl;
#[cfg(test)]
mod tests;
mod writer;
mod writes;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use batch::Tables;
use listen::{channel_name, AbortOnDrop, Horizon};
use schema::{migrate, quote_identifier, MIGRATIONS};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use tokio::sync::Notify;
use writer::Writer;

use crate::clock::SharedClock;
use crate::store::connection_rows::ConnectionTables;
use crate::store::{Created, NewCall, StoreError};

/// A pooled connection idle longer than this is tested (one round trip)
/// before it is used (see [`PostgresStore::connect_with`]).
const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);

/// How a [`PostgresStore`] lays out its tables and talks to the database.
///
/// ```
/// use integration_runtime::PostgresOptions;
///
/// let options = PostgresOptions::default().schema("integrations").max_connections(20);
/// assert_eq!(options.schema.as_deref(), Some("integrations"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub struct PostgresOptions {
    /// The schema holding the tables, created if missing; `None`: the
    /// connection's current schema (normally `public`).
    pub schema: Option<String>,
    /// The size of the pool [`PostgresStore::connect`] and
    /// [`PostgresStore::connect_with`] open (not used by
    /// [`PostgresStore::from_pool`]). 10 by default.
    pub max_connections: u32,
    /// Whether [`Store::wait_for_work`](crate::Store::wait_for_work) also listens for other processes'
    /// notifications (`LISTEN` on one extra connection). `true` by default;
    /// turn it off behind a transaction-mode pooler.
    pub listen: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: None,
            max_connections: 10,
            listen: true,
        }
    }
}

impl PostgresOptions {
    /// Keeps the tables in `schema`, created if missing.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Opens at most `max` connections (at least 1).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Whether to `LISTEN` for other processes' notifications.
    #[must_use]
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }
}

/// A [`Store`](crate::Store) in a PostgreSQL database, shared by any number of worker
/// processes.
///
/// Enabled by the crate feature `postgres` (on by default). Queries are
/// checked at run time (no `DATABASE_URL` at build time), and the store has
/// the same semantics as [`SqliteStore`](crate::SqliteStore): both run the
/// same conformance suite.
///
/// ```no_run
/// # async fn demo() -> Result<(), integration_runtime::StoreError> {
/// use integration_runtime::{NewCall, PostgresStore, Store};
///
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// let created = store.create(NewCall::new("acme", "send", serde_json::json!({"to": "x"}))).await?;
/// # let _ = created; Ok(()) }
/// ```
///
/// # Configuration
///
/// ```no_run
/// # async fn demo() -> Result<(), integration_runtime::StoreError> {
/// use integration_runtime::{PostgresOptions, PostgresStore};
///
/// // The defaults: tables in the connection's current schema (`public`),
/// // a pool of 10 connections, LISTEN/NOTIFY on.
/// let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
///
/// // Or: own connect options, a dedicated schema and a bigger pool.
/// let connect: sqlx::postgres::PgConnectOptions =
///     "postgres://app@db.internal/app".parse().expect("valid URL");
/// let store = PostgresStore::connect_with(
///     connect.application_name("billing-worker"),
///     PostgresOptions::default().schema("integrations").max_connections(20),
/// )
/// .await?;
/// # let _ = store; Ok(()) }
/// ```
///
/// [`PostgresStore::from_pool`] takes the application's own pool instead, so
/// that [`PostgresStore::create_in_tx`] can create calls inside the
/// application's transactions (the transactional outbox).
///
/// - **Schema.** With [`PostgresOptions::schema`] every table lives in that
///   schema, created if missing (the name is quoted, so any name works,
///   case and all; at most 63 bytes). Without it, the tables go to the
///   connection's current schema (the first existing one of its
///   `search_path`), resolved once at connect time; every statement names the
///   schema explicitly afterwards, so a caller's connection with another
///   `search_path` still writes to the right tables. Tables are prefixed
///   `integration_`, as in SQLite, because the schema may be the
///   application's own.
/// - **Migrations** run on connect: numbered, additive steps, recorded in
///   `integration_store_migrations`, all in one transaction that first takes
///   `pg_advisory_xact_lock` on a key derived from the schema name. Processes
///   starting at once therefore migrate one after the other: the first
///   applies the steps, the others find them recorded. A failed step leaves
///   the schema as it was (PostgreSQL DDL is transactional). Steps a newer
///   version recorded are left alone.
/// - **Isolation.** Every statement assumes the default `READ COMMITTED`.
///   That matters only for [`PostgresStore::create_in_tx`], which runs in the
///   caller's transaction.
/// - **Clocks.** Like every store, this one stamps times (due times, lease
///   deadlines) with the clock of the process that writes them, to the
///   millisecond. Workers on several machines must keep their clocks in sync
///   (NTP): a clock `d` ahead makes its leases look `d` shorter to the others.
/// - **Columns.** Ids are `uuid`, times `timestamptz`, and parameters,
///   results and event payloads `json` (not `jsonb`): the exact text the
///   runtime wrote, so reading it back gives the same value, `\u0000`
///   included; `->` and `->>` work on it as on `jsonb`.
///
/// # Claiming with many workers
///
/// [`Store::claim`](crate::Store::claim) is one statement: an `UPDATE` whose subquery selects up
/// to `limit` due calls in `next_run_at` order with `FOR UPDATE SKIP
/// LOCKED`, and leases them. Two claimers running at the same moment lock
/// disjoint rows; a row another claimer has just leased and committed is
/// re-checked against the lease condition before it is locked, so it is
/// dropped, never leased twice. No claimer waits for another, so adding
/// workers adds throughput until the database is the bottleneck. The
/// subquery walks a partial index holding only scheduled calls, so a claim
/// costs the same with ten or ten million finished calls.
/// [`Store::claim_notifications`](crate::Store::claim_notifications) (the hook dispatchers' queue) works the
/// same way, over a partial index of the calls whose terminal notification
/// is pending.
///
/// Appends lock the call's row (`SELECT ... FOR UPDATE`) for the length of
/// their transaction, so a webhook and a poll reporting on one call at once
/// are applied one after the other: the event key is checked, and the
/// status folded, against the other's committed result, and a call becomes
/// terminal exactly once. A claim skips a call whose row an append holds
/// at that moment; the next claim takes it.
///
/// Event ids and the listing cursor are identity columns: they grow in the
/// order rows are *inserted*, not committed. Per call the events are in
/// order (appends to one call are serialized), but a listing walked while
/// calls are being created can miss a call whose creating transaction
/// (typically a long outbox transaction) committed after the walk had passed
/// its position. Listings are for operators, not a work queue: claiming
/// never misses a call.
///
/// # Batched writes
///
/// Creates ([`Store::create`](crate::Store::create)) and worker turns
/// ([`Store::finish_turn`](crate::Store::finish_turn)) go through one writer
/// per store: the ones that queue up while a batch is in flight share the
/// next transaction, written with a few set-based statements (`UNNEST`
/// arrays, `RETURNING`) whatever the batch holds. All creates are one
/// `INSERT ... ON CONFLICT DO NOTHING` (plus one read of the calls whose
/// idempotency key was taken); all turns are one `SELECT ... FOR UPDATE` of
/// their calls, in id order (so two processes' batches cannot deadlock),
/// one read of their event keys, one `INSERT` of their events and one
/// `UPDATE` of their calls. A lone request is a batch of one, sent at once.
///
/// Requests fold in queue order, so a batch behaves as its requests run one
/// after the other. What a request itself gets wrong (a lost lease, an
/// unknown call, a reused idempotency key) is its own result, and its
/// batch-mates commit; when the server refuses a statement of the batch (an
/// external id another process set meanwhile, a lock timeout), every
/// request runs again alone, so only the one at fault fails. A request
/// whose caller stopped waiting before its batch started is not run.
/// Appends by webhooks, leases and the other writes are one statement or
/// one transaction each.
///
/// # Waking workers: LISTEN/NOTIFY
///
/// A create, a release, a reschedule and a finished turn that make a call
/// due now send `pg_notify` on the store's channel, in the same transaction
/// (so a rolled back outbox call wakes nobody, and a committed one wakes
/// workers only once it is visible); a batch sends one at most, and none
/// when no call of it became due. A call created under a lease
/// ([`NewCall::leased_to`](crate::NewCall::leased_to): the creating runtime
/// hands it to its own worker) is due for nobody else, and wakes nobody. The first [`Store::wait_for_work`](crate::Store::wait_for_work) of a
/// store starts a background task that `LISTEN`s on a connection of its own
/// (not taken from the pool) and wakes every waiter of that store on each
/// notification. Changes made through the same store object wake its
/// waiters directly.
///
/// Idle workers sleep until the next call is due
/// ([`Store::next_due`](crate::Store::next_due)). A write that schedules a
/// call for later, sooner than the time this store knows idle workers wake
/// at (the last `next_due` it read, lowered by every due time announced or
/// written since), sends `pg_notify` with the due time as its payload
/// (Unix milliseconds), in the same transaction and at most once per
/// transaction; the listeners of every process lower their own horizon
/// and wake their workers, which read `next_due` again and sleep until the
/// new call. A call due later than that horizon needs no notification:
/// workers wake before it and then see it.
///
/// Notifications are a hint and can be lost: nothing is queued for a
/// process that is not listening at the moment (starting up, reconnecting),
/// and they do not pass through a transaction-mode connection pooler
/// (PgBouncer `pool_mode = transaction`: `LISTEN` binds to a server
/// connection the pooler hands to others). Workers therefore also claim on a
/// timer; the listener only cuts the latency. Behind such a pooler, set
/// [`PostgresOptions::listen`] to `false`, or give the store a direct
/// connection. The listener wakes all waiters whenever it (re)connects,
/// since it may have missed notifications meanwhile.
///
/// # When the database restarts or fails over
///
/// Statements in flight fail with a backend error ([`StoreError::is_backend`]:
/// retry later). The pool ([`PostgresStore::connect`] and
/// [`PostgresStore::connect_with`]) tests a connection when it comes back
/// and before handing it out again after a second of idleness, and replaces
/// dead ones; a connection the server closed within a second of its last
/// use fails its next operation once (the writer tries its batch again on
/// another connection at once). So once the database accepts connections
/// again, operations succeed without restarting the process; the listener
/// reconnects by itself with a backoff (up to 5 s) and then wakes its
/// waiters. Nothing is lost: a transaction either committed before the
/// failure or left nothing. When the connection breaks while a batch's
/// `COMMIT` is in flight, the writer asks the server (`pg_xact_status`)
/// whether it committed before answering, so a worker is not told that a
/// turn the database recorded failed (it would record it again); only a
/// server unreachable for 30 s leaves the outcome unknown, and a turn tried
/// again then finds its lease released if the first try committed. A
/// worker that could not write its result keeps no lease alive: its leases expire and other workers (or itself) claim the
/// calls again, and because appends are idempotent on their keys, replaying
/// an already recorded step records nothing twice.
///
/// # What is per process
///
/// By default the resilience policies live in memory, in each
/// integration's HTTP client, so every process (strictly: every client
/// instance) enforces its own: with `N` worker processes, a rate limit of
/// `r` requests per second lets up to `N * r` reach the provider, and each
/// circuit breaker counts only the failures its own process saw.
///
/// With `RuntimeBuilder::shared_protection(true)`, rate limits and circuit
/// breakers are shared through this store, without a round trip per
/// request:
///
/// - **Rate limits.** Each limiter is one row of
///   `integration_rate_limiters` holding a GCRA's theoretical arrival time.
///   A process leases about 100 ms of the budget at once (at least one
///   request) with one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`,
///   which locks the row, so concurrent leases are spaced as one limiter's.
///   Over any window `T` the provider sees at most `burst + r * (T + 0.1 s)`
///   requests from all processes together; requests a process leased and
///   did not send in time are lost, never added. While the database cannot
///   be reached, requests are refused as rate limited (tried again a second
///   later), never sent unlimited.
/// - **Circuit breakers.** Each process counts its own failures; the one
///   whose breaker opens records "open until" in
///   `integration_circuit_breakers`, and the others, which read that row at
///   most every 250 ms, open their own breaker until the same time: they
///   stop sending within 250 ms, plus the requests they already had in
///   flight. When the time is up every process half-opens on its own (up
///   to `N` times the half-open probes).
///
/// Limiters and breakers are named by the integration, or
/// `Integration.endpoint` for an endpoint with a setting of its own: the
/// same names in every process. Times come from each process's clock (keep
/// clocks in sync, as for leases). Concurrency limits stay per process: a
/// limit of `c` lets up to `N * c` requests be in flight.
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub struct PostgresStore {
    pool: PgPool,
    /// The schema name, unquoted.
    schema: String,
    /// `"schema".integration_calls`, ready to splice into SQL.
    calls: String,
    /// `"schema".integration_call_events`.
    events: String,
    /// `"schema".integration_rate_limiters`.
    limiters: String,
    /// `"schema".integration_circuit_breakers`.
    breakers: String,
    /// The connection tables, schema-qualified.
    connection_tables: ConnectionTables,
    /// The `NOTIFY` channel of this schema.
    channel: String,
    /// When idle workers wake, as far as this process knows (see `listen::Horizon`).
    horizon: Arc<Horizon>,
    work: Arc<Notify>,
    /// Batches creates and turns (see the `writer` module).
    writer: Writer,
    listen: bool,
    listener: OnceLock<AbortOnDrop>,
    /// The runtime's clock, once one uses the store (shared with the writer).
    clock: SharedClock,
}

impl PostgresStore {
    /// Connects to the database at `url` with the default
    /// [`PostgresOptions`] and migrates the schema.
    ///
    /// Fails if the database cannot be reached now; later outages are
    /// survived (see the module documentation).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|error| StoreError::backend("invalid PostgreSQL connection URL", error))?;
        Self::connect_with(options, PostgresOptions::default()).await
    }

    /// Opens a pool of `options.max_connections` connections with `connect`
    /// and migrates the schema. The pool tests a connection before use only
    /// after a second of idleness (see "When the database restarts").
    pub async fn connect_with(connect: PgConnectOptions, options: PostgresOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx tests every connection when it comes back to the pool;
            // testing it again before each use cost a round trip in four.
            // Only a connection idle for a while may have been closed by
            // the server since: test those.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < TEST_IDLE_AFTER {
                        return Ok(true);
                    }
                    conn.ping().await.map(|()| true)
                })
            })
            .connect_with(connect)
            .await?;
        Self::from_pool(pool, options).await
    }

    /// Uses an existing pool (typically the application's own, so that
    /// [`PostgresStore::create_in_tx`] shares its transactions) and migrates
    /// the schema. `options.max_connections` is ignored: the pool's own
    /// settings apply. The listener, if any, opens one more connection with
    /// the pool's connect options.
    pub async fn from_pool(pool: PgPool, options: PostgresOptions) -> Result<Self, StoreError> {
        let schema = match options.schema {
            Some(schema) => schema,
            None => {
                let current: Option<String> = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await?;
                current.ok_or_else(|| {
                    StoreError::new(
                        crate::store::error::ErrorKind::Backend,
                        "no schema of the connection's search_path exists: \
                         set PostgresOptions::schema",
                    )
                })?
            }
        };
        let quoted = quote_identifier(&schema)?;
        migrate(&pool, &schema, &quoted, MIGRATIONS).await?;
        let clock = SharedClock::default();
        let tables = Tables {
            calls: format!("{quoted}.integration_calls"),
            events: format!("{quoted}.integration_call_events"),
            channel: channel_name(&schema),
            horizon: Arc::new(Horizon::new(clock.clone())),
            clock,
        };
        let work = Arc::new(Notify::new());
        Ok(PostgresStore {
            writer: Writer::start(pool.clone(), tables.clone(), work.clone()),
            pool,
            calls: tables.calls,
            events: tables.events,
            limiters: format!("{quoted}.integration_rate_limiters"),
            breakers: format!("{quoted}.integration_circuit_breakers"),
            connection_tables: ConnectionTables::after(&format!("{quoted}.")),
            horizon: tables.horizon,
            channel: tables.channel,
            schema,
            work,
            listen: options.listen,
            listener: OnceLock::new(),
            clock: tables.clock,
        })
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding the store's tables (unquoted).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Creates a call inside the caller's own transaction: the transactional
    /// outbox. The call exists if and only if the caller commits, so business
    /// data and the calls it implies cannot disagree.
    ///
    /// `conn` must be a connection to this store's database (`&mut tx` for a
    /// `sqlx::Transaction<'_, Postgres>`), in the default `READ COMMITTED`
    /// isolation. The notification that wakes workers is sent when the
    /// caller commits, and not at all on rollback. A replayed idempotency
    /// key never raises an error inside the caller's transaction (the insert
    /// is `ON CONFLICT DO NOTHING`), so the transaction stays usable.
    ///
    /// The store checks nothing about the request: build `call` with
    /// [`Runtime::new_call`](crate::Runtime::new_call), which validates it
    /// against its spec as `Runtime::create` does.
    ///
    /// ```no_run
    /// # async fn demo(rt: integration_runtime::Runtime, store: &integration_runtime::PostgresStore, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
    /// let call = store.create_in_tx(&mut tx, rt.new_call(request)?.idempotency_key("order-1")).await?;
    /// tx.commit().await?; // the order and its call, or neither; workers are notified now
    /// # let _ = call; Ok(()) }
    /// ```
    pub async fn create_in_tx(&self, conn: &mut PgConnection, call: NewCall) -> Result<Created, StoreError> {
        self.insert_call(conn, call).await
    }
}
