//! What every backend does the same way: folding an append, the stored
//! form of values, replaying idempotency keys, paging, and time to the
//! millisecond.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CallId, CallRecord, Cursor, NewCall, NewEvent, NotificationOutcome, Page, StoreError};
use crate::lifecycle::{CallStatus, Transition};

/// Which call an event is for: the call's own id, or the id the provider
/// knows it by.
#[derive(Clone, Copy)]
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) enum Target<'a> {
    Id(CallId),
    External { integration: &'a str, external_id: &'a str },
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Id(id) => write!(f, "call {id}"),
            Target::External {
                integration,
                external_id,
            } => write!(f, "call of `{integration}` with external id `{external_id}`"),
        }
    }
}

/// One row of the calls table as a SQL store's driver reads it: the columns
/// each database stores its own way (ids, timestamps, counters), and text.
/// [`call_from_row`] maps the columns to a [`CallRecord`] once for all
/// stores.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) trait CallRow {
    /// A text column, `None` when null.
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A timestamp column, `None` when null.
    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// A counter column (never negative).
    fn count(&self, column: &str) -> Result<u32, StoreError>;
    /// The call's id.
    fn id(&self) -> Result<CallId, StoreError>;
    /// The row's creation sequence (the order of [`Page`]s).
    fn seq(&self) -> Result<i64, StoreError>;
}

/// A stored counter as a `u32`; a negative or too large one is corrupt.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn stored_count(column: &str, stored: i64) -> Result<u32, StoreError> {
    u32::try_from(stored).map_err(|_| StoreError::corrupt(format_args!("stored `{column}` {stored}")))
}

/// A call row (every column of the calls table), with its creation sequence.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn call_from_row(row: &impl CallRow) -> Result<(i64, CallRecord), StoreError> {
    let text = |column: &str| {
        row.text(column)?
            .ok_or_else(|| StoreError::corrupt(format_args!("stored `{column}` is null")))
    };
    let time = |column: &str| {
        row.time(column)?
            .ok_or_else(|| StoreError::corrupt(format_args!("stored `{column}` is null")))
    };
    let call = CallRecord {
        id: row.id()?,
        integration: text("integration")?,
        endpoint: text("endpoint")?,
        status: text("status")?.parse().map_err(StoreError::corrupt)?,
        external_id: row.text("external_id")?,
        params: from_json("params", &text("params")?)?,
        response_data: row
            .text("response_data")?
            .map(|stored| from_json("response_data", &stored))
            .transpose()?,
        error: row.text("error")?,
        error_kind: row
            .text("error_kind")?
            .map(|kind| kind.parse().map_err(StoreError::corrupt))
            .transpose()?,
        attempts: row.count("attempts")?,
        idempotency_key: row.text("idempotency_key")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        completed_at: row.time("completed_at")?,
        next_run_at: row.time("next_run_at")?,
        lease_owner: row.text("lease_owner")?,
        lease_expires_at: row.time("lease_expires_at")?,
        notification_attempts: row.count("notification_attempts")?,
        notification_error: row.text("notification_error")?,
        deadline_at: row.time("deadline_at")?,
        spec_fingerprint: row.text("spec_fingerprint")?,
        connection: row.text("connection")?,
    };
    Ok((row.seq()?, call))
}

/// The counts of `SELECT status, count(*) ... GROUP BY status`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn status_counts(rows: Vec<(String, i64)>) -> Result<super::StatusCounts, StoreError> {
    let mut counts = super::StatusCounts::default();
    for (status, count) in rows {
        let status: CallStatus = status.parse().map_err(StoreError::corrupt)?;
        counts.add(status, u64::try_from(count).unwrap_or_default());
    }
    Ok(counts)
}

/// What appending an event will do to a call, decided from its current
/// status and external id; shared so every backend folds the same way.
pub(crate) struct AppendPlan {
    pub(crate) transition: Transition,
    /// The external id to set on the call (it has none yet).
    pub(crate) set_external_id: Option<String>,
}

pub(crate) fn plan_append(
    id: CallId,
    status: CallStatus,
    external_id: Option<&str>,
    event: &NewEvent,
) -> Result<AppendPlan, StoreError> {
    let set_external_id = match (external_id, event.payload.external_id.as_deref()) {
        (Some(current), Some(new)) if current != new => {
            return Err(StoreError::conflict(format_args!(
                "call {id} has external id `{current}`, but a `{}` event says `{new}`",
                event.kind
            )))
        }
        (None, Some(new)) => Some(new.to_owned()),
        _ => None,
    };
    Ok(AppendPlan {
        transition: status.transition(event.kind),
        set_external_id,
    })
}

