//! The PostgreSQL store: many worker processes on one database.
//!
//! Everything a user needs to know (configuration, claiming with many
//! workers, notifications, database restarts, what stays per process) is on
//! [`PostgresStore`], since this module is private.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::memory::{check_same_request, page_of};
use super::{
    from_json, lease_deadline, new_call_id, notification_columns, now, plan_append, terminal_fields, to_json, truncate,
    AppendOutcome, BoxFuture, CallId, CallRecord, CallWithEvents, Created, EventPayload, EventRecord, ListOrder,
    ListQuery, NewCall, NewEvent, NotificationOutcome, Page, StatusCounts, Store, StoreError, Target,
};
use crate::lifecycle::{CallStatus, Transition};

/// The schema, as additive steps: each runs once, in order, recorded in
/// `integration_store_migrations`. Never edit or remove a step; add one.
/// `{schema}` stands for the quoted schema name.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls and their event log",
        r#"
    CREATE TABLE IF NOT EXISTS {schema}.integration_calls (
        -- Creation sequence: the listing order and the cursor.
        seq              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id               UUID        NOT NULL UNIQUE,
        integration      TEXT        NOT NULL,
        endpoint         TEXT        NOT NULL,
        status           TEXT        NOT NULL,
        external_id      TEXT,
        params           JSON        NOT NULL,
        response_data    JSON,
        error            TEXT,
        attempts         INTEGER     NOT NULL DEFAULT 0,
        idempotency_key  TEXT,
        created_at       TIMESTAMPTZ NOT NULL,
        updated_at       TIMESTAMPTZ NOT NULL,
        completed_at     TIMESTAMPTZ,
        next_run_at      TIMESTAMPTZ,
        lease_owner      TEXT,
        lease_expires_at TIMESTAMPTZ,
        -- NULLs are distinct: only set keys and ids collide.
        CONSTRAINT integration_calls_idempotency_key UNIQUE (integration, idempotency_key),
        CONSTRAINT integration_calls_external_id UNIQUE (integration, external_id)
    -- Leases rewrite rows often and touch no indexed column: room for HOT updates.
    ) WITH (fillfactor = 80);
    -- Only scheduled calls: what claiming scans, in claim order.
    CREATE INDEX IF NOT EXISTS integration_calls_due
        ON {schema}.integration_calls (next_run_at, seq) WHERE next_run_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_integration
        ON {schema}.integration_calls (integration, seq);
    CREATE INDEX IF NOT EXISTS integration_calls_by_status
        ON {schema}.integration_calls (integration, status, seq);

    CREATE TABLE IF NOT EXISTS {schema}.integration_call_events (
        id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_id     UUID        NOT NULL REFERENCES {schema}.integration_calls (id),
        kind        TEXT        NOT NULL,
        event_key   TEXT        NOT NULL,
        payload     JSON        NOT NULL,
        applied     BOOLEAN     NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT integration_call_events_key UNIQUE (call_id, event_key)
    );
    "#,
    ),
    (
        2,
        "terminal notifications for hooks",
        r#"
    -- When the terminal notification (hooks) of a call is due; NULL: none
    -- pending. Calls already terminal before this step are not notified.
    ALTER TABLE {schema}.integration_calls ADD COLUMN IF NOT EXISTS notify_at TIMESTAMPTZ;
    CREATE INDEX IF NOT EXISTS integration_calls_notify
        ON {schema}.integration_calls (notify_at, seq) WHERE notify_at IS NOT NULL;
    "#,
    ),
    (
        3,
        "dead letters of terminal notifications",
        r#"
    -- Failed deliveries of a call's hooks, and why they were given up.
    ALTER TABLE {schema}.integration_calls
        ADD COLUMN IF NOT EXISTS notification_attempts INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS notification_error TEXT;
    "#,
    ),
];

/// The columns of a call, read through the alias `c`.
const CALL_COLUMNS: &str = "c.seq, c.id, c.integration, c.endpoint, c.status, c.external_id, \
     c.params::text AS params, c.response_data::text AS response_data, c.error, c.attempts, \
     c.idempotency_key, c.created_at, c.updated_at, c.completed_at, c.next_run_at, \
     c.lease_owner, c.lease_expires_at, c.notification_attempts, c.notification_error";

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// How the listener backs off while the database is unreachable.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    /// Whether [`Store::wait_for_work`] also listens for other processes'
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

