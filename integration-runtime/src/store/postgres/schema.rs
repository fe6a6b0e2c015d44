//! The store's tables: their migrations, and the quoting of the schema name.

use sqlx::postgres::PgPool;
// `AssertSqlSafe`: the dynamic SQL here is put together from the quoted
// schema name and constant column lists only; values are always bound.
use sqlx::AssertSqlSafe;

use crate::store::{system_now, StoreError};

/// The schema, as additive steps: each runs once, in order, recorded in
/// `integration_store_migrations`. Never edit or remove a step; add one.
/// `{schema}` stands for the quoted schema name.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls and their event log",
        r#"
    CREATE TABLE IF NOT EXISTS {schema}.integration_calls (
        -- Creation sequence: the listing order and the cursor.
        seq              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id               UUID        NOT NULL UNIQUE,
        integration      TEXT        NOT NULL,
        endpoint         TEXT        NOT NULL,
        status           TEXT        NOT NULL,
        external_id      TEXT,
        params           JSON        NOT NULL,
        response_data    JSON,
        error            TEXT,
        attempts         INTEGER     NOT NULL DEFAULT 0,
        idempotency_key  TEXT,
        created_at       TIMESTAMPTZ NOT NULL,
        updated_at       TIMESTAMPTZ NOT NULL,
        completed_at     TIMESTAMPTZ,
        next_run_at      TIMESTAMPTZ,
        lease_owner      TEXT,
        lease_expires_at TIMESTAMPTZ,
        -- NULLs are distinct: only set keys and ids collide.
        CONSTRAINT integration_calls_idempotency_key UNIQUE (integration, idempotency_key),
        CONSTRAINT integration_calls_external_id UNIQUE (integration, external_id)
    -- Leases rewrite rows often and touch no indexed column: room for HOT updates.
    ) WITH (fillfactor = 80);
    -- Only scheduled calls: what claiming scans, in claim order.
    CREATE INDEX IF NOT EXISTS integration_calls_due
        ON {schema}.integration_calls (next_run_at, seq) WHERE next_run_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_integration
        ON {schema}.integration_calls (integration, seq);
    CREATE INDEX IF NOT EXISTS integration_calls_by_status
        ON {schema}.integration_calls (integration, status, seq);

    CREATE TABLE IF NOT EXISTS {schema}.integration_call_events (
        id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_id     UUID        NOT NULL REFERENCES {schema}.integration_calls (id),
        kind        TEXT        NOT NULL,
        event_key   TEXT        NOT NULL,
        payload     JSON        NOT NULL,
        applied     BOOLEAN     NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT integration_call_events_key UNIQUE (call_id, event_key)
    );
    "#,
    ),
    (
        2,
        "terminal notifications for hooks",
        r#"
    -- When the terminal notification (hooks) of a call is due; NULL: none
    -- pending. Calls already terminal before this step are not notified.
    ALTER TABLE {schema}.integration_calls ADD COLUMN IF NOT EXISTS notify_at TIMESTAMPTZ;
    CREATE INDEX IF NOT EXISTS integration_calls_notify
        ON {schema}.integration_calls (notify_at, seq) WHERE notify_at IS NOT NULL;
    "#,
    ),
    (
        3,
        "dead letters of terminal notifications",
        r#"
    -- Failed deliveries of a call's hooks, and why they were given up.
    ALTER TABLE {schema}.integration_calls
        ADD COLUMN IF NOT EXISTS notification_attempts INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS notification_error TEXT;
    "#,
    ),
    (
        4,
        "provider protection shared by processes",
        r#"
    -- Shared GCRA rate limiters: the theoretical arrival time of the next
    -- request, in microseconds since the Unix epoch.
    CREATE TABLE IF NOT EXISTS {schema}.integration_rate_limiters (
        limiter TEXT   PRIMARY KEY,
        tat     BIGINT NOT NULL
    );
    -- Shared circuit breakers: open until, in microseconds since the Unix epoch.
    CREATE TABLE IF NOT EXISTS {schema}.integration_circuit_breakers (
        breaker    TEXT   PRIMARY KEY,
        open_until BIGINT NOT NULL
    );
    "#,
    ),
    (
        5,
        "calls over time: failure kinds, deadlines, spec fingerprints",
        r#"
    -- Why a failed call failed (`FailureKind`); NULL for calls that failed before.
    -- When the call fails with a timeout if it has not ended.
    -- The fingerprint of the spec the call was created under.
    ALTER TABLE {schema}.integration_calls
        ADD COLUMN IF NOT EXISTS error_kind TEXT,
        ADD COLUMN IF NOT EXISTS deadline_at TIMESTAMPTZ,
        ADD COLUMN IF NOT EXISTS spec_fingerprint TEXT;
    "#,
    ),
    (
        6,
        "pruning finished calls",
        r#"
    -- Only finished calls whose hooks are done: what `Store::prune` walks,
    -- oldest first per status.
    CREATE INDEX IF NOT EXISTS integration_calls_prunable
        ON {schema}.integration_calls (status, completed_at, seq)
        WHERE completed_at IS NOT NULL AND notify_at IS NULL;
    "#,
    ),
    (
        7,
        "connections: one spec, many customers",
        r#"
    -- The connection a call is sent with; NULL: the integration's default
    -- (every call created before this step).
    ALTER TABLE {schema}.integration_calls ADD COLUMN IF NOT EXISTS connection TEXT;
    -- Listing one connection's calls, of any status or of one, in creation
    -- order. Partial: calls of the default connection cost nothing more.
    CREATE INDEX IF NOT EXISTS integration_calls_by_connection
        ON {schema}.integration_calls (integration, connection, seq) WHERE connection IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_connection_status
        ON {schema}.integration_calls (integration, connection, status, seq) WHERE connection IS NOT NULL;

    -- One row per connection. `credentials` is sealed by the runtime's
    -- keyring (never a secret in clear); the other columns are what the
    -- operations API shows. Keys collate as bytes ("C"): listed in the
    -- order of every other store, whatever the database's locale.
    CREATE TABLE IF NOT EXISTS {schema}.integration_connections (
        integration     TEXT COLLATE "C" NOT NULL,
        id              TEXT COLLATE "C" NOT NULL,
        credentials     TEXT             NOT NULL,
        base_url        TEXT,
        -- Parameter overrides: a JSON object, kept as written.
        params          JSON             NOT NULL,
        rate_per_second DOUBLE PRECISION,
        rate_burst      BIGINT,
        created_at      TIMESTAMPTZ      NOT NULL,
        updated_at      TIMESTAMPTZ      NOT NULL,
        revoked_at      TIMESTAMPTZ,
        PRIMARY KEY (integration, id)
    );
    -- The OAuth2 tokens of a connection (sealed), and the lease of the one
    -- process renewing them. `connection` is empty for the integration's
    -- default connection, which has no row above: no foreign key.
    CREATE TABLE IF NOT EXISTS {schema}.integration_connection_tokens (
        integration      TEXT NOT NULL,
        connection       TEXT NOT NULL,
        tokens           TEXT,
        lease_owner      TEXT,
        lease_expires_at TIMESTAMPTZ,
        updated_at       TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (integration, connection)
    );
    -- Pending authorizations of the connect flow, by the digest of their
    -- state (the state itself is a bearer secret); `verifier` is sealed.
    CREATE TABLE IF NOT EXISTS {schema}.integration_connection_authorizations (
        state_digest TEXT        PRIMARY KEY,
        integration  TEXT        NOT NULL,
        connection   TEXT        NOT NULL,
        verifier     TEXT        NOT NULL,
        return_to    TEXT        NOT NULL,
        expires_at   TIMESTAMPTZ NOT NULL
    );
    -- What the purge of expired authorizations walks.
    CREATE INDEX IF NOT EXISTS integration_connection_authorizations_expiry
        ON {schema}.integration_connection_authorizations (expires_at);
    "#,
    ),
];

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
pub(super) const MAX_IDENTIFIER_BYTES: usize = 63;

