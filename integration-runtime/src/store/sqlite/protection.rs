//! Shared rate limits and circuit breakers in SQLite (see
//! `store::protection` for the rule they apply).
//!
//! Both writes go through the writer, unsynced: a lease or an open circuit
//! lost in a power cut is lost with every process that used it, and the
//! limiter's next lease starts from the time the process restarts.

use super::*;
use crate::store::{micros, now_micros, open_for, LeaseBinds};

impl SqliteStore {
    /// [`Store::lease_rate`]: one upsert under the file's write lock, so
    /// leases of every process on the file are serialized.
    pub(super) async fn lease_rate_row(&self, limiter: &str, request: RateRequest) -> Result<RateSlice, StoreError> {
        let limiter = limiter.to_owned();
        let binds = LeaseBinds::new(&request);
        let (now, advance, tolerance, max_wait) = (binds.now, binds.advance, binds.tolerance, binds.max_wait);
        let (tat, refused_at) = self
            .writer
            .write_unsynced(move |conn| {
                let tat: Option<i64> = conn
                    .prepare_cached(
                        "INSERT INTO integration_rate_limiters (limiter, tat) VALUES (?1, ?2 + ?3) \
                         ON CONFLICT (limiter) DO UPDATE SET tat = max(tat, ?2) + ?3 \
                         WHERE max(tat, ?2) - ?4 - ?2 <= ?5 \
                         RETURNING tat",
                    )?
                    .query_row((&limiter, now, advance, tolerance, max_wait), |row| row.get(0))
                    .optional()?;
                // Refused: read the TAT for the wait, after the only write.
                let refused_at = match tat {
                    Some(_) => None,
                    None => conn
                        .prepare_cached("SELECT tat FROM integration_rate_limiters WHERE limiter = ?1")?
                        .query_row([&limiter], |row| row.get(0))
                        .optional()?,
                };
                Ok((tat, refused_at))
            })
            .await?;
        Ok(binds.slice(&request, tat, refused_at))
    }

    /// [`Store::open_circuit`].
    pub(super) async fn open_circuit_row(&self, breaker: &str, open_for: Duration) -> Result<(), StoreError> {
        let breaker = breaker.to_owned();
        let until = now_micros().saturating_add(micros(open_for));
        self.writer
            .write_unsynced(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO integration_circuit_breakers (breaker, open_until) VALUES (?1, ?2) \
                     ON CONFLICT (breaker) DO UPDATE SET open_until = max(open_until, excluded.open_until)",
                )?
                .execute((breaker, until))?;
                Ok(())
            })
            .await
    }

    /// [`Store::circuit_open_for`].
    pub(super) async fn circuit_open_for_row(&self, breaker: &str) -> Result<Option<Duration>, StoreError> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT open_until FROM integration_circuit_breakers WHERE breaker = ?1")
                .bind(breaker)
                .fetch_optional(&self.pool)
                .await?;
        Ok(open_for(until, now_micros()))
    }
}
