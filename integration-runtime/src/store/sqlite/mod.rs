//! The embedded default store: one SQLite file in WAL mode.
//!
//! Queries are checked at run time (no `DATABASE_URL` at build time). Tables
//! are prefixed `integration_` because the file may be the application's own
//! database: that is what makes [`SqliteStore::create_in_tx`] (the
//! transactional outbox) possible.
//!
//! Reads use the pool. Every write goes through one writer connection that
//! group-commits: writes queued while a commit is in flight share the next
//! transaction (the `writer` module), and the appends among them are folded
//! and written together (the `appends` module).
//!
//! Every transaction that reads before it writes starts with `BEGIN
//! IMMEDIATE`: a deferred transaction that must upgrade to a writer after
//! another connection committed fails with `SQLITE_BUSY` no matter the busy
//! timeout, while an immediate one simply waits its turn.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
// `AssertSqlSafe`: the dynamic SQL here is put together from constant
// column lists and placeholder counts only; values are always bound.
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::{
    check_same_request, from_json, from_millis, lease_deadline, new_call_id, notification_columns, now, page_of,
    to_json, truncate, AppendOutcome, BoxFuture, CallId, CallRecord, CallWithEvents, Created, EventPayload,
    EventRecord, ListOrder, ListQuery, NewCall, NewEvent, NotificationOutcome, Page, StatusCounts, Store, StoreError,
};
use crate::lifecycle::CallStatus;

mod appends;
mod writer;

use appends::{Appends, OwnedTarget, Turn};
use writer::Writer;

/// The schema, as additive steps: each runs once, in order, recorded in
/// `integration_store_migrations`. Never edit or remove a step; add one.
/// (sqlx's own migrator is not used: its `_sqlx_migrations` table belongs to
/// the application when the file is shared.)
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls and their event log",
        r#"
    CREATE TABLE IF NOT EXISTS integration_calls (
        -- Creation sequence: the listing order and the cursor.
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        integration      TEXT    NOT NULL,
        endpoint         TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        external_id      TEXT,
        params           TEXT    NOT NULL,
        response_data    TEXT,
        error            TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        idempotency_key  TEXT,
        -- Timestamps: milliseconds since the Unix epoch, UTC.
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        completed_at     INTEGER,
        next_run_at      INTEGER,
        lease_owner      TEXT,
        lease_expires_at INTEGER
    );
    -- NULLs are distinct in SQLite unique indexes: only set keys and ids collide.
    CREATE UNIQUE INDEX IF NOT EXISTS integration_calls_idempotency_key
        ON integration_calls (integration, idempotency_key);
    CREATE UNIQUE INDEX IF NOT EXISTS integration_calls_external_id
        ON integration_calls (integration, external_id);
    -- Only scheduled calls: what claiming scans, in claim order.
    CREATE INDEX IF NOT EXISTS integration_calls_due
        ON integration_calls (next_run_at, seq) WHERE next_run_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_integration
        ON integration_calls (integration, seq);
    CREATE INDEX IF NOT EXISTS integration_calls_by_status
        ON integration_calls (integration, status, seq);

    CREATE TABLE IF NOT EXISTS integration_call_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id     TEXT    NOT NULL REFERENCES integration_calls (id),
        kind        TEXT    NOT NULL,
        event_key   TEXT    NOT NULL,
        payload     TEXT    NOT NULL,
        applied     INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS integration_call_events_key
        ON integration_call_events (call_id, event_key);
    "#,
    ),
    (
        2,
        "terminal notifications for hooks",
        r#"
    -- When the terminal notification (hooks) of a call is due; NULL: none
    -- pending. Calls already terminal before this step are not notified.
    ALTER TABLE integration_calls ADD COLUMN notify_at INTEGER;
    CREATE INDEX IF NOT EXISTS integration_calls_notify
        ON integration_calls (notify_at, seq) WHERE notify_at IS NOT NULL;
    "#,
    ),
    (
        3,
        "write probe for health checks",
        r#"
    -- One row, rewritten by `Store::probe_write`: a health check that writes.
    CREATE TABLE IF NOT EXISTS integration_store_probe (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        written_at INTEGER NOT NULL
    );
    "#,
    ),
    (
        4,
        "dead letters of terminal notifications",
        r#"
    -- Failed deliveries of a call's hooks, and why they were given up.
    ALTER TABLE integration_calls ADD COLUMN notification_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE integration_calls ADD COLUMN notification_error TEXT;
    "#,
    ),
];

