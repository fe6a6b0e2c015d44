//! The writes behind the store's operations: inserting calls, appending
//! events under the row lock, ending turns and checking leases.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use super::batch::{insert_calls, notify_scheduled};
use super::listen::announcement;
use super::rows::CALL_COLUMNS;
use super::PostgresStore;
use crate::lifecycle::Transition;
use crate::store::call_from_row;
use crate::store::{
    plan_append, terminal_fields, to_json, truncate, AppendOutcome, CallId, CallRecord, Created, NewCall, NewEvent,
    StoreError, Target,
};

impl PostgresStore {
    /// Creates `call` in `conn`'s transaction (the caller's own, with
    /// `create_in_tx`); the notification, if the call is due, goes with it.
    pub(super) async fn insert_call(&self, conn: &mut PgConnection, call: NewCall) -> Result<Created, StoreError> {
        let inserted = insert_calls(&self.calls, conn, std::slice::from_ref(&call), self.clock.now()).await?;
        // The store's own listener (if it listens) hears the announcement after the commit.
        notify_scheduled(conn, (&self.channel, &self.horizon), inserted.due, inserted.earliest).await?;
        inserted.results.into_iter().next().unwrap_or_else(|| {
            Err(StoreError::new(
                crate::store::error::ErrorKind::Backend,
                "creating a call gave no result",
            ))
        })
    }

