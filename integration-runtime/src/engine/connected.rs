//! Connections in the engine: storing and revoking them, re-sealing their
//! credentials, and sending a call with its connection's settings.
//!
//! A worker resolves a call's connection at every turn: the row is read
//! again (a revocation by another process is seen at the next turn), and
//! the connected integration (its client, with the opened credentials) is
//! built once per version of the row and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::events::news::{failed, generated_external_id};
use super::events::{EventSink, Subject};
use super::{EngineError, Runtime};
use crate::connection::{
    describe, id_problem, Connection, ConnectionContext, Credentials, KeyringError, NewConnection, RateBudget,
    SealError, SharedTokens, Vault, CREDENTIAL_KEY_ENV,
};
use crate::failure::FailureKind;
use crate::integration::Integration;
use crate::lifecycle::CallStatus;
use crate::store::{CallRecord, ConnectionRow, EventSource, ListQuery, StoreError, MAX_PAGE_SIZE};

/// Connected integrations kept per connection, at most; past it the cache
/// starts again (a deployment with more live connections than this pays
/// one credential opening per call).
const CACHED_CONNECTIONS: usize = 10_000;

/// Why a connection operation failed.
///
/// Branch on the `is_*` methods; the `Display` text says what to do. No
/// variant ever holds a credential.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ConnectionError {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("connections need a credential key: {CREDENTIAL_KEY_ENV} is not set (see `Keyring`)")]
    NoKeyring,
    #[error("integration `{0}` is not registered with this runtime")]
    UnknownIntegration(String),
    #[error("connection `{id}` of `{integration}` is not valid: {problem}")]
    Invalid {
        integration: String,
        id: String,
        problem: String,
    },
    #[error("`{integration}` has no connection `{id}`")]
    NotFound { integration: String, id: String },
    #[error("the store failed: {0}")]
    Store(#[source] StoreError),
    #[error("{place}: {error}")]
    Keyring {
        place: String,
        #[source]
        error: KeyringError,
    },
}

impl From<Kind> for ConnectionError {
    fn from(kind: Kind) -> Self {
        ConnectionError { kind }
    }
}

impl From<StoreError> for ConnectionError {
    fn from(error: StoreError) -> Self {
        Kind::Store(error).into()
    }
}

impl From<SealError> for ConnectionError {
    fn from(error: SealError) -> Self {
        match error {
            SealError::Store(error) => Kind::Store(error).into(),
            SealError::Keyring { error, place } => Kind::Keyring { place, error }.into(),
        }
    }
}

impl ConnectionError {
    pub(crate) fn invalid(integration: &str, id: &str, problem: String) -> Self {
        Kind::Invalid {
            integration: integration.to_owned(),
            id: id.to_owned(),
            problem,
        }
        .into()
    }

    /// No credential key is configured ([`CREDENTIAL_KEY_ENV`]).
    pub fn is_no_keyring(&self) -> bool {
        matches!(self.kind, Kind::NoKeyring)
    }

    /// The integration is not registered.
    pub fn is_unknown_integration(&self) -> bool {
        matches!(self.kind, Kind::UnknownIntegration(_))
    }

    /// The connection does not fit its integration: a bad id, a credential
    /// its auth kind needs and lacks or does not take, a bad base URL or
    /// rate budget.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid { .. })
    }

    /// There is no such connection.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, Kind::NotFound { .. })
    }

    /// The store failed.
    pub fn is_store(&self) -> bool {
        matches!(self.kind, Kind::Store(_))
    }

    /// A stored value could not be opened with the configured keys.
    pub fn is_keyring(&self) -> bool {
        matches!(self.kind, Kind::Keyring { .. })
    }
}

/// A revoked connection and what revoking did.
#[derive(Debug, Clone, PartialEq)]
pub struct Revoked {
    /// The connection, as it is now.
    pub connection: Connection,
    /// How many of its calls that had not ended were failed with kind
    /// [`FailureKind::Revoked`].
    pub calls_failed: u64,
}

/// Connected integrations by (integration, connection id), each with the
/// row it was built from (see [`same_settings`]).
type ConnectedCache = HashMap<(String, String), (ConnectionRow, Arc<dyn Integration>)>;

/// Whether a client built from `built` serves `row`: the same sealed
/// credentials (new ones are sealed afresh, with a new nonce), base URL,
/// overrides and budget. Not by `updated_at`: it is kept to the
/// millisecond, and two puts may share one.
fn same_settings(built: &ConnectionRow, row: &ConnectionRow) -> bool {
    built.credentials == row.credentials
        && built.base_url == row.base_url
        && built.params == row.params
        && built.rate_per_second == row.rate_per_second
        && built.rate_burst == row.rate_burst
}

