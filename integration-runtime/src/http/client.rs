//! [`HttpClient`]: how it is built (base URL and credentials checked once,
//! one reqwest client per connect timeout) and how it sends one request:
//! admitted by the policy's limits, within one timeout across redirects,
//! repeated once with a new OAuth2 token after a 401, and every failure
//! turned into a [`ClientError`] that carries no credential.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use serde_json::Value;
use tracing::Instrument;

use super::auth::{configured_secrets, Auth, TokenState};
use super::prepare::Prepared;
use super::redirect::{is_followed_status, next_hop, Hop, MAX_REDIRECTS};
use super::request::{HttpRequest, HttpResponse};
use crate::descriptor::{IntegrationDescriptor, PolicyDescriptor, RedirectPolicy};
use crate::error::{ClientError, ConfigError};
use crate::json_path::extract_message;
use crate::policy::{CircuitState, Outcome, Policies, Refusal};
use crate::secret::Secret;
use crate::store::Store;

/// Sends requests to one provider. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct HttpClient {
    pub(super) inner: Arc<Inner>,
    /// The application's own reqwest client, when it gave one (see
    /// [`with_reqwest_client`](HttpClient::with_reqwest_client)): it sends
    /// every request instead of `Inner::clients`.
    pub(super) given: Option<reqwest::Client>,
}

pub(super) struct Inner {
    /// The integration's name (empty when unknown), for traces.
    pub(super) integration: &'static str,
    /// The base URL without a trailing slash.
    pub(super) base: String,
    pub(super) auth: Auth,
    /// One reqwest client per connect timeout (a client-wide setting in reqwest).
    pub(super) clients: Mutex<Vec<(u64, reqwest::Client)>>,
    /// The OAuth2 token state. Held across a token request: concurrent callers
    /// wait for that one request instead of making their own.
    pub(super) token: Arc<tokio::sync::Mutex<TokenState>>,
    /// Credential values scrubbed from every message.
    pub(super) secrets: Vec<String>,
    /// Credentials learnt at run time (access and rotated refresh tokens), also
    /// scrubbed; the most recent few only (`LEARNT_SECRETS` in `auth::redact`).
    pub(super) learnt: Mutex<Vec<String>>,
    /// Circuit breaker, rate limit and concurrency limit; a connection's
    /// client has its own for the settings scoped per connection.
    pub(super) policies: Arc<Policies>,
    /// The connection this client sends for; `None`: the integration's
    /// default connection.
    pub(super) connection: Option<String>,
    /// Where OAuth2 tokens are kept for every process, once the runtime
    /// gave a store (see `auth::shared`); in memory only before.
    pub(super) tokens: std::sync::OnceLock<crate::connection::TokenVault>,
}

/// What an attempt's result tells the circuit breaker.
fn outcome_of(result: &Result<HttpResponse, ClientError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(error) if error.is_provider_failure() => Outcome::Failure,
        // A 4xx, an answer over the size limit, a redirect not followed:
        // the provider is up and answering.
        Err(error) if error.is_status() || error.is_response_too_large() || error.is_redirect() => Outcome::Success,
        Err(_) => Outcome::Neutral,
    }
}

