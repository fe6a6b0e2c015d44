//! What the SQL stores share about connections: reading their rows back,
//! and the statements whose text differs between SQLite and PostgreSQL only
//! by the tables' names and the parameters' marks (`?1`, `$1`).

use super::connections::{AuthorizationRow, ConnectionRow, SealedPlace, SealedValue, TokenRow};
use super::{from_json, CallRow, StoreError};

/// The columns of a connection's tokens, as [`token_from_row`] reads them.
pub(crate) const TOKEN_COLUMNS: &str = "integration, connection, tokens, lease_owner, lease_expires_at, updated_at";

/// The columns of a pending authorization, as [`authorization_from_row`]
/// reads them.
pub(crate) const AUTHORIZATION_COLUMNS: &str = "state_digest, integration, connection, verifier, return_to, expires_at";

/// A row of a connection table as a SQL store's driver reads it: text and
/// times as for calls (ids as text, times each database's way), and the
/// numbers of a connection's rate budget.
pub(crate) trait ConnectionColumns: CallRow {
    /// A floating-point column, `None` when null.
    fn real(&self, column: &str) -> Result<Option<f64>, StoreError>;
    /// An integer column, `None` when null.
    fn integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

/// The connection tables, as named in SQL.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionTables {
    pub(crate) connections: String,
    pub(crate) tokens: String,
    pub(crate) authorizations: String,
}

impl ConnectionTables {
    /// The tables, each name after `prefix`: empty, or a quoted schema name
    /// and a dot.
    pub(crate) fn after(prefix: &str) -> Self {
        ConnectionTables {
            connections: format!("{prefix}integration_connections"),
            tokens: format!("{prefix}integration_connection_tokens"),
            authorizations: format!("{prefix}integration_connection_authorizations"),
        }
    }

    /// Every sealed value, one statement (so one snapshot): rows of
    /// `kind, scope, name, sealed`, as [`sealed_value_from_row`] reads them.
    pub(crate) fn sealed_values_query(&self) -> String {
        let ConnectionTables {
            connections,
            tokens,
            authorizations,
        } = self;
        format!(
            "SELECT 'credentials' AS kind, integration AS scope, id AS name, credentials AS sealed \
             FROM {connections} \
             UNION ALL SELECT 'tokens', integration, connection, tokens FROM {tokens} WHERE tokens IS NOT NULL \
             UNION ALL SELECT 'verifier', state_digest, '', verifier FROM {authorizations}"
        )
    }

    /// The compare-and-set `UPDATE` of the sealed value at `place`, with
    /// parameters marked `mark` (`?` or `$`): 1 is the new value, 2 the value
    /// it must still be, 3 and on the place's keys (returned, in order).
    pub(crate) fn replace_sealed_statement<'a>(&self, place: &'a SealedPlace, mark: char) -> (String, Vec<&'a str>) {
        let (table, column, key_columns, keys): (&str, &str, &[&str], Vec<&str>) = match place {
            SealedPlace::Credentials {
                integration,
                connection,
            } => (
                &self.connections,
                "credentials",
                &["integration", "id"],
                vec![integration, connection],
            ),
            SealedPlace::Tokens {
                integration,
                connection,
            } => (
                &self.tokens,
                "tokens",
                &["integration", "connection"],
                vec![integration, connection],
            ),
            SealedPlace::Verifier { state_digest } => {
                (&self.authorizations, "verifier", &["state_digest"], vec![state_digest])
            }
        };
        let keyed: String = key_columns
            .iter()
            .enumerate()
            .map(|(i, key)| format!(" AND {key} = {mark}{}", i + 3))
            .collect();
        let sql = format!("UPDATE {table} SET {column} = {mark}1 WHERE {column} = {mark}2{keyed}");
        (sql, keys)
    }
}

fn required<T>(value: Option<T>, column: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| StoreError::corrupt(format_args!("stored `{column}` is null")))
}

/// A connection row: `integration, id, credentials, base_url, params` (JSON
/// text), `rate_per_second, rate_burst, created_at, updated_at, revoked_at`.
pub(crate) fn connection_from_row(row: &impl ConnectionColumns) -> Result<ConnectionRow, StoreError> {
    let text = |column: &str| required(row.text(column)?, column);
    let time = |column: &str| required(row.time(column)?, column);
    let rate_burst = row
        .integer("rate_burst")?
        .map(|burst| u32::try_from(burst).map_err(|_| StoreError::corrupt(format_args!("stored `rate_burst` {burst}"))))
        .transpose()?;
    Ok(ConnectionRow {
        integration: text("integration")?,
        id: text("id")?,
        credentials: text("credentials")?,
        base_url: row.text("base_url")?,
        params: from_json("params", &text("params")?)?,
        rate_per_second: row.real("rate_per_second")?,
        rate_burst,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        revoked_at: row.time("revoked_at")?,
    })
}

/// A tokens row ([`TOKEN_COLUMNS`]).
pub(crate) fn token_from_row(row: &impl CallRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        integration: required(row.text("integration")?, "integration")?,
        connection: required(row.text("connection")?, "connection")?,
        tokens: row.text("tokens")?,
        lease_owner: row.text("lease_owner")?,
        lease_expires_at: row.time("lease_expires_at")?,
        updated_at: required(row.time("updated_at")?, "updated_at")?,
    })
}

/// A pending authorization row ([`AUTHORIZATION_COLUMNS`]).
pub(crate) fn authorization_from_row(row: &impl CallRow) -> Result<AuthorizationRow, StoreError> {
    let text = |column: &str| required(row.text(column)?, column);
    Ok(AuthorizationRow {
        state_digest: text("state_digest")?,
        integration: text("integration")?,
        connection: text("connection")?,
        verifier: text("verifier")?,
        return_to: text("return_to")?,
        expires_at: required(row.time("expires_at")?, "expires_at")?,
    })
}

/// A row of [`ConnectionTables::sealed_values_query`].
pub(crate) fn sealed_value_from_row(row: &impl CallRow) -> Result<SealedValue, StoreError> {
    let text = |column: &str| required(row.text(column)?, column);
    let (scope, name) = (text("scope")?, text("name")?);
    let place = match text("kind")?.as_str() {
        "credentials" => SealedPlace::Credentials {
            integration: scope,
            connection: name,
        },
        "tokens" => SealedPlace::Tokens {
            integration: scope,
            connection: name,
        },
        "verifier" => SealedPlace::Verifier { state_digest: scope },
        kind => return Err(StoreError::corrupt(format_args!("unknown sealed value kind `{kind}`"))),
    };
    Ok(SealedValue {
        place,
        sealed: text("sealed")?,
    })
}