/// The fields the event that moves a call to `to` writes, as stored text:
/// `(response_data, error)`. Only the moving event writes them, so a call's
/// terminal fields are written exactly once.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn terminal_fields(to: CallStatus, event: &NewEvent) -> Result<Terminal, StoreError> {
    Ok(match to {
        CallStatus::Completed => Terminal {
            response_data: event.payload.result.as_ref().map(to_json).transpose()?,
            ..Terminal::default()
        },
        CallStatus::Failed => Terminal {
            error: event.payload.error.clone(),
            error_kind: event.payload.error_kind.map(|kind| kind.as_str().to_owned()),
            ..Terminal::default()
        },
        CallStatus::Pending | CallStatus::Processing => Terminal::default(),
    })
}

/// The columns the event that makes a call terminal writes, as stored:
/// the result as JSON text, or the error and its kind.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Terminal {
    pub(crate) response_data: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_kind: Option<String>,
}

/// What [`Store::finish_notification`] writes for `outcome`, the same in
/// every backend: the next due time (`None`: cleared for good), whether to
/// count a failed attempt, and the dead letter's error.
pub(crate) fn notification_columns(outcome: NotificationOutcome) -> (Option<DateTime<Utc>>, bool, Option<String>) {
    match outcome {
        NotificationOutcome::Delivered => (None, false, None),
        NotificationOutcome::Retry(at) => (Some(truncate(at)), true, None),
        NotificationOutcome::DeadLetter(error) => (None, true, Some(error)),
    }
}

/// A value as the JSON text the SQL stores keep.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt(format_args!("value cannot be stored as JSON: {e}")))
}

/// A stored JSON column read back.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(format_args!("stored `{column}` is not valid JSON: {e}")))
}

/// A fresh call id.
pub(crate) fn new_call_id() -> CallId {
    CallId::new()
}

/// Now, to the millisecond (what every backend stores).
/// The system clock's time, to the millisecond: for what is not a call's
/// time (when a migration ran) and for checks run on the system clock. A
/// call's times come from the store's clock (`SharedClock`), which a
/// runtime may replace.
#[cfg(any(feature = "sqlite", feature = "postgres", test, feature = "testing"))]
pub(crate) fn system_now() -> DateTime<Utc> {
    truncate(Utc::now())
}

pub(crate) fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    from_millis(at.timestamp_millis()).unwrap_or(at)
}

pub(crate) fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// `now + lease`, saturating instead of overflowing on absurd leases.
pub(crate) fn lease_deadline(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    chrono::Duration::try_milliseconds(millis)
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Splits `limit + 1` fetched rows into a page and its continuation.
pub(crate) fn page_of(mut rows: Vec<(i64, CallRecord)>, limit: usize) -> Page {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|(seq, _)| Cursor(*seq))
    } else {
        None
    };
    Page {
        calls: rows.into_iter().map(|(_, call)| call).collect(),
        next,
    }
}

/// An idempotency key may only be replayed for the same request.
pub(crate) fn check_same_request(existing: &CallRecord, call: &NewCall) -> Result<(), StoreError> {
    // Another connection is another customer's request, however alike.
    if existing.endpoint == call.endpoint && existing.params == call.params && existing.connection == call.connection {
        Ok(())
    } else {
        Err(StoreError::conflict(format_args!(
            "idempotency key `{}` of `{}` was used for call {} with another request",
            call.idempotency_key.as_deref().unwrap_or_default(),
            call.integration,
            existing.id
        )))
    }
}

/// After a schema upgrade: the terminal call `id` (params `{"a": 1}`, two
/// attempts, hooks due) kept everything, and the columns the upgrade added
/// work. Shared by the SQLite and PostgreSQL migration tests.
#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
pub(crate) async fn assert_upgraded_call_kept(store: &dyn super::Store, id: CallId) {
    let call = store.get(id).await.unwrap().expect("call kept");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.params, serde_json::json!({"a": 1}));
    assert_eq!(call.attempts, 2);
    assert_eq!(
        call.connection, None,
        "calls from before connections use the default one"
    );
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
}
