//! OAuth2 access tokens: cached, fetched once for concurrent callers, and
//! fetched again when the provider refuses one. A token endpoint that is
//! briefly unavailable (5xx, 429, a dropped connection) is asked again a few
//! times with backoff, within the policy's timeout, instead of failing the
//! call; a refusal (4xx such as `invalid_client`) fails it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;
use tracing::Instrument;

use super::OAuth2Config;
use crate::descriptor::PolicyDescriptor;
use crate::error::ClientError;
use crate::form::encode_form;
use crate::http::answer::Answer;
use crate::http::client::{parse_http_url, truncate, HttpClient, MESSAGE_CHARS};
use crate::json_path::{extract_message, Seg};
use crate::secret::Secret;

/// Token requests per token fetch, the first included.
const TOKEN_ATTEMPTS: u32 = 4;
/// The delay before the first repeat of a token request; it doubles.
const TOKEN_BACKOFF: Duration = Duration::from_millis(100);

/// The cached access token (with its renewal time) and the current refresh token.
#[derive(Default)]
pub(in crate::http) struct TokenState {
    pub(in crate::http) access: Option<(Secret, Option<Instant>)>,
    pub(in crate::http) refresh_token: Option<Secret>,
    /// The digest of the refresh token the client was configured with
    /// (see `StoredTokens::seed`).
    pub(in crate::http) seed: String,
    /// The last access token the provider refused: not taken again from
    /// the store, where it may still be until a renewal replaces it.
    pub(in crate::http) refused: Option<Secret>,
}

impl TokenState {
    pub(in crate::http) fn new(refresh_token: Option<Secret>) -> Self {
        TokenState {
            access: None,
            seed: crate::connection::StoredTokens::seed_of(refresh_token.as_ref().map(Secret::expose)),
            refresh_token,
            refused: None,
        }
    }
}

/// What a token endpoint granted.
pub(crate) struct Grant {
    pub(crate) access_token: Secret,
    /// When to renew the access token (a little before it expires).
    pub(crate) renew_at: Option<Instant>,
    /// A new refresh token, when the provider sent one.
    pub(crate) refresh_token: Option<Secret>,
}

/// Whether a token request's result is worth repeating: the endpoint is
/// overloaded or the connection failed, as opposed to a refusal.
fn is_transient(result: &Result<Answer, ClientError>) -> bool {
    match result {
        Ok(answer) => answer.status == 429 || answer.status >= 500,
        Err(error) => error.is_transport() || error.is_connect() || error.is_timeout(),
    }
}

impl HttpClient {
    /// Forgets the cached access token if it still is `used` (the provider refused
    /// it); a token another caller already replaced is kept.
    pub(in crate::http) async fn invalidate_token(&self, used: &Secret) {
        let mut state = self.inner.token.lock().await;
        if state
            .access
            .as_ref()
            .is_some_and(|(token, _)| token.expose() == used.expose())
        {
            state.access = None;
            state.refused = Some(used.clone());
        }
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    ///
    /// Single flight: the token state stays locked during the token request, so
    /// concurrent callers wait for it and use its token. The request runs in a task
    /// of its own: when the caller is cancelled, the answer (and a rotated refresh
    /// token, which invalidates the previous one) is still kept before the lock is
    /// released.
    pub(in crate::http) async fn access_token(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &'static PolicyDescriptor,
    ) -> Result<Secret, ClientError> {
        let mut state = Arc::clone(&self.inner.token).lock_owned().await;
        if let Some((token, expires_at)) = &state.access {
            if expires_at.is_none_or(|at| Instant::now() < at) {
                return Ok(token.clone());
            }
        }
        let client = self.clone();
        let config = config.clone();
        let owned_endpoint = endpoint.to_owned();
        let fetch = async move {
            match client.inner.tokens.get() {
                Some(vault) => {
                    client
                        .shared_token(&owned_endpoint, &config, policy, vault, &mut state)
                        .await
                }
                None => client.fetch_token(&owned_endpoint, &config, policy, &mut state).await,
            }
        };
        tokio::spawn(fetch.in_current_span()).await.unwrap_or_else(|_| {
            Err(ClientError::auth(
                endpoint,
                None,
                "the token request was aborted".to_owned(),
            ))
        })
    }

    /// Asks the token endpoint for an access token and stores it in `state`.
    pub(super) async fn fetch_token(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &PolicyDescriptor,
        state: &mut TokenState,
    ) -> Result<Secret, ClientError> {
        let mut form = serde_json::Map::new();
        match &state.refresh_token {
            Some(refresh_token) => {
                form.insert("grant_type".into(), "refresh_token".into());
                form.insert("refresh_token".into(), refresh_token.expose().into());
            }
            None => {
                form.insert("grant_type".into(), "client_credentials".into());
            }
        }
        if !config.scopes.is_empty() {
            form.insert("scope".into(), config.scopes.join(" ").into());
        }
        if config.client_secret.is_none() {
            form.insert("client_id".into(), config.client_id.expose().into());
        }
        let form = encode_form(&Value::Object(form));
        let grant = self.grant(endpoint, config, policy, &form).await?;
        if let Some(new_refresh) = grant.refresh_token {
            state.refresh_token = Some(new_refresh);
        }
        state.access = Some((grant.access_token.clone(), grant.renew_at));
        Ok(grant.access_token)
    }

    /// Exchanges an authorization `code` (with its PKCE `verifier`, sent to
    /// the provider with `redirect_uri`) for the first tokens of a
    /// connection: the authorization-code grant of the connect flow.
    #[cfg(feature = "server")]
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Grant, ClientError> {
        let endpoint = "authorization code";
        let super::Auth::OAuth2(config) = &self.inner.auth else {
            return Err(ClientError::config(
                endpoint,
                "the integration does not use OAuth2".to_owned(),
            ));
        };
        let mut form = serde_json::Map::new();
        form.insert("grant_type".into(), "authorization_code".into());
        form.insert("code".into(), code.into());
        form.insert("redirect_uri".into(), redirect_uri.into());
        form.insert("code_verifier".into(), verifier.into());
        if config.client_secret.is_none() {
            form.insert("client_id".into(), config.client_id.expose().into());
        }
        let form = encode_form(&Value::Object(form));
        self.grant(endpoint, config, &PolicyDescriptor::DEFAULT, &form).await
    }

    /// The provider's authorization URL for the connect flow: the user
    /// consents there and the provider sends them back to `redirect_uri`
    /// with a code. `None` when the integration's auth is not the
    /// authorization-code grant.
    #[cfg(feature = "server")]
    pub(crate) fn authorize_url(&self, state: &str, challenge: &str, redirect_uri: &str) -> Option<reqwest::Url> {
        let super::Auth::OAuth2(config) = &self.inner.auth else {
            return None;
        };
        let mut url = reqwest::Url::parse(config.authorization_url.as_deref()?).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", config.client_id.expose())
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if !config.scopes.is_empty() {
                query.append_pair("scope", &config.scopes.join(" "));
            }
        }
        Some(url)
    }

