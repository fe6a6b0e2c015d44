//! Appending events, for every request in a writer batch at once.
//!
//! Appends are the hot path (a sync call ends with three events and a
//! reschedule; every webhook is an append), and each SQL statement is a round
//! trip to SQLite's thread while the batch holds the write lock. So the
//! writer hands all the append requests it dequeued to [`append_batch`],
//! which reads every call they touch in one statement, folds each request's
//! events in memory through the state machine, then writes all new events
//! with one `INSERT` and all changed calls with one `UPDATE`: a handful of
//! statements per batch, whatever its size.
//!
//! Requests fold in queue order on the calls' in-memory state, so a batch
//! behaves exactly as the same requests run one after the other. A request
//! that fails (unknown call, lease lost, external id conflict) is undone in
//! memory before anything is written, so it leaves no trace.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnection;
use sqlx::AssertSqlSafe;

use super::{call_from_row, CALL_COLUMNS};
use crate::call::CallId;
use crate::store::folding::{
    external_ids_to_read, fold_all, requested_ids, requested_keys, stored_keys, Appends, Calls, NewRow, UsedKeys,
};
use crate::store::{now, to_json, AppendOutcome, StoreError};

/// Each request's outcomes (or why it wrote nothing), in request order.
/// Errs when a statement failed: then the whole batch must roll back.
pub(super) async fn append_batch(
    conn: &mut SqliteConnection,
    requests: Vec<Appends>,
) -> Result<Vec<Result<Vec<AppendOutcome>, StoreError>>, StoreError> {
    let mut calls = load(conn, &requests).await?;
    let used = used_keys(conn, &calls, &requests).await?;
    let now = now();
    let folded = fold_all(&mut calls, used, requests, now);
    let ids = insert_events(conn, &folded.inserts, now).await?;
    write_changed(&calls, conn, now).await?;
    Ok(folded.resolve(&ids))
}

/// Reads the calls the requests name, and those owning the external ids
/// their events would set (to report conflicts before writing).
async fn load(conn: &mut SqliteConnection, requests: &[Appends]) -> Result<Calls, StoreError> {
    let mut calls = Calls::default();
    let ids: Vec<String> = requested_ids(requests).iter().map(CallId::to_string).collect();
    read_ids(&mut calls, conn, &ids).await?;
    let pairs = external_ids_to_read(&calls, requests);
    read_external(&mut calls, conn, &pairs).await?;
    Ok(calls)
}

async fn read_ids(calls: &mut Calls, conn: &mut SqliteConnection, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id IN ({})",
        placeholders(ids.len(), "?")
    );
    let mut select = sqlx::query(AssertSqlSafe(sql));
    for id in ids {
        select = select.bind(id.as_str());
    }
    for row in select.fetch_all(&mut *conn).await? {
        calls.add(call_from_row(&row)?);
    }
    Ok(())
}

async fn read_external(
    calls: &mut Calls,
    conn: &mut SqliteConnection,
    pairs: &[(String, String)],
) -> Result<(), StoreError> {
    // One query per integration: `integration = ? AND external_id IN
    // (...)` walks the unique index, where a row-value `IN` would scan.
    let mut by_integration: HashMap<&str, Vec<&str>> = HashMap::new();
    for (integration, external_id) in pairs {
        by_integration.entry(integration).or_default().push(external_id);
    }
    for (integration, external_ids) in by_integration {
        let sql = select_by_external_ids(external_ids.len());
        let mut select = sqlx::query(AssertSqlSafe(sql)).bind(integration);
        for external_id in external_ids {
            select = select.bind(external_id);
        }
        for row in select.fetch_all(&mut *conn).await? {
            calls.add(call_from_row(&row)?);
        }
    }
    Ok(())
}

