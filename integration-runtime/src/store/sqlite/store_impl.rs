//! [`Store`] for [`SqliteStore`]: each operation, on the pool or the writer.

use super::*;

impl Store for SqliteStore {
    fn use_clock(&self, clock: crate::Clock) {
        self.clock.set(clock);
    }

    fn create(&self, call: NewCall) -> BoxFuture<'_, Result<Created, StoreError>> {
        Box::pin(async move {
            // A leased call is not claimable yet: waking workers would be for nothing.
            let claimable = call.lease.is_none();
            let now = self.clock.now();
            let created = self.writer.write(move |conn| insert_call(conn, call, now)).await?;
            if created.created && claimable {
                self.work.notify_waiters();
            }
            Ok(created)
        })
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
            let now = self.clock.now();
            // One statement selects and leases: SQLite runs it under the
            // write lock, so concurrent claimers see disjoint sets. The
            // subquery walks `integration_calls_due` and stops at `limit`.
            let sql = format!(
                "UPDATE integration_calls \
                 SET lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3 \
                 WHERE seq IN ( \
                     SELECT seq FROM integration_calls \
                     WHERE next_run_at <= ?3 AND status IN ('pending', 'processing') \
                       AND (lease_expires_at IS NULL OR lease_expires_at <= ?3) \
                     ORDER BY next_run_at, seq LIMIT ?4) \
                 RETURNING {CALL_COLUMNS}"
            );
            let values = vec![
                Value::Text(worker.to_owned()),
                Value::Integer(lease_deadline(now, lease).timestamp_millis()),
                Value::Integer(now.timestamp_millis()),
                Value::from(limit),
            ];
            self.lease_calls(sql, values, |call| call.next_run_at).await
        })
    }

    fn extend_lease<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let now = self.clock.now();
        let sql = "UPDATE integration_calls SET lease_expires_at = ?, updated_at = ? \
                   WHERE id = ? AND lease_owner = ?";
        let values = vec![
            Value::Integer(lease_deadline(now, lease).timestamp_millis()),
            Value::Integer(now.timestamp_millis()),
        ];
        Box::pin(self.writer.write_unsynced(leased(id, worker, sql, values)))
    }

    fn release<'a>(&'a self, id: CallId, worker: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let sql = "UPDATE integration_calls \
                   SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
                   WHERE id = ? AND lease_owner = ?";
        let values = vec![Value::Integer(self.clock.now().timestamp_millis())];
        Box::pin(self.give_back(leased(id, worker, sql, values)))
    }

    fn reschedule<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // The schedule, an attempt counted, the lease given back.
        let sql = "UPDATE integration_calls SET \
                   next_run_at = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE ? END, \
                   attempts = attempts + 1, lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = ? \
                   WHERE id = ? AND lease_owner = ?";
        let values = vec![
            Value::from(next_run_at.map(|at| truncate(at).timestamp_millis())),
            Value::Integer(self.clock.now().timestamp_millis()),
        ];
        Box::pin(self.give_back(leased(id, worker, sql, values)))
    }

    fn finish_turn<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        events: Vec<NewEvent>,
        next_run_at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<AppendOutcome>, StoreError>> {
        let worker = worker.to_owned();
        Box::pin(async move {
            let outcomes = self
                .writer
                .append(Appends {
                    target: OwnedTarget::Id(id),
                    events,
                    turn: Some(Turn { worker, next_run_at }),
                })
                .await?;
            self.work.notify_waiters();
            Ok(outcomes)
        })
    }

    fn append_event(&self, id: CallId, event: NewEvent) -> BoxFuture<'_, Result<AppendOutcome, StoreError>> {
        Box::pin(self.append_one(OwnedTarget::Id(id), event))
    }

    fn append_event_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
        event: NewEvent,
    ) -> BoxFuture<'a, Result<AppendOutcome, StoreError>> {
        let target = OwnedTarget::External {
            integration: integration.to_owned(),
            external_id: external_id.to_owned(),
        };
        Box::pin(self.append_one(target, event))
    }

    fn get(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id = ?"
            )))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(call_from_row).transpose()?.map(|(_, call)| call))
        })
    }

    fn get_with_events(&self, id: CallId) -> BoxFuture<'_, Result<Option<CallWithEvents>, StoreError>> {
        Box::pin(async move {
            // One read transaction: the snapshot and the log agree.
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls WHERE id = ?"
            )))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let (_, call) = call_from_row(&row)?;
            let events = sqlx::query(
                "SELECT id, call_id, kind, event_key, payload, applied, recorded_at \
                 FROM integration_call_events WHERE call_id = ? ORDER BY id",
            )
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await?;
            Ok(Some(CallWithEvents { call, events }))
        })
    }

    fn find_by_external_id<'a>(
        &'a self,
        integration: &'a str,
        external_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls \
                 WHERE integration = ? AND external_id = ?"
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
            let limit = query.clamped_limit();
            let (after, direction) = match query.order {
                ListOrder::OldestFirst => ("seq > ?", "ASC"),
                ListOrder::NewestFirst => ("seq < ?", "DESC"),
            };
            let connection_filter = if query.connection.is_some() {
                "AND connection = ?"
            } else {
                ""
            };
            let status_filter = if query.status.is_some() { "AND status = ?" } else { "" };
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM integration_calls \
                 WHERE integration = ? {connection_filter} {status_filter} AND {after} \
                 ORDER BY seq {direction} LIMIT ?"
            );
            let start = query.after.map_or(
                match query.order {
                    ListOrder::OldestFirst => i64::MIN,
                    ListOrder::NewestFirst => i64::MAX,
                },
                |cursor| cursor.0,
            );
            let mut select = sqlx::query(AssertSqlSafe(sql)).bind(&query.integration);
            if let Some(connection) = &query.connection {
                select = select.bind(connection);
            }
            if let Some(status) = query.status {
                select = select.bind(status.as_str());
            }
            // One row more than the page tells whether another page exists.
            let rows = select
                .bind(start)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
            let rows = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(page_of(rows, limit as usize))
        })
    }

    fn count_by_status<'a>(&'a self, integration: Option<&'a str>) -> BoxFuture<'a, Result<StatusCounts, StoreError>> {
        Box::pin(async move {
            // Two statements rather than `?1 IS NULL OR ...`, which would
            // keep SQLite from using the per-integration index.
            let rows: Vec<(String, i64)> = match integration {
                Some(integration) => {
                    sqlx::query_as(
                        "SELECT status, COUNT(*) FROM integration_calls \
                         WHERE integration = ? GROUP BY status",
                    )
                    .bind(integration)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query_as("SELECT status, COUNT(*) FROM integration_calls GROUP BY status")
                        .fetch_all(&self.pool)
                        .await?
                }
            };
            status_counts(rows)
        })
    }

    fn wait_for_work(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.work.notified())
    }

    fn next_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(async move {
            // Walks `integration_calls_due` in claim order; stops at the
            // first call no lease will hold when it is due.
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT next_run_at FROM integration_calls \
                 WHERE next_run_at IS NOT NULL AND status IN ('pending', 'processing') \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= MAX(next_run_at, ?1)) \
                 ORDER BY next_run_at, seq LIMIT 1",
            )
            .bind(self.clock.now().timestamp_millis())
            .fetch_optional(&self.pool)
            .await?;
            due.map(|ms| {
                from_millis(ms)
                    .ok_or_else(|| StoreError::corrupt(format_args!("stored `next_run_at` is out of range: {ms}")))
            })
            .transpose()
        })
    }

    fn probe_write(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let at = self.clock.now().timestamp_millis();
            // Unsynced: the page reaches the WAL file (a full disk fails
            // it) without an fsync per health check.
            self.writer
                .write_unsynced(move |conn| {
                    conn.prepare_cached(
                        "INSERT INTO integration_store_probe (id, written_at) VALUES (1, ?) \
                         ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
                    )?
                    .execute([at])?;
                    Ok(())
                })
                .await
        })
    }

    fn postpone<'a>(
        &'a self,
        id: CallId,
        worker: &'a str,
        next_run_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let sql = "UPDATE integration_calls SET \
                   next_run_at = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE ? END, \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
                   WHERE id = ? AND lease_owner = ?";
        let values = vec![
            Value::Integer(truncate(next_run_at).timestamp_millis()),
            Value::Integer(self.clock.now().timestamp_millis()),
        ];
        Box::pin(self.give_back(leased(id, worker, sql, values)))
    }

    fn claim_notifications(&self, limit: u32, lease: Duration) -> BoxFuture<'_, Result<Vec<CallRecord>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let now = self.clock.now();
            // As `claim`: one statement selects and leases, over a partial
            // index holding only calls with a pending notification.
            let sql = format!(
                "UPDATE integration_calls SET notify_at = ?1 \
                 WHERE seq IN ( \
                     SELECT seq FROM integration_calls WHERE notify_at <= ?2 \
                     ORDER BY notify_at, seq LIMIT ?3) \
                 RETURNING {CALL_COLUMNS}"
            );
            let values = vec![
                Value::Integer(lease_deadline(now, lease).timestamp_millis()),
                Value::Integer(now.timestamp_millis()),
                Value::from(limit),
            ];
            self.lease_calls(sql, values, |call| call.completed_at).await
        })
    }

    fn finish_notification(&self, id: CallId, outcome: NotificationOutcome) -> BoxFuture<'_, Result<(), StoreError>> {
        let (retry_at, failed, error) = notification_columns(outcome);
        Box::pin(self.writer.write_unsynced(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE integration_calls SET notify_at = ?, \
                     notification_attempts = notification_attempts + ?, \
                     notification_error = COALESCE(?, notification_error) WHERE id = ?",
                )?
                .execute((
                    retry_at.map(|at| truncate(at).timestamp_millis()),
                    i64::from(failed),
                    error,
                    id.to_string(),
                ))?;
            if changed == 0 {
                return Err(StoreError::not_found(format_args!("call {id}")));
            }
            Ok(())
        }))
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
