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
//! and written together (the `appends` module). The writer's connection is
//! rusqlite's, on a thread of its own, opened like the pool's (the
//! `database` module): a batch's statements are plain calls into SQLite, not
//! a round trip each to sqlx's worker thread. Both bindings link one SQLite
//! library, so the file's locks are the same for both.
//!
//! Every transaction that reads before it writes starts with `BEGIN
//! IMMEDIATE`: a deferred transaction that must upgrade to a writer after
//! another connection committed fails with `SQLITE_BUSY` no matter the busy
//! timeout, while an immediate one simply waits its turn.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Params};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
// `AssertSqlSafe`: the dynamic SQL here is put together from constant
// column lists and placeholder counts only; values are always bound.
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::{
    call_from_row, check_same_request, from_json, from_millis, lease_deadline, new_call_id, notification_columns,
    page_of, status_counts, stored_count, system_now, to_json, truncate, AppendOutcome, BoxFuture, CallId, CallRecord,
    CallRow, CallWithEvents, Created, EventPayload, EventRecord, ListOrder, ListQuery, NewCall, NewEvent,
    NotificationOutcome, Page, PruneRule, RateRequest, RateSlice, StatusCounts, Store, StoreError,
};
use crate::clock::SharedClock;
use crate::lifecycle::CallStatus;

mod appends;
mod connections;
mod database;
mod protection;
mod prune;
mod rows;
mod schema;
mod store_impl;
#[cfg(test)]
mod tests;
mod writer;

use super::folding::{Appends, OwnedTarget, Turn};
use database::Database;
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
    /// The runtime's clock, once one uses the store.
    clock: SharedClock,
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
    /// to the pool's database file (with its VFS) and with its connections'
    /// `synchronous` and `foreign_keys` settings, so the database must be a
    /// file (each connection to `:memory:` is a database of its own).
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrate(&pool, MIGRATIONS).await?;
        let clock = SharedClock::default();
        let writer = Writer::start(Database::of(&pool).await?, clock.clone()).await?;
        Ok(SqliteStore {
            pool,
            writer,
            work: Notify::new(),
            clock,
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
        insert_call_in_tx(conn, call, self.clock.now()).await
    }

    /// Runs a leasing `UPDATE ... RETURNING {CALL_COLUMNS}` (`sql`, with
    /// `values` bound) as an unsynced write, and returns the leased calls
    /// ordered by `order`, then creation.
    async fn lease_calls(
        &self,
        sql: String,
        values: Vec<Value>,
        order: fn(&CallRecord) -> Option<DateTime<Utc>>,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut calls = self
            .writer
            .write_unsynced(move |conn| select_calls(conn, &sql, params_from_iter(values)))
            .await?;
        // RETURNING has no defined order.
        calls.sort_by_key(|(seq, call)| (order(call), *seq));
        Ok(calls.into_iter().map(|(_, call)| call).collect())
    }

    /// Runs `write`, which gives a lease back, and wakes local workers: the
    /// call may be due.
    async fn give_back<W>(&self, write: W) -> Result<(), StoreError>
    where
        W: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
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

/// Runs `sql`, which returns call rows ([`CALL_COLUMNS`]), on the writer's
/// connection.
fn select_calls(conn: &Connection, sql: &str, params: impl Params) -> Result<Vec<(i64, CallRecord)>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut calls = Vec::new();
    while let Some(row) = rows.next()? {
        calls.push(call_from_row(row)?);
    }
    Ok(calls)
}

/// The write of a lease-checked update, for the writer: `sql` is an
/// `UPDATE ... WHERE id = ? AND lease_owner = ?`, its other parameters
/// (before those two) are `values`. "No row" becomes not-found or
/// lease-lost.
fn leased(
    id: CallId,
    worker: &str,
    sql: &'static str,
    mut values: Vec<Value>,
) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static {
    let worker = worker.to_owned();
    move |conn| {
        values.extend([Value::Text(id.to_string()), Value::Text(worker.clone())]);
        if conn.prepare_cached(sql)?.execute(params_from_iter(values))? > 0 {
            return Ok(());
        }
        check_lease(conn, id, &worker)?;
        Err(StoreError::lease_lost(id, &worker))
    }
}

/// Fails unless `worker` holds the lease on call `id`.
fn check_lease(conn: &Connection, id: CallId, worker: &str) -> Result<(), StoreError> {
    let owner: Option<Option<String>> = conn
        .prepare_cached("SELECT lease_owner FROM integration_calls WHERE id = ?")?
        .query_row([id.to_string()], |row| row.get(0))
        .optional()?;
    match owner {
        None => Err(StoreError::not_found(format_args!("call {id}"))),
        Some(owner) if owner.as_deref() == Some(worker) => Ok(()),
        Some(_) => Err(StoreError::lease_lost(id, worker)),
    }
}

