//! [`ConnectionStore`] in memory: the same rules as the SQL stores, each
//! operation one step under the store's lock.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::MemoryStore;
use crate::store::connections::{AuthorizationRow, ConnectionRow, ConnectionStore, SealedPlace, SealedValue, TokenRow};
use crate::store::{lease_deadline, truncate, BoxFuture, StoreError};

/// The connection tables of the in-memory store.
#[derive(Debug, Default)]
pub(super) struct Connections {
    /// By (integration, id): the listing order.
    rows: BTreeMap<(String, String), ConnectionRow>,
    tokens: HashMap<(String, String), TokenRow>,
    authorizations: HashMap<String, AuthorizationRow>,
}

fn key(integration: &str, id: &str) -> (String, String) {
    (integration.to_owned(), id.to_owned())
}

impl ConnectionStore for MemoryStore {
    fn put_connection(&self, mut row: ConnectionRow) -> BoxFuture<'_, Result<ConnectionRow, StoreError>> {
        Box::pin(async move {
            let now = truncate(self.clock.now());
            let mut state = self.state();
            let tables = &mut state.connections;
            let at = key(&row.integration, &row.id);
            row.updated_at = now;
            row.revoked_at = None;
            match tables.rows.get(&at) {
                Some(old) => {
                    row.created_at = old.created_at;
                    if old.credentials != row.credentials {
                        tables.tokens.remove(&at);
                    }
                }
                None => row.created_at = now,
            }
            tables.rows.insert(at, row.clone());
            Ok(row)
        })
    }

    fn connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        Box::pin(async move { Ok(self.state().connections.rows.get(&key(integration, id)).cloned()) })
    }

    fn connections<'a>(
        &'a self,
        integration: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(state
                .connections
                .rows
                .values()
                .filter(|row| integration.is_none_or(|name| row.integration == name))
                .cloned()
                .collect())
        })
    }

    fn revoke_connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>> {
        Box::pin(async move {
            let now = truncate(self.clock.now());
            let mut state = self.state();
            let tables = &mut state.connections;
            let at = key(integration, id);
            let Some(row) = tables.rows.get_mut(&at) else {
                return Ok(None);
            };
            if row.revoked_at.is_none() {
                row.revoked_at = Some(now);
                row.updated_at = now;
            }
            let row = row.clone();
            tables.tokens.remove(&at);
            Ok(Some(row))
        })
    }

    fn token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .state()
                .connections
                .tokens
                .get(&key(integration, connection))
                .cloned())
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
            let now = truncate(self.clock.now());
            let mut state = self.state();
            let row = state
                .connections
                .tokens
                .entry(key(integration, connection))
                .or_insert_with(|| TokenRow {
                    integration: integration.to_owned(),
                    connection: connection.to_owned(),
                    tokens: None,
                    lease_owner: None,
                    lease_expires_at: None,
                    updated_at: now,
                });
            let free = match (&row.lease_owner, row.lease_expires_at) {
                (Some(holder), Some(until)) => holder == owner || until <= now,
                _ => true,
            };
            if free {
                row.lease_owner = Some(owner.to_owned());
                row.lease_expires_at = Some(lease_deadline(now, lease));
            }
            Ok(free)
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
            let now = truncate(self.clock.now());
            let mut state = self.state();
            let Some(row) = state.connections.tokens.get_mut(&key(integration, connection)) else {
                return Ok(false);
            };
            let held =
                row.lease_owner.as_deref() == Some(owner) && row.lease_expires_at.is_some_and(|until| until > now);
            if held {
                row.tokens = Some(tokens);
                row.lease_owner = None;
                row.lease_expires_at = None;
                row.updated_at = now;
            }
            Ok(held)
        })
    }

    fn release_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut state = self.state();
            if let Some(row) = state.connections.tokens.get_mut(&key(integration, connection)) {
                if row.lease_owner.as_deref() == Some(owner) {
                    row.lease_owner = None;
                    row.lease_expires_at = None;
                }
            }
            Ok(())
        })
    }

    fn put_authorization(&self, mut row: AuthorizationRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let now = truncate(self.clock.now());
            // Kept to the millisecond, as the SQL stores keep it.
            row.expires_at = truncate(row.expires_at);
            let mut state = self.state();
            let authorizations = &mut state.connections.authorizations;
            authorizations.retain(|_, pending| pending.expires_at > now);
            authorizations.insert(row.state_digest.clone(), row);
            Ok(())
        })
    }

    fn take_authorization<'a>(
        &'a self,
        state_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthorizationRow>, StoreError>> {
        Box::pin(async move { Ok(self.state().connections.authorizations.remove(state_digest)) })
    }

    fn sealed_values(&self) -> BoxFuture<'_, Result<Vec<SealedValue>, StoreError>> {
        Box::pin(async move {
            let state = self.state();
            let tables = &state.connections;
            let credentials = tables.rows.values().map(|row| SealedValue {
                place: SealedPlace::Credentials {
                    integration: row.integration.clone(),
                    connection: row.id.clone(),
                },
                sealed: row.credentials.clone(),
            });
            let tokens = tables.tokens.values().filter_map(|row| {
                Some(SealedValue {
                    place: SealedPlace::Tokens {
                        integration: row.integration.clone(),
                        connection: row.connection.clone(),
                    },
                    sealed: row.tokens.clone()?,
                })
            });
            let verifiers = tables.authorizations.values().map(|row| SealedValue {
                place: SealedPlace::Verifier {
                    state_digest: row.state_digest.clone(),
                },
                sealed: row.verifier.clone(),
            });
            Ok(credentials.chain(tokens).chain(verifiers).collect())
        })
    }

    fn replace_sealed<'a>(
        &'a self,
        value: &'a SealedValue,
        resealed: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut state = self.state();
            let tables = &mut state.connections;
            let slot = match &value.place {
                SealedPlace::Credentials {
                    integration,
                    connection,
                } => tables
                    .rows
                    .get_mut(&key(integration, connection))
                    .map(|row| &mut row.credentials),
                SealedPlace::Tokens {
                    integration,
                    connection,
                } => tables
                    .tokens
                    .get_mut(&key(integration, connection))
                    .and_then(|row| row.tokens.as_mut()),
                SealedPlace::Verifier { state_digest } => {
                    tables.authorizations.get_mut(state_digest).map(|row| &mut row.verifier)
                }
            };
            match slot {
                Some(sealed) if *sealed == value.sealed => {
                    *sealed = resealed;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }
}
