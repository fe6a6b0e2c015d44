//! Reading stored rows back into calls and events.

use super::*;

pub(super) const CALL_COLUMNS: &str = "seq, id, integration, endpoint, status, external_id, params, \
     response_data, error, attempts, idempotency_key, created_at, updated_at, completed_at, \
     next_run_at, lease_owner, lease_expires_at, notification_attempts, notification_error";

pub(super) fn timestamp(column: &str, millis: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    millis
        .map(|ms| {
            from_millis(ms).ok_or_else(|| StoreError::corrupt(format_args!("stored `{column}` is out of range: {ms}")))
        })
        .transpose()
}

pub(super) fn required_timestamp(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    timestamp(column, Some(row.try_get(column)?)).map(|t| t.expect("some in, some out"))
}

pub(super) fn parse_id(text: &str) -> Result<CallId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::corrupt(format_args!("stored call id `{text}` is not a UUID")))
}

/// A call row, with its creation sequence.
pub(super) fn call_from_row(row: &SqliteRow) -> Result<(i64, CallRecord), StoreError> {
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let response_data: Option<String> = row.try_get("response_data")?;
    let call = CallRecord {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
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
        created_at: required_timestamp(row, "created_at")?,
        updated_at: required_timestamp(row, "updated_at")?,
        completed_at: timestamp("completed_at", row.try_get("completed_at")?)?,
        next_run_at: timestamp("next_run_at", row.try_get("next_run_at")?)?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: timestamp("lease_expires_at", row.try_get("lease_expires_at")?)?,
        notification_attempts: count(row, "notification_attempts")?,
        notification_error: row.try_get("notification_error")?,
    };
    Ok((row.try_get("seq")?, call))
}

/// A stored counter, which never goes below zero.
pub(super) fn count(row: &SqliteRow, column: &str) -> Result<u32, StoreError> {
    let stored: i64 = row.try_get(column)?;
    u32::try_from(stored).map_err(|_| StoreError::corrupt(format_args!("stored `{column}` {stored}")))
}

pub(super) fn event_from_row(row: &SqliteRow) -> Result<EventRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let payload: String = row.try_get("payload")?;
    Ok(EventRecord {
        id: row.try_get("id")?,
        call_id: parse_id(&row.try_get::<String, _>("call_id")?)?,
        kind: kind.parse().map_err(StoreError::corrupt)?,
        key: row.try_get("event_key")?,
        payload: from_json::<EventPayload>("payload", &payload)?,
        applied: row.try_get("applied")?,
        recorded_at: required_timestamp(row, "recorded_at")?,
    })
}
