//! [`Store::prune`] in SQLite: one write through the writer, so a batch
//! holds the file's write lock only for the calls it deletes.

use super::*;
use crate::store::oldest;

/// The oldest prunable calls of one status: a range of
/// `integration_calls_prunable`, read in index order and stopped at the
/// limit. The two `IS` terms repeat the index's condition, so that SQLite
/// sees that the index holds every row the query may return.
const PRUNABLE: &str = "SELECT seq, id, completed_at FROM integration_calls \
     WHERE status = ?1 AND completed_at < ?2 \
       AND completed_at IS NOT NULL AND notify_at IS NULL \
     ORDER BY completed_at, seq LIMIT ?3";

/// The ids and seqs are bound as one JSON array each: one cached statement
/// whatever the batch's size, and no limit on bound variables.
const DELETE_EVENTS: &str = "DELETE FROM integration_call_events WHERE call_id IN (SELECT value FROM json_each(?1))";
const DELETE_CALLS: &str = "DELETE FROM integration_calls WHERE seq IN (SELECT value FROM json_each(?1))";

impl SqliteStore {
    /// [`Store::prune`]. Durable like any deletion the caller is told of.
    pub(super) async fn prune_calls(&self, rule: &PruneRule, limit: u32) -> Result<u64, StoreError> {
        if limit == 0 || rule.statuses().is_empty() {
            return Ok(0);
        }
        let statuses: Vec<&'static str> = rule.statuses().iter().map(|status| status.as_str()).collect();
        let before = rule.completed_before().timestamp_millis();
        self.writer
            .write(move |conn| in_savepoint(conn, |conn| prune(conn, &statuses, before, limit)))
            .await
    }
}

/// Deletes the `limit` oldest calls of `statuses` completed before
/// `before` whose notification is not pending, events first (they
/// reference the calls).
fn prune(conn: &Connection, statuses: &[&str], before: i64, limit: u32) -> Result<u64, StoreError> {
    let mut candidates = Vec::new();
    let mut select = conn.prepare_cached(PRUNABLE)?;
    for status in statuses {
        let mut rows = select.query((status, before, limit))?;
        while let Some(row) = rows.next()? {
            let (seq, id, completed_at): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            candidates.push(((completed_at, seq), (seq, id)));
        }
    }
    let doomed = oldest(candidates, limit as usize);
    if doomed.is_empty() {
        return Ok(0);
    }
    let (seqs, ids): (Vec<i64>, Vec<String>) = doomed.into_iter().unzip();
    conn.prepare_cached(DELETE_EVENTS)?.execute([to_json(&ids)?])?;
    let deleted = conn.prepare_cached(DELETE_CALLS)?.execute([to_json(&seqs)?])?;
    Ok(deleted as u64)
}

/// Runs `write`, which writes more than once, so that it changes nothing
/// when it fails, as the writer asks of every write.
fn in_savepoint<T>(
    conn: &Connection,
    write: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT store_prune")?;
    match write(conn) {
        Ok(done) => {
            conn.execute_batch("RELEASE store_prune")?;
            Ok(done)
        }
        Err(error) => {
            // Unless SQLite rolled the whole transaction back already (a
            // full disk), undo this write; a savepoint rolled back to stays
            // open until released.
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO store_prune; RELEASE store_prune")?;
            }
            Err(error)
        }
    }
}
