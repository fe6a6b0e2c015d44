//! [`ConnectionStore`] for [`PostgresStore`]: each operation one statement,
//! but storing a connection (a transaction that locks its row).

use std::time::Duration;

// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::AssertSqlSafe;

use super::writes::settle;
use super::PostgresStore;
use crate::store::connection_rows::{
    authorization_from_row, connection_from_row, sealed_value_from_row, token_from_row, AUTHORIZATION_COLUMNS,
    TOKEN_COLUMNS,
};
use crate::store::{
    lease_deadline, to_json, truncate, AuthorizationRow, BoxFuture, ConnectionRow, ConnectionStore, SealedValue,
    StoreError, TokenRow,
};

/// The columns of a connection, as `connection_from_row` reads them.
const CONNECTION_COLUMNS: &str = "integration, id, credentials, base_url, params::text AS params, \
     rate_per_second, rate_burst, created_at, updated_at, revoked_at";

impl ConnectionStore for PostgresStore {
    fn put_connection(&self, row: ConnectionRow) -> BoxFuture<'_, Result<ConnectionRow, StoreError>> {
        Box::pin(async move {
            let (connections, tokens) = (&self.connection_tables.connections, &self.connection_tables.tokens);
            let now = truncate(self.clock.now());
            let params = to_json(&row.params)?;
            let mut tx = self.pool.begin().await?;
            let stored = async {
                // Locked until the commit: a put racing this one waits, then
                // compares its credentials with these. (Two puts creating a
                // connection at once both find none: there are no tokens of
                // a grant yet, the connect flow comes after.)
                let old: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT credentials FROM {connections} WHERE integration = $1 AND id = $2 FOR UPDATE"
                )))
                .bind(&row.integration)
                .bind(&row.id)
                .fetch_optional(&mut *tx)
                .await?;
                let stored = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {connections} (integration, id, credentials, base_url, params, rate_per_second, \
                         rate_burst, created_at, updated_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8, $8, NULL) \
                     ON CONFLICT (integration, id) DO UPDATE SET credentials = excluded.credentials, \
                         base_url = excluded.base_url, params = excluded.params, \
                         rate_per_second = excluded.rate_per_second, rate_burst = excluded.rate_burst, \
                         updated_at = excluded.updated_at, revoked_at = NULL \
                     RETURNING {CONNECTION_COLUMNS}"
                )))
                .bind(&row.integration)
                .bind(&row.id)
                .bind(&row.credentials)
                .bind(&row.base_url)
                .bind(params)
                .bind(row.rate_per_second)
                .bind(row.rate_burst.map(i64::from))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                // New credentials are a new grant: its tokens are not the old one's.
                if old.is_some_and(|old| old != row.credentials) {
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {tokens} WHERE integration = $1 AND connection = $2"
                    )))
                    .bind(&row.integration)
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await?;
                }
                connection_from_row(&stored)
            }
            .await;
            settle(tx, stored).await
        })
    }

    fn connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            let connections = &self.connection_tables.connections;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CONNECTION_COLUMNS} FROM {connections} WHERE integration = $1 AND id = $2"
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
            let connections = &self.connection_tables.connections;
            // The keys collate as bytes: the primary key's order, every store's.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {CONNECTION_COLUMNS} FROM {connections} \
                 WHERE $1::text IS NULL OR integration = $1 ORDER BY integration, id"
            )))
            .bind(integration)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(connection_from_row).collect()
        })
    }

    fn revoke_connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            let (connections, tokens) = (&self.connection_tables.connections, &self.connection_tables.tokens);
            // Revoked twice: the first time stays. The tokens go in the same
            // statement, only when the connection exists.
            let row = sqlx::query(AssertSqlSafe(format!(
                "WITH revoked AS ( \
                     UPDATE {connections} SET revoked_at = COALESCE(revoked_at, $3), \
                         updated_at = CASE WHEN revoked_at IS NULL THEN $3 ELSE updated_at END \
                     WHERE integration = $1 AND id = $2 \
                     RETURNING {CONNECTION_COLUMNS}), \
                 dropped AS ( \
                     DELETE FROM {tokens} WHERE integration = $1 AND connection = $2 \
                         AND EXISTS (SELECT 1 FROM revoked)) \
                 SELECT * FROM revoked"
            )))
            .bind(integration)
            .bind(id)
            .bind(truncate(self.clock.now()))
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(connection_from_row).transpose()
        })
    }

    fn token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>> {
        Box::pin(async move {
            let tokens = &self.connection_tables.tokens;
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM {tokens} WHERE integration = $1 AND connection = $2"
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
        Box::pin(async move {
            let tokens = &self.connection_tables.tokens;
            let now = truncate(self.clock.now());
            // Insert or take, in one statement that locks the row: of two
            // processes racing, the second sees the first's lease.
            let held: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
                "INSERT INTO {tokens} AS t (integration, connection, lease_owner, lease_expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (integration, connection) DO UPDATE \
                 SET lease_owner = excluded.lease_owner, lease_expires_at = excluded.lease_expires_at \
                 WHERE t.lease_owner IS NULL OR t.lease_expires_at IS NULL \
                     OR t.lease_owner = excluded.lease_owner OR t.lease_expires_at <= $5 \
                 RETURNING 1"
            )))
            .bind(integration)
            .bind(connection)
            .bind(owner)
            .bind(lease_deadline(now, lease))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            Ok(held.is_some())
        })
    }

    fn save_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        tokens: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let table = &self.connection_tables.tokens;
            let saved = sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET tokens = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 \
                 WHERE integration = $1 AND connection = $2 AND lease_owner = $3 AND lease_expires_at > $5"
            )))
            .bind(integration)
            .bind(connection)
            .bind(owner)
            .bind(tokens)
            .bind(truncate(self.clock.now()))
            .execute(&self.pool)
            .await?;
            Ok(saved.rows_affected() > 0)
        })
    }

    fn release_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let tokens = &self.connection_tables.tokens;
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {tokens} SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE integration = $1 AND connection = $2 AND lease_owner = $3"
            )))
            .bind(integration)
            .bind(connection)
            .bind(owner)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn put_authorization(&self, row: AuthorizationRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let authorizations = &self.connection_tables.authorizations;
            // Abandoned flows go with the next one, in the same statement.
            // The row being put is not purged here: the insert replaces it.
            sqlx::query(AssertSqlSafe(format!(
                "WITH purged AS ( \
                     DELETE FROM {authorizations} WHERE expires_at <= $7 AND state_digest <> $1) \
                 INSERT INTO {authorizations} ({AUTHORIZATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (state_digest) DO UPDATE SET integration = excluded.integration, \
                     connection = excluded.connection, verifier = excluded.verifier, \
                     return_to = excluded.return_to, expires_at = excluded.expires_at"
            )))
            .bind(&row.state_digest)
            .bind(&row.integration)
            .bind(&row.connection)
            .bind(&row.verifier)
            .bind(&row.return_to)
            .bind(truncate(row.expires_at))
            .bind(truncate(self.clock.now()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn take_authorization<'a>(
        &'a self,
        state_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthorizationRow>, StoreError>> {
        Box::pin(async move {
            let authorizations = &self.connection_tables.authorizations;
            // Read and deleted in one statement: of two requests racing
            // with one state, the second finds nothing.
            let row = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {authorizations} WHERE state_digest = $1 RETURNING {AUTHORIZATION_COLUMNS}"
            )))
            .bind(state_digest)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(authorization_from_row).transpose()
        })
    }

    fn sealed_values(&self) -> BoxFuture<'_, Result<Vec<SealedValue>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(AssertSqlSafe(self.connection_tables.sealed_values_query()))
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
        Box::pin(async move {
            let (sql, keys) = self.connection_tables.replace_sealed_statement(&value.place, '$');
            let mut update = sqlx::query(AssertSqlSafe(sql)).bind(resealed).bind(&value.sealed);
            for key in keys {
                update = update.bind(key);
            }
            Ok(update.execute(&self.pool).await?.rows_affected() > 0)
        })
    }
}