/// The engine's side of connections: the vault, when a key is configured,
/// and the connected integrations built so far.
#[derive(Default)]
pub(crate) struct Connections {
    pub(crate) vault: Option<Vault>,
    cache: Mutex<ConnectedCache>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

/// What a worker sends a call of a connection with, or why it cannot.
pub(crate) enum Resolution {
    /// The connected integration, and the parameters to send.
    Ready(Arc<dyn Integration>, Value),
    /// The call fails.
    Fails(FailureKind, String),
}

/// `params` with the connection's overrides applied.
fn overridden(params: &Value, overrides: &Value) -> Value {
    match (params, overrides.as_object()) {
        (Value::Object(params), Some(overrides)) if !overrides.is_empty() => {
            let mut merged = params.clone();
            merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(merged)
        }
        _ => params.clone(),
    }
}

impl Connections {
    pub(crate) fn new(vault: Option<Vault>) -> Self {
        Connections {
            vault,
            cache: Mutex::default(),
        }
    }

    pub(super) fn vault(&self) -> Result<&Vault, ConnectionError> {
        self.vault.as_ref().ok_or_else(|| Kind::NoKeyring.into())
    }

    /// The context `integration` is connected with for `row`.
    fn context(vault: &Vault, row: &ConnectionRow, credentials: Credentials, owner: &str) -> ConnectionContext {
        ConnectionContext {
            id: row.id.clone(),
            credentials,
            base_url: row.base_url.clone(),
            budget: RateBudget::of_row(row),
            tokens: vault.tokens(&row.integration, &row.id, owner),
        }
    }