const CALL_COLUMNS: &str = "seq, id, integration, endpoint, status, external_id, params, \
     response_data, error, attempts, idempotency_key, created_at, updated_at, completed_at, \
     next_run_at, lease_owner, lease_expires_at, notification_attempts, notification_error";

/// A [`Store`] in a SQLite file.
///
/// ```no_run
/// # async fn demo() -> Result<(), integration_runtime::StoreError> {
/// use integration_runtime::{NewCall, SqliteStore, Store};
///
/// let store = SqliteStore::open("calls.db").await?;
/// let created = store.create(NewCall::new("acme", "send", serde_json::json!({"to": "x"}))).await?;
/// # let _ = created; Ok(()) }
/// ```
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub struct SqliteStore {
    /// Reads, migrations and the caller's own transactions.
    pool: SqlitePool,
    /// Every write of the store: one connection, group commit.
    writer: Writer,
    work: Notify,
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating the file if needed,
    /// in WAL mode with full sync, and migrates the schema. An existing
    /// file keeps all its data: migrations only add.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed call or event survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (typically the application's own, so that
    /// [`SqliteStore::create_in_tx`] shares its transactions) and migrates
    /// the schema. The pool's options are the caller's; WAL mode and a busy
    /// timeout are recommended.
    ///
    /// The pool serves reads; the store's writes run on one more connection,
    /// opened with the pool's options, so the database must be a file (each
    /// connection to `:memory:` is a database of its own).
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrate(&pool, MIGRATIONS).await?;
        let writer = Writer::start((*pool.connect_options()).clone()).await?;
        Ok(SqliteStore {
            pool,
            writer,
            work: Notify::new(),
        })
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates a call inside the caller's own transaction: the transactional
    /// outbox. The call exists if and only if the caller commits, so business
    /// data and the calls it implies cannot disagree.
    ///
    /// `conn` must be a connection to this store's database (`&mut tx` for a
    /// `sqlx::Transaction<'_, Sqlite>`). Workers pick the call up at their
    /// next claim after the commit. A transaction that reads before it
    /// writes is best begun with `pool.begin_with("BEGIN IMMEDIATE")`, so it
    /// cannot fail to upgrade to a writer under concurrent writes.
    ///
    /// The store checks nothing about the request: build `call` with
    /// [`Runtime::new_call`](crate::Runtime::new_call), which validates it
    /// against its spec as `Runtime::create` does.
    ///
    /// ```no_run
    /// # async fn demo(rt: integration_runtime::Runtime, store: &integration_runtime::SqliteStore, request: impl integration_runtime::IntoCall) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await?;
    /// let call = store.create_in_tx(&mut tx, rt.new_call(request)?).await?;
    /// tx.commit().await?; // the order and its call, or neither
    /// # let _ = call; Ok(()) }
    /// ```
    pub async fn create_in_tx(&self, conn: &mut SqliteConnection, call: NewCall) -> Result<Created, StoreError> {
        insert_call(conn, call).await
    }

    /// Runs a leasing `UPDATE ... RETURNING {CALL_COLUMNS}` (`sql`, its
    /// parameters bound by `bind`) as an unsynced write, and returns the
    /// leased calls ordered by `order`, then creation.
    async fn lease_calls(
        &self,
        sql: String,
        bind: impl for<'q> FnOnce(Update<'q>) -> Update<'q> + Send + 'static,
        order: fn(&CallRecord) -> Option<DateTime<Utc>>,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let rows = self
            .writer
            .write_unsynced(move |conn| {
                Box::pin(async move { Ok(bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(&mut *conn).await?) })
            })
            .await?;
        let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no defined order.
        calls.sort_by_key(|(seq, call)| (order(call), *seq));
        Ok(calls.into_iter().map(|(_, call)| call).collect())
    }

    /// Runs `write`, which gives a lease back, and wakes local workers: the
    /// call may be due.
    async fn give_back<W>(&self, write: W) -> Result<(), StoreError>
    where
        W: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), StoreError>> + Send + 'static,
    {
        self.writer.write(write).await?;
        self.work.notify_waiters();
        Ok(())
    }

    async fn append_one(&self, target: OwnedTarget, event: NewEvent) -> Result<AppendOutcome, StoreError> {
        let appends = Appends {
            target,
            events: vec![event],
            turn: None,
        };
        let mut outcomes = self.writer.append(appends).await?;
        Ok(outcomes.remove(0))
    }
}

