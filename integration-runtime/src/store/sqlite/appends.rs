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

use super::{call_from_row, truncate, CALL_COLUMNS};
use crate::call::CallId;
use crate::lifecycle::{CallStatus, Transition};
use crate::store::{
    now, plan_append, terminal_fields, to_json, AppendOutcome, CallRecord, NewEvent, StoreError, Target,
};

/// Events for the call `target` names and, with a `turn`, the end of that
/// worker's turn (see `Store::finish_turn`).
pub(super) struct Appends {
    pub(super) target: OwnedTarget,
    pub(super) events: Vec<NewEvent>,
    pub(super) turn: Option<Turn>,
}

/// A worker's turn that ends with the appends: lease-checked first, then
/// rescheduled as `Store::reschedule` does.
pub(super) struct Turn {
    pub(super) worker: String,
    pub(super) next_run_at: Option<DateTime<Utc>>,
}

/// Which call events are for, owned: requests cross into the writer task.
pub(super) enum OwnedTarget {
    Id(CallId),
    External { integration: String, external_id: String },
}

impl OwnedTarget {
    fn borrow(&self) -> Target<'_> {
        match self {
            OwnedTarget::Id(id) => Target::Id(*id),
            OwnedTarget::External {
                integration,
                external_id,
            } => Target::External {
                integration,
                external_id,
            },
        }
    }
}

/// Each request's outcomes (or why it wrote nothing), in request order.
/// Errs when a statement failed: then the whole batch must roll back.
pub(super) async fn append_batch(
    conn: &mut SqliteConnection,
    requests: Vec<Appends>,
) -> Result<Vec<Result<Vec<AppendOutcome>, StoreError>>, StoreError> {
    let mut calls = Calls::load(conn, &requests).await?;
    let mut used = used_keys(conn, &calls, &requests).await?;
    let now = now();
    let mut inserts = Vec::new();
    let folded: Vec<_> = requests
        .into_iter()
        .map(|request| fold(&mut calls, &mut used, &mut inserts, request, now))
        .collect();
    let ids = insert_events(conn, &inserts, now).await?;
    calls.write_changed(conn, now).await?;
    Ok(folded
        .into_iter()
        .map(|pending| Ok(pending?.into_iter().map(|outcome| outcome.resolve(&ids)).collect()))
        .collect())
}

/// A call as the batch has folded it so far.
#[derive(Clone)]
struct Folded {
    seq: i64,
    call: CallRecord,
    /// Set when the batch changed the row.
    changed: bool,
    /// Set by the event that made the call terminal: (response_data, error).
    terminal: Option<(Option<String>, Option<String>)>,
}

/// Every call the batch touches, by id and by external id.
struct Calls {
    by_id: HashMap<CallId, Folded>,
    by_external: HashMap<(String, String), CallId>,
}

impl Calls {
    /// Reads the calls the requests name, and those owning the external ids
    /// their events would set (to report conflicts before writing).
    async fn load(conn: &mut SqliteConnection, requests: &[Appends]) -> Result<Self, StoreError> {
        let mut calls = Calls {
            by_id: HashMap::new(),
            by_external: HashMap::new(),
        };
        let ids: Vec<String> = requests
            .iter()
            .filter_map(|request| match &request.target {
                OwnedTarget::Id(id) => Some(id.to_string()),
                OwnedTarget::External { .. } => None,
            })
            .collect();
        let mut pairs: Vec<(String, String)> = requests
            .iter()
            .filter_map(|request| match &request.target {
                OwnedTarget::Id(_) => None,
                OwnedTarget::External {
                    integration,
                    external_id,
                } => Some((integration.clone(), external_id.clone())),
            })
            .collect();
        calls.read_ids(conn, &ids).await?;
        // External ids the events would set, on the calls found so far.
        for request in requests {
            let integration = match &request.target {
                OwnedTarget::Id(id) => calls.by_id.get(id).map(|folded| folded.call.integration.clone()),
                OwnedTarget::External { integration, .. } => Some(integration.clone()),
            };
            let Some(integration) = integration else { continue };
            for event in &request.events {
                if let Some(external_id) = &event.payload.external_id {
                    pairs.push((integration.clone(), external_id.clone()));
                }
            }
        }
        calls.read_external(conn, &pairs).await?;
        Ok(calls)
    }

