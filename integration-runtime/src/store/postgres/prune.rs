//! [`Store::prune`](crate::Store::prune) in PostgreSQL: one statement, so
//! one round trip and one transaction per batch.

// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name only; values are always bound.
use sqlx::AssertSqlSafe;

use super::PostgresStore;
use crate::store::{PruneRule, StoreError};

impl PostgresStore {
    /// Selects the batch (per status, a range of
    /// `integration_calls_prunable` read in order and stopped at the limit,
    /// then the oldest of those), deletes their events, then the calls.
    ///
    /// `FOR UPDATE SKIP LOCKED` locks the batch and skips calls an append
    /// holds at that moment (a late webhook on a finished call): the
    /// append's event would otherwise reference a deleted call. A locked
    /// row is re-checked, so a call whose state changed meanwhile is not
    /// deleted. The events' foreign key is checked at the end of the
    /// statement, after both deletes.
    pub(super) async fn prune_calls(&self, rule: &PruneRule, limit: u32) -> Result<u64, StoreError> {
        if limit == 0 || rule.statuses().is_empty() {
            return Ok(0);
        }
        let (calls, events) = (&self.calls, &self.events);
        let statuses: Vec<&str> = rule.statuses().iter().map(|status| status.as_str()).collect();
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "WITH doomed AS ( \
                 SELECT c.seq, c.id FROM unnest($1::text[]) AS s (status) \
                 CROSS JOIN LATERAL ( \
                     SELECT seq, id, completed_at FROM {calls} \
                     WHERE status = s.status AND completed_at < $2 \
                       AND completed_at IS NOT NULL AND notify_at IS NULL \
                     ORDER BY completed_at, seq LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) AS c \
                 ORDER BY c.completed_at, c.seq LIMIT $3), \
             gone AS (DELETE FROM {events} WHERE call_id IN (SELECT id FROM doomed)) \
             DELETE FROM {calls} WHERE seq IN (SELECT seq FROM doomed)"
        )))
        .bind(statuses)
        .bind(rule.completed_before())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}
