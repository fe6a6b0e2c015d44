//! The keyring and the store together: sealing what a connection stores,
//! opening it again, and moving every sealed value to the current key.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Credentials, Keyring, KeyringError, TokenVault};
use crate::clock::Clock;
use crate::engine::ConnectionError;
use crate::store::{ConnectionRow, SealedPlace, Store, StoreError};

/// The runtime's sealed storage of connections.
#[derive(Clone)]
pub(crate) struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) clock: Clock,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// Why a key check or a re-seal stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{error} ({place})")]
    Keyring { error: KeyringError, place: String },
}

/// Where a sealed value is, for messages (no secret in it).
pub(crate) fn describe(place: &SealedPlace) -> String {
    match place {
        SealedPlace::Credentials {
            integration,
            connection,
        } => format!("the credentials of connection `{connection}` of `{integration}`"),
        SealedPlace::Tokens {
            integration,
            connection,
        } if connection.is_empty() => format!("the tokens of `{integration}`'s default connection"),
        SealedPlace::Tokens {
            integration,
            connection,
        } => format!("the tokens of connection `{connection}` of `{integration}`"),
        SealedPlace::Verifier { .. } => "a pending authorization".to_owned(),
    }
}

impl Vault {
    pub(crate) fn credentials_place(integration: &str, connection: &str) -> SealedPlace {
        SealedPlace::Credentials {
            integration: integration.to_owned(),
            connection: connection.to_owned(),
        }
    }

    /// `credentials` sealed for the connection `id` of `integration`.
    pub(crate) fn seal_credentials(&self, integration: &str, id: &str, credentials: &Credentials) -> String {
        self.keyring
            .seal(&Vault::credentials_place(integration, id), &credentials.to_json())
    }

    /// The credentials of `row`.
    pub(crate) fn open_credentials(&self, row: &ConnectionRow) -> Result<Credentials, KeyringError> {
        let plain = self
            .keyring
            .open(&Vault::credentials_place(&row.integration, &row.id), &row.credentials)?;
        Credentials::from_json(&plain).ok_or(KeyringError::Malformed {
            problem: "the opened credentials are not a map of names to values",
        })
    }

    /// The token storage of a connection (empty id: the default one).
    pub(crate) fn tokens(&self, integration: &str, connection: &str, owner: &str) -> TokenVault {
        TokenVault {
            store: Arc::clone(&self.store),
            keyring: Arc::clone(&self.keyring),
            clock: self.clock.clone(),
            integration: integration.to_owned(),
            connection: connection.to_owned(),
            owner: owner.to_owned(),
        }
    }

    /// Checks at startup that the keyring opens what the store holds: for
    /// each key id found, one value sealed under it must open. A wrong key
    /// under the right id (or a missing old key) stops the runtime before
    /// any call runs, instead of failing calls one by one.
    pub(crate) async fn check_keys(&self) -> Result<(), SealError> {
        let mut samples = BTreeMap::new();
        for value in self.store.sealed_values().await? {
            let key_id = Keyring::key_id_of(&value.sealed).unwrap_or_default().to_owned();
            samples.entry(key_id).or_insert(value);
        }
        for value in samples.into_values() {
            self.keyring
                .open(&value.place, &value.sealed)
                .map_err(|error| SealError::Keyring {
                    error,
                    place: describe(&value.place),
                })?;
        }
        Ok(())
    }
}

/// Seals every value `store` holds under `keyring`'s current key, for a key
/// rotation: run it with the new key current and the old one retired
/// ([`OLD_CREDENTIAL_KEYS_ENV`](super::OLD_CREDENTIAL_KEYS_ENV)), until it
/// returns 0, then drop the old key. Values already under the current key
/// are left alone; a value that changed meanwhile (a token renewal) is
/// already under it. Returns how many values were sealed again.
/// [`Runtime::reseal_credentials`](crate::Runtime::reseal_credentials) does
/// this with the runtime's store and keyring; `integration connections
/// reseal` with a store and the keys of the environment, without an
/// integration.
///
/// Errors: [`ConnectionError::is_keyring`] (a value no key of `keyring`
/// opens: nothing after it is resealed, nothing is lost),
/// [`ConnectionError::is_store`].
pub async fn reseal(store: &dyn Store, keyring: &Keyring) -> Result<u64, ConnectionError> {
    let mut resealed = 0;
    for value in store.sealed_values().await? {
        let fresh = keyring
            .reseal(&value.place, &value.sealed)
            .map_err(|error| SealError::Keyring {
                error,
                place: describe(&value.place),
            })?;
        if let Some(fresh) = fresh {
            if store.replace_sealed(&value, fresh).await? {
                resealed += 1;
            }
        }
    }
    Ok(resealed)
}
