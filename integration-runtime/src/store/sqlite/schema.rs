//! The SQLite schema and its additive migrations.

use super::*;

/// The schema, as additive steps: each runs once, in order, recorded in
/// `integration_store_migrations`. Never edit or remove a step; add one.
/// (sqlx's own migrator is not used: its `_sqlx_migrations` table belongs to
/// the application when the file is shared.)
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls and their event log",
        r#"
    CREATE TABLE IF NOT EXISTS integration_calls (
        -- Creation sequence: the listing order and the cursor.
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        integration      TEXT    NOT NULL,
        endpoint         TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        external_id      TEXT,
        params           TEXT    NOT NULL,
        response_data    TEXT,
        error            TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        idempotency_key  TEXT,
        -- Timestamps: milliseconds since the Unix epoch, UTC.
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        completed_at     INTEGER,
        next_run_at      INTEGER,
        lease_owner      TEXT,
        lease_expires_at INTEGER
    );
    -- NULLs are distinct in SQLite unique indexes: only set keys and ids collide.
    CREATE UNIQUE INDEX IF NOT EXISTS integration_calls_idempotency_key
        ON integration_calls (integration, idempotency_key);
    CREATE UNIQUE INDEX IF NOT EXISTS integration_calls_external_id
        ON integration_calls (integration, external_id);
    -- Only scheduled calls: what claiming scans, in claim order.
    CREATE INDEX IF NOT EXISTS integration_calls_due
        ON integration_calls (next_run_at, seq) WHERE next_run_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_integration
        ON integration_calls (integration, seq);
    CREATE INDEX IF NOT EXISTS integration_calls_by_status
        ON integration_calls (integration, status, seq);

    CREATE TABLE IF NOT EXISTS integration_call_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        call_id     TEXT    NOT NULL REFERENCES integration_calls (id),
        kind        TEXT    NOT NULL,
        event_key   TEXT    NOT NULL,
        payload     TEXT    NOT NULL,
        applied     INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS integration_call_events_key
        ON integration_call_events (call_id, event_key);
    "#,
    ),
    (
        2,
        "terminal notifications for hooks",
        r#"
    -- When the terminal notification (hooks) of a call is due; NULL: none
    -- pending. Calls already terminal before this step are not notified.
    ALTER TABLE integration_calls ADD COLUMN notify_at INTEGER;
    CREATE INDEX IF NOT EXISTS integration_calls_notify
        ON integration_calls (notify_at, seq) WHERE notify_at IS NOT NULL;
    "#,
    ),
    (
        3,
        "write probe for health checks",
        r#"
    -- One row, rewritten by `Store::probe_write`: a health check that writes.
    CREATE TABLE IF NOT EXISTS integration_store_probe (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        written_at INTEGER NOT NULL
    );
    "#,
    ),
    (
        4,
        "dead letters of terminal notifications",
        r#"
    -- Failed deliveries of a call's hooks, and why they were given up.
    ALTER TABLE integration_calls ADD COLUMN notification_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE integration_calls ADD COLUMN notification_error TEXT;
    "#,
    ),
    (
        5,
        "provider protection shared by processes",
        r#"
    -- Shared GCRA rate limiters: the theoretical arrival time of the next
    -- request, in microseconds since the Unix epoch.
    CREATE TABLE IF NOT EXISTS integration_rate_limiters (
        limiter TEXT    PRIMARY KEY,
        tat     INTEGER NOT NULL
    );
    -- Shared circuit breakers: open until, in microseconds since the Unix epoch.
    CREATE TABLE IF NOT EXISTS integration_circuit_breakers (
        breaker    TEXT    PRIMARY KEY,
        open_until INTEGER NOT NULL
    );
    "#,
    ),
    (
        6,
        "calls over time: failure kinds, deadlines, spec fingerprints",
        r#"
    -- Why a failed call failed (`FailureKind`); NULL for calls that failed before.
    ALTER TABLE integration_calls ADD COLUMN error_kind TEXT;
    -- When the call fails with a timeout if it has not ended (ms since the epoch).
    ALTER TABLE integration_calls ADD COLUMN deadline_at INTEGER;
    -- The fingerprint of the spec the call was created under.
    ALTER TABLE integration_calls ADD COLUMN spec_fingerprint TEXT;
    "#,
    ),
    (
        7,
        "pruning finished calls",
        r#"
    -- Only finished calls whose hooks are done: what `Store::prune` walks,
    -- oldest first per status, so a batch reads what it deletes (the seq,
    -- SQLite's rowid, is in every index).
    CREATE INDEX IF NOT EXISTS integration_calls_prunable
        ON integration_calls (status, completed_at)
        WHERE completed_at IS NOT NULL AND notify_at IS NULL;
    "#,
    ),
    (
        8,
        "connections: one spec, many customers",
        r#"
    -- The connection a call is sent with; NULL: the integration's default
    -- (every call created before this step).
    ALTER TABLE integration_calls ADD COLUMN connection TEXT;
    -- Listing one connection's calls, of any status or of one, in creation
    -- order. Partial: calls of the default connection cost nothing more.
    CREATE INDEX IF NOT EXISTS integration_calls_by_connection
        ON integration_calls (integration, connection, seq) WHERE connection IS NOT NULL;
    CREATE INDEX IF NOT EXISTS integration_calls_by_connection_status
        ON integration_calls (integration, connection, status, seq) WHERE connection IS NOT NULL;

    -- One row per connection. `credentials` is sealed by the runtime's
    -- keyring (never a secret in clear); the other columns are what the
    -- operations API shows. Times: milliseconds since the Unix epoch.
    CREATE TABLE IF NOT EXISTS integration_connections (
        integration     TEXT    NOT NULL,
        id              TEXT    NOT NULL,
        credentials     TEXT    NOT NULL,
        base_url        TEXT,
        -- Parameter overrides: a JSON object.
        params          TEXT    NOT NULL,
        rate_per_second REAL,
        rate_burst      INTEGER,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        revoked_at      INTEGER,
        PRIMARY KEY (integration, id)
    );
    -- The OAuth2 tokens of a connection (sealed), and the lease of the one
    -- process renewing them. `connection` is empty for the integration's
    -- default connection, which has no row above: no foreign key.
    CREATE TABLE IF NOT EXISTS integration_connection_tokens (
        integration      TEXT    NOT NULL,
        connection       TEXT    NOT NULL,
        tokens           TEXT,
        lease_owner      TEXT,
        lease_expires_at INTEGER,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (integration, connection)
    );
    -- Pending authorizations of the connect flow, by the digest of their
    -- state (the state itself is a bearer secret); `verifier` is sealed.
    CREATE TABLE IF NOT EXISTS integration_connection_authorizations (
        state_digest TEXT    PRIMARY KEY,
        integration  TEXT    NOT NULL,
        connection   TEXT    NOT NULL,
        verifier     TEXT    NOT NULL,
        return_to    TEXT    NOT NULL,
        expires_at   INTEGER NOT NULL
    );
    -- What the purge of expired authorizations walks.
    CREATE INDEX IF NOT EXISTS integration_connection_authorizations_expiry
        ON integration_connection_authorizations (expires_at);
    "#,
    ),
];

/// Applies the `steps` not recorded yet (all of [`MIGRATIONS`] but in tests
/// of an older schema).
pub(super) async fn migrate(pool: &SqlitePool, steps: &[(i64, &str, &'static str)]) -> Result<(), StoreError> {
    let migration_error = |version: i64, error: sqlx::Error| {
        let message = format!("migrating the store schema to version {version} failed: {error}");
        StoreError::backend(message, error)
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS integration_store_migrations (\
         version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(|e| migration_error(0, e))?;
    for &(version, description, sql) in steps {
        // One immediate transaction per step: two processes opening the same
        // file at once apply each step once, and a failed step leaves nothing.
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| migration_error(version, e))?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM integration_store_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| migration_error(version, e))?;
        if applied.is_some() {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| migration_error(version, e))?;
        sqlx::query(
            "INSERT INTO integration_store_migrations (version, description, applied_at) \
             VALUES (?, ?, ?)",
        )
        .bind(version)
        .bind(description)
        .bind(system_now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| migration_error(version, e))?;
        tx.commit().await.map_err(|e| migration_error(version, e))?;
    }
    Ok(())
}