/// A [`Store`] in a PostgreSQL database, shared by any number of worker
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
/// [`Store::claim`] is one statement: an `UPDATE` whose subquery selects up
/// to `limit` due calls in `next_run_at` order with `FOR UPDATE SKIP
/// LOCKED`, and leases them. Two claimers running at the same moment lock
/// disjoint rows; a row another claimer has just leased and committed is
/// re-checked against the lease condition before it is locked, so it is
/// dropped, never leased twice. No claimer waits for another, so adding
/// workers adds throughput until the database is the bottleneck. The
/// subquery walks a partial index holding only scheduled calls, so a claim
/// costs the same with ten or ten million finished calls.
/// [`Store::claim_notifications`] (the hook dispatchers' queue) works the
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
/// # Waking workers: LISTEN/NOTIFY
///
/// A create, a release, a reschedule and a finished turn that make a call
/// due now send `pg_notify` on the store's channel, in the same transaction
/// (so a rolled back outbox call wakes nobody, and a committed one wakes
/// workers only once it is visible). The first [`Store::wait_for_work`] of a
/// store starts a background task that `LISTEN`s on a connection of its own
/// (not taken from the pool) and wakes every waiter of that store on each
/// notification. Changes made through the same store object wake its
/// waiters directly.
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
/// retry later). The pool tests a connection before handing it out and
/// replaces dead ones, so once the database accepts connections again the
/// next operation succeeds without restarting the process; the listener
/// reconnects by itself with a backoff (up to 5 s) and then wakes its
/// waiters. Nothing is lost: a transaction either committed before the
/// failure or left nothing. A worker that could not write its result keeps
/// no lease alive: its leases expire and other workers (or itself) claim the
/// calls again, and because appends are idempotent on their keys, replaying
/// an already recorded step records nothing twice.
///
/// # What is per process
///
/// The store is shared; the resilience policies are not. Rate limits,
/// concurrency limits and circuit breakers live in memory, in each
/// integration's HTTP client, so every process (strictly: every client
/// instance) enforces its own, and nothing about them goes through the
/// database. With `N` worker processes on one store:
///
/// - a rate limit of `r` requests per second lets up to `N * r` requests per
///   second reach the provider, and a concurrency limit of `c` up to
///   `N * c` requests in flight;
/// - each circuit breaker counts only the failures its own process saw: a
///   breaker opening after `k` failures lets up to `N * k` failing requests
///   through before every process stopped sending, and when they half-open
///   each process sends its own probes.
///
/// To hold a provider-wide limit, divide it by `N` in the integration's
/// policy (and re-divide when scaling out), or run the calls of a tightly
/// limited integration on fewer processes.
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
    /// The `NOTIFY` channel of this schema.
    channel: String,
    work: Arc<Notify>,
    listen: bool,
    listener: OnceLock<AbortOnDrop>,
}