/// A short name of a result, for traces.
fn outcome_name(result: &Result<HttpResponse, ClientError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_circuit_open() => "circuit_open",
        Err(e) if e.is_rate_limited() => "rate_limited",
        Err(e) if e.is_status() => "status",
        Err(e) if e.is_response_too_large() => "too_large",
        Err(e) if e.is_redirect() => "redirect",
        Err(e) if e.is_timeout() => "timeout",
        Err(e) if e.is_connect() => "connect",
        Err(e) if e.is_auth() => "auth",
        Err(e) if e.is_invalid_request() => "invalid_request",
        Err(e) if e.is_config() => "config",
        Err(_) => "transport",
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn refusal_error(endpoint: &str, refusal: Refusal) -> ClientError {
    match refusal {
        Refusal::CircuitOpen(retry_in) => ClientError::circuit_open(endpoint, retry_in),
        Refusal::RateLimited(wait) => ClientError::rate_limited(endpoint, wait),
        Refusal::Busy { limit, waited } => ClientError::busy(endpoint, limit, waited),
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("integration", &self.inner.integration)
            .field("base_url", &self.inner.base)
            .field("auth", &self.inner.auth)
            // Not the given client itself: its Debug shows its proxies, whose
            // URLs may carry credentials.
            .field("reqwest_client", &if self.given.is_some() { "given" } else { "own" })
            .finish()
    }
}

/// Parses an http(s) URL, or says what is wrong with it.
pub(super) fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("the URL is not valid: {e}"))?;
    // Credentials in a URL would show wherever the URL does (Debug, errors);
    // they belong in `[auth]`, whose secrets are redacted.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not contain credentials (`user:password@`); declare them in `[auth]`".into());
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` is not an http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    Ok(url)
}

fn build_client(connect_timeout_ms: u64) -> Result<reqwest::Client, reqwest::Error> {
    // Redirects are followed by `HttpClient::attempt`, which decides what each
    // hop carries (see `redirect`).
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("integration-runtime/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if connect_timeout_ms > 0 {
        builder = builder.connect_timeout(Duration::from_millis(connect_timeout_ms));
    }
    builder.build()
}

/// Fails when the reqwest client followed a redirect by itself (a given
/// client without `Policy::none()`), past the runtime's redirect rules: the
/// answer is then from another URL than `requested`.
pub(super) fn not_redirected(endpoint: &str, requested: &Url, response: &reqwest::Response) -> Result<(), ClientError> {
    if response.url() == requested {
        return Ok(());
    }
    // Without either URL: an API key may be in the query.
    Err(ClientError::redirect(
        endpoint,
        "the reqwest client followed a redirect by itself, past the runtime's redirect rules; build it with \
         `redirect(reqwest::redirect::Policy::none())`"
            .to_owned(),
    ))
}

/// The message of an error and of all its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How many characters of a provider's message are kept: error texts are
/// stored with the call, so one verbose provider must not fill the store.
pub(super) const MESSAGE_CHARS: usize = 500;

/// At most `max` characters of `text`, with `...` when cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

impl HttpClient {
    /// A client for the provider at `base_url`, authenticating with `auth`.
    ///
    /// The URL (and an OAuth2 token URL) must be an absolute http(s) URL without a
    /// query or fragment.
    ///
    /// Without the integration's descriptor the client does not know the
    /// integration-wide policy: endpoints whose circuit breaker, rate limit or
    /// concurrency settings are equal share one instance of each. Prefer
    /// [`for_integration`](HttpClient::for_integration).
    pub fn new(base_url: &str, auth: Auth) -> Result<Self, ConfigError> {
        HttpClient::build(None, base_url, auth)
    }

    /// A client for `integration`'s provider at `base_url`, authenticating with `auth`.
    ///
    /// The integration's policy gets one circuit breaker, rate limiter and
    /// concurrency limit, shared by every endpoint with the same settings; an
    /// endpoint whose setting differs gets its own. Traces name the integration.
    pub fn for_integration(
        integration: &'static IntegrationDescriptor,
        base_url: &str,
        auth: Auth,
    ) -> Result<Self, ConfigError> {
        HttpClient::build(Some(integration), base_url, auth)
    }

    fn build(
        integration: Option<&'static IntegrationDescriptor>,
        base_url: &str,
        auth: Auth,
    ) -> Result<Self, ConfigError> {
        let name = integration.map_or("", |i| i.name);
        let mut invalid = Vec::new();
        let base = match parse_http_url(base_url) {
            Ok(url) => url.as_str().trim_end_matches('/').to_owned(),
            Err(problem) => {
                invalid.push(("base URL".to_owned(), problem));
                String::new()
            }
        };
        if let Auth::OAuth2(config) = &auth {
            if let Err(problem) = parse_http_url(&config.token_url) {
                invalid.push(("OAuth2 token URL".to_owned(), problem));
            }
            if let Some(Err(problem)) = config.authorization_url.as_deref().map(parse_http_url) {
                invalid.push(("OAuth2 authorization URL".to_owned(), problem));
            }
        }
        if let Auth::ApiKeyHeader { name, .. } = &auth {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                invalid.push((
                    "API key header".to_owned(),
                    format!("`{name}` is not a valid header name"),
                ));
            }
        }
        let default_connect = PolicyDescriptor::DEFAULT.connect_timeout_ms;
        let client = match build_client(default_connect) {
            Ok(client) => Some(client),
            Err(error) => {
                invalid.push(("HTTP client".to_owned(), error_chain(&error)));
                None
            }
        };
        let Some(client) = client.filter(|_| invalid.is_empty()) else {
            return Err(ConfigError::new(name, Vec::new(), invalid));
        };
        let secrets = configured_secrets(&auth);
        let refresh_token = match &auth {
            Auth::OAuth2(config) => config.refresh_token.clone(),
            _ => None,
        };
        Ok(HttpClient {
            given: None,
            inner: Arc::new(Inner {
                integration: name,
                base,
                auth,
                clients: Mutex::new(vec![(default_connect, client)]),
                token: Arc::new(tokio::sync::Mutex::new(TokenState::new(refresh_token))),
                learnt: Mutex::new(Vec::new()),
                policies: Arc::new(Policies::new(integration.map(|i| &i.policy))),
                connection: None,
                tokens: std::sync::OnceLock::new(),
                secrets: secrets
                    .iter()
                    .map(|s| s.expose().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            }),
        })
    }

    /// This client, sending every request (OAuth2 token requests too)
    /// through `client`: a `reqwest::Client` the application configured
    /// (proxies, root certificates, default headers, TLS settings) instead of
    /// the clients the runtime builds.
    ///
    /// The runtime's rules still apply on top: authentication, the policy's
    /// `timeout_ms` (set on each request), `max_response_bytes`, the circuit
    /// breaker, rate and concurrency limits, redaction of credentials, and
    /// the redirect rules, **provided `client` does not follow redirects
    /// itself**. Not applied: the policy's `connect_timeout_ms` (reqwest sets
    /// connect timeouts per client: use `ClientBuilder::connect_timeout`)
    /// and the runtime's `User-Agent`.
    ///
    /// Build `client` with `redirect(reqwest::redirect::Policy::none())`.
    /// reqwest's default policy follows up to 10 redirects to any origin,
    /// keeping headers such as an API key header (it drops only
    /// `Authorization` and cookies), before the runtime sees the answer. The
    /// runtime notices (the answer comes from another URL than the one it
    /// asked) and fails the request with [`ClientError::is_redirect`], but
    /// by then the request has gone where the redirects pointed.
    ///
    /// The result shares this client's policy state (circuit breakers,
    /// limits, OAuth2 token) with it and its clones.
    #[must_use]
    pub fn with_reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.given = Some(client);
        self
    }

    /// Shares this client's rate limits and circuit breakers (and its
    /// clones') with every process using `store`, from now on: what
    /// `RuntimeBuilder::shared_protection` does for the clients of its
    /// integrations. Names are stable across processes: the integration's,
    /// and `Integration.endpoint` for an endpoint with a setting of its own.
    ///
    /// Returns `false`, changing nothing, for a client built without its
    /// integration's descriptor ([`new`](HttpClient::new): no stable names)
    /// or already shared.
    pub fn share_protection(&self, store: Arc<dyn Store>) -> bool {
        self.inner.policies.share_through(self.inner.integration, store)
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The state of the integration's circuit breaker, for health checks: the most
    /// restrictive of its breakers when endpoints have their own (`Closed` when
    /// there is none).
    pub fn circuit_state(&self) -> CircuitState {
        self.inner.policies.circuit_state()
    }

    /// Every circuit breaker of the integration with its state: the integration's,
    /// named by the integration (empty when built with [`new`](HttpClient::new)),
    /// and those of endpoints with their own setting, named `Integration.endpoint`.
    /// A breaker appears once it exists (the integration's from the start).
    pub fn circuit_states(&self) -> Vec<(String, CircuitState)> {
        self.inner.policies.circuit_states(self.inner.integration)
    }

    /// Sends `request` once.
    ///
    /// A 2xx answer is `Ok`, with every credential the provider echoed in its
    /// body or headers replaced by `***`; any other status is a [`ClientError`]
    /// with the status and the provider's message (read at `error_path`, or the
    /// text of a non-JSON body, from the body's first 64 KiB). The policy's
    /// `timeout_ms` bounds the whole exchange (redirects included),
    /// `connect_timeout_ms` the connection. Retries are not made here.
    ///
    /// A 2xx body larger than the policy's `max_response_bytes` is not read
    /// ([`ClientError::is_response_too_large`]). Redirects follow the policy's
    /// `redirects`: within the origin by default; a redirect that would take
    /// a credential or the body to another origin is not followed
    /// ([`ClientError::is_redirect`]). A connection reset or a body cut short
    /// is [`ClientError::is_transport`].
    ///
    /// The policy's limits apply first: an open circuit breaker refuses the request
    /// without sending it ([`ClientError::is_circuit_open`]); the rate limit and the
    /// concurrency limit make it wait, at most its timeout
    /// ([`ClientError::is_rate_limited`] beyond). 5xx answers, timeouts,
    /// connection and transport failures count against the circuit breaker; 4xx
    /// answers, answers over the size limit and refused redirects do not.
    /// With OAuth2, a 401 answer makes the client get a new token and repeat the
    /// request once; a second 401 is returned.
    ///
    /// Each call is traced as an `http_attempt` span (integration, endpoint, method,
    /// status, latency, outcome); never with credentials or the URL.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ClientError> {
        self.send_to(request, None).await
    }

    /// As [`send`](Self::send), to `url` instead of the base URL + the request's
    /// path and query when given (a next-page link). `url` must have the base
    /// URL's origin: credentials never go to another host.
    pub(crate) async fn send_to(&self, request: HttpRequest, url: Option<Url>) -> Result<HttpResponse, ClientError> {
        let span = tracing::info_span!(
            "http_attempt",
            integration = self.inner.integration,
            connection = self.inner.connection.as_deref(),
            endpoint = request.endpoint,
            method = request.method,
            status = tracing::field::Empty,
            queued_ms = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = self.admit_and_send(&request, url, &span).instrument(span.clone()).await;
        let status = match &result {
            Ok(response) => Some(response.status),
            Err(error) => error.status().filter(|_| error.is_status()),
        };
        if let Some(status) = status {
            span.record("status", status);
        }
        span.record("outcome", outcome_name(&result));
        // At `debug`: whether a failure matters (a retry, the call's end) is
        // the caller's to say, at its own level.
        span.in_scope(|| match &result {
            Ok(_) => tracing::debug!("request answered"),
            Err(error) => tracing::debug!(error = %error, "request failed"),
        });
        result
    }

    async fn admit_and_send(
        &self,
        request: &HttpRequest,
        url: Option<Url>,
        span: &tracing::Span,
    ) -> Result<HttpResponse, ClientError> {
        let endpoint = request.endpoint;
        let policy = request.policy;
        let prepared = self.prepare(request, url)?;
        let admission = self
            .inner
            .policies
            .admit(endpoint, policy)
            .await
            .map_err(|refusal| refusal_error(endpoint, refusal))?;
        span.record("queued_ms", millis(admission.waited));
        let started = Instant::now();
        let mut used_token = None;
        let mut result = self.attempt(request, &prepared, &mut used_token).await;
        if let (Err(error), Some(used)) = (&result, used_token.take()) {
            if error.is_status() && error.status() == Some(401) {
                // The token may have been revoked: get a new one (once for all
                // callers that used it) and repeat the request once.
                tracing::debug!("the provider refused the access token; repeating once with a new one");
                self.invalidate_token(&used).await;
                result = match self.inner.policies.pace(endpoint, policy).await {
                    Ok(_) => self.attempt(request, &prepared, &mut used_token).await,
                    Err(refusal) => Err(refusal_error(endpoint, refusal)),
                };
            }
        }
        span.record("latency_ms", millis(started.elapsed()));
        admission.finish(outcome_of(&result)).await;
        result
    }

    /// One exchange with the provider, following redirects as the policy's
    /// `redirects` allows (see `redirect`). `used_token` is set to the OAuth2
    /// access token the request carried.
    async fn attempt(
        &self,
        request: &HttpRequest,
        prepared: &Prepared,
        used_token: &mut Option<Secret>,
    ) -> Result<HttpResponse, ClientError> {
        let endpoint = request.endpoint;
        let policy = request.policy;
        let credentials = self.credentials(endpoint, policy, used_token).await?;
        let client = self.client(endpoint, policy.connect_timeout_ms)?;
        // One timeout for the whole chain of redirects.
        let deadline = (policy.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(policy.timeout_ms));
        let mut hop = Hop {
            url: prepared.url.clone(),
            method: prepared.method.clone(),
            body: prepared.body.clone(),
            credentialed: true,
        };
        let mut redirects = 0;
        let mut response = loop {
            let headers = if hop.credentialed {
                let mut headers = prepared.headers.clone();
                if prepared.body.is_some() && hop.body.is_none() {
                    // The body was dropped (a 303, or a 301/302 after a POST).
                    headers.remove(CONTENT_TYPE);
                }
                for (name, value) in &credentials {
                    headers.insert(name, value.clone());
                }
                headers
            } else {
                // Off the origin: nothing of the request but its method and URL.
                HeaderMap::new()
            };
            let mut builder = client.request(hop.method.clone(), hop.url.clone()).headers(headers);
            if let Some(deadline) = deadline {
                builder = builder.timeout(deadline.saturating_duration_since(Instant::now()));
            }
            if let Some(body) = &hop.body {
                builder = builder.body(body.clone());
            }
            let response = builder
                .send()
                .await
                .map_err(|e| self.transport_error(endpoint, policy, e))?;
            not_redirected(endpoint, &hop.url, &response)?;
            let status = response.status().as_u16();
            let location = response.headers().get(LOCATION).and_then(|value| value.to_str().ok());
            let Some(location) =
                location.filter(|_| policy.redirects != RedirectPolicy::None && is_followed_status(status))
            else {
                break response;
            };
            if redirects == MAX_REDIRECTS {
                return Err(ClientError::redirect(
                    endpoint,
                    format!("more than {MAX_REDIRECTS} redirects in a row"),
                ));
            }
            redirects += 1;
            let next = next_hop(policy.redirects, &prepared.url, &hop, status, location)
                .map_err(|detail| ClientError::redirect(endpoint, detail))?;
            hop = self.with_query_key(endpoint, next)?;
        };
        let answer = self.read_answer(endpoint, policy, &mut response).await?;
        if (200..300).contains(&answer.status) {
            // A provider may echo a credential it was sent: nothing stored
            // from the answer carries one.
            let redactor = self.redactor();
            return Ok(HttpResponse {
                status: answer.status,
                body: redactor.value(answer.body),
                headers: answer
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name, redactor.text(&value)))
                    .collect(),
            });
        }
        let message = request
            .error_path
            .and_then(|path| extract_message(&answer.body, path))
            .or_else(|| match &answer.body {
                Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
                _ => None,
            })
            .map(|message| self.redact(&truncate(message.trim(), MESSAGE_CHARS)));
        Err(ClientError::status_error(endpoint, answer.status, message).with_retry_after(answer.retry_after))
    }

    /// The given reqwest client, or the own one with this connect timeout,
    /// built on first use.
    pub(super) fn client(&self, endpoint: &str, connect_timeout_ms: u64) -> Result<reqwest::Client, ClientError> {
        if let Some(client) = &self.given {
            return Ok(client.clone());
        }
        let mut clients = self.inner.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, client)) = clients.iter().find(|(ms, _)| *ms == connect_timeout_ms) {
            return Ok(client.clone());
        }
        let client = build_client(connect_timeout_ms).map_err(|e| {
            ClientError::config(
                endpoint,
                format!("could not build the HTTP client: {}", error_chain(&e)),
            )
        })?;
        clients.push((connect_timeout_ms, client.clone()));
        Ok(client)
    }

    pub(super) fn transport_error(
        &self,
        endpoint: &str,
        policy: &PolicyDescriptor,
        error: reqwest::Error,
    ) -> ClientError {
        // Without the URL: an API key may be in its query.
        let error = error.without_url();
        if error.is_timeout() {
            let connect = error.is_connect();
            let ms = match (connect, &self.given) {
                // A given client's connect timeout is its own, unknown here.
                (true, Some(_)) => 0,
                (true, None) => policy.connect_timeout_ms,
                (false, _) => policy.timeout_ms,
            };
            return ClientError::timeout(endpoint, connect, Some(ms).filter(|ms| *ms > 0));
        }
        let detail = self.redact(&error_chain(&error));
        if error.is_connect() {
            ClientError::connect(endpoint, detail)
        } else {
            ClientError::transport(endpoint, detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::OAuth2Config;

    pub(super) fn client(base: &str, auth: Auth) -> HttpClient {
        HttpClient::new(base, auth).unwrap()
    }

    #[test]
    fn invalid_base_urls_are_config_errors() {
        let error = HttpClient::new("ftp://files.example.com", Auth::None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the integration has 1 invalid setting:\n  base URL: `ftp://files.example.com` is not an http or https URL"
        );
        let error = HttpClient::new(
            "not a url",
            Auth::OAuth2(OAuth2Config {
                token_url: "https://auth/x?y#z".into(),
                client_id: Secret::new("id"),
                client_secret: None,
                scopes: vec![],
                refresh_token: None,
                authorization_url: None,
            }),
        )
        .unwrap_err();
        assert_eq!(error.invalid().len(), 2);
        assert_eq!(
            error.invalid()[0].1,
            "the URL is not valid: relative URL without a base"
        );
        assert_eq!(
            error.invalid()[1].1,
            "`https://auth/x?y#z` must not have a query or fragment"
        );
        let error = HttpClient::new("https://user:hunter2@h.example", Auth::None).unwrap_err();
        assert!(error.invalid()[0].1.contains("must not contain credentials"));
        assert!(!error.to_string().contains("hunter2"), "{error}");
        let error = HttpClient::new(
            "https://h",
            Auth::ApiKeyHeader {
                name: "bad name",
                key: Secret::new("k"),
            },
        )
        .unwrap_err();
        assert_eq!(error.invalid()[0].1, "`bad name` is not a valid header name");
    }

    #[test]
    fn messages_are_redacted_and_truncated() {
        let client = client(
            "https://h",
            Auth::Basic {
                username: Secret::new("user-1"),
                password: Secret::new("pw-secret"),
            },
        );
        assert_eq!(
            client.redact("bad password pw-secret for user-1"),
            "bad password *** for ***"
        );
        assert_eq!(truncate("héllo", 2), "hé...");
        assert_eq!(truncate("hé", 2), "hé");
        let debug = format!("{client:?}");
        assert!(!debug.contains("pw-secret") && !debug.contains("user-1"), "{debug}");
    }
}