/// Inserts a call, unless its idempotency key is taken; the values are
/// those of a [`CallInsert`].
const INSERT_CALL: &str = "INSERT INTO integration_calls (id, integration, endpoint, status, params, attempts, \
     idempotency_key, created_at, updated_at, next_run_at, lease_owner, lease_expires_at, deadline_at, \
     spec_fingerprint, connection) \
     VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (integration, idempotency_key) DO NOTHING";

/// The call stored under an integration (first parameter) and idempotency key.
fn select_by_key() -> String {
    format!("SELECT {CALL_COLUMNS} FROM integration_calls WHERE integration = ? AND idempotency_key = ?")
}

/// A call about to be inserted with [`INSERT_CALL`]: by the writer, or in
/// the caller's own transaction (the outbox).
struct CallInsert {
    id: CallId,
    values: Vec<Value>,
}

impl CallInsert {
    fn new(call: &NewCall, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let id = new_call_id();
        let lease_owner = call.lease.as_ref().map(|lease| lease.owner.clone());
        let lease_expires_at = call
            .lease
            .as_ref()
            .map(|lease| lease_deadline(now, lease.duration).timestamp_millis());
        let values = vec![
            Value::Text(id.to_string()),
            Value::Text(call.integration.clone()),
            Value::Text(call.endpoint.clone()),
            Value::Text(CallStatus::Pending.as_str().to_owned()),
            Value::Text(to_json(&call.params)?),
            Value::from(call.idempotency_key.clone()),
            Value::Integer(now.timestamp_millis()),
            Value::Integer(now.timestamp_millis()),
            Value::Integer(call.run_at.map_or(now, truncate).timestamp_millis()),
            Value::from(lease_owner),
            Value::from(lease_expires_at),
            Value::from(call.deadline_at(now).map(|at| at.timestamp_millis())),
            Value::from(call.spec_fingerprint.clone()),
            Value::from(call.connection.clone()),
        ];
        Ok(CallInsert { id, values })
    }

    /// What the caller hears: the new call, or (the insert stored nothing)
    /// the call `existing` under the key, which must be the same request.
    fn outcome(self, call: &NewCall, existing: Option<CallRecord>) -> Result<Created, StoreError> {
        let Some(existing) = existing else {
            return Ok(Created {
                id: self.id,
                created: true,
            });
        };
        check_same_request(&existing, call)?;
        Ok(Created {
            id: existing.id,
            created: false,
        })
    }
}

/// [`Store::create`]'s write. The conflict clause makes a concurrent create
/// with the same key a no-op instead of an error; the existing call is read
/// back.
fn insert_call(conn: &Connection, call: NewCall, now: DateTime<Utc>) -> Result<Created, StoreError> {
    let insert = CallInsert::new(&call, now)?;
    let inserted = conn
        .prepare_cached(INSERT_CALL)?
        .execute(params_from_iter(&insert.values))?
        == 1;
    let existing = match inserted {
        true => None,
        false => {
            let mut select = conn.prepare_cached(&select_by_key())?;
            let key = (&call.integration, &call.idempotency_key);
            Some(select.query_row(key, |row| Ok(call_from_row(row)))??.1)
        }
    };
    insert.outcome(&call, existing)
}

/// [`insert_call`] in the caller's transaction.
async fn insert_call_in_tx(
    conn: &mut SqliteConnection,
    call: NewCall,
    now: DateTime<Utc>,
) -> Result<Created, StoreError> {
    let insert = CallInsert::new(&call, now)?;
    let mut statement = sqlx::query(INSERT_CALL);
    for value in &insert.values {
        statement = match value.clone() {
            Value::Null => statement.bind(None::<i64>),
            Value::Integer(value) => statement.bind(value),
            Value::Real(value) => statement.bind(value),
            Value::Text(value) => statement.bind(value),
            Value::Blob(value) => statement.bind(value),
        };
    }
    let inserted = statement.execute(&mut *conn).await?.rows_affected() == 1;
    let existing = match inserted {
        true => None,
        false => {
            let row = sqlx::query(AssertSqlSafe(select_by_key()))
                .bind(&call.integration)
                .bind(&call.idempotency_key)
                .fetch_one(&mut *conn)
                .await?;
            Some(call_from_row(&row)?.1)
        }
    };
    insert.outcome(&call, existing)
}