/// The listener task, stopped when the store goes.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    /// and migrates the schema.
    pub async fn connect_with(connect: PgConnectOptions, options: PostgresOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
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
                        super::error::ErrorKind::Backend,
                        "no schema of the connection's search_path exists: \
                         set PostgresOptions::schema",
                    )
                })?
            }
        };
        let quoted = quote_identifier(&schema)?;
        migrate(&pool, &schema, &quoted, MIGRATIONS).await?;
        Ok(PostgresStore {
            pool,
            calls: format!("{quoted}.integration_calls"),
            events: format!("{quoted}.integration_call_events"),
            channel: channel_name(&schema),
            schema,
            work: Arc::new(Notify::new()),
            listen: options.listen,
            listener: OnceLock::new(),
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

    async fn insert_call(&self, conn: &mut PgConnection, call: NewCall) -> Result<Created, StoreError> {
        let calls = &self.calls;
        let now = now();
        let id = new_call_id();
        // The conflict clause makes a concurrent create with the same key a
        // no-op instead of an error (which would abort the caller's
        // transaction); the existing call is read back below. The
        // notification is part of the statement, so of its transaction.
        let inserted: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH inserted AS ( \
                 INSERT INTO {calls} (id, integration, endpoint, status, params, attempts, \
                     idempotency_key, created_at, updated_at, next_run_at) \
                 VALUES ($1, $2, $3, 'pending', $4::json, 0, $5, $6, $6, $7) \
                 ON CONFLICT (integration, idempotency_key) DO NOTHING \
                 RETURNING seq, next_run_at) \
             SELECT seq FROM inserted \
             WHERE CASE WHEN next_run_at <= $6 THEN pg_notify($8, '') IS NOT NULL ELSE true END"
        )))
        .bind(id.as_uuid())
        .bind(&call.integration)
        .bind(&call.endpoint)
        .bind(to_json(&call.params)?)
        .bind(&call.idempotency_key)
        .bind(now)
        .bind(call.run_at.map_or(now, truncate))
        .bind(&self.channel)
        .fetch_optional(&mut *conn)
        .await?;
        if inserted.is_some() {
            return Ok(Created { id, created: true });
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM {calls} c \
             WHERE c.integration = $1 AND c.idempotency_key = $2"
        )))
        .bind(&call.integration)
        .bind(&call.idempotency_key)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            // Only possible outside READ COMMITTED: the conflicting row is
            // not in this transaction's snapshot.
            return Err(StoreError::new(
                super::error::ErrorKind::Backend,
                format_args!(
                    "idempotency key `{}` of `{}` is taken by a call this transaction cannot \
                     see; create calls in READ COMMITTED transactions",
                    call.idempotency_key.as_deref().unwrap_or_default(),
                    call.integration
                ),
            ));
        };
        let (_, existing) = call_from_row(&row)?;
        check_same_request(&existing, &call)?;
        Ok(Created {
            id: existing.id,
            created: false,
        })
    }

    async fn append(&self, target: Target<'_>, event: NewEvent) -> Result<AppendOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let appended = async {
            let (seq, mut call) = self.lock_call(&mut tx, target).await?;
            self.append_locked(&mut tx, seq, &mut call, event).await
        }
        .await;
        settle(tx, appended).await
    }

    /// Reads and locks the row of the call `target` names until the end of
    /// `conn`'s transaction: concurrent appends to one call (a webhook and a
    /// poll) run one after the other, each seeing the other's committed
    /// event and status.
    async fn lock_call(&self, conn: &mut PgConnection, target: Target<'_>) -> Result<(i64, CallRecord), StoreError> {
        let calls = &self.calls;
        let row = match target {
            Target::Id(id) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {CALL_COLUMNS} FROM {calls} c WHERE c.id = $1 FOR UPDATE"
                )))
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
            }
            Target::External {
                integration,
                external_id,
            } => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {CALL_COLUMNS} FROM {calls} c \
                     WHERE c.integration = $1 AND c.external_id = $2 FOR UPDATE"
                )))
                .bind(integration)
                .bind(external_id)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        let Some(row) = row else {
            return Err(StoreError::not_found(target));
        };
        call_from_row(&row)
    }

    /// Appends `event` to the call `call` (creation sequence `seq`), whose
    /// row `conn`'s transaction has locked with [`PostgresStore::lock_call`].
    /// Keeps `call`'s status and external id in step with the row, so
    /// several events can be appended in one transaction. On an error the
    /// caller must roll the transaction back (a unique violation aborts it).
    async fn append_locked(
        &self,
        conn: &mut PgConnection,
        seq: i64,
        call: &mut CallRecord,
        event: NewEvent,
    ) -> Result<AppendOutcome, StoreError> {
        let (calls, events) = (&self.calls, &self.events);
        let earlier: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {events} WHERE call_id = $1 AND event_key = $2"
        )))
        .bind(call.id.as_uuid())
        .bind(&event.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(event_id) = earlier {
            return Ok(AppendOutcome::Duplicate {
                call_id: call.id,
                event_id,
                status: call.status,
            });
        }

        let plan = plan_append(call.id, call.status, call.external_id.as_deref(), &event)?;
        let now = now();
        if let Some(external_id) = &plan.set_external_id {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET external_id = $1, updated_at = $2 WHERE seq = $3"
            )))
            .bind(external_id)
            .bind(now)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .map_err(|error| match StoreError::from(error) {
                e if e.is_conflict() => StoreError::conflict(format_args!(
                    "external id `{external_id}` of `{}` already belongs to another call",
                    call.integration
                )),
                e => e,
            })?;
        }

        let event_id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {events} (call_id, kind, event_key, payload, applied, recorded_at) \
             VALUES ($1, $2, $3, $4::json, $5, $6) RETURNING id"
        )))
        .bind(call.id.as_uuid())
        .bind(event.kind.as_str())
        .bind(&event.key)
        .bind(to_json(&event.payload)?)
        .bind(plan.transition.is_moved())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;

        if let Transition::Moved(_, to) = plan.transition {
            // Only the moving event writes the terminal fields: exactly once.
            let (response_data, error) = terminal_fields(to, &event)?;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET status = $1, updated_at = $2, \
                 response_data = COALESCE($3::json, response_data), \
                 error = COALESCE($4, error), \
                 completed_at = CASE WHEN $5 THEN $2 ELSE completed_at END, \
                 next_run_at = CASE WHEN $5 THEN NULL ELSE next_run_at END, \
                 notify_at = CASE WHEN $5 THEN $2 ELSE notify_at END \
                 WHERE seq = $6"
            )))
            .bind(to.as_str())
            .bind(now)
            .bind(response_data)
            .bind(error)
            .bind(to.is_terminal())
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(external_id) = plan.set_external_id {
            call.external_id = Some(external_id);
        }
        call.status = plan.transition.status();
        Ok(AppendOutcome::recorded(call.id, event_id, plan.transition))
    }

    /// Ends `worker`'s turn on `id` if it holds the lease: sets `next_run_at`
    /// (cleared on a terminal call), counts an attempt if `attempt`, releases
    /// the lease, and notifies the store's channel (in the same statement,
    /// so the same transaction) when the call is due. Returns how many rows
    /// it changed (0: the lease is not `worker`'s, or no such call).
    async fn end_turn(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        id: CallId,
        worker: &str,
        next_run_at: Option<DateTime<Utc>>,
        attempt: bool,
    ) -> Result<i64, StoreError> {
        let calls = &self.calls;
        let updated = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH ended AS ( \
                 UPDATE {calls} SET \
                     next_run_at = CASE WHEN status IN ('completed', 'failed') \
                         THEN NULL ELSE $1 END, \
                     attempts = attempts + $6, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $2 \
                 WHERE id = $3 AND lease_owner = $4 \
                 RETURNING next_run_at <= $2 AS due) \
             SELECT count(*) FROM ended \
             WHERE CASE WHEN due THEN pg_notify($5, '') IS NOT NULL ELSE true END"
        )))
        .bind(next_run_at.map(truncate))
        .bind(now())
        .bind(id.as_uuid())
        .bind(worker)
        .bind(&self.channel)
        .bind(i32::from(attempt))
        .fetch_one(executor)
        .await?;
        Ok(updated)
    }

    /// Turns the row count of a lease-checked write of `id` by `worker` into
    /// success, not-found or lease-lost.
    async fn lease_checked(&self, id: CallId, worker: &str, updated: i64) -> Result<(), StoreError> {
        if updated > 0 {
            return Ok(());
        }
        let calls = &self.calls;
        let exists: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT 1 FROM {calls} WHERE id = $1")))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        Err(match exists {
            Some(_) => StoreError::lease_lost(id, worker),
            None => StoreError::not_found(format_args!("call {id}")),
        })
    }

    /// Starts the background `LISTEN`, once, if enabled and on a Tokio runtime.
    fn start_listener(&self) {
        if !self.listen || self.listener.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.listener.get_or_init(|| {
            let connect = (*self.pool.connect_options()).clone();
            AbortOnDrop(runtime.spawn(listen_for_work(connect, self.channel.clone(), self.work.clone())))
        });
    }
}