type Update<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Runs `update` (an `UPDATE ... WHERE id = ? AND lease_owner = ?` whose
/// last two binds are those) and turns "no row" into not-found or
/// lease-lost.
async fn leased_update(
    conn: &mut SqliteConnection,
    id: CallId,
    worker: &str,
    update: Update<'_>,
) -> Result<(), StoreError> {
    let done = update
        .bind(id.to_string())
        .bind(worker.to_owned())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() > 0 {
        return Ok(());
    }
    check_lease(conn, id, worker).await?;
    Err(StoreError::lease_lost(id, worker))
}

/// The write of a lease-checked `update`, for the writer (see
/// [`leased_update`]).
fn leased(
    id: CallId,
    worker: &str,
    update: Update<'static>,
) -> impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), StoreError>> + Send + 'static {
    let worker = worker.to_owned();
    move |conn| Box::pin(async move { leased_update(conn, id, &worker, update).await })
}

/// Fails unless `worker` holds the lease on call `id`.
async fn check_lease(conn: &mut SqliteConnection, id: CallId, worker: &str) -> Result<(), StoreError> {
    let owner: Option<Option<String>> = sqlx::query_scalar("SELECT lease_owner FROM integration_calls WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match owner {
        None => Err(StoreError::not_found(format_args!("call {id}"))),
        Some(owner) if owner.as_deref() == Some(worker) => Ok(()),
        Some(_) => Err(StoreError::lease_lost(id, worker)),
    }
}

/// Ends a worker's turn: the schedule, an attempt counted, the lease given back.
fn reschedule_update(next_run_at: Option<DateTime<Utc>>) -> Update<'static> {
    sqlx::query(
        "UPDATE integration_calls SET \
         next_run_at = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE ? END, \
         attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ? \
         WHERE id = ? AND lease_owner = ?",
    )
    .bind(next_run_at.map(|at| truncate(at).timestamp_millis()))
    .bind(now().timestamp_millis())
}

/// Applies the `steps` not recorded yet (all of [`MIGRATIONS`] but in tests
/// of an older schema).
async fn migrate(pool: &SqlitePool, steps: &[(i64, &str, &'static str)]) -> Result<(), StoreError> {
    let migration_error = |version: i64, error: sqlx::Error| {
        let message = format!("migrating the store schema to version {version} failed: {error}");
        StoreError::backend(message, error)
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS integration_store_migrations (\
         version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(|e| migration_error(0, e))?;
    for &(version, description, sql) in steps {
        // One immediate transaction per step: two processes opening the same
        // file at once apply each step once, and a failed step leaves nothing.
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| migration_error(version, e))?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM integration_store_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| migration_error(version, e))?;
        if applied.is_some() {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(version, e))?;
        sqlx::query(
            "INSERT INTO integration_store_migrations (version, description, applied_at) \
             VALUES (?, ?, ?)",
        )
        .bind(version)
        .bind(description)
        .bind(now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(version, e))?;
        tx.commit().await.map_err(|e| migration_error(version, e))?;
    }
    Ok(())
}

async fn insert_call(conn: &mut SqliteConnection, call: NewCall) -> Result<Created, StoreError> {
    let now = now();
    let id = new_call_id();
    // The conflict clause makes a concurrent create with the same key a no-op
    // instead of an error; the existing call is read back below.
    let inserted = sqlx::query(
        "INSERT INTO integration_calls (id, integration, endpoint, status, params, attempts, \
         idempotency_key, created_at, updated_at, next_run_at) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?) \
         ON CONFLICT (integration, idempotency_key) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(&call.integration)
    .bind(&call.endpoint)
    .bind(CallStatus::Pending.as_str())
    .bind(to_json(&call.params)?)
    .bind(&call.idempotency_key)
    .bind(now.timestamp_millis())
    .bind(now.timestamp_millis())
    .bind(call.run_at.map_or(now, truncate).timestamp_millis())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Created { id, created: true });
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM integration_calls WHERE integration = ? AND idempotency_key = ?"
    )))
    .bind(&call.integration)
    .bind(&call.idempotency_key)
    .fetch_one(&mut *conn)
    .await?;
    let (_, existing) = call_from_row(&row)?;
    check_same_request(&existing, &call)?;
    Ok(Created {
        id: existing.id,
        created: false,
    })
}

