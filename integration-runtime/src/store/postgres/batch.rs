//! The statements of one writer batch: every create of the batch in one
//! multi-row `INSERT`, every turn in four statements (lock, read the keys,
//! insert the events, update the calls), and at most one `pg_notify`.
//!
//! Arrays travel as `UNNEST` parameters, so a statement's text is the same
//! whatever the batch size (PostgreSQL plans it once per connection).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::Row;
// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::listen::{announcement, Horizon};
use super::rows::CALL_COLUMNS;
use crate::clock::SharedClock;
use crate::store::error::ErrorKind;
use crate::store::folding::{fold_all, requested_ids, requested_keys, stored_keys, Appends, Calls, NewRow};
use crate::store::{
    call_from_row, check_same_request, lease_deadline, new_call_id, to_json, truncate, AppendOutcome, CallId, Created,
    NewCall, StoreError,
};

/// Where a batch writes: the quoted tables and the `NOTIFY` channel.
#[derive(Debug, Clone)]
pub(super) struct Tables {
    /// `"schema".integration_calls`.
    pub(super) calls: String,
    /// `"schema".integration_call_events`.
    pub(super) events: String,
    pub(super) channel: String,
    /// The store's clock: when a batch writes.
    pub(super) clock: SharedClock,
    /// When idle workers wake: whether a call scheduled for later is worth a `NOTIFY`.
    pub(super) horizon: Arc<Horizon>,
}

/// What a part of a batch did inside its transaction (not committed yet).
pub(super) struct Wrote<T> {
    /// Each request's result, in request order.
    pub(super) results: Vec<Result<T, StoreError>>,
    /// A call is due now because of it: workers must be woken.
    pub(super) due: bool,
    /// The earliest due time of the calls it left scheduled and unleased
    /// (now or later): idle workers must hear of it.
    pub(super) earliest: Option<DateTime<Utc>>,
    /// The id of the transaction (`pg_current_xact_id()`), when it wrote
    /// something: how the outcome of an unanswered `COMMIT` is found out.
    pub(super) xact: Option<String>,
}

impl<T> Default for Wrote<T> {
    fn default() -> Self {
        Wrote {
            results: Vec::new(),
            due: false,
            earliest: None,
            xact: None,
        }
    }
}