/// Ends `tx`: commits it when `result` is a success, else rolls it back and
/// returns the error. Rolled back at once, not when `tx` is dropped (sqlx
/// then only queues the `ROLLBACK`), so the row locks are gone before the
/// caller sees the error: a claim right after must not skip the call.
async fn settle<T>(tx: Transaction<'_, Postgres>, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // The error to report is `error`; a failed rollback means a
            // broken connection, which ends the transaction anyway.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}

/// Keeps one connection listening on `channel` and wakes `work`'s waiters
/// on every notification, reconnecting with a backoff for as long as the
/// store lives (it aborts this task when dropped).
async fn listen_for_work(connect: PgConnectOptions, channel: String, work: Arc<Notify>) {
    // A pool of its own: the listening connection is not taken from the
    // store's pool, and the pool reconnects it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(connect);
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        let listener = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(&channel).await {
                Ok(()) => Ok(listener),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match listener {
            Ok(mut listener) => {
                backoff = LISTEN_BACKOFF_MIN;
                // Whatever was notified while nobody listened is lost.
                work.notify_waiters();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => work.notify_waiters(),
                        // The connection was lost and is re-established
                        // (and re-subscribed); notifications meanwhile are lost.
                        Ok(None) => work.notify_waiters(),
                        Err(error) => {
                            tracing::warn!(
                                channel = %channel,
                                error = %error,
                                "lost the PostgreSQL LISTEN connection; reconnecting"
                            );
                            work.notify_waiters();
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    channel = %channel,
                    error = %error,
                    retry_in = ?backoff,
                    "cannot LISTEN for work on PostgreSQL; workers fall back to polling"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// `name` as a quoted identifier: any text but NUL, at most 63 bytes (longer
/// names would be silently truncated by PostgreSQL).
fn quote_identifier(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(StoreError::new(
            super::error::ErrorKind::Backend,
            format_args!(
                "invalid PostgreSQL schema name {name:?}: it must be 1 to \
                 {MAX_IDENTIFIER_BYTES} bytes without NUL"
            ),
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// The `NOTIFY` channel of `schema`: an identifier, so at most 63 bytes. A
/// long schema name is cut; two schemas sharing a channel merely wake each
/// other's workers.
fn channel_name(schema: &str) -> String {
    let mut channel = format!("integration_work:{schema}");
    if channel.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !channel.is_char_boundary(end) {
            end -= 1;
        }
        channel.truncate(end);
    }
    channel
}

/// Applies the `steps` not recorded yet (all of [`MIGRATIONS`] but in tests
/// of an older schema).
async fn migrate(
    pool: &PgPool,
    schema: &str,
    quoted: &str,
    steps: &[(i64, &str, &'static str)],
) -> Result<(), StoreError> {
    let migration_error = |version: i64, error: sqlx::Error| {
        let message = format!("migrating the store schema `{schema}` to version {version} failed: {error}");
        StoreError::backend(message, error)
    };
    let mut tx = pool.begin().await.map_err(|e| migration_error(0, e))?;
    // Processes migrating the same schema at once take turns; the lock is
    // released when the transaction ends, however it ends.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('integration-runtime store'), hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(0, e))?;
    // Checked first: `CREATE SCHEMA IF NOT EXISTS` needs the CREATE
    // privilege on the database even when the schema exists.
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| migration_error(0, e))?;
    if exists.is_none() {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {quoted}")))
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(0, e))?;
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {quoted}.integration_store_migrations (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| migration_error(0, e))?;
    let applied: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {quoted}.integration_store_migrations"
    )))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| migration_error(0, e))?;
    for &(version, description, sql) in steps {
        if applied.contains(&version) {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(sql.replace("{schema}", quoted)))
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(version, e))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.integration_store_migrations \
             (version, description, applied_at) VALUES ($1, $2, $3)"
        )))
        .bind(version)
        .bind(description)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(version, e))?;
    }
    tx.commit().await.map_err(|e| migration_error(0, e))?;
    Ok(())
}