fn timestamp(column: &str, millis: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    millis
        .map(|ms| {
            from_millis(ms).ok_or_else(|| StoreError::corrupt(format_args!("stored `{column}` is out of range: {ms}")))
        })
        .transpose()
}

fn required_timestamp(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    timestamp(column, Some(row.try_get(column)?)).map(|t| t.expect("some in, some out"))
}

fn parse_id(text: &str) -> Result<CallId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::corrupt(format_args!("stored call id `{text}` is not a UUID")))
}

/// A call row, with its creation sequence.
fn call_from_row(row: &SqliteRow) -> Result<(i64, CallRecord), StoreError> {
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let response_data: Option<String> = row.try_get("response_data")?;
    let call = CallRecord {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
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
        created_at: required_timestamp(row, "created_at")?,
        updated_at: required_timestamp(row, "updated_at")?,
        completed_at: timestamp("completed_at", row.try_get("completed_at")?)?,
        next_run_at: timestamp("next_run_at", row.try_get("next_run_at")?)?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: timestamp("lease_expires_at", row.try_get("lease_expires_at")?)?,
        notification_attempts: count(row, "notification_attempts")?,
        notification_error: row.try_get("notification_error")?,
    };
    Ok((row.try_get("seq")?, call))
}

/// A stored counter, which never goes below zero.
fn count(row: &SqliteRow, column: &str) -> Result<u32, StoreError> {
    let stored: i64 = row.try_get(column)?;
    u32::try_from(stored).map_err(|_| StoreError::corrupt(format_args!("stored `{column}` {stored}")))
}

fn event_from_row(row: &SqliteRow) -> Result<EventRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let payload: String = row.try_get("payload")?;
    Ok(EventRecord {
        id: row.try_get("id")?,
        call_id: parse_id(&row.try_get::<String, _>("call_id")?)?,
        kind: kind.parse().map_err(StoreError::corrupt)?,
        key: row.try_get("event_key")?,
        payload: from_json::<EventPayload>("payload", &payload)?,
        applied: row.try_get("applied")?,
        recorded_at: required_timestamp(row, "recorded_at")?,
    })
}