/// Inserts `creates` with one statement; a key already used returns its
/// call (`created: false`), or a conflict for another request. Calls with
/// one key in one batch behave as if created one after the other.
pub(super) async fn insert_calls(
    calls: &str,
    conn: &mut PgConnection,
    creates: &[NewCall],
    now: DateTime<Utc>,
) -> Result<Wrote<Created>, StoreError> {
    // Rows in key order: two batches inserting the same keys wait for each
    // other in the same order instead of deadlocking.
    let mut order: Vec<usize> = (0..creates.len()).collect();
    order.sort_by(|a, b| {
        let key = |i: &usize| (&creates[*i].integration, &creates[*i].idempotency_key);
        key(a).cmp(&key(b))
    });
    // Parameters that cannot be stored fail their own request only.
    let prepared: Vec<Result<(CallId, String), StoreError>> = creates
        .iter()
        .map(|call| Ok((new_call_id(), to_json(&call.params)?)))
        .collect();
    let mut rows = Rows::default();
    for &i in &order {
        let (Ok((id, params)), call) = (&prepared[i], &creates[i]) else {
            continue;
        };
        rows.ids.push(id.as_uuid());
        rows.integrations.push(call.integration.clone());
        rows.endpoints.push(call.endpoint.clone());
        rows.params.push(params.clone());
        rows.keys.push(call.idempotency_key.clone());
        rows.next_run_at.push(call.run_at.map_or(now, truncate));
        rows.lease_owners
            .push(call.lease.as_ref().map(|lease| lease.owner.clone()));
        rows.lease_ends
            .push(call.lease.as_ref().map(|lease| lease_deadline(now, lease.duration)));
        rows.deadlines.push(call.deadline_at(now));
        rows.fingerprints.push(call.spec_fingerprint.clone());
        rows.connections.push(call.connection.clone());
    }
    let mut results: Vec<Result<Created, StoreError>> = prepared
        .into_iter()
        .map(|prepared| prepared.map(|(id, _)| Created { id, created: true }))
        .collect();
    // The conflict clause makes a concurrent create with the same key a
    // no-op instead of an error (which would abort the transaction, the
    // caller's own with `create_in_tx`); existing calls are read back below.
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {calls} (id, integration, endpoint, status, params, attempts, \
             idempotency_key, created_at, updated_at, next_run_at, lease_owner, lease_expires_at, \
             deadline_at, spec_fingerprint, connection) \
         SELECT n.id, n.integration, n.endpoint, 'pending', n.params::json, 0, n.key, $6, $6, n.next_run_at, \
             n.lease_owner, n.lease_expires_at, n.deadline_at, n.fingerprint, n.connection \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $7::timestamptz[], \
                     $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[]) \
             WITH ORDINALITY AS n(id, integration, endpoint, params, key, next_run_at, lease_owner, \
                                  lease_expires_at, deadline_at, fingerprint, connection, position) \
         ORDER BY n.position \
         ON CONFLICT (integration, idempotency_key) DO NOTHING \
         RETURNING id, next_run_at <= $6 AND lease_owner IS NULL AS due, \
             CASE WHEN lease_owner IS NULL THEN next_run_at END AS scheduled, pg_current_xact_id()::text AS xact"
    )))
    .bind(&rows.ids)
    .bind(&rows.integrations)
    .bind(&rows.endpoints)
    .bind(&rows.params)
    .bind(&rows.keys)
    .bind(now)
    .bind(&rows.next_run_at)
    .bind(&rows.lease_owners)
    .bind(&rows.lease_ends)
    .bind(&rows.deadlines)
    .bind(&rows.fingerprints)
    .bind(&rows.connections)
    .fetch_all(&mut *conn)
    .await?;
    let mut due = false;
    let mut earliest = None;
    let mut xact = None;
    let mut new_ids = std::collections::HashSet::with_capacity(inserted.len());
    for row in &inserted {
        new_ids.insert(row.try_get::<Uuid, _>("id")?);
        due |= row.try_get::<bool, _>("due")?;
        earliest = earlier(earliest, row.try_get("scheduled")?);
        xact = Some(row.try_get::<String, _>("xact")?);
    }
    let replayed: Vec<usize> = (0..creates.len())
        .filter(|&i| matches!(&results[i], Ok(created) if !new_ids.contains(&created.id.as_uuid())))
        .collect();
    if !replayed.is_empty() {
        let existing = existing_calls(calls, conn, replayed.iter().map(|&i| &creates[i])).await?;
        for i in replayed {
            let call = &creates[i];
            results[i] = match existing.get(&(call.integration.clone(), call.idempotency_key.clone())) {
                Some(existing) => check_same_request(existing, call).map(|()| Created {
                    id: existing.id,
                    created: false,
                }),
                None => Err(invisible_key(call)),
            };
        }
    }
    Ok(Wrote {
        results,
        due,
        earliest,
        xact,
    })
}

/// The columns of the calls to insert, one array each.
#[derive(Default)]
struct Rows {
    ids: Vec<Uuid>,
    integrations: Vec<String>,
    endpoints: Vec<String>,
    params: Vec<String>,
    keys: Vec<Option<String>>,
    /// The owner and end of a lease taken at creation ([`NewCall::leased_to`]).
    lease_owners: Vec<Option<String>>,
    lease_ends: Vec<Option<DateTime<Utc>>>,
    next_run_at: Vec<DateTime<Utc>>,
    deadlines: Vec<Option<DateTime<Utc>>>,
    fingerprints: Vec<Option<String>>,
    /// The connection each call is sent with ([`NewCall::connection`]).
    connections: Vec<Option<String>>,
}

/// The stored calls holding the idempotency keys of `creates`, by
/// (integration, key).
async fn existing_calls<'a>(
    calls: &str,
    conn: &mut PgConnection,
    creates: impl Iterator<Item = &'a NewCall>,
) -> Result<HashMap<(String, Option<String>), crate::store::CallRecord>, StoreError> {
    let (integrations, keys): (Vec<&str>, Vec<Option<&str>>) = creates
        .map(|call| (call.integration.as_str(), call.idempotency_key.as_deref()))
        .unzip();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {CALL_COLUMNS} FROM {calls} c \
         JOIN UNNEST($1::text[], $2::text[]) AS k(integration, key) \
             ON c.integration = k.integration AND c.idempotency_key = k.key"
    )))
    .bind(integrations)
    .bind(keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut existing = HashMap::with_capacity(rows.len());
    for row in &rows {
        let (_, call) = call_from_row(row)?;
        existing.insert((call.integration.clone(), call.idempotency_key.clone()), call);
    }
    Ok(existing)
}

