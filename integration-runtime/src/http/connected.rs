//! A client for one connection: the integration's client with the
//! connection's credentials, base URL and budget, sharing what is the
//! integration's (its reqwest clients, and the limits the spec scopes to
//! the integration) and nothing that is another customer's.

use std::sync::{Arc, Mutex, PoisonError};

use super::auth::{configured_secrets, TokenState};
use super::client::{parse_http_url, HttpClient, Inner};
use crate::connection::{Credentials, RateBudget, TokenVault};
use crate::error::ConfigError;
use crate::policy::Policies;

/// What the runtime hands an integration to send for one connection
/// ([`Integration::connect`](crate::Integration::connect)): its
/// credentials (opened), base URL, budget and token storage. Built by the
/// runtime only.
#[derive(Debug)]
pub struct ConnectionContext {
    /// The connection's id.
    pub(crate) id: String,
    pub(crate) credentials: Credentials,
    /// The connection's base URL; `None`: the integration's.
    pub(crate) base_url: Option<String>,
    pub(crate) budget: Option<RateBudget>,
    /// Where the connection's OAuth2 tokens are kept.
    pub(crate) tokens: TokenVault,
}

/// Where the runtime keeps the OAuth2 tokens of an integration's default
/// connection ([`Integration::keep_tokens`](crate::Integration::keep_tokens)).
/// Built by the runtime only.
#[derive(Debug)]
pub struct SharedTokens(pub(crate) TokenVault);

impl HttpClient {
    /// The client of a connection of this client's integration.
    ///
    /// Errors name what is wrong with the connection (a credential its
    /// auth kind needs and it lacks, one it does not take, a bad base URL);
    /// never a credential's value.
    pub(crate) fn for_connection(&self, settings: ConnectionContext) -> Result<HttpClient, ConfigError> {
        let name = self.inner.integration;
        let mut invalid = Vec::new();
        let auth = self
            .inner
            .auth
            .for_connection(&settings.credentials)
            .map_err(|problem| invalid.push(("credentials".to_owned(), problem)))
            .ok();
        let base = match settings.base_url.as_deref() {
            None => Some(self.inner.base.clone()),
            Some(url) => match parse_http_url(url) {
                Ok(url) => Some(url.as_str().trim_end_matches('/').to_owned()),
                Err(problem) => {
                    invalid.push(("base URL".to_owned(), problem));
                    None
                }
            },
        };
        let (Some(auth), Some(base)) = (auth, base) else {
            return Err(ConfigError::new(name, Vec::new(), invalid));
        };
        let refresh_token = match &auth {
            super::Auth::OAuth2(config) => config.refresh_token.clone(),
            _ => None,
        };
        let secrets = configured_secrets(&auth)
            .iter()
            .map(|s| s.expose().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // The reqwest clients (and so their connection pools) are shared:
        // they carry no credential.
        let clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let tokens = std::sync::OnceLock::new();
        let _ = tokens.set(settings.tokens);
        Ok(HttpClient {
            given: self.given.clone(),
            inner: Arc::new(Inner {
                integration: name,
                base,
                auth,
                clients: Mutex::new(clients),
                token: Arc::new(tokio::sync::Mutex::new(TokenState::new(refresh_token))),
                secrets,
                learnt: Mutex::new(Vec::new()),
                policies: Arc::new(Policies::for_connection(
                    &self.inner.policies,
                    &settings.id,
                    settings.budget.map(RateBudget::policy),
                )),
                connection: Some(settings.id),
                tokens,
            }),
        })
    }

    /// Keeps this client's OAuth2 tokens (the default connection's) in
    /// `vault` from now on, shared by every process on its store. `false`
    /// when it already keeps them somewhere.
    pub(crate) fn keep_tokens(&self, tokens: SharedTokens) -> bool {
        self.inner.tokens.set(tokens.0).is_ok()
    }

    /// Whether the client authenticates with OAuth2 (it has tokens to keep).
    pub(crate) fn is_oauth2(&self) -> bool {
        matches!(self.inner.auth, super::Auth::OAuth2(_))
    }

    /// The connection this client sends for; `None`: the default one.
    pub fn connection(&self) -> Option<&str> {
        self.inner.connection.as_deref()
    }
}