/// One `UPDATE` for every call the batch changed, with the values folded
/// in memory (the batch holds the write lock since it read them).
async fn write_changed(calls: &Calls, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<(), StoreError> {
    const COLUMNS: usize = 12;
    let changed: Vec<_> = calls.changed().collect();
    for chunk in changed.chunks(MAX_VARIABLES / COLUMNS) {
        let sql = format!(
            "UPDATE integration_calls SET status = v.column2, external_id = v.column3, \
                 updated_at = v.column4, response_data = COALESCE(v.column5, response_data), \
                 error = COALESCE(v.column6, error), completed_at = v.column7, \
                 notify_at = CASE WHEN v.column8 THEN v.column4 ELSE notify_at END, \
                 next_run_at = v.column9, attempts = v.column10, \
                 lease_owner = v.column11, lease_expires_at = v.column12 \
                 FROM (VALUES {}) AS v WHERE integration_calls.seq = v.column1",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        let mut update = sqlx::query(AssertSqlSafe(sql));
        for folded in chunk {
            let call = &folded.call;
            let (response_data, error) = folded.terminal.clone().unwrap_or_default();
            update = update
                .bind(folded.seq)
                .bind(call.status.as_str())
                .bind(call.external_id.clone())
                .bind(now.timestamp_millis())
                .bind(response_data)
                .bind(error)
                .bind(call.completed_at.map(|at| at.timestamp_millis()))
                .bind(folded.terminal.is_some())
                .bind(call.next_run_at.map(|at| at.timestamp_millis()))
                .bind(i64::from(call.attempts))
                .bind(call.lease_owner.clone())
                .bind(call.lease_expires_at.map(|at| at.timestamp_millis()));
        }
        update.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The calls of one integration (first parameter) with any of `count`
/// external ids.
pub(super) fn select_by_external_ids(count: usize) -> String {
    format!(
        "SELECT {CALL_COLUMNS} FROM integration_calls WHERE integration = ? AND external_id IN ({})",
        placeholders(count, "?")
    )
}

/// SQLite's default limit on bound parameters per statement is 32 766.
const MAX_VARIABLES: usize = 30_000;

fn placeholders(count: usize, one: &str) -> String {
    vec![one; count].join(", ")
}

/// The ids of the events already stored under the keys the requests use.
async fn used_keys(conn: &mut SqliteConnection, calls: &Calls, requests: &[Appends]) -> Result<UsedKeys, StoreError> {
    let keys = requested_keys(requests);
    if keys.is_empty() || calls.by_id.is_empty() {
        // No events (a turn that only reschedules), or no call found.
        return Ok(UsedKeys::new());
    }
    if calls.by_id.len() + keys.len() > MAX_VARIABLES {
        // Past the variable limit (thousands of keys in one batch), read
        // per call instead.
        return used_keys_per_call(conn, calls).await;
    }
    let sql = format!(
        "SELECT call_id, event_key, id FROM integration_call_events \
         WHERE call_id IN ({}) AND event_key IN ({})",
        placeholders(calls.by_id.len(), "?"),
        placeholders(keys.len(), "?")
    );
    let mut select = sqlx::query_as::<_, (String, String, i64)>(AssertSqlSafe(sql));
    for id in calls.by_id.keys() {
        select = select.bind(id.to_string());
    }
    for key in keys {
        select = select.bind(key);
    }
    Ok(stored_keys(collect_keys(select.fetch_all(&mut *conn).await?)?))
}

async fn used_keys_per_call(conn: &mut SqliteConnection, calls: &Calls) -> Result<UsedKeys, StoreError> {
    let mut rows = Vec::new();
    for id in calls.by_id.keys() {
        rows.extend(
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT call_id, event_key, id FROM integration_call_events WHERE call_id = ?",
            )
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(stored_keys(collect_keys(rows)?))
}

fn collect_keys(rows: Vec<(String, String, i64)>) -> Result<Vec<(CallId, String, i64)>, StoreError> {
    rows.into_iter()
        .map(|(call_id, key, id)| Ok((super::parse_id(&call_id)?, key, id)))
        .collect()
}

/// Inserts the batch's new events; returns their ids by (call, key).
async fn insert_events(
    conn: &mut SqliteConnection,
    rows: &[NewRow],
    now: DateTime<Utc>,
) -> Result<HashMap<(CallId, String), i64>, StoreError> {
    const COLUMNS: usize = 6;
    let mut ids = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_VARIABLES / COLUMNS) {
        let sql = format!(
            "INSERT INTO integration_call_events (call_id, kind, event_key, payload, applied, recorded_at) \
             VALUES {} RETURNING call_id, event_key, id",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?)")
        );
        let mut insert = sqlx::query_as::<_, (String, String, i64)>(AssertSqlSafe(sql));
        for row in chunk {
            insert = insert
                .bind(row.call_id.to_string())
                .bind(row.event.kind.as_str())
                .bind(row.event.key.as_str())
                .bind(to_json(&row.event.payload)?)
                .bind(row.applied)
                .bind(now.timestamp_millis());
        }
        let inserted = collect_keys(insert.fetch_all(&mut *conn).await?)?;
        ids.extend(inserted.into_iter().map(|(call_id, key, id)| ((call_id, key), id)));
    }
    Ok(ids)
}