/// A key that conflicted but whose call cannot be read: only possible
/// outside READ COMMITTED (the conflicting row is not in the snapshot).
fn invisible_key(call: &NewCall) -> StoreError {
    StoreError::new(
        ErrorKind::Backend,
        format_args!(
            "idempotency key `{}` of `{}` is taken by a call this transaction cannot \
             see; create calls in READ COMMITTED transactions",
            call.idempotency_key.as_deref().unwrap_or_default(),
            call.integration
        ),
    )
}

/// Ends the worker turns `turns` (each names its call by id): locks their
/// calls in id order (two batches never deadlock on each other), reads the
/// event keys they use, folds them in memory (see `store::folding`), and
/// writes all new events with one `INSERT` and all changed calls with one
/// `UPDATE`.
pub(super) async fn finish_turns(
    tables: &Tables,
    conn: &mut PgConnection,
    turns: &[Appends],
    now: DateTime<Utc>,
) -> Result<Wrote<Vec<AppendOutcome>>, StoreError> {
    let Tables {
        calls: calls_table,
        events,
        ..
    } = tables;
    let ids: Vec<Uuid> = requested_ids(turns).iter().map(CallId::as_uuid).collect();
    let locked = sqlx::query(AssertSqlSafe(format!(
        "SELECT pg_current_xact_id()::text AS xact, {CALL_COLUMNS} FROM {calls_table} c \
         WHERE c.id = ANY($1) ORDER BY c.id FOR UPDATE"
    )))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut calls = Calls::default();
    let mut xact = None;
    for row in &locked {
        calls.add(call_from_row(row)?);
        xact = Some(row.try_get::<String, _>("xact")?);
    }
    let keys = requested_keys(turns);
    let used = if keys.is_empty() || calls.by_id.is_empty() {
        Default::default()
    } else {
        let found: Vec<Uuid> = calls.by_id.keys().map(CallId::as_uuid).collect();
        let stored: Vec<(Uuid, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT call_id, event_key, id FROM {events} WHERE call_id = ANY($1) AND event_key = ANY($2)"
        )))
        .bind(&found)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?;
        stored_keys(
            stored
                .into_iter()
                .map(|(call_id, key, id)| (CallId::from_uuid(call_id), key, id)),
        )
    };
    let folded = fold_all(&mut calls, used, turns.to_vec(), now);
    let event_ids = insert_events(events, conn, &folded.inserts, now).await?;
    update_calls(calls_table, conn, &calls, now).await?;
    let due = calls.changed().any(|call| call.due_at(now));
    let earliest = calls.changed().filter_map(|call| call.scheduled_at()).min();
    Ok(Wrote {
        results: folded.resolve(&event_ids),
        due,
        earliest,
        xact,
    })
}

/// Inserts the batch's new events in order; returns their ids by (call, key).
async fn insert_events(
    events: &str,
    conn: &mut PgConnection,
    rows: &[NewRow],
    now: DateTime<Utc>,
) -> Result<HashMap<(CallId, String), i64>, StoreError> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let mut call_ids = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut applied = Vec::with_capacity(rows.len());
    for row in rows {
        call_ids.push(row.call_id.as_uuid());
        kinds.push(row.event.kind.as_str());
        keys.push(row.event.key.as_str());
        payloads.push(to_json(&row.event.payload)?);
        applied.push(row.applied);
    }
    // In array order, so each call's events get ascending ids: its log order.
    let inserted: Vec<(Uuid, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO {events} (call_id, kind, event_key, payload, applied, recorded_at) \
         SELECT n.call_id, n.kind, n.event_key, n.payload::json, n.applied, $6 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
             WITH ORDINALITY AS n(call_id, kind, event_key, payload, applied, position) \
         ORDER BY n.position \
         RETURNING call_id, event_key, id"
    )))
    .bind(&call_ids)
    .bind(&kinds)
    .bind(&keys)
    .bind(&payloads)
    .bind(&applied)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(inserted
        .into_iter()
        .map(|(call_id, key, id)| ((CallId::from_uuid(call_id), key), id))
        .collect())
}