    /// Posts `form` to the token endpoint and reads the tokens it grants.
    async fn grant(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &PolicyDescriptor,
        form: &str,
    ) -> Result<Grant, ClientError> {
        let (requested_at, answer) = self.request_token(endpoint, config, policy, form).await?;
        let Answer { status, body, .. } = answer;
        if !(200..300).contains(&status) {
            let detail = [&[Seg::Key("error_description")][..], &[Seg::Key("error")][..]]
                .iter()
                .find_map(|path| extract_message(&body, path))
                .or_else(|| body.as_str().map(str::to_owned))
                .unwrap_or_else(|| "the token endpoint refused the request".to_owned());
            let detail = truncate(detail.trim(), MESSAGE_CHARS);
            return Err(ClientError::auth(endpoint, Some(status), self.redact(&detail)));
        }
        let Some(access_token) = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(ClientError::auth(
                endpoint,
                None,
                "the token endpoint's answer has no `access_token`".to_owned(),
            ));
        };
        let expires_in = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        // Renew shortly before expiry: a tenth of the lifetime early, at most a minute.
        let renew_at = expires_in.filter(|s| s.is_finite() && *s >= 0.0).map(|seconds| {
            let lifetime = Duration::from_secs_f64(seconds.min(1e9));
            requested_at + lifetime - (lifetime / 10).min(Duration::from_secs(60))
        });
        self.learn(access_token);
        let refresh_token = body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|token| {
                self.learn(token);
                Secret::new(token)
            });
        Ok(Grant {
            access_token: Secret::new(access_token),
            renew_at,
            refresh_token,
        })
    }

    /// Posts `form` to the token endpoint, again after a transient failure
    /// (at most [`TOKEN_ATTEMPTS`] requests, with doubling backoff or the
    /// endpoint's `Retry-After` if longer, all within the policy's timeout).
    /// The last answer is returned with the time its request started.
    async fn request_token(
        &self,
        endpoint: &str,
        config: &OAuth2Config,
        policy: &PolicyDescriptor,
        form: &str,
    ) -> Result<(Instant, Answer), ClientError> {
        let url = parse_http_url(&config.token_url).map_err(|problem| ClientError::config(endpoint, problem))?;
        let client = self.client(endpoint, policy.connect_timeout_ms)?;
        let deadline = (policy.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(policy.timeout_ms));
        let mut attempt = 1;
        loop {
            let mut builder = client
                .post(url.clone())
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.to_owned());
            if let Some(secret) = &config.client_secret {
                builder = builder.basic_auth(config.client_id.expose(), Some(secret.expose()));
            }
            if let Some(deadline) = deadline {
                builder = builder.timeout(deadline.saturating_duration_since(Instant::now()));
            }
            let requested_at = Instant::now();
            let result = self.exchange(endpoint, policy, &url, builder).await;
            let retry_after = match &result {
                Ok(answer) => answer.retry_after,
                Err(_) => None,
            };
            let delay = (TOKEN_BACKOFF * 2u32.pow(attempt - 1)).max(retry_after.unwrap_or_default());
            let out_of_time = deadline.is_some_and(|deadline| Instant::now() + delay >= deadline);
            if !is_transient(&result) || attempt >= TOKEN_ATTEMPTS || out_of_time {
                return result.map(|answer| (requested_at, answer));
            }
            tracing::debug!(attempt, "the token endpoint failed transiently; asking again");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}
