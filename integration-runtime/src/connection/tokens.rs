//! A connection's OAuth2 tokens in the store: sealed, shared by every
//! process, renewed by one process at a time (a lease on the tokens row).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Keyring;
use crate::clock::Clock;
use crate::store::{SealedPlace, Store, StoreError};

/// How long a process may take to renew a token before another may try:
/// longer than a token request with its retries normally takes.
pub(crate) const RENEWAL_LEASE: Duration = Duration::from_secs(30);

/// The tokens of one connection, as sealed in its tokens row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredTokens {
    /// The access token.
    pub(crate) access_token: Option<String>,
    /// When the access token should be renewed (a little before it expires).
    pub(crate) renew_at: Option<DateTime<Utc>>,
    /// The current refresh token (providers may rotate it on every renewal).
    pub(crate) refresh_token: Option<String>,
    /// The digest of the refresh token the connection was configured with:
    /// stored tokens that grew from another one (the environment's refresh
    /// token was replaced since) are not used.
    pub(crate) seed: String,
}

impl StoredTokens {
    /// The digest recorded as [`StoredTokens::seed`] for `refresh_token`.
    pub(crate) fn seed_of(refresh_token: Option<&str>) -> String {
        let digest = Sha256::digest(refresh_token.unwrap_or_default().as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// Where one client keeps its connection's tokens.
#[derive(Clone)]
pub(crate) struct TokenVault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) clock: Clock,
    pub(crate) integration: String,
    /// The connection's id; empty for the default connection.
    pub(crate) connection: String,
    /// This process, as the holder of renewal leases.
    pub(crate) owner: String,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVault")
            .field("integration", &self.integration)
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// Why the stored tokens could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VaultError {
    #[error("the token store failed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Keyring(#[from] super::KeyringError),
}

impl TokenVault {
    fn place(&self) -> SealedPlace {
        SealedPlace::Tokens {
            integration: self.integration.clone(),
            connection: self.connection.clone(),
        }
    }

    /// The stored tokens, if any were saved.
    pub(crate) async fn load(&self) -> Result<Option<StoredTokens>, VaultError> {
        let Some(row) = self.store.token(&self.integration, &self.connection).await? else {
            return Ok(None);
        };
        let Some(sealed) = row.tokens else { return Ok(None) };
        let plain = self.keyring.open(&self.place(), &sealed)?;
        // A row this version cannot read is as good as none: renew.
        Ok(serde_json::from_slice(&plain).ok())
    }

    /// Takes the renewal lease; `false` when another process holds it.
    pub(crate) async fn lease(&self) -> Result<bool, VaultError> {
        Ok(self
            .store
            .lease_token(&self.integration, &self.connection, &self.owner, RENEWAL_LEASE)
            .await?)
    }

    /// Saves `tokens` and ends the lease; `false` when the lease was lost.
    pub(crate) async fn save(&self, tokens: &StoredTokens) -> Result<bool, VaultError> {
        let plain = serde_json::to_vec(tokens).expect("tokens serialize");
        let sealed = self.keyring.seal(&self.place(), &plain);
        Ok(self
            .store
            .save_token(&self.integration, &self.connection, &self.owner, sealed)
            .await?)
    }

    /// Ends the lease without saving.
    pub(crate) async fn release(&self) {
        if let Err(error) = self
            .store
            .release_token(&self.integration, &self.connection, &self.owner)
            .await
        {
            // The lease then ends by itself.
            tracing::warn!(%error, "could not release the token renewal lease");
        }
    }

    /// Now, on the runtime's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
