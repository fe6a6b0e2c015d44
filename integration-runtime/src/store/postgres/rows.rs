//! Reading calls and events back from their rows.

use sqlx::postgres::PgRow;
use sqlx::Row;

use chrono::{DateTime, Utc};

use crate::store::connection_rows::ConnectionColumns;
use crate::store::{from_json, stored_count, CallId, CallRow, EventPayload, EventRecord, StoreError};

/// The columns of a call, read through the alias `c`.
pub(super) const CALL_COLUMNS: &str = "c.seq, c.id, c.integration, c.endpoint, c.status, c.external_id, \
     c.params::text AS params, c.response_data::text AS response_data, c.error, c.attempts, \
     c.idempotency_key, c.created_at, c.updated_at, c.completed_at, c.next_run_at, \
     c.lease_owner, c.lease_expires_at, c.notification_attempts, c.notification_error, \
     c.error_kind, c.deadline_at, c.spec_fingerprint, c.connection";

/// A call row, columns as in [`CALL_COLUMNS`].
impl CallRow for PgRow {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn count(&self, column: &str) -> Result<u32, StoreError> {
        stored_count(column, self.try_get::<i32, _>(column)?.into())
    }

    fn id(&self) -> Result<CallId, StoreError> {
        Ok(CallId::from_uuid(self.try_get("id")?))
    }

    fn seq(&self) -> Result<i64, StoreError> {
        Ok(self.try_get("seq")?)
    }
}

/// A connection row: rate budgets as `double precision` and `bigint`.
impl ConnectionColumns for PgRow {
    fn real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// The event of a row of [`Store::get_with_events`]'s join, if the row has one.
pub(super) fn event_from_row(row: &PgRow, call_id: CallId) -> Result<Option<EventRecord>, StoreError> {
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