    async fn read_ids(&mut self, conn: &mut SqliteConnection, ids: &[String]) -> Result<(), StoreError> {
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
            self.add(call_from_row(&row)?);
        }
        Ok(())
    }

    async fn read_external(
        &mut self,
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
                self.add(call_from_row(&row)?);
            }
        }
        Ok(())
    }

    fn add(&mut self, (seq, call): (i64, CallRecord)) {
        if let Some(external_id) = &call.external_id {
            self.by_external
                .insert((call.integration.clone(), external_id.clone()), call.id);
        }
        self.by_id.entry(call.id).or_insert(Folded {
            seq,
            call,
            changed: false,
            terminal: None,
        });
    }

    fn find(&self, target: &OwnedTarget) -> Option<CallId> {
        match target {
            OwnedTarget::Id(id) => self.by_id.contains_key(id).then_some(*id),
            OwnedTarget::External {
                integration,
                external_id,
            } => self
                .by_external
                .get(&(integration.clone(), external_id.clone()))
                .copied(),
        }
    }

    /// One `UPDATE` for every call the batch changed, with the values folded
    /// in memory (the batch holds the write lock since it read them).
    async fn write_changed(&self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<(), StoreError> {
        const COLUMNS: usize = 12;
        let changed: Vec<&Folded> = self.by_id.values().filter(|folded| folded.changed).collect();
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

/// The event keys used per call: `Some(id)` for an event stored before the
/// batch, `None` for one the batch inserts (its id comes with the insert).
type UsedKeys = HashMap<(CallId, String), Option<i64>>;

/// The ids of the events already stored under the keys the requests use.
async fn used_keys(conn: &mut SqliteConnection, calls: &Calls, requests: &[Appends]) -> Result<UsedKeys, StoreError> {
    let mut keys: Vec<&str> = requests
        .iter()
        .flat_map(|request| request.events.iter().map(|event| event.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
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
    stored_keys(select.fetch_all(&mut *conn).await?)
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
    stored_keys(rows)
}

fn stored_keys(rows: Vec<(String, String, i64)>) -> Result<UsedKeys, StoreError> {
    Ok(collect_keys(rows)?
        .into_iter()
        .map(|(key, id)| (key, Some(id)))
        .collect())
}

fn collect_keys(rows: Vec<(String, String, i64)>) -> Result<HashMap<(CallId, String), i64>, StoreError> {
    rows.into_iter()
        .map(|(call_id, key, id)| Ok(((super::parse_id(&call_id)?, key), id)))
        .collect()
}

/// An event to insert.
struct NewRow {
    call_id: CallId,
    event: NewEvent,
    applied: bool,
}

/// An outcome whose event id is known once the insert ran.
enum Pending {
    Known(AppendOutcome),
    Inserted {
        call_id: CallId,
        key: String,
        transition: Transition,
    },
    /// A key this batch inserts already, for an earlier request or event.
    DuplicateOfNew {
        call_id: CallId,
        key: String,
        status: CallStatus,
    },
}

impl Pending {
    fn resolve(self, ids: &HashMap<(CallId, String), i64>) -> AppendOutcome {
        match self {
            Pending::Known(outcome) => outcome,
            Pending::Inserted {
                call_id,
                key,
                transition,
            } => AppendOutcome::recorded(call_id, inserted_id(ids, call_id, key), transition),
            Pending::DuplicateOfNew { call_id, key, status } => AppendOutcome::Duplicate {
                call_id,
                event_id: inserted_id(ids, call_id, key),
                status,
            },
        }
    }
}

/// Every inserted event's id comes back from the insert's `RETURNING`.
fn inserted_id(ids: &HashMap<(CallId, String), i64>, call_id: CallId, key: String) -> i64 {
    ids.get(&(call_id, key))
        .copied()
        .expect("every inserted event returns its id")
}

/// Folds one request into the batch's state; on an error, leaves the
/// state as it was.
fn fold(
    calls: &mut Calls,
    used: &mut UsedKeys,
    inserts: &mut Vec<NewRow>,
    request: Appends,
    now: DateTime<Utc>,
) -> Result<Vec<Pending>, StoreError> {
    let Some(id) = calls.find(&request.target) else {
        return Err(StoreError::not_found(request.target.borrow()));
    };
    // A copy: kept only when the whole request folds.
    let mut folded = calls.by_id[&id].clone();
    let call = &mut folded.call;
    if let Some(turn) = &request.turn {
        if call.lease_owner.as_deref() != Some(turn.worker.as_str()) {
            return Err(StoreError::lease_lost(id, &turn.worker));
        }
    }
    let mut rows = Vec::new();
    let mut keys_added: Vec<String> = Vec::new();
    let mut new_external = None;
    let mut outcomes = Vec::with_capacity(request.events.len());
    for event in request.events {
        let stored = used.get(&(id, event.key.clone())).copied();
        if let Some(Some(event_id)) = stored {
            outcomes.push(Pending::Known(AppendOutcome::Duplicate {
                call_id: id,
                event_id,
                status: call.status,
            }));
            continue;
        }
        if stored.is_some() || keys_added.contains(&event.key) {
            outcomes.push(Pending::DuplicateOfNew {
                call_id: id,
                key: event.key,
                status: call.status,
            });
            continue;
        }
        let plan = plan_append(id, call.status, call.external_id.as_deref(), &event)?;
        if let Some(external_id) = plan.set_external_id {
            let owner = calls.by_external.get(&(call.integration.clone(), external_id.clone()));
            if owner.is_some_and(|owner| *owner != id) {
                return Err(StoreError::conflict(format_args!(
                    "external id `{external_id}` of `{}` already belongs to another call",
                    call.integration
                )));
            }
            call.external_id = Some(external_id.clone());
            new_external = Some(external_id);
            folded.changed = true;
        }
        if let Transition::Moved(_, to) = plan.transition {
            call.status = to;
            folded.changed = true;
            if to.is_terminal() {
                folded.terminal = Some(terminal_fields(to, &event)?);
                call.completed_at = Some(now);
                call.next_run_at = None;
            }
        }
        keys_added.push(event.key.clone());
        outcomes.push(Pending::Inserted {
            call_id: id,
            key: event.key.clone(),
            transition: plan.transition,
        });
        rows.push(NewRow {
            call_id: id,
            applied: plan.transition.is_moved(),
            event,
        });
    }
    if let Some(turn) = request.turn {
        call.next_run_at = if call.status.is_terminal() {
            None
        } else {
            turn.next_run_at.map(truncate)
        };
        call.attempts = call.attempts.saturating_add(1);
        call.lease_owner = None;
        call.lease_expires_at = None;
        folded.changed = true;
    }

    // Nothing failed: the request's changes join the batch.
    if let Some(external_id) = new_external {
        calls
            .by_external
            .insert((folded.call.integration.clone(), external_id), id);
    }
    for key in keys_added {
        used.insert((id, key), None);
    }
    inserts.extend(rows);
    calls.by_id.insert(id, folded);
    Ok(outcomes)
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
        ids.extend(collect_keys(insert.fetch_all(&mut *conn).await?)?);
    }
    Ok(ids)
}
