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
    call_from_row, check_same_request, from_json, from_millis, lease_deadline, new_call_id, notification_columns, now,
    page_of, status_counts, stored_count, to_json, truncate, AppendOutcome, BoxFuture, CallId, CallRecord, CallRow,
    CallWithEvents, Created, EventPayload, EventRecord, ListOrder, ListQuery, NewCall, NewEvent, NotificationOutcome,
    Page, RateRequest, RateSlice, StatusCounts, Store, StoreError,
};
use crate::lifecycle::CallStatus;

mod appends;
mod protection;
mod rows;
mod schema;
mod store_impl;
#[cfg(test)]
mod tests;
mod writer;

use super::folding::{Appends, OwnedTarget, Turn};
use rows::{event_from_row, parse_id, CALL_COLUMNS};
use schema::{migrate, MIGRATIONS};
use writer::Writer;

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

async fn insert_call(conn: &mut SqliteConnection, call: NewCall) -> Result<Created, StoreError> {
    let now = now();
    let id = new_call_id();
    // The conflict clause makes a concurrent create with the same key a no-op
    // instead of an error; the existing call is read back below.
    let inserted = sqlx::query(
        "INSERT INTO integration_calls (id, integration, endpoint, status, params, attempts, \
         idempotency_key, created_at, updated_at, next_run_at, lease_owner, lease_expires_at) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) \
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
    .bind(call.lease.as_ref().map(|lease| lease.owner.as_str()))
    .bind(
        call.lease
            .as_ref()
            .map(|lease| lease_deadline(now, lease.duration).timestamp_millis()),
    )
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