/// `name` as a quoted identifier: any text but NUL, at most 63 bytes (longer
/// names would be silently truncated by PostgreSQL).
pub(super) fn quote_identifier(name: &str) -> Result<String, StoreError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(StoreError::new(
            crate::store::error::ErrorKind::Backend,
            format_args!(
                "invalid PostgreSQL schema name {name:?}: it must be 1 to \
                 {MAX_IDENTIFIER_BYTES} bytes without NUL"
            ),
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Applies the `steps` not recorded yet (all of [`MIGRATIONS`] but in tests
/// of an older schema).
pub(super) async fn migrate(
    pool: &PgPool,
    schema: &str,
    quoted: &str,
    steps: &[(i64, &str, &'static str)],
) -> Result<(), StoreError> {
    let migration_error = |version: i64, error: sqlx::Error| {
        let message = format!("migrating the store schema `{schema}` to version {version} failed: {error}");
        StoreError::backend(message, error)
    };
    let mut tx = pool.begin().await.map_err(|e| migration_error(0, e))?;
    // Processes migrating the same schema at once take turns; the lock is
    // released when the transaction ends, however it ends.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('integration-runtime store'), hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(0, e))?;
    // Checked first: `CREATE SCHEMA IF NOT EXISTS` needs the CREATE
    // privilege on the database even when the schema exists.
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(schema)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| migration_error(0, e))?;
    if exists.is_none() {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {quoted}")))
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(0, e))?;
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {quoted}.integration_store_migrations (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| migration_error(0, e))?;
    let applied: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {quoted}.integration_store_migrations"
    )))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| migration_error(0, e))?;
    for &(version, description, sql) in steps {
        if applied.contains(&version) {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(sql.replace("{schema}", quoted)))
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(version, e))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.integration_store_migrations \
             (version, description, applied_at) VALUES ($1, $2, $3)"
        )))
        .bind(version)
        .bind(description)
        .bind(system_now())
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(version, e))?;
    }
    tx.commit().await.map_err(|e| migration_error(0, e))?;
    Ok(())
}
