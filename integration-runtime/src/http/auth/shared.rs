//! OAuth2 tokens shared by every process through the store.
//!
//! In one process, the token state's lock makes renewals single-flight.
//! Across processes, the tokens row's lease does: the process that takes
//! it renews and saves the tokens (sealed), the others wait for the saved
//! ones and use them. A rotated refresh token is saved with the access
//! token it came with, so it survives a restart and is the one every
//! process renews with next.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{OAuth2Config, TokenState};
use crate::connection::{StoredTokens, TokenVault};
use crate::descriptor::PolicyDescriptor;
use crate::error::ClientError;
use crate::http::client::HttpClient;
use crate::secret::Secret;

/// How often a process waiting for another's renewal looks at the store.
const WAIT_STEP: Duration = Duration::from_millis(25);
/// How long a process waits for another's renewal when the policy sets no
/// timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

fn store_error(endpoint: &str, error: impl std::fmt::Display) -> ClientError {
    ClientError::auth(
        endpoint,
        None,
        format!("the stored OAuth2 tokens could not be read or saved: {error}"),
    )
}

/// The access token of `stored`, when it is usable: not due for renewal,
/// not the one the provider refused, grown from this client's refresh token.
fn usable(stored: &StoredTokens, state: &TokenState, now: DateTime<Utc>) -> Option<(Secret, Option<Instant>)> {
    let token = stored.access_token.as_deref().filter(|t| !t.is_empty())?;
    if stored.seed != state.seed || state.refused.as_ref().is_some_and(|refused| refused.expose() == token) {
        return None;
    }
    let renew_in = match stored.renew_at {
        Some(at) if at <= now => return None,
        Some(at) => Some((at - now).to_std().unwrap_or_default()),
        None => None,
    };
    Some((Secret::new(token), renew_in.map(|left| Instant::now() + left)))
}

impl HttpClient {
    /// A valid access token of a client whose tokens live in `vault`: the
    /// stored one, or one this process renews under the lease, or one
    /// another process renewed meanwhile. Bounded by the policy's timeout.
    pub(super) async fn shared_token(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &PolicyDescriptor,
        vault: &TokenVault,
        state: &mut TokenState,
    ) -> Result<Secret, ClientError> {
        let wait = match policy.timeout_ms {
            0 => DEFAULT_WAIT,
            ms => Duration::from_millis(ms),
        };
        let give_up = Instant::now() + wait;
        loop {
            if let Some(token) = self.adopt(endpoint, vault, state).await? {
                return Ok(token);
            }
            if vault.lease().await.map_err(|e| store_error(endpoint, e))? {
                // Another process may have saved between the read and the lease.
                if let Some(token) = self.adopt(endpoint, vault, state).await? {
                    vault.release().await;
                    return Ok(token);
                }
                return self.renew(endpoint, config, policy, vault, state).await;
            }
            if Instant::now() + WAIT_STEP >= give_up {
                return Err(ClientError::auth(
                    endpoint,
                    None,
                    "another process is renewing the OAuth2 token and did not finish in time".to_owned(),
                ));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Takes the stored tokens into `state` when their access token is
    /// usable; the stored refresh token in any case (it is the newest).
    async fn adopt(
        &self,
        endpoint: &str,
        vault: &TokenVault,
        state: &mut TokenState,
    ) -> Result<Option<Secret>, ClientError> {
        let Some(stored) = vault.load().await.map_err(|e| store_error(endpoint, e))? else {
            return Ok(None);
        };
        if stored.seed != state.seed {
            return Ok(None);
        }
        if let Some(refresh) = stored.refresh_token.as_deref().filter(|t| !t.is_empty()) {
            self.learn(refresh);
            state.refresh_token = Some(Secret::new(refresh));
        }
        let Some((token, renew_at)) = usable(&stored, state, vault.now()) else {
            return Ok(None);
        };
        self.learn(token.expose());
        state.access = Some((token.clone(), renew_at));
        Ok(Some(token))
    }

    /// Renews under the lease and saves what the token endpoint answered.
    async fn renew(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &PolicyDescriptor,
        vault: &TokenVault,
        state: &mut TokenState,
    ) -> Result<Secret, ClientError> {
        if config.authorization_url.is_some() && state.refresh_token.is_none() {
            vault.release().await;
            return Err(ClientError::auth(
                endpoint,
                None,
                "the connection has no OAuth2 grant: authorize it again through the connect flow".to_owned(),
            ));
        }
        let token = match self.fetch_token(endpoint, config, policy, state).await {
            Ok(token) => token,
            Err(error) => {
                vault.release().await;
                return Err(error);
            }
        };
        let renew_at = state
            .access
            .as_ref()
            .and_then(|(_, at)| *at)
            .map(|at| vault.now() + at.saturating_duration_since(Instant::now()));
        let stored = StoredTokens {
            access_token: Some(token.expose().to_owned()),
            renew_at,
            refresh_token: state.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            seed: state.seed.clone(),
        };
        state.refused = None;
        match vault.save(&stored).await {
            Ok(true) => {}
            // The token is good; the next renewal (by whoever holds the
            // lease then) saves its own.
            Ok(false) => tracing::warn!("the token renewal lease ran out before the tokens were saved"),
            Err(error) => tracing::warn!(%error, "the renewed OAuth2 tokens could not be saved"),
        }
        Ok(token)
    }
}