    pub(super) async fn append(&self, target: Target<'_>, event: NewEvent) -> Result<AppendOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let appended = async {
            let (seq, mut call) = self.lock_call(&mut tx, target).await?;
            self.append_locked(&mut tx, seq, &mut call, event).await
        }
        .await;
        settle(tx, appended).await
    }

    /// Reads and locks the row of the call `target` names until the end of
    /// `conn`'s transaction: concurrent appends to one call (a webhook and a
    /// poll) run one after the other, each seeing the other's committed
    /// event and status.
    pub(super) async fn lock_call(
        &self,
        conn: &mut PgConnection,
        target: Target<'_>,
    ) -> Result<(i64, CallRecord), StoreError> {
        let calls = &self.calls;
        let row = match target {
            Target::Id(id) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {CALL_COLUMNS} FROM {calls} c WHERE c.id = $1 FOR UPDATE"
                )))
                .bind(id.as_uuid())
                .fetch_optional(&mut *conn)
                .await?
            }
            Target::External {
                integration,
                external_id,
            } => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {CALL_COLUMNS} FROM {calls} c \
                     WHERE c.integration = $1 AND c.external_id = $2 FOR UPDATE"
                )))
                .bind(integration)
                .bind(external_id)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        let Some(row) = row else {
            return Err(StoreError::not_found(target));
        };
        call_from_row(&row)
    }

    /// Appends `event` to the call `call` (creation sequence `seq`), whose
    /// row `conn`'s transaction has locked with [`PostgresStore::lock_call`].
    /// Keeps `call`'s status and external id in step with the row, so
    /// several events can be appended in one transaction. On an error the
    /// caller must roll the transaction back (a unique violation aborts it).
    pub(super) async fn append_locked(
        &self,
        conn: &mut PgConnection,
        seq: i64,
        call: &mut CallRecord,
        event: NewEvent,
    ) -> Result<AppendOutcome, StoreError> {
        let (calls, events) = (&self.calls, &self.events);
        let earlier: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {events} WHERE call_id = $1 AND event_key = $2"
        )))
        .bind(call.id.as_uuid())
        .bind(&event.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(event_id) = earlier {
            return Ok(AppendOutcome::Duplicate {
                call_id: call.id,
                event_id,
                status: call.status,
            });
        }

        let plan = plan_append(call.id, call.status, call.external_id.as_deref(), &event)?;
        let now = self.clock.now();
        if let Some(external_id) = &plan.set_external_id {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET external_id = $1, updated_at = $2 WHERE seq = $3"
            )))
            .bind(external_id)
            .bind(now)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .map_err(|error| match StoreError::from(error) {
                e if e.is_conflict() => StoreError::conflict(format_args!(
                    "external id `{external_id}` of `{}` already belongs to another call",
                    call.integration
                )),
                e => e,
            })?;
        }

        let event_id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {events} (call_id, kind, event_key, payload, applied, recorded_at) \
             VALUES ($1, $2, $3, $4::json, $5, $6) RETURNING id"
        )))
        .bind(call.id.as_uuid())
        .bind(event.kind.as_str())
        .bind(&event.key)
        .bind(to_json(&event.payload)?)
        .bind(plan.transition.is_moved())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;

        if let Transition::Moved(_, to) = plan.transition {
            // Only the moving event writes the terminal fields: exactly once.
            let fields = terminal_fields(to, &event)?;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET status = $1, updated_at = $2, \
                 response_data = COALESCE($3::json, response_data), \
                 error = COALESCE($4, error), \
                 completed_at = CASE WHEN $5 THEN $2 ELSE completed_at END, \
                 next_run_at = CASE WHEN $5 THEN NULL ELSE next_run_at END, \
                 notify_at = CASE WHEN $5 THEN $2 ELSE notify_at END, \
                 error_kind = COALESCE($7, error_kind) \
                 WHERE seq = $6"
            )))
            .bind(to.as_str())
            .bind(now)
            .bind(fields.response_data)
            .bind(fields.error)
            .bind(to.is_terminal())
            .bind(seq)
            .bind(fields.error_kind)
            .execute(&mut *conn)
            .await?;
        }
        if let Some(external_id) = plan.set_external_id {
            call.external_id = Some(external_id);
        }
        call.status = plan.transition.status();
        Ok(AppendOutcome::recorded(call.id, event_id, plan.transition))
    }

    /// Ends `worker`'s turn on `id` if it holds the lease: sets `next_run_at`
    /// (cleared on a terminal call), counts an attempt if `attempt`, releases
    /// the lease, and notifies the store's channel (in the same statement,
    /// so the same transaction) when the call is due, or due later than now
    /// but sooner than idle workers wake (`listen::Horizon`). Returns how many rows
    /// it changed (0: the lease is not `worker`'s, or no such call).
    pub(super) async fn end_turn(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        id: CallId,
        worker: &str,
        next_run_at: Option<DateTime<Utc>>,
        attempt: bool,
    ) -> Result<i64, StoreError> {
        let calls = &self.calls;
        let now = self.clock.now();
        // Due later: announced to idle workers when they would sleep past it.
        let later = next_run_at.map(truncate).filter(|at| *at > now);
        let updated = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH ended AS ( \
                 UPDATE {calls} SET \
                     next_run_at = CASE WHEN status IN ('completed', 'failed') \
                         THEN NULL ELSE $1 END, \
                     attempts = attempts + $6, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $2 \
                 WHERE id = $3 AND lease_owner = $4 \
                 RETURNING next_run_at <= $2 AS due, next_run_at IS NOT NULL AS scheduled) \
             SELECT count(*) FROM ended \
             WHERE CASE WHEN due THEN pg_notify($5, '') IS NOT NULL \
                 WHEN scheduled AND $7::text IS NOT NULL THEN pg_notify($5, $7) IS NOT NULL \
                 ELSE true END"
        )))
        .bind(next_run_at.map(truncate))
        .bind(now)
        .bind(id.as_uuid())
        .bind(worker)
        .bind(&self.channel)
        .bind(i32::from(attempt))
        .bind(later.filter(|at| self.horizon.must_announce(*at)).map(announcement))
        .fetch_one(executor)
        .await?;
        if updated > 0 {
            if let Some(at) = later {
                self.horizon.heard(at);
            }
        }
        Ok(updated)
    }

    /// Turns the row count of a lease-checked write of `id` by `worker` into
    /// success, not-found or lease-lost.
    pub(super) async fn lease_checked(&self, id: CallId, worker: &str, updated: i64) -> Result<(), StoreError> {
        if updated > 0 {
            return Ok(());
        }
        let calls = &self.calls;
        let exists: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT 1 FROM {calls} WHERE id = $1")))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        Err(match exists {
            Some(_) => StoreError::lease_lost(id, worker),
            None => StoreError::not_found(format_args!("call {id}")),
        })
    }
}

/// Ends `tx`: commits it when `result` is a success, else rolls it back and
/// returns the error. Rolled back at once, not when `tx` is dropped (sqlx
/// then only queues the `ROLLBACK`), so the row locks are gone before the
/// caller sees the error: a claim right after must not skip the call.
pub(super) async fn settle<T>(tx: Transaction<'_, Postgres>, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // The error to report is `error`; a failed rollback means a
            // broken connection, which ends the transaction anyway.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}
