//! [`ConnectionStore`] for [`SqliteStore`]: writes through the writer (one
//! statement each, or several in a savepoint), reads through the pool.
//!
//! Token leases are written unsynced, as call leases are: one lost in a
//! power cut only lets another process renew the tokens sooner. Saved
//! tokens are always synced (a provider may have rotated the refresh token:
//! losing the new one loses the connection).

use super::*;
use crate::store::connection_rows::{
    authorization_from_row, connection_from_row, sealed_value_from_row, token_from_row, ConnectionTables,
    AUTHORIZATION_COLUMNS, TOKEN_COLUMNS,
};
use crate::store::{AuthorizationRow, ConnectionRow, ConnectionStore, SealedValue, TokenRow};

/// The columns of a connection, as `connection_from_row` reads them.
const CONNECTION_COLUMNS: &str = "integration, id, credentials, base_url, params, rate_per_second, rate_burst, \
     created_at, updated_at, revoked_at";

/// The tables, unqualified: the file is the schema.
fn tables() -> ConnectionTables {
    ConnectionTables::after("")
}

impl SqliteStore {
    /// Now on the store's clock, as stored (milliseconds).
    fn now_millis(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

impl ConnectionStore for SqliteStore {
    fn put_connection(&self, row: ConnectionRow) -> BoxFuture<'_, Result<ConnectionRow, StoreError>> {
        Box::pin(async move {
            let now = self.now_millis();
            let params = to_json(&row.params)?;
            self.writer
                .write_statements(move |conn| {
                    // New credentials are a new grant: its tokens are not the old one's.
                    conn.prepare_cached(
                        "DELETE FROM integration_connection_tokens WHERE integration = ?1 AND connection = ?2 \
                         AND EXISTS (SELECT 1 FROM integration_connections \
                             WHERE integration = ?1 AND id = ?2 AND credentials <> ?3)",
                    )?
                    .execute((&row.integration, &row.id, &row.credentials))?;
                    let sql = format!(
                        "INSERT INTO integration_connections ({CONNECTION_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, NULL) \
                         ON CONFLICT (integration, id) DO UPDATE SET credentials = excluded.credentials, \
                             base_url = excluded.base_url, params = excluded.params, \
                             rate_per_second = excluded.rate_per_second, rate_burst = excluded.rate_burst, \
                             updated_at = excluded.updated_at, revoked_at = NULL \
                         RETURNING {CONNECTION_COLUMNS}"
                    );
                    let values = (
                        &row.integration,
                        &row.id,
                        &row.credentials,
                        &row.base_url,
                        params,
                        row.rate_per_second,
                        row.rate_burst,
                        now,
                    );
                    conn.prepare_cached(&sql)?
                        .query_row(values, |stored| Ok(connection_from_row(stored)))?
                })
                .await
        })
    }

    fn connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CONNECTION_COLUMNS} FROM integration_connections WHERE integration = ? AND id = ?"
            )))
            .bind(integration)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(connection_from_row).transpose()
        })
    }

    fn connections<'a>(
        &'a self,
        integration: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            // The primary key's order: no sort.
            let rows = match integration {
                Some(integration) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {CONNECTION_COLUMNS} FROM integration_connections \
                         WHERE integration = ? ORDER BY integration, id"
                    )))
                    .bind(integration)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {CONNECTION_COLUMNS} FROM integration_connections ORDER BY integration, id"
                    )))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
            rows.iter().map(connection_from_row).collect()
        })
    }

    fn revoke_connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        let (integration, id) = (integration.to_owned(), id.to_owned());
        Box::pin(async move {
            let now = self.now_millis();
            self.writer
                .write_statements(move |conn| {
                    // Revoked twice: the first time stays.
                    let sql = format!(
                        "UPDATE integration_connections SET revoked_at = COALESCE(revoked_at, ?3), \
                             updated_at = CASE WHEN revoked_at IS NULL THEN ?3 ELSE updated_at END \
                         WHERE integration = ?1 AND id = ?2 \
                         RETURNING {CONNECTION_COLUMNS}"
                    );
                    let revoked = conn
                        .prepare_cached(&sql)?
                        .query_row((&integration, &id, now), |row| Ok(connection_from_row(row)))
                        .optional()?
                        .transpose()?;
                    if revoked.is_some() {
                        conn.prepare_cached(
                            "DELETE FROM integration_connection_tokens WHERE integration = ?1 AND connection = ?2",
                        )?
                        .execute((&integration, &id))?;
                    }
                    Ok(revoked)
                })
                .await
        })
    }

    fn token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM integration_connection_tokens WHERE integration = ? AND connection = ?"
            )))
            .bind(integration)
            .bind(connection)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    fn lease_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = (integration.to_owned(), connection.to_owned(), owner.to_owned());
        Box::pin(async move {
            let now = truncate(self.clock.now());
            let until = lease_deadline(now, lease).timestamp_millis();
            let now = now.timestamp_millis();
            self.writer
                .write_unsynced(move |conn| {
                    // Insert or take, in one statement: a lease held by
                    // another owner and not expired is left alone.
                    let held = conn
                        .prepare_cached(
                            "INSERT INTO integration_connection_tokens \
                                 (integration, connection, lease_owner, lease_expires_at, updated_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5) \
                             ON CONFLICT (integration, connection) DO UPDATE \
                             SET lease_owner = excluded.lease_owner, lease_expires_at = excluded.lease_expires_at \
                             WHERE lease_owner IS NULL OR lease_expires_at IS NULL \
                                 OR lease_owner = excluded.lease_owner OR lease_expires_at <= ?5 \
                             RETURNING 1",
                        )?
                        .query_row((&key.0, &key.1, &key.2, until, now), |_| Ok(()))
                        .optional()?;
                    Ok(held.is_some())
                })
                .await
        })
    }

    fn save_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        tokens: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = (integration.to_owned(), connection.to_owned(), owner.to_owned());
        Box::pin(async move {
            let now = self.now_millis();
            self.writer
                .write(move |conn| {
                    let saved = conn
                        .prepare_cached(
                            "UPDATE integration_connection_tokens \
                             SET tokens = ?4, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?5 \
                             WHERE integration = ?1 AND connection = ?2 AND lease_owner = ?3 \
                                 AND lease_expires_at > ?5",
                        )?
                        .execute((&key.0, &key.1, &key.2, tokens, now))?;
                    Ok(saved > 0)
                })
                .await
        })
    }

    fn release_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = (integration.to_owned(), connection.to_owned(), owner.to_owned());
        Box::pin(self.writer.write_unsynced(move |conn| {
            conn.prepare_cached(
                "UPDATE integration_connection_tokens SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE integration = ?1 AND connection = ?2 AND lease_owner = ?3",
            )?
            .execute((&key.0, &key.1, &key.2))?;
            Ok(())
        }))
    }

    fn put_authorization(&self, row: AuthorizationRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let now = self.now_millis();
            self.writer
                .write_statements(move |conn| {
                    // Abandoned flows go with the next one.
                    conn.prepare_cached("DELETE FROM integration_connection_authorizations WHERE expires_at <= ?1")?
                        .execute([now])?;
                    let sql = format!(
                        "INSERT INTO integration_connection_authorizations ({AUTHORIZATION_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (state_digest) DO UPDATE SET integration = excluded.integration, \
                             connection = excluded.connection, verifier = excluded.verifier, \
                             return_to = excluded.return_to, expires_at = excluded.expires_at"
                    );
                    conn.prepare_cached(&sql)?.execute((
                        &row.state_digest,
                        &row.integration,
                        &row.connection,
                        &row.verifier,
                        &row.return_to,
                        row.expires_at.timestamp_millis(),
                    ))?;
                    Ok(())
                })
                .await
        })
    }

    fn take_authorization<'a>(
        &'a self,
        state_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthorizationRow>, StoreError>> {
        let state_digest = state_digest.to_owned();
        Box::pin(self.writer.write(move |conn| {
            // Read and deleted in one statement: a state is used once.
            let sql = format!(
                "DELETE FROM integration_connection_authorizations WHERE state_digest = ?1 \
                 RETURNING {AUTHORIZATION_COLUMNS}"
            );
            conn.prepare_cached(&sql)?
                .query_row([&state_digest], |row| Ok(authorization_from_row(row)))
                .optional()?
                .transpose()
        }))
    }

    fn sealed_values(&self) -> BoxFuture<'_, Result<Vec<SealedValue>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(AssertSqlSafe(tables().sealed_values_query()))
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(sealed_value_from_row).collect()
        })
    }

    fn replace_sealed<'a>(
        &'a self,
        value: &'a SealedValue,
        resealed: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (sql, keys) = tables().replace_sealed_statement(&value.place, '?');
        let mut values = vec![resealed, value.sealed.clone()];
        values.extend(keys.into_iter().map(str::to_owned));
        Box::pin(
            self.writer
                .write(move |conn| Ok(conn.prepare_cached(&sql)?.execute(params_from_iter(values))? > 0)),
        )
    }
}