/// One `UPDATE` for every call the batch changed, with the values folded in
/// memory (the batch holds their row locks since it read them).
async fn update_calls(
    calls_table: &str,
    conn: &mut PgConnection,
    calls: &Calls,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let changed: Vec<_> = calls.changed().collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(changed.len());
    let mut statuses = Vec::with_capacity(changed.len());
    let mut external_ids = Vec::with_capacity(changed.len());
    let mut responses = Vec::with_capacity(changed.len());
    let mut errors = Vec::with_capacity(changed.len());
    let mut error_kinds = Vec::with_capacity(changed.len());
    let mut completed_at = Vec::with_capacity(changed.len());
    let mut terminal = Vec::with_capacity(changed.len());
    let mut next_run_at = Vec::with_capacity(changed.len());
    let mut attempts = Vec::with_capacity(changed.len());
    let mut lease_owners = Vec::with_capacity(changed.len());
    let mut lease_expires_at = Vec::with_capacity(changed.len());
    for folded in changed {
        let call = &folded.call;
        let fields = folded.terminal.clone().unwrap_or_default();
        seqs.push(folded.seq);
        statuses.push(call.status.as_str());
        external_ids.push(call.external_id.as_deref());
        responses.push(fields.response_data);
        errors.push(fields.error);
        error_kinds.push(fields.error_kind);
        completed_at.push(call.completed_at);
        terminal.push(folded.terminal.is_some());
        next_run_at.push(call.next_run_at);
        attempts.push(i32::try_from(call.attempts).unwrap_or(i32::MAX));
        lease_owners.push(call.lease_owner.as_deref());
        lease_expires_at.push(call.lease_expires_at);
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {calls_table} AS c SET status = v.status, external_id = v.external_id, updated_at = $12, \
             response_data = COALESCE(v.response_data::json, c.response_data), \
             error = COALESCE(v.error, c.error), completed_at = v.completed_at, \
             notify_at = CASE WHEN v.terminal THEN $12 ELSE c.notify_at END, \
             next_run_at = v.next_run_at, attempts = v.attempts, \
             lease_owner = v.lease_owner, lease_expires_at = v.lease_expires_at, \
             error_kind = COALESCE(v.error_kind, c.error_kind) \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
                 $7::bool[], $8::timestamptz[], $9::int[], $10::text[], $11::timestamptz[], $13::text[]) \
             AS v(seq, status, external_id, response_data, error, completed_at, terminal, next_run_at, \
                 attempts, lease_owner, lease_expires_at, error_kind) \
         WHERE c.seq = v.seq"
    )))
    .bind(&seqs)
    .bind(&statuses)
    .bind(&external_ids)
    .bind(&responses)
    .bind(&errors)
    .bind(&completed_at)
    .bind(&terminal)
    .bind(&next_run_at)
    .bind(&attempts)
    .bind(&lease_owners)
    .bind(&lease_expires_at)
    .bind(now)
    .bind(&error_kinds)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The earlier of two optional due times.
pub(super) fn earlier(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Wakes the workers listening on `channel` when the transaction commits
/// (`NOTIFY` is transactional): once per batch, only when a call became due
/// (`payload` empty) or was scheduled sooner than the workers would wake
/// (`payload`: its due time, see `listen::Horizon`).
async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Notifies, in `conn`'s transaction, what workers must hear of a write
/// that left a call due now (`due`) or scheduled the earliest one at
/// `earliest`: at most one `NOTIFY`, and none for a call due no sooner than
/// the idle workers wake anyway.
pub(super) async fn notify_scheduled(
    conn: &mut PgConnection,
    (channel, horizon): (&str, &Horizon),
    due: bool,
    earliest: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    if due {
        return notify(conn, channel, "").await;
    }
    match earliest.filter(|at| horizon.must_announce(*at)) {
        Some(at) => notify(conn, channel, &announcement(at)).await,
        None => Ok(()),
    }
}