impl Store for SqliteStore {
    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            let created = self.writer.write(|conn| Box::pin(insert_call(conn, call))).await?;
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
            let worker = worker.to_owned();
            let now = now();
            // One statement selects and leases: SQLite runs it under the
            // write lock, so concurrent claimers see disjoint sets. The
            // subquery walks `integration_calls_due` and stops at `limit`.
            let sql = format!(
                "UPDATE integration_calls \
                 SET lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3 \
                 WHERE seq IN ( \
                     SELECT seq FROM integration_calls \
                     WHERE next_run_at <= ?3 AND status IN ('pending', 'processing') \
                       AND (lease_expires_at IS NULL OR lease_expires_at <= ?3) \
                     ORDER BY next_run_at, seq LIMIT ?4) \
                 RETURNING {CALL_COLUMNS}"
            );
            let deadline = lease_deadline(now, lease).timestamp_millis();
            let order = |call: &CallRecord| call.next_run_at;
            self.lease_calls(
                sql,
                move |update| {
                    update
                        .bind(worker)
                        .bind(deadline)
                        .bind(now.timestamp_millis())
                        .bind(i64::from(limit))
                },
                order,
            )
            .await
        })
    }

    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let now = now();
        let update = sqlx::query(
            "UPDATE integration_calls SET lease_expires_at = ?, updated_at = ? \
             WHERE id = ? AND lease_owner = ?",
        )
        .bind(lease_deadline(now, lease).timestamp_millis())
        .bind(now.timestamp_millis());
        Box::pin(self.writer.write_unsynced(leased(id, worker, update)))
    }

    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let update = sqlx::query(
            "UPDATE integration_calls \
             SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
             WHERE id = ? AND lease_owner = ?",
        )
        .bind(now().timestamp_millis());
        Box::pin(self.give_back(leased(id, worker, update)))
    }

    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.give_back(leased(id, worker, reschedule_update(next_run_at))))
    }

    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>> {
        let worker = worker.to_owned();
        Box::pin(async move {
            let outcomes = self
                .writer
                .append(Appends {
                    target: OwnedTarget::Id(id),
                    events,
                    turn: Some(Turn { worker, next_run_at }),
                })
                .await?;
            self.work.notify_waiters();
            Ok(outcomes)
        })
    }

    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append_one(OwnedTarget::Id(id), event))
    }

    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        let target = OwnedTarget::External {
            integration: integration.to_owned(),
            external_id: external_id.to_owned(),
        };
        Box::pin(self.append_one(target, event))
    }

    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id = ?"
            )))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        Box::pin(async move {
            // One read transaction: the snapshot and the log agree.
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id = ?"
            )))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let (_, call) = call_from_row(&row)?;
            let events = sqlx::query(
                "SELECT id, call_id, kind, event_key, payload, applied, recorded_at \
                 FROM integration_call_events WHERE call_id = ? ORDER BY id",
            )
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await?;
            Ok(Some(CallWithEvents { call, events }))
        })
    }

    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls \
                 WHERE integration = ? AND external_id = ?"
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
            let limit = query.clamped_limit();
            let (after, direction) = match query.order {
                ListOrder::OldestFirst => ("seq > ?", "ASC"),
                ListOrder::NewestFirst => ("seq < ?", "DESC"),
            };
            let status_filter = if query.status.is_some() { "AND status = ?" } else { "" };
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls \
                 WHERE integration = ? {status_filter} AND {after} \
                 ORDER BY seq {direction} LIMIT ?"
            );
            let start = query.after.map_or(
                match query.order {
                    ListOrder::OldestFirst => i64::MIN,
                    ListOrder::NewestFirst => i64::MAX,
                },
                |cursor| cursor.0,
            );
            let mut select = sqlx::query(AssertSqlSafe(sql)).bind(&query.integration);
            if let Some(status) = query.status {
                select = select.bind(status.as_str());
            }
            // One row more than the page tells whether another page exists.
            let rows = select
                .bind(start)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
            let rows = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(page_of(rows, limit as usize))
        })
    }

    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        Box::pin(async move {
            // Two statements rather than `?1 IS NULL OR ...`, which would
            // keep SQLite from using the per-integration index.
            let rows: Vec<(String, i64)> = match integration {
                Some(integration) => {
                    sqlx::query_as(
                        "SELECT status, COUNT(*) FROM integration_calls \
                         WHERE integration = ? GROUP BY status",
                    )
                    .bind(integration)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query_as("SELECT status, COUNT(*) FROM integration_calls GROUP BY status")
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
        Box::pin(self.work.notified())
    }

    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let at = now().timestamp_millis();
            // Unsynced: the page reaches the WAL file (a full disk fails
            // it) without an fsync per health check.
            self.writer
                .write_unsynced(move |conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO integration_store_probe (id, written_at) VALUES (1, ?) \
                             ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
                        )
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
                .await
        })
    }

    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let update = sqlx::query(
            "UPDATE integration_calls SET \
             next_run_at = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE ? END, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
             WHERE id = ? AND lease_owner = ?",
        )
        .bind(truncate(next_run_at).timestamp_millis())
        .bind(now().timestamp_millis());
        Box::pin(self.give_back(leased(id, worker, update)))
    }

    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let now = now();
            // As `claim`: one statement selects and leases, over a partial
            // index holding only calls with a pending notification.
            let sql = format!(
                "UPDATE integration_calls SET notify_at = ?1 \
                 WHERE seq IN ( \
                     SELECT seq FROM integration_calls WHERE notify_at <= ?2 \
                     ORDER BY notify_at, seq LIMIT ?3) \
                 RETURNING {CALL_COLUMNS}"
            );
            let deadline = lease_deadline(now, lease).timestamp_millis();
            let order = |call: &CallRecord| call.completed_at;
            self.lease_calls(
                sql,
                move |update| {
                    update
                        .bind(deadline)
                        .bind(now.timestamp_millis())
                        .bind(i64::from(limit))
                },
                order,
            )
            .await
        })
    }

    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        let (retry_at, failed, error) = notification_columns(outcome);
        Box::pin(self.writer.write_unsynced(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE integration_calls SET notify_at = ?, \
                     notification_attempts = notification_attempts + ?, \
                     notification_error = COALESCE(?, notification_error) WHERE id = ?",
                )
                .bind(retry_at.map(|at| truncate(at).timestamp_millis()))
                .bind(i64::from(failed))
                .bind(error)
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::not_found(format_args!("call {id}")));
                }
                Ok(())
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use std::path::PathBuf;

    use crate::testing::Fixture;

    /// A fresh, empty directory under the system's temporary directory.
    pub(super) fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("integration-runtime-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    /// Removes its directory when dropped: a fixture's guard.
    struct RemoveDir(PathBuf);

    impl Drop for RemoveDir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    async fn fixture() -> Fixture {
        let dir = temp_dir();
        let store = SqliteStore::open(dir.join("store.db")).await.expect("open store");
        Fixture::new(store).with_guard(RemoveDir(dir))
    }

    crate::store_conformance_tests!(fixture);

    async fn open_in(dir: &Path) -> SqliteStore {
        SqliteStore::open(dir.join("store.db")).await.expect("open store")
    }

    #[tokio::test]
    async fn outbox_rolled_back_leaves_no_call_committed_is_claimable() {
        let dir = temp_dir();
        let store = open_in(&dir).await;

        let mut tx = store.pool().begin().await.unwrap();
        let rolled_back = store
            .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({"n": 1})))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(store.get(rolled_back.id).await.unwrap(), None);
        assert!(store.claim("w", 10, Duration::from_secs(30)).await.unwrap().is_empty());

        let mut tx = store.pool().begin().await.unwrap();
        let committed = store
            .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({"n": 2})))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let claimed = store.claim("w", 10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![committed.id]);

        // A dropped (neither committed nor rolled back) transaction also leaves nothing.
        let dropped = {
            let mut tx = store.pool().begin().await.unwrap();
            store
                .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({})))
                .await
                .unwrap()
        };
        assert_eq!(store.get(dropped.id).await.unwrap(), None);
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn outbox_sees_idempotency_keys_of_committed_calls() {
        let dir = temp_dir();
        let store = open_in(&dir).await;
        let first = store
            .create(NewCall::new("acme", "send", json!({})).idempotency_key("k"))
            .await
            .unwrap();
        let mut tx = store.pool().begin().await.unwrap();
        let again = store
            .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({})).idempotency_key("k"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            again,
            Created {
                id: first.id,
                created: false
            }
        );
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Runs `ops` (futures queued in order by one `join!`) in one writer
    /// batch: a write queued first waits for the file's write lock, held by
    /// another connection, so everything queued meanwhile goes together.
    async fn in_one_batch<T: Send + 'static>(
        store: &Arc<SqliteStore>,
        ops: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        let stuck = tokio::spawn({
            let store = store.clone();
            async move { store.create(NewCall::new("acme", "send", json!({"stuck": true}))).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ops = tokio::spawn(ops);
        tokio::time::sleep(Duration::from_millis(50)).await;
        blocker.rollback().await.unwrap();
        stuck.await.unwrap().unwrap();
        ops.await.unwrap()
    }

    async fn claimed(store: &SqliteStore, n: u32) -> Vec<CallId> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                store
                    .create(NewCall::new("acme", "send", json!({"i": i})))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let claimed = store.claim("w", n, Duration::from_secs(30)).await.unwrap();
        assert_eq!(claimed.len(), n as usize);
        ids
    }

    #[tokio::test]
    async fn appends_in_one_batch_fold_as_if_one_after_the_other() {
        let dir = temp_dir();
        let store = Arc::new(open_in(&dir).await);
        let ids = claimed(&store, 3).await;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let ops = {
            let store = store.clone();
            async move {
                let turn = |id, ext: &str| {
                    let events = vec![
                        NewEvent::initialized("initialized", ext),
                        NewEvent::processing("processing"),
                    ];
                    store.finish_turn(id, "w", events, None)
                };
                tokio::join!(
                    turn(a, "x"),
                    // The same worker again on `a`: the first turn released the lease.
                    turn(a, "x"),
                    // Another call claiming `a`'s external id, set earlier in this batch.
                    turn(b, "x"),
                    // A webhook for the id the first turn set, and the same event twice.
                    store.append_event_by_external_id("acme", "x", NewEvent::completed("terminal", json!({"ok": 1}))),
                    store.append_event_by_external_id("acme", "x", NewEvent::completed("terminal", json!({"ok": 2}))),
                    turn(c, "y"),
                )
            }
        };
        let (first, again, taken, hook, hook_again, other) = in_one_batch(&store, ops).await;

        let first = first.unwrap();
        assert!(
            matches!(
                first[0],
                AppendOutcome::Applied {
                    to: CallStatus::Processing,
                    ..
                }
            ),
            "{first:?}"
        );
        assert!(again.unwrap_err().is_lease_lost());
        let taken = taken.unwrap_err();
        assert!(taken.is_conflict() && !taken.is_lease_lost(), "{taken}");
        let hook = hook.unwrap();
        assert!(
            matches!(
                hook,
                AppendOutcome::Applied {
                    to: CallStatus::Completed,
                    ..
                }
            ),
            "{hook:?}"
        );
        match hook_again.unwrap() {
            AppendOutcome::Duplicate { event_id, status, .. } => {
                assert_eq!(event_id, hook.event_id());
                assert_eq!(status, CallStatus::Completed);
            }
            outcome => panic!("not a duplicate: {outcome:?}"),
        }
        other.unwrap();

        let a = store.get_with_events(a).await.unwrap().unwrap();
        assert_eq!(a.call.status, CallStatus::Completed);
        assert_eq!(a.call.response_data, Some(json!({"ok": 1})));
        assert_eq!((a.call.attempts, a.call.lease_owner.as_deref()), (1, None));
        assert_eq!(a.events.len(), 3, "{:?}", a.events);
        let b = store.get_with_events(b).await.unwrap().unwrap();
        assert_eq!(b.call.status, CallStatus::Pending, "the conflicting turn wrote nothing");
        assert_eq!((b.call.attempts, b.call.lease_owner.as_deref()), (0, Some("w")));
        assert!(b.events.is_empty());
        let c = store.get(c).await.unwrap().unwrap();
        assert_eq!(
            (c.status, c.external_id.as_deref()),
            (CallStatus::Processing, Some("y"))
        );
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn writes_queued_together_all_commit_and_a_failing_one_fails_alone() {
        let dir = temp_dir();
        let store = Arc::new(open_in(&dir).await);
        let keyed = || NewCall::new("acme", "send", json!({"n": 0})).idempotency_key("k");
        let first = store.create(keyed()).await.unwrap();
        // Another connection holds the file's write lock, so the writes
        // below queue up and go into one transaction when it lets go.
        let blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
        let creates: Vec<_> = (1..=20)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.create(NewCall::new("acme", "send", json!({"n": n}))).await })
            })
            .collect();
        let conflicting = {
            let store = store.clone();
            tokio::spawn(async move {
                let reused = NewCall::new("acme", "send", json!({"n": "other"})).idempotency_key("k");
                store.create(reused).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        blocker.rollback().await.unwrap();

        let error = conflicting.await.unwrap().unwrap_err();
        assert!(error.is_conflict(), "{error}");
        let mut ids = vec![first.id];
        for create in creates {
            let created = create
                .await
                .unwrap()
                .expect("the conflict leaves the other writes alone");
            assert!(created.created);
            ids.push(created.id);
        }
        for id in ids {
            assert!(store.get(id).await.unwrap().is_some(), "call {id} was not committed");
        }
        assert_eq!(store.count_by_status(None).await.unwrap().total(), 21);
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_applies_each_migration_once() {
        let dir = temp_dir();
        let store = open_in(&dir).await;
        let created = store
            .create(NewCall::new("acme", "send", json!({"a": 1})))
            .await
            .unwrap();
        store
            .append_event(created.id, NewEvent::initialized("i", "ext-1"))
            .await
            .unwrap();
        store.pool().close().await;
        drop(store);

        let store = open_in(&dir).await;
        let again = store.get_with_events(created.id).await.unwrap().expect("call kept");
        assert_eq!(again.call.status, CallStatus::Processing);
        assert_eq!(again.call.external_id.as_deref(), Some("ext-1"));
        assert_eq!(again.events.len(), 1);
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM integration_store_migrations ORDER BY version")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_database_of_the_previous_schema_upgrades_and_keeps_its_calls() {
        let dir = temp_dir();
        let path = dir.join("store.db");
        // The schema before notification dead letters, with a terminal call
        // whose hooks are due.
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let old = SqlitePool::connect_with(options).await.unwrap();
        migrate(&old, &MIGRATIONS[..3]).await.unwrap();
        let id = CallId::new();
        sqlx::query(
            "INSERT INTO integration_calls (id, integration, endpoint, status, params, response_data, \
             attempts, created_at, updated_at, completed_at, notify_at) \
             VALUES (?, 'acme', 'send', 'completed', '{\"a\":1}', '{\"ok\":true}', 2, 1, 1, 1, 1)",
        )
        .bind(id.to_string())
        .execute(&old)
        .await
        .unwrap();
        old.close().await;

        let store = open_in(&dir).await;
        let call = store.get(id).await.unwrap().expect("call kept");
        assert_eq!(call.status, CallStatus::Completed);
        assert_eq!(call.params, json!({"a": 1}));
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
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The steps of an `EXPLAIN QUERY PLAN` query.
    async fn query_plan(store: &SqliteStore, explain: Update<'_>) -> Vec<String> {
        let rows = explain.fetch_all(store.pool()).await.unwrap();
        rows.iter().map(|row| row.get::<String, _>("detail")).collect()
    }

    #[tokio::test]
    async fn claiming_walks_the_due_index() {
        let dir = temp_dir();
        let store = open_in(&dir).await;
        let explain = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT seq FROM integration_calls \
             WHERE next_run_at <= ?1 AND status IN ('pending', 'processing') \
               AND (lease_expires_at IS NULL OR lease_expires_at <= ?1) \
             ORDER BY next_run_at, seq LIMIT ?2",
        );
        let plan = query_plan(&store, explain.bind(0_i64).bind(10_i64)).await;
        assert!(
            plan.iter().any(|step| step.contains("integration_calls_due")),
            "claim does not use the due index: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "claim sorts: {plan:?}"
        );
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn appends_find_calls_by_external_id_through_the_index() {
        let dir = temp_dir();
        let store = open_in(&dir).await;
        let sql = format!("EXPLAIN QUERY PLAN {}", appends::select_by_external_ids(3));
        let mut explain = sqlx::query(AssertSqlSafe(sql));
        for value in ["acme", "a", "b", "c"] {
            explain = explain.bind(value);
        }
        let plan = query_plan(&store, explain).await;
        assert!(
            plan.iter().any(|step| step.contains("integration_calls_external_id")),
            "the lookup scans: {plan:?}"
        );
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_not_panicked_on() {
        let dir = temp_dir();
        let store = open_in(&dir).await;
        let created = store.create(NewCall::new("acme", "send", json!({}))).await.unwrap();
        sqlx::query("UPDATE integration_calls SET status = 'done' WHERE id = ?")
            .bind(created.id.to_string())
            .execute(store.pool())
            .await
            .unwrap();
        let error = store.get(created.id).await.unwrap_err();
        assert!(error.is_corrupt(), "{error}");
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }
}