    /// What the call `call` of `integration` is sent with, by its
    /// connection `id`.
    pub(crate) async fn resolve(
        &self,
        integration: &Arc<dyn Integration>,
        call: &CallRecord,
        id: &str,
        owner: &str,
    ) -> Result<Resolution, StoreError> {
        let name = &call.integration;
        let Some(vault) = &self.vault else {
            return Ok(Resolution::Fails(
                FailureKind::Config,
                format!("the call's connection `{id}` cannot be opened here: {CREDENTIAL_KEY_ENV} is not set"),
            ));
        };
        let Some(row) = vault.store.connection(name, id).await? else {
            return Ok(Resolution::Fails(
                FailureKind::UnknownConnection,
                format!("`{name}` has no connection `{id}`"),
            ));
        };
        if row.revoked_at.is_some() {
            return Ok(Resolution::Fails(
                FailureKind::Revoked,
                format!("connection `{id}` of `{name}` was revoked"),
            ));
        }
        let params = overridden(&call.params, &row.params);
        let key = (name.clone(), id.to_owned());
        if let Some((version, connected)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            if same_settings(version, &row) {
                return Ok(Resolution::Ready(Arc::clone(connected), params));
            }
        }
        let credentials = match vault.open_credentials(&row) {
            Ok(credentials) => credentials,
            Err(error) => {
                let place = describe(&Vault::credentials_place(name, id));
                return Ok(Resolution::Fails(FailureKind::Config, format!("{place}: {error}")));
            }
        };
        let connected = match integration.connect(Connections::context(vault, &row, credentials, owner)) {
            Some(Ok(connected)) => connected,
            Some(Err(error)) => return Ok(Resolution::Fails(FailureKind::Config, error.to_string())),
            None => {
                return Ok(Resolution::Fails(
                    FailureKind::Config,
                    format!("integration `{name}` cannot send calls for connections"),
                ))
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_CONNECTIONS {
            cache.clear();
        }
        cache.insert(key, (row, Arc::clone(&connected)));
        Ok(Resolution::Ready(connected, params))
    }
}

impl Runtime {
    pub(super) fn registered(&self, name: &str) -> Result<&Arc<dyn Integration>, ConnectionError> {
        self.inner
            .integrations
            .get(name)
            .ok_or_else(|| Kind::UnknownIntegration(name.to_owned()).into())
    }

    /// Stores a connection: a new one, or new credentials and settings for
    /// the connection of that id (live again if it was revoked; its stored
    /// tokens are dropped when its credentials change). The credentials are
    /// sealed before they reach the store.
    ///
    /// Errors: [`ConnectionError::is_no_keyring`],
    /// [`ConnectionError::is_unknown_integration`],
    /// [`ConnectionError::is_invalid`] (checked against the integration's
    /// auth kind before anything is stored), [`ConnectionError::is_store`].
    pub async fn put_connection(&self, connection: NewConnection) -> Result<Connection, ConnectionError> {
        let integration = self.registered(&connection.integration)?;
        let connections = &self.inner.connections;
        let vault = connections.vault()?;
        let invalid = |problem: String| ConnectionError::invalid(&connection.integration, &connection.id, problem);
        if let Some(problem) = id_problem(&connection.id) {
            return Err(invalid(problem));
        }
        if let Some(budget) = connection.rate_budget {
            if !(budget.per_second.is_finite() && budget.per_second > 0.0) || budget.burst == 0 {
                return Err(invalid(
                    "a rate budget needs a positive `per_second` and a `burst` of at least 1".to_owned(),
                ));
            }
        }
        // Unchanged credentials keep their sealed text, so the store keeps
        // the connection's tokens: changing a connected connection's base
        // URL or budget must not undo its authorization.
        let existing = vault.store.connection(&connection.integration, &connection.id).await?;
        let unchanged = existing.filter(|row| {
            vault
                .open_credentials(row)
                .is_ok_and(|credentials| credentials == connection.credentials)
        });
        let sealed = match unchanged {
            Some(row) => row.credentials,
            None => vault.seal_credentials(&connection.integration, &connection.id, &connection.credentials),
        };
        let row = ConnectionRow {
            integration: connection.integration.clone(),
            id: connection.id.clone(),
            credentials: sealed,
            base_url: connection.base_url.clone(),
            params: Value::Object(connection.params.clone()),
            rate_per_second: connection.rate_budget.map(|b| b.per_second),
            rate_burst: connection.rate_budget.map(|b| b.burst),
            created_at: self.inner.settings.clock.now(),
            updated_at: self.inner.settings.clock.now(),
            revoked_at: None,
        };
        // The connection must make a client before it is stored: a typo in
        // a credential's name is an error now, not a failed call later.
        let context = Connections::context(
            vault,
            &row,
            connection.credentials.clone(),
            &self.inner.settings.worker_id,
        );
        match integration.connect(context) {
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(invalid(error.to_string())),
            None => return Err(invalid("the integration cannot send calls for connections".to_owned())),
        }
        let stored = vault.store.put_connection(row).await?;
        Ok(Connection::from_row(&stored, Some(&connection.credentials)))
    }

    /// The connection `id` of `integration`, revoked or not.
    ///
    /// Errors: [`ConnectionError::is_store`].
    pub async fn connection(&self, integration: &str, id: &str) -> Result<Option<Connection>, ConnectionError> {
        let row = self.inner.store.connection(integration, id).await?;
        Ok(row.map(|row| shown(self.inner.connections.vault.as_ref(), &row)))
    }

    /// Every connection (of `integration`, when given), revoked ones
    /// included, by integration then id.
    ///
    /// Errors: [`ConnectionError::is_store`].
    pub async fn connections(&self, integration: Option<&str>) -> Result<Vec<Connection>, ConnectionError> {
        let rows = self.inner.store.connections(integration).await?;
        let vault = self.inner.connections.vault.as_ref();
        Ok(rows.iter().map(|row| shown(vault, row)).collect())
    }

    /// Revokes a connection: its credentials and tokens are no longer used
    /// (its tokens are deleted), and every call of it that has not ended
    /// fails with kind [`FailureKind::Revoked`], now for the calls stored
    /// so far, at their next turn for any created later. A connection
    /// already revoked is revoked again (its pending calls failed again).
    ///
    /// Errors: [`ConnectionError::is_not_found`], [`ConnectionError::is_store`].
    pub async fn revoke_connection(&self, integration: &str, id: &str) -> Result<Revoked, ConnectionError> {
        revoke(
            &self.inner.events,
            self.inner.connections.vault.as_ref(),
            integration,
            id,
        )
        .await
    }

    /// Seals every stored credential, token and pending authorization
    /// under the current key ([`CREDENTIAL_KEY_ENV`]), for a key rotation:
    /// run it with the new key current and the old one in
    /// [`OLD_CREDENTIAL_KEYS_ENV`](crate::connection::OLD_CREDENTIAL_KEYS_ENV),
    /// then drop the old key. Returns how many values it sealed again.
    ///
    /// Errors: [`ConnectionError::is_no_keyring`],
    /// [`ConnectionError::is_keyring`] (a value no configured key opens:
    /// nothing after it is resealed, nothing is lost),
    /// [`ConnectionError::is_store`].
    pub async fn reseal_credentials(&self) -> Result<u64, ConnectionError> {
        let vault = self.inner.connections.vault()?;
        crate::connection::reseal(&*vault.store, &vault.keyring).await
    }
}

/// Revokes the connection `id` of `integration` through `events` (so the
/// failed calls are published like any other news): the one way to revoke,
/// used by [`Runtime::revoke_connection`] and the operations API. `vault`,
/// when there is one, opens the credentials' names for the answer.
pub(crate) async fn revoke(
    events: &EventSink,
    vault: Option<&Vault>,
    integration: &str,
    id: &str,
) -> Result<Revoked, ConnectionError> {
    let row = events
        .store()
        .revoke_connection(integration, id)
        .await?
        .ok_or_else(|| Kind::NotFound {
            integration: integration.to_owned(),
            id: id.to_owned(),
        })?;
    let mut calls_failed = 0;
    for status in [CallStatus::Pending, CallStatus::Processing] {
        calls_failed += fail_revoked(events, integration, id, status).await?;
    }
    Ok(Revoked {
        connection: shown(vault, &row),
        calls_failed,
    })
}

/// Fails the calls of connection `id` in `status`; how many it failed.
async fn fail_revoked(events: &EventSink, integration: &str, id: &str, status: CallStatus) -> Result<u64, StoreError> {
    let message = format!("connection `{id}` of `{integration}` was revoked");
    let mut failed_calls = 0;
    let mut query = ListQuery::new(integration)
        .connection(id)
        .status(status)
        .limit(MAX_PAGE_SIZE);
    loop {
        let page = events.store().list(&query).await?;
        for call in &page.calls {
            let mut event = failed(FailureKind::Revoked, message.clone());
            if call.status == CallStatus::Pending {
                event = event.external_id(generated_external_id(call.id));
            }
            let outcomes = events
                .record(
                    integration,
                    Subject::Call(call.id),
                    EventSource::Revoke,
                    vec![event],
                    None,
                )
                .await?;
            if outcomes.iter().any(|outcome| outcome.is_applied()) {
                failed_calls += 1;
            }
        }
        match page.next {
            Some(next) => query = query.after(next),
            None => return Ok(failed_calls),
        }
    }
}

/// The connection of `row` as shown, with its credentials' names when a
/// vault is given and they open with it.
pub(crate) fn shown(vault: Option<&Vault>, row: &ConnectionRow) -> Connection {
    let credentials = vault.and_then(|vault| vault.open_credentials(row).ok());
    Connection::from_row(row, credentials.as_ref())
}

/// Sets up connections at build: the vault when a key is configured (and
/// it opens what the store holds), and the default connections' tokens
/// kept in the store.
pub(crate) async fn connections_at_build(
    store: &Arc<dyn crate::Store>,
    keyring: Option<Arc<crate::connection::Keyring>>,
    integrations: &HashMap<&'static str, Arc<dyn Integration>>,
    settings: &super::runtime::Settings,
) -> Result<Connections, EngineError> {
    let Some(keyring) = keyring else {
        // Nothing sealed stored: connections are simply not used here.
        if store.sealed_values().await?.is_empty() {
            return Ok(Connections::new(None));
        }
        return Err(EngineError::config(format!(
            "the store holds sealed credentials, and {CREDENTIAL_KEY_ENV} is not set to the key that opens them"
        )));
    };
    let vault = Vault {
        store: Arc::clone(store),
        keyring,
        clock: settings.clock.clone(),
    };
    vault.check_keys().await.map_err(|error| match error {
        SealError::Store(error) => EngineError::from(error),
        SealError::Keyring { .. } => EngineError::config(format!("{CREDENTIAL_KEY_ENV}: {error}")),
    })?;
    for (name, integration) in integrations {
        integration.keep_tokens(SharedTokens(vault.tokens(name, "", &settings.worker_id)));
    }
    Ok(Connections::new(Some(vault)))
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn overrides_replace_parameters_of_the_same_name_only() {
        let params = serde_json::json!({"region": "eu", "text": "hi"});
        let merged = overridden(&params, &serde_json::json!({"region": "us"}));
        assert_eq!(merged, serde_json::json!({"region": "us", "text": "hi"}));
        assert_eq!(overridden(&params, &Value::Object(Map::new())), params);
    }
}
