//! Reading stored rows back into calls and events.

use super::*;
use crate::store::connection_rows::ConnectionColumns;

pub(super) const CALL_COLUMNS: &str = "seq, id, integration, endpoint, status, external_id, params, \
     response_data, error, attempts, idempotency_key, created_at, updated_at, completed_at, \
     next_run_at, lease_owner, lease_expires_at, notification_attempts, notification_error, \
     error_kind, deadline_at, spec_fingerprint, connection";

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

/// A call row, columns as in [`CALL_COLUMNS`]: ids as text, timestamps as
/// milliseconds since the epoch.
impl CallRow for SqliteRow {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        timestamp(column, self.try_get(column)?)
    }

    fn count(&self, column: &str) -> Result<u32, StoreError> {
        stored_count(column, self.try_get(column)?)
    }

    fn id(&self) -> Result<CallId, StoreError> {
        parse_id(&self.try_get::<String, _>("id")?)
    }

    fn seq(&self) -> Result<i64, StoreError> {
        Ok(self.try_get("seq")?)
    }
}

/// The same, read by the writer.
impl CallRow for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }

    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        timestamp(column, self.get(column)?)
    }

    fn count(&self, column: &str) -> Result<u32, StoreError> {
        stored_count(column, self.get(column)?)
    }

    fn id(&self) -> Result<CallId, StoreError> {
        parse_id(&self.get::<_, String>("id")?)
    }

    fn seq(&self) -> Result<i64, StoreError> {
        Ok(self.get("seq")?)
    }
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

/// A connection row read from the pool: rate budgets as `REAL` and `INTEGER`.
impl ConnectionColumns for SqliteRow {
    fn real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// The same, read by the writer.
impl ConnectionColumns for rusqlite::Row<'_> {
    fn real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.get(column)?)
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
}
