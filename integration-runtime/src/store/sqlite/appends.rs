//! Appending events, for every request in a writer batch at once.
//!
//! Appends are the hot path (a sync call ends with three events and a
//! reschedule; every webhook is an append), and each SQL statement (bound,
//! stepped, its B-tree pages walked) costs while the batch holds the write
//! lock. So the writer hands all the append requests it dequeued to [`append_batch`],
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
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use super::{select_calls, CALL_COLUMNS};
use crate::call::CallId;
use crate::store::folding::{
    external_ids_to_read, fold_all, requested_ids, requested_keys, stored_keys, Appends, Calls, NewRow, UsedKeys,
};
use crate::store::{to_json, AppendOutcome, StoreError};

/// Each request's outcomes (or why it wrote nothing), in request order.
/// Errs when a statement failed: then the whole batch must roll back.
pub(super) fn append_batch(
    conn: &Connection,
    requests: Vec<Appends>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Vec<AppendOutcome>, StoreError>>, StoreError> {
    let mut calls = load(conn, &requests)?;
    let used = used_keys(conn, &calls, &requests)?;
    let folded = fold_all(&mut calls, used, requests, now);
    let ids = insert_events(conn, &folded.inserts, now)?;
    write_changed(&calls, conn, now)?;
    Ok(folded.resolve(&ids))
}

/// Reads the calls the requests name, and those owning the external ids
/// their events would set (to report conflicts before writing).
fn load(conn: &Connection, requests: &[Appends]) -> Result<Calls, StoreError> {
    let mut calls = Calls::default();
    let ids: Vec<String> = requested_ids(requests).iter().map(CallId::to_string).collect();
    read_ids(&mut calls, conn, &ids)?;
    let pairs = external_ids_to_read(&calls, requests);
    read_external(&mut calls, conn, &pairs)?;
    Ok(calls)
}

fn read_ids(calls: &mut Calls, conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id IN ({})",
        placeholders(ids.len(), "?")
    );
    for call in select_calls(conn, &sql, params_from_iter(ids))? {
        calls.add(call);
    }
    Ok(())
}

fn read_external(calls: &mut Calls, conn: &Connection, pairs: &[(String, String)]) -> Result<(), StoreError> {
    // One query per integration: `integration = ? AND external_id IN
    // (...)` walks the unique index, where a row-value `IN` would scan.
    let mut by_integration: HashMap<&str, Vec<&str>> = HashMap::new();
    for (integration, external_id) in pairs {
        by_integration.entry(integration).or_default().push(external_id);
    }
    for (integration, external_ids) in by_integration {
        let sql = select_by_external_ids(external_ids.len());
        let values = std::iter::once(integration).chain(external_ids);
        for call in select_calls(conn, &sql, params_from_iter(values))? {
            calls.add(call);
        }
    }
    Ok(())
}

/// One `UPDATE` for every call the batch changed, with the values folded
/// in memory (the batch holds the write lock since it read them).
fn write_changed(calls: &Calls, conn: &Connection, now: DateTime<Utc>) -> Result<(), StoreError> {
    const COLUMNS: usize = 13;
    let changed: Vec<_> = calls.changed().collect();
    for chunk in changed.chunks(MAX_VARIABLES / COLUMNS) {
        let sql = format!(
            "UPDATE integration_calls SET status = v.column2, external_id = v.column3, \
                 updated_at = v.column4, response_data = COALESCE(v.column5, response_data), \
                 error = COALESCE(v.column6, error), completed_at = v.column7, \
                 notify_at = CASE WHEN v.column8 THEN v.column4 ELSE notify_at END, \
                 next_run_at = v.column9, attempts = v.column10, \
                 lease_owner = v.column11, lease_expires_at = v.column12, \
                 error_kind = COALESCE(v.column13, error_kind) \
                 FROM (VALUES {}) AS v WHERE integration_calls.seq = v.column1",
            placeholders(chunk.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * COLUMNS);
        for folded in chunk {
            let call = &folded.call;
            let terminal = folded.terminal.clone().unwrap_or_default();
            values.extend([
                Value::Integer(folded.seq),
                Value::Text(call.status.as_str().to_owned()),
                Value::from(call.external_id.clone()),
                Value::Integer(now.timestamp_millis()),
                Value::from(terminal.response_data),
                Value::from(terminal.error),
                Value::from(call.completed_at.map(|at| at.timestamp_millis())),
                Value::from(folded.terminal.is_some()),
                Value::from(call.next_run_at.map(|at| at.timestamp_millis())),
                Value::from(call.attempts),
                Value::from(call.lease_owner.clone()),
                Value::from(call.lease_expires_at.map(|at| at.timestamp_millis())),
                Value::from(terminal.error_kind),
            ]);
        }
        conn.prepare_cached(&sql)?.execute(params_from_iter(values))?;
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
fn used_keys(conn: &Connection, calls: &Calls, requests: &[Appends]) -> Result<UsedKeys, StoreError> {
    let keys = requested_keys(requests);
    if keys.is_empty() || calls.by_id.is_empty() {
        // No events (a turn that only reschedules), or no call found.
        return Ok(UsedKeys::new());
    }
    if calls.by_id.len() + keys.len() > MAX_VARIABLES {
        // Past the variable limit (thousands of keys in one batch), read
        // per call instead.
        return used_keys_per_call(conn, calls);
    }
    let sql = format!(
        "SELECT call_id, event_key, id FROM integration_call_events \
         WHERE call_id IN ({}) AND event_key IN ({})",
        placeholders(calls.by_id.len(), "?"),
        placeholders(keys.len(), "?")
    );
    let values = calls
        .by_id
        .keys()
        .map(CallId::to_string)
        .chain(keys.into_iter().map(str::to_owned));
    Ok(stored_keys(key_rows(conn, &sql, params_from_iter(values))?))
}

fn used_keys_per_call(conn: &Connection, calls: &Calls) -> Result<UsedKeys, StoreError> {
    let mut rows = Vec::new();
    for id in calls.by_id.keys() {
        let sql = "SELECT call_id, event_key, id FROM integration_call_events WHERE call_id = ?";
        rows.extend(key_rows(conn, sql, [id.to_string()])?);
    }
    Ok(stored_keys(rows))
}

/// The `call_id, event_key, id` rows `sql` returns.
fn key_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(CallId, String, i64)>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        let call_id: String = row.get(0)?;
        keys.push((super::parse_id(&call_id)?, row.get(1)?, row.get(2)?));
    }
    Ok(keys)
}

/// Inserts the batch's new events; returns their ids by (call, key).
fn insert_events(
    conn: &Connection,
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
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * COLUMNS);
        for row in chunk {
            values.extend([
                Value::Text(row.call_id.to_string()),
                Value::Text(row.event.kind.as_str().to_owned()),
                Value::Text(row.event.key.clone()),
                Value::Text(to_json(&row.event.payload)?),
                Value::from(row.applied),
                Value::Integer(now.timestamp_millis()),
            ]);
        }
        let inserted = key_rows(conn, &sql, params_from_iter(values))?;
        ids.extend(inserted.into_iter().map(|(call_id, key, id)| ((call_id, key), id)));
    }
    Ok(ids)
}
