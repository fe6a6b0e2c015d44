//! Reading calls and events back from their rows.

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::store::{from_json, CallId, CallRecord, EventPayload, EventRecord, StoreError};

/// The columns of a call, read through the alias `c`.
pub(super) const CALL_COLUMNS: &str = "c.seq, c.id, c.integration, c.endpoint, c.status, c.external_id, \
     c.params::text AS params, c.response_data::text AS response_data, c.error, c.attempts, \
     c.idempotency_key, c.created_at, c.updated_at, c.completed_at, c.next_run_at, \
     c.lease_owner, c.lease_expires_at, c.notification_attempts, c.notification_error";

/// A call row (columns as in [`CALL_COLUMNS`]), with its creation sequence.
pub(super) fn call_from_row(row: &PgRow) -> Result<(i64, CallRecord), StoreError> {
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let response_data: Option<String> = row.try_get("response_data")?;
    let call = CallRecord {
        id: CallId::from_uuid(row.try_get("id")?),
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
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        next_run_at: row.try_get("next_run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        notification_attempts: count(row, "notification_attempts")?,
        notification_error: row.try_get("notification_error")?,
    };
    Ok((row.try_get("seq")?, call))
}

/// A stored counter, which never goes below zero.
fn count(row: &PgRow, column: &str) -> Result<u32, StoreError> {
    let stored: i32 = row.try_get(column)?;
    u32::try_from(stored).map_err(|_| StoreError::corrupt(format_args!("stored `{column}` {stored}")))
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
