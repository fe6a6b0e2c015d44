//! Folding a batch of appends in memory, for the SQL stores' batch writers.
//!
//! A batch writer reads every call its append requests touch, and the event
//! keys already stored for them, with a few statements; [`fold_all`] then
//! applies each request's events through the state machine (and, for a
//! worker's turn, the reschedule) on the calls' in-memory state, in queue
//! order, so the batch behaves exactly as the same requests run one after
//! the other. The writer then writes all new events with one `INSERT` and
//! all changed calls with one `UPDATE`.
//!
//! A request that fails (unknown call, lease lost, an external id that
//! belongs to another call) is undone in memory before anything is written,
//! so it leaves no trace and its batch-mates go on. These outcomes are the
//! requests' own results, not failures of the batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    plan_append, terminal_fields, truncate, AppendOutcome, CallId, CallRecord, NewEvent, StoreError, Target, Terminal,
};
use crate::lifecycle::{CallStatus, Transition};

/// Events for the call `target` names and, with a `turn`, the end of that
/// worker's turn (see `Store::finish_turn`).
#[derive(Clone)]
pub(crate) struct Appends {
    pub(crate) target: OwnedTarget,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) turn: Option<Turn>,
}

/// A worker's turn that ends with the appends: lease-checked first, then
/// rescheduled as `Store::reschedule` does.
#[derive(Clone)]
pub(crate) struct Turn {
    pub(crate) worker: String,
    pub(crate) next_run_at: Option<DateTime<Utc>>,
}

/// Which call events are for, owned: requests cross into the writer task.
#[derive(Clone)]
pub(crate) enum OwnedTarget {
    Id(CallId),
    // Only the SQLite writer takes appends by external id (webhooks).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    External {
        integration: String,
        external_id: String,
    },
}

impl OwnedTarget {
    pub(crate) fn borrow(&self) -> Target<'_> {
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

/// A call as the batch has folded it so far.
#[derive(Clone)]
pub(crate) struct Folded {
    pub(crate) seq: i64,
    pub(crate) call: CallRecord,
    /// Set when the batch changed the row.
    pub(crate) changed: bool,
    /// Set by the event that made the call terminal.
    pub(crate) terminal: Option<Terminal>,
}

impl Folded {
    /// Whether the batch left the call due now: released, not terminal,
    /// scheduled no later than `now` (a worker waiting for work can take it).
    /// Only the PostgreSQL writer notifies other processes.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn due_at(&self, now: DateTime<Utc>) -> bool {
        self.scheduled_at().is_some_and(|at| at <= now)
    }

    /// When the batch left the call due, if it changed it, released it and
    /// left it scheduled: a call due later is announced to idle workers.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn scheduled_at(&self) -> Option<DateTime<Utc>> {
        let call = &self.call;
        let scheduled = self.changed && call.lease_owner.is_none() && !call.status.is_terminal();
        call.next_run_at.filter(|_| scheduled)
    }
}

/// Every call the batch touches, by id and by external id.
#[derive(Default)]
pub(crate) struct Calls {
    pub(crate) by_id: HashMap<CallId, Folded>,
    by_external: HashMap<(String, String), CallId>,
}

impl Calls {
    /// Adds a call read from its row (`seq`, record); a call read twice
    /// keeps its first reading.
    pub(crate) fn add(&mut self, (seq, call): (i64, CallRecord)) {
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

    /// The calls the batch changed, to write back.
    pub(crate) fn changed(&self) -> impl Iterator<Item = &Folded> {
        self.by_id.values().filter(|folded| folded.changed)
    }
}

/// The calls `requests` name by id.
pub(crate) fn requested_ids(requests: &[Appends]) -> Vec<CallId> {
    requests
        .iter()
        .filter_map(|request| match &request.target {
            OwnedTarget::Id(id) => Some(*id),
            OwnedTarget::External { .. } => None,
        })
        .collect()
}

/// The `(integration, external id)` pairs to read: the calls `requests`
/// name by external id, and (on the calls found so far) the owners of the
/// external ids their events would set, to report conflicts before writing.
/// Only the SQLite writer takes appends by external id.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn external_ids_to_read(calls: &Calls, requests: &[Appends]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for request in requests {
        let integration = match &request.target {
            OwnedTarget::Id(id) => calls.by_id.get(id).map(|folded| folded.call.integration.clone()),
            OwnedTarget::External {
                integration,
                external_id,
            } => {
                pairs.push((integration.clone(), external_id.clone()));
                Some(integration.clone())
            }
        };
        let Some(integration) = integration else { continue };
        for event in &request.events {
            if let Some(external_id) = &event.payload.external_id {
                pairs.push((integration.clone(), external_id.clone()));
            }
        }
    }
    pairs
}

/// The event keys the requests use, sorted, without repeats.
pub(crate) fn requested_keys(requests: &[Appends]) -> Vec<&str> {
    let mut keys: Vec<&str> = requests
        .iter()
        .flat_map(|request| request.events.iter().map(|event| event.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The event keys used per call: `Some(id)` for an event stored before the
/// batch, `None` for one the batch inserts (its id comes with the insert).
pub(crate) type UsedKeys = HashMap<(CallId, String), Option<i64>>;

/// The stored events `(call, key, id)` as [`UsedKeys`].
pub(crate) fn stored_keys(rows: impl IntoIterator<Item = (CallId, String, i64)>) -> UsedKeys {
    rows.into_iter()
        .map(|(call_id, key, id)| ((call_id, key), Some(id)))
        .collect()
}

/// An event to insert.
pub(crate) struct NewRow {
    pub(crate) call_id: CallId,
    pub(crate) event: NewEvent,
    pub(crate) applied: bool,
}

/// An outcome whose event id is known once the insert ran.
pub(crate) enum Pending {
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

/// What folding a batch gives: each request's outcomes (waiting for the
/// inserted events' ids) or its error, and the events to insert.
pub(crate) struct FoldedBatch {
    pub(crate) results: Vec<Result<Vec<Pending>, StoreError>>,
    pub(crate) inserts: Vec<NewRow>,
}

impl FoldedBatch {
    /// Each request's outcomes, once the inserted events' ids are known.
    pub(crate) fn resolve(self, ids: &HashMap<(CallId, String), i64>) -> Vec<Result<Vec<AppendOutcome>, StoreError>> {
        self.results
            .into_iter()
            .map(|pending| Ok(pending?.into_iter().map(|outcome| outcome.resolve(ids)).collect()))
            .collect()
    }
}

/// Folds every request, in order, into `calls` (see the module docs).
pub(crate) fn fold_all(
    calls: &mut Calls,
    mut used: UsedKeys,
    requests: Vec<Appends>,
    now: DateTime<Utc>,
) -> FoldedBatch {
    let mut inserts = Vec::new();
    let results = requests
        .into_iter()
        .map(|request| fold(calls, &mut used, &mut inserts, request, now))
        .collect();
    FoldedBatch { results, inserts }
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
