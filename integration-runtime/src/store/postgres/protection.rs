//! Shared rate limits and circuit breakers in PostgreSQL: each operation
//! one statement (see `store::protection` for the rule they apply).

use std::time::Duration;

// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name only; values are always bound.
use sqlx::AssertSqlSafe;

use super::PostgresStore;
use crate::store::{micros, now_micros, open_for, LeaseBinds, RateRequest, RateSlice, StoreError};

impl PostgresStore {
    /// [`Store::lease_rate`](crate::Store::lease_rate): one upsert, which
    /// locks the limiter's row, so concurrent leases queue on it and each
    /// sees the TAT the previous one committed.
    pub(super) async fn lease_rate_row(&self, limiter: &str, request: RateRequest) -> Result<RateSlice, StoreError> {
        let limiters = &self.limiters;
        let binds = LeaseBinds::new(&request);
        let tat: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {limiters} AS l (limiter, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (limiter) DO UPDATE SET tat = GREATEST(l.tat, $2) + $3 \
             WHERE GREATEST(l.tat, $2) - $4 - $2 <= $5 \
             RETURNING tat"
        )))
        .bind(limiter)
        .bind(binds.now)
        .bind(binds.advance)
        .bind(binds.tolerance)
        .bind(binds.max_wait)
        .fetch_optional(&self.pool)
        .await?;
        // Refused: read the TAT for the wait (the rare path, a second statement).
        let refused_at = match tat {
            Some(_) => None,
            None => {
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT tat FROM {limiters} WHERE limiter = $1")))
                    .bind(limiter)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        Ok(binds.slice(&request, tat, refused_at))
    }

    /// [`Store::open_circuit`](crate::Store::open_circuit).
    pub(super) async fn open_circuit_row(&self, breaker: &str, open_for: Duration) -> Result<(), StoreError> {
        let breakers = &self.breakers;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {breakers} AS b (breaker, open_until) VALUES ($1, $2) \
             ON CONFLICT (breaker) DO UPDATE SET open_until = GREATEST(b.open_until, excluded.open_until)"
        )))
        .bind(breaker)
        .bind(now_micros().saturating_add(micros(open_for)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// [`Store::circuit_open_for`](crate::Store::circuit_open_for).
    pub(super) async fn circuit_open_for_row(&self, breaker: &str) -> Result<Option<Duration>, StoreError> {
        let breakers = &self.breakers;
        let until: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT open_until FROM {breakers} WHERE breaker = $1"
        )))
        .bind(breaker)
        .fetch_optional(&self.pool)
        .await?;
        Ok(open_for(until, now_micros()))
    }
}
