//! [`Store`] for [`PostgresStore`]: each operation as one statement or one
//! transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::AssertSqlSafe;

use super::rows::{event_from_row, CALL_COLUMNS};
use super::PostgresStore;
use crate::store::folding::{Appends, OwnedTarget, Turn};
use crate::store::{
    call_from_row, lease_deadline, notification_columns, page_of, status_counts, AppendOutcome, BoxFuture, CallId,
    CallRecord, CallWithEvents, Created, ListOrder, ListQuery, NewCall, NewEvent, NotificationOutcome, Page,
    StatusCounts, Store, StoreError, Target,
};
use crate::store::{PruneRule, RateRequest, RateSlice};

impl Store for PostgresStore {
    fn use_clock(&self, clock: crate::Clock) {
        self.clock.set(clock);
    }

    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        // The writer wakes local waiters (and notifies) when the call is due.
        Box::pin(self.writer.create(call))
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: u32,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let calls = &self.calls;
            let now = self.clock.now();
            // One statement selects and leases. `SKIP LOCKED`: concurrent
            // claimers lock disjoint rows without waiting for each other;
            // a row leased (and committed) by another claimer since this
            // statement's snapshot is re-checked before it is locked, and
            // dropped because its lease is no longer free.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} AS c \
                 SET lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
                 FROM ( \
                     SELECT seq FROM {calls} \
                     WHERE next_run_at <= $3 AND status IN ('pending', 'processing') \
                       AND (lease_expires_at IS NULL OR lease_expires_at <= $3) \
                     ORDER BY next_run_at, seq LIMIT $4 \
                     FOR UPDATE SKIP LOCKED) AS due \
                 WHERE c.seq = due.seq \
                 RETURNING {CALL_COLUMNS}"
            )))
            .bind(worker)
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            // RETURNING has no defined order.
            calls.sort_by_key(|(seq, call)| (call.next_run_at, *seq));
            Ok(calls.into_iter().map(|(_, call)| call).collect())
        })
    }

    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let now = self.clock.now();
            let updated = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET lease_expires_at = $1, updated_at = $2 \
                 WHERE id = $3 AND lease_owner = $4"
            )))
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(id.as_uuid())
            .bind(worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
            self.lease_checked(id, worker, i64::try_from(updated).unwrap_or(i64::MAX))
                .await
        })
    }

    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            // Counts the released row; notifies (in the same statement, so
            // the same transaction) when the call is due.
            let updated: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "WITH released AS ( \
                     UPDATE {calls} SET lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $1 \
                     WHERE id = $2 AND lease_owner = $3 \
                     RETURNING next_run_at <= $1 AS due) \
                 SELECT count(*) FROM released \
                 WHERE CASE WHEN due THEN pg_notify($4, '') IS NOT NULL ELSE true END"
            )))
            .bind(self.clock.now())
            .bind(id.as_uuid())
            .bind(worker)
            .bind(&self.channel)
            .fetch_one(&self.pool)
            .await?;
            self.lease_checked(id, worker, updated).await?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let updated = self.end_turn(&self.pool, id, worker, next_run_at, true).await?;
            self.lease_checked(id, worker, updated).await?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>> {
        let turn = Appends {
            target: OwnedTarget::Id(id),
            events,
            turn: Some(Turn {
                worker: worker.to_owned(),
                next_run_at,
            }),
        };
        // The writer wakes local waiters (and notifies) when the call is due.
        Box::pin(self.writer.finish_turn(turn))
    }

    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append(Target::Id(id), event))
    }

    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append(
            Target::External {
                integration,
                external_id,
            },
            event,
        ))
    }

    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c WHERE c.id = $1"
            )))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        Box::pin(async move {
            let (calls, events) = (&self.calls, &self.events);
            // One statement, so one snapshot: the call and its log agree.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS}, e.id AS event_id, e.kind AS event_kind, e.event_key, \
                     e.payload::text AS event_payload, e.applied AS event_applied, \
                     e.recorded_at AS event_recorded_at \
                 FROM {calls} c LEFT JOIN {events} e ON e.call_id = c.id \
                 WHERE c.id = $1 ORDER BY e.id"
            )))
            .bind(id.as_uuid())
            .fetch_all(&self.pool)
            .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let (_, call) = call_from_row(first)?;
            let mut log = Vec::with_capacity(rows.len());
            for row in &rows {
                log.extend(event_from_row(row, call.id)?);
            }
            Ok(Some(CallWithEvents { call, events: log }))
        })
    }

    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c \
                 WHERE c.integration = $1 AND c.external_id = $2"
            )))
            .bind(integration)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn list<'a>(&'a self, query: &'a ListQuery) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let limit = query.clamped_limit();
            let (after, direction, start) = match query.order {
                ListOrder::OldestFirst => ("c.seq > $2", "ASC", i64::MIN),
                ListOrder::NewestFirst => ("c.seq < $2", "DESC", i64::MAX),
            };
            // The optional filters' parameters follow the three fixed ones.
            let mut filters = String::new();
            if query.status.is_some() {
                filters.push_str(" AND c.status = $4");
            }
            if query.connection.is_some() {
                let at = 4 + usize::from(query.status.is_some());
                filters.push_str(&format!(" AND c.connection = ${at}"));
            }
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM {calls} c \
                 WHERE c.integration = $1 AND {after}{filters} \
                 ORDER BY c.seq {direction} LIMIT $3"
            );
            // One row more than the page tells whether another page exists.
            let mut select = sqlx::query(AssertSqlSafe(sql))
                .bind(&query.integration)
                .bind(query.after.map_or(start, |cursor| cursor.0))
                .bind(i64::from(limit) + 1);
            if let Some(status) = query.status {
                select = select.bind(status.as_str());
            }
            if let Some(connection) = &query.connection {
                select = select.bind(connection);
            }
            let rows = select.fetch_all(&self.pool).await?;
            let rows = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(page_of(rows, limit as usize))
        })
    }

    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        Box::pin(async move {
            let calls = &self.calls;
            let rows: Vec<(String, i64)> = match integration {
                Some(integration) => {
                    sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT status, count(*) FROM {calls} \
                         WHERE integration = $1 GROUP BY status"
                    )))
                    .bind(integration)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT status, count(*) FROM {calls} GROUP BY status"
                    )))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            status_counts(rows)
        })
    }

    fn wait_for_work(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let notified = self.work.notified();
            tokio::pin!(notified);
            // Registered before the listener may first wake anyone.
            notified.as_mut().enable();
            self.start_listener();
            notified.await;
        })
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            let due: Option<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(next_due_query(&self.calls)))
                .bind(self.clock.now())
                .fetch_optional(&self.pool)
                .await?;
            self.horizon.learned(due);
            Ok(due)
        })
    }

    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // Bounded like SQLite's writer; `SET LOCAL` ends with the transaction.
            sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
            let calls = &self.calls;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET attempts = attempts WHERE false"
            )))
            .execute(&mut *tx)
            .await?;
            tx.rollback().await?;
            Ok(())
        })
    }

    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // As `reschedule`, without counting an attempt.
            let updated = self.end_turn(&self.pool, id, worker, Some(next_run_at), false).await?;
            self.lease_checked(id, worker, updated).await?;
            self.work.notify_waiters();
            Ok(())
        })
    }

    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let calls = &self.calls;
            let now = self.clock.now();
            // As `claim`: one statement selects and leases, `SKIP LOCKED`
            // keeps concurrent dispatchers on disjoint rows.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} AS c SET notify_at = $1 \
                 FROM ( \
                     SELECT seq FROM {calls} WHERE notify_at <= $2 \
                     ORDER BY notify_at, seq LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) AS due \
                 WHERE c.seq = due.seq \
                 RETURNING {CALL_COLUMNS}"
            )))
            .bind(lease_deadline(now, lease))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            calls.sort_by_key(|(seq, call)| (call.completed_at, *seq));
            Ok(calls.into_iter().map(|(_, call)| call).collect())
        })
    }

    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        let (retry_at, failed, error) = notification_columns(outcome);
        Box::pin(async move {
            let calls = &self.calls;
            let done = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {calls} SET notify_at = $1, notification_attempts = notification_attempts + $2, \
                 notification_error = COALESCE($3, notification_error) WHERE id = $4"
            )))
            .bind(retry_at)
            .bind(i32::from(failed))
            .bind(error)
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found(format_args!("call {id}")));
            }
            Ok(())
        })
    }

    fn lease_rate<'a>(
        &'a self,
        limiter: &'a str,
        request: RateRequest,
    ) -> BoxFuture<'a, Result<RateSlice, StoreError>> {
        Box::pin(self.lease_rate_row(limiter, request))
    }

    fn open_circuit<'a>(&'a self, breaker: &'a str, open_for: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.open_circuit_row(breaker, open_for))
    }

    fn circuit_open_for<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(self.circuit_open_for_row(breaker))
    }

    fn prune<'a>(&'a self, rule: &'a PruneRule, limit: u32) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.prune_calls(rule, limit))
    }
}

/// The statement behind [`Store::next_due`] on the calls table `calls`: it
/// walks `integration_calls_due` in claim order and stops at the first call
/// no lease will hold when it is due.
pub(super) fn next_due_query(calls: &str) -> String {
    format!(
        "SELECT next_run_at FROM {calls} \
         WHERE next_run_at IS NOT NULL AND status IN ('pending', 'processing') \
           AND (lease_expires_at IS NULL OR lease_expires_at <= GREATEST(next_run_at, $1)) \
         ORDER BY next_run_at, seq LIMIT 1"
    )
}