/// A call row (columns as in [`CALL_COLUMNS`]), with its creation sequence.
fn call_from_row(row: &PgRow) -> Result<(i64, CallRecord), StoreError> {
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let response_data: Option<String> = row.try_get("response_data")?;
    let call = CallRecord {
        id: CallId::from_uuid(row.try_get("id")?),
        integration: row.try_get("integration")?,
        endpoint: row.try_get("endpoint")?,
        status: status.parse().map_err(StoreError::corrupt)?,
        external_id: row.try_get("external_id")?,
        params: from_json("params", &params)?,
        response_data: response_data
            .map(|text| from_json("response_data", &text))
            .transpose()?,
        error: row.try_get("error")?,
        attempts: count(row, "attempts")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        next_run_at: row.try_get("next_run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        notification_attempts: count(row, "notification_attempts")?,
        notification_error: row.try_get("notification_error")?,
    };
    Ok((row.try_get("seq")?, call))
}

/// A stored counter, which never goes below zero.
fn count(row: &PgRow, column: &str) -> Result<u32, StoreError> {
    let stored: i32 = row.try_get(column)?;
    u32::try_from(stored).map_err(|_| StoreError::corrupt(format_args!("stored `{column}` {stored}")))
}

/// The event of a row of [`Store::get_with_events`]'s join, if the row has one.
fn event_from_row(row: &PgRow, call_id: CallId) -> Result<Option<EventRecord>, StoreError> {
    let Some(id) = row.try_get::<Option<i64>, _>("event_id")? else {
        return Ok(None);
    };
    let kind: String = row.try_get("event_kind")?;
    let payload: String = row.try_get("event_payload")?;
    Ok(Some(EventRecord {
        id,
        call_id,
        kind: kind.parse().map_err(StoreError::corrupt)?,
        key: row.try_get("event_key")?,
        payload: from_json::<EventPayload>("payload", &payload)?,
        applied: row.try_get("event_applied")?,
        recorded_at: row.try_get("event_recorded_at")?,
    }))
}

impl Store for PostgresStore {
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            let created = self.insert_call(&mut conn, call).await?;
            if created.created {
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
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let calls = &self.calls;
            let now = now();
            // One statement selects and leases. `SKIP LOCKED`: concurrent
            // claimers lock disjoint rows without waiting for each other;
            // a row leased (and committed) by another claimer since this
            // statement's snapshot is re-checked before it is locked, and
            // dropped because its lease is no longer free.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} AS c \
                 SET lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
                 FROM ( \
                     SELECT seq FROM {calls} \
                     WHERE next_run_at <= $3 AND status IN ('pending', 'processing') \
                       AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                     ORDER BY next_run_at, seq LIMIT $4 \
                     FOR UPDATE SKIP LOCKED) AS due \
                 WHERE c.seq = due.seq \
                 RETURNING {CALL_COLUMNS}"
            )))
            .bind(worker)
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            // RETURNING has no defined order.
            calls.sort_by_key(|(seq, call)| (call.next_run_at, *seq));
            Ok(calls.into_iter().map(|(_, call)| call).collect())
        })
    }

    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let now = now();
            let updated = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET lease_expires_at = $1, updated_at = $2 \
                 WHERE id = $3 AND lease_owner = $4"
            )))
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(id.as_uuid())
            .bind(worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
            self.lease_checked(id, worker, i64::try_from(updated).unwrap_or(i64::MAX))
                .await
        })
    }

    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            // Counts the released row; notifies (in the same statement, so
            // the same transaction) when the call is due.
            let updated: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "WITH released AS ( \
                     UPDATE {calls} SET lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $1 \
                     WHERE id = $2 AND lease_owner = $3 \
                     RETURNING next_run_at <= $1 AS due) \
                 SELECT count(*) FROM released \
                 WHERE CASE WHEN due THEN pg_notify($4, '') IS NOT NULL ELSE true END"
            )))
            .bind(now())
            .bind(id.as_uuid())
            .bind(worker)
            .bind(&self.channel)
            .fetch_one(&self.pool)
            .await?;
            self.lease_checked(id, worker, updated).await?;
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
            let updated = self.end_turn(&self.pool, id, worker, next_run_at, true).await?;
            self.lease_checked(id, worker, updated).await?;
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
            let mut tx = self.pool.begin().await?;
            let finished = async {
                // The row stays locked until the transaction ends: the lease
                // cannot change hands between this check and the reschedule.
                let (seq, mut call) = self.lock_call(&mut tx, Target::Id(id)).await?;
                if call.lease_owner.as_deref() != Some(worker) {
                    return Err(StoreError::lease_lost(id, worker));
                }
                let mut outcomes = Vec::with_capacity(events.len());
                for event in events {
                    outcomes.push(self.append_locked(&mut tx, seq, &mut call, event).await?);
                }
                match self.end_turn(&mut *tx, id, worker, next_run_at, true).await? {
                    0 => Err(StoreError::lease_lost(id, worker)),
                    _ => Ok(outcomes),
                }
            }
            .await;
            // Any error rolls back everything: the appends too.
            let outcomes = settle(tx, finished).await?;
            self.work.notify_waiters();
            Ok(outcomes)
        })
    }

    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append(Target::Id(id), event))
    }

    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append(
            Target::External {
                integration,
                external_id,
            },
            event,
        ))
    }

    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c WHERE c.id = $1"
            )))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        Box::pin(async move {
            let (calls, events) = (&self.calls, &self.events);
            // One statement, so one snapshot: the call and its log agree.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS}, e.id AS event_id, e.kind AS event_kind, e.event_key, \
                     e.payload::text AS event_payload, e.applied AS event_applied, \
                     e.recorded_at AS event_recorded_at \
                 FROM {calls} c LEFT JOIN {events} e ON e.call_id = c.id \
                 WHERE c.id = $1 ORDER BY e.id"
            )))
            .bind(id.as_uuid())
            .fetch_all(&self.pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let (_, call) = call_from_row(first)?;
            let mut log = Vec::with_capacity(rows.len());
            for row in &rows {
                log.extend(event_from_row(row, call.id)?);
            }
            Ok(Some(CallWithEvents { call, events: log }))
        })
    }

    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c \
                 WHERE c.integration = $1 AND c.external_id = $2"
            )))
            .bind(integration)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let limit = query.clamped_limit();
            let (after, direction, start) = match query.order {
                ListOrder::OldestFirst => ("c.seq > $2", "ASC", i64::MIN),
                ListOrder::NewestFirst => ("c.seq < $2", "DESC", i64::MAX),
            };
            let status_filter = if query.status.is_some() {
                "AND c.status = $4"
            } else {
                ""
            };
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c \
                 WHERE c.integration = $1 AND {after} {status_filter} \
                 ORDER BY c.seq {direction} LIMIT $3"
            );
            // One row more than the page tells whether another page exists.
            let mut select = sqlx::query(AssertSqlSafe(sql))
                .bind(&query.integration)
                .bind(query.after.map_or(start, |cursor| cursor.0))
                .bind(i64::from(limit) + 1);
            if let Some(status) = query.status {
                select = select.bind(status.as_str());
            }
            let rows = select.fetch_all(&self.pool).await?;
            let rows = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(page_of(rows, limit as usize))
        })
    }

    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let rows: Vec<(String, i64)> = match integration {
                Some(integration) => {
                    sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT status, count(*) FROM {calls} \
                         WHERE integration = $1 GROUP BY status"
                    )))
                    .bind(integration)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT status, count(*) FROM {calls} GROUP BY status"
                    )))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            let mut counts = StatusCounts::default();
            for (status, count) in rows {
                let status: CallStatus = status.parse().map_err(StoreError::corrupt)?;
                counts.add(status, u64::try_from(count).unwrap_or_default());
            }
            Ok(counts)
        })
    }

    fn wait_for_work(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let notified = self.work.notified();
            tokio::pin!(notified);
            // Registered before the listener may first wake anyone.
            notified.as_mut().enable();
            self.start_listener();
            notified.await;
        })
    }

    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // Bounded like SQLite's writer; `SET LOCAL` ends with the transaction.
            sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
            let calls = &self.calls;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET attempts = attempts WHERE false"
            )))
            .execute(&mut *tx)
            .await?;
            tx.rollback().await?;
            Ok(())
        })
    }

    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // As `reschedule`, without counting an attempt.
            let updated = self.end_turn(&self.pool, id, worker, Some(next_run_at), false).await?;
            self.lease_checked(id, worker, updated).await?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let calls = &self.calls;
            let now = now();
            // As `claim`: one statement selects and leases, `SKIP LOCKED`
            // keeps concurrent dispatchers on disjoint rows.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} AS c SET notify_at = $1 \
                 FROM ( \
                     SELECT seq FROM {calls} WHERE notify_at <= $2 \
                     ORDER BY notify_at, seq LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) AS due \
                 WHERE c.seq = due.seq \
                 RETURNING {CALL_COLUMNS}"
            )))
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            calls.sort_by_key(|(seq, call)| (call.completed_at, *seq));
            Ok(calls.into_iter().map(|(_, call)| call).collect())
        })
    }

    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        let (retry_at, failed, error) = notification_columns(outcome);
        Box::pin(async move {
            let calls = &self.calls;
            let done = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET notify_at = $1, notification_attempts = notification_attempts + $2, \
                 notification_error = COALESCE($3, notification_error) WHERE id = $4"
            )))
            .bind(retry_at)
            .bind(i32::from(failed))
            .bind(error)
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found(format_args!("call {id}")));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sqlx::Connection;

    use super::*;
    use crate::testing::Fixture;

    /// The test database's URL, or `None` (saying so) when it is not configured.
    fn test_url() -> Option<String> {
        match std::env::var("INTEGRATION_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
                None
            }
        }
    }

    /// A fresh schema name, dropped with everything in it when this is
    /// dropped, even after a failed assertion.
    struct TestSchema {
        url: String,
        name: String,
    }

    impl TestSchema {
        fn new(url: &str) -> Self {
            TestSchema {
                url: url.to_owned(),
                name: format!("irt_unit_{}", uuid::Uuid::new_v4().simple()),
            }
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            let (url, name) = (self.url.clone(), self.name.clone());
            // A runtime of its own, on a thread of its own: this runs inside
            // the test's runtime.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let mut conn = PgConnection::connect(&url).await?;
                    let quoted = quote_identifier(&name).expect("valid name");
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {quoted} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {dropped:?}", self.name);
            }
        }
    }

    async fn open(url: &str, schema: &str) -> PostgresStore {
        PostgresStore::connect_with(
            url.parse().expect("valid test database URL"),
            PostgresOptions::default().schema(schema).max_connections(4),
        )
        .await
        .expect("connect to the test database")
    }

    async fn fixture() -> Option<Fixture> {
        let url = test_url()?;
        let schema = TestSchema::new(&url);
        let store = open(&url, &schema.name).await;
        Some(Fixture::new(store).with_guard(schema))
    }

    crate::store_conformance_tests!(optional: fixture);

    #[test]
    fn identifiers_are_quoted_and_bounded() {
        assert_eq!(quote_identifier("calls").unwrap(), r#""calls""#);
        assert_eq!(quote_identifier(r#"a"b"#).unwrap(), r#""a""b""#);
        assert_eq!(quote_identifier("x; DROP TABLE t").unwrap(), r#""x; DROP TABLE t""#);
        for bad in ["", "a\0b", &"x".repeat(64)] {
            assert!(quote_identifier(bad).unwrap_err().is_backend(), "{bad:?}");
        }
        assert!(quote_identifier(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_name("public"), "integration_work:public");
        let long = channel_name(&"é".repeat(31));
        assert!(long.len() <= MAX_IDENTIFIER_BYTES, "{}", long.len());
        assert!(long.starts_with("integration_work:é"));
    }

    #[tokio::test]
    async fn migrations_are_recorded_once_per_schema() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let store = open(&url, &schema.name).await;
        let again = open(&url, &schema.name).await;
        let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM {}.integration_store_migrations ORDER BY version",
            quote_identifier(&schema.name).unwrap()
        )))
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
        assert_eq!(again.schema(), schema.name);
        store.pool().close().await;
        again.pool().close().await;
    }

    #[tokio::test]
    async fn a_schema_of_the_previous_version_upgrades_and_keeps_its_calls() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let quoted = quote_identifier(&schema.name).unwrap();
        // The schema before notification dead letters, with a terminal call
        // whose hooks are due.
        let old = PgPool::connect(&url).await.unwrap();
        migrate(&old, &schema.name, &quoted, &MIGRATIONS[..2]).await.unwrap();
        let id = CallId::new();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.integration_calls (id, integration, endpoint, status, params, response_data, \
             attempts, created_at, updated_at, completed_at, notify_at) \
             VALUES ($1, 'acme', 'send', 'completed', '{{\"a\":1}}', '{{\"ok\":true}}', 2, now(), now(), now(), now())"
        )))
        .bind(id.as_uuid())
        .execute(&old)
        .await
        .unwrap();
        old.close().await;

        let store = open(&url, &schema.name).await;
        let call = store.get(id).await.unwrap().expect("call kept");
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.params, serde_json::json!({"a": 1}));
        assert_eq!(call.attempts, 2);
        assert_eq!(
            (call.notification_attempts, call.notification_error.as_deref()),
            (0, None)
        );
        let due = store.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            due.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![id],
            "its hooks are still due"
        );
        store
            .finish_notification(id, NotificationOutcome::DeadLetter("gone".into()))
            .await
            .unwrap();
        let call = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (call.notification_attempts, call.notification_error.as_deref()),
            (1, Some("gone"))
        );
        store.pool().close().await;
    }

    #[tokio::test]
    async fn the_default_schema_is_the_current_one() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        // A search_path naming the (fresh) schema first: the store resolves
        // and then names it explicitly.
        let setup = open(&url, &schema.name).await;
        setup.pool().close().await;
        let connect: PgConnectOptions = url.parse().unwrap();
        let connect = connect.options([("search_path", schema.name.as_str())]);
        let store = PostgresStore::connect_with(connect, PostgresOptions::default())
            .await
            .unwrap();
        assert_eq!(store.schema(), schema.name);
        store.pool().close().await;
    }

    #[tokio::test]
    async fn claiming_walks_the_due_index() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let store = open(&url, &schema.name).await;
        let calls = &store.calls;
        // A backlog of finished calls and a few due ones, with statistics.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO {calls} (id, integration, endpoint, status, params, created_at, \
                 updated_at, next_run_at) \
             SELECT gen_random_uuid(), 'acme', 'send', \
                 CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'completed' END, '{{}}', now(), \
                 now(), CASE WHEN g % 100 = 0 THEN now() END \
             FROM generate_series(1, 5000) AS g; \
             ANALYZE {calls}"
        )))
        .execute(store.pool())
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN (COSTS OFF) SELECT seq FROM {calls} \
             WHERE next_run_at <= $1 AND status IN ('pending', 'processing') \
               AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
             ORDER BY next_run_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED"
        )))
        .bind(now())
        .bind(10_i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(
            plan.iter().any(|line| line.contains("integration_calls_due")),
            "claim does not use the due index: {plan:#?}"
        );
        assert!(!plan.iter().any(|line| line.contains("Sort")), "claim sorts: {plan:#?}");
        assert_eq!(store.claim("w", 100, Duration::from_secs(60)).await.unwrap().len(), 50);
        store.pool().close().await;
    }

    #[tokio::test]
    async fn without_listen_waiters_still_wake_on_local_changes() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let store = Arc::new(
            PostgresStore::connect_with(
                url.parse().unwrap(),
                PostgresOptions::default().schema(&schema.name).listen(false),
            )
            .await
            .unwrap(),
        );
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for_work().await })
        };
        let woke = tokio::time::timeout(Duration::from_secs(5), async {
            let mut n = 0;
            while !waiter.is_finished() {
                store
                    .create(NewCall::new("acme", "send", json!({ "n": n })))
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(woke.is_ok(), "wait_for_work never woke");
        assert!(store.listener.get().is_none(), "no LISTEN connection");
        store.pool().close().await;
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_not_panicked_on() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let store = open(&url, &schema.name).await;
        let created = store.create(NewCall::new("acme", "send", json!({}))).await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET status = 'done' WHERE id = $1",
            store.calls
        )))
        .bind(created.id.as_uuid())
        .execute(store.pool())
        .await
        .unwrap();
        let error = store.get(created.id).await.unwrap_err();
        assert!(error.is_corrupt(), "{error}");
        store.pool().close().await;
    }

    #[tokio::test]
    async fn json_round_trips_exactly() {
        let Some(url) = test_url() else { return };
        let schema = TestSchema::new(&url);
        let store = open(&url, &schema.name).await;
        // Key order, a NUL character, big and fractional numbers: `json`
        // keeps the text, so the value comes back as written (and an
        // idempotent replay still compares equal).
        let params = json!({"z": 1, "a": "nul\u{0}char", "big": u64::MAX, "f": 1.5e300});
        let created = store
            .create(NewCall::new("acme", "send", params.clone()).idempotency_key("k"))
            .await
            .unwrap();
        assert_eq!(store.get(created.id).await.unwrap().unwrap().params, params);
        let again = store
            .create(NewCall::new("acme", "send", params).idempotency_key("k"))
            .await
            .unwrap();
        assert_eq!((again.id, again.created), (created.id, false));
        store.pool().close().await;
    }
}
