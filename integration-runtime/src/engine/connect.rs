//! The connect flow: a customer authorizes a connection at the provider
//! (OAuth2 authorization code with PKCE), and the runtime stores it.
//!
//! 1. The application, for its signed-in user, makes a start link with
//!    [`Runtime::connect_link`]: signed by the credential keyring, so only
//!    the application decides which connection a browser may (re)connect
//!    and where it returns; a link expires.
//! 2. `GET /connect/<Integration>/start?…` checks the link, stores a
//!    pending authorization (a random `state`, stored as its digest, and
//!    the PKCE verifier, sealed; both expire after ten minutes) and
//!    redirects the browser to the provider's authorization endpoint with
//!    the state and the verifier's S256 challenge.
//! 3. `GET /connect/<Integration>/callback?code=…&state=…` takes the
//!    pending authorization (once: a replayed state is refused), exchanges
//!    the code with the verifier, stores the connection with its tokens
//!    (sealed), and redirects the browser to the application's `return_to`
//!    with `connection=<id>&status=connected`, or `error=<code>` when the
//!    user denied consent (`access_denied`), the authorization expired
//!    (`expired`) or the exchange failed (`token_exchange_failed`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::connected::ConnectionError;
use super::Runtime;
use crate::connection::{Credentials, NewConnection, StoredTokens};
use crate::integration::Integration;
use crate::rejection::Rejection;
use crate::store::{AuthorizationRow, SealedPlace};

/// How long a pending authorization is accepted: the user's time at the
/// provider's consent screen.
const AUTHORIZATION_TTL: Duration = Duration::from_secs(600);

/// Random bytes, base64url: states and PKCE verifiers (32 bytes: 43
/// characters, within RFC 7636's 43 to 128).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The PKCE S256 challenge of `verifier`.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What a start link signs.
fn link_message(integration: &str, connection: &str, return_to: &str, expires: i64) -> String {
    format!("connect\n{integration}\n{connection}\n{return_to}\n{expires}")
}

/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = reqwest::Url::parse(url).ok()?;
    url.query_pairs_mut().extend_pairs(pairs);
    Some(url.into())
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    Rejection::new(status, code, message).into_response()
}

impl Runtime {
    /// Where the connect flow of `integration` is served: `None` without a
    /// [public URL](crate::RuntimeBuilder::public_url).
    fn connect_base(&self, integration: &str) -> Option<String> {
        let public = self.inner.settings.public_url.as_deref()?;
        Some(format!("{public}/connect/{integration}"))
    }

    /// The OAuth2 redirect URI of `integration`'s connect flow, to register
    /// with the provider: `<public URL>/connect/<Integration>/callback`.
    /// `None` without a [public URL](crate::RuntimeBuilder::public_url).
    pub fn connect_callback_url(&self, integration: &str) -> Option<String> {
        self.connect_base(integration).map(|base| format!("{base}/callback"))
    }

    /// A link that connects `connection` of `integration` through the
    /// provider's consent screen, then sends the browser to `return_to`
    /// (the flow: `docs/runtime.md`, "Connecting through the provider's
    /// consent screen"). Make one for the signed-in user who may
    /// connect that connection, and send their browser to it; it is valid
    /// for `valid_for`. An existing connection of that id is replaced by the
    /// new authorization.
    ///
    /// Errors: [`ConnectionError::is_no_keyring`] (links are signed by the
    /// credential key), [`ConnectionError::is_unknown_integration`],
    /// [`ConnectionError::is_invalid`] (a bad id or `return_to`, an
    /// integration whose auth is not `oauth2_authorization_code`, or no
    /// public URL).
    pub fn connect_link(
        &self,
        integration: &str,
        connection: &str,
        return_to: &str,
        valid_for: Duration,
    ) -> Result<String, ConnectionError> {
        let registered = self.registered(integration)?;
        let vault = self.inner.connections.vault()?;
        let invalid = |problem: &str| ConnectionError::invalid(integration, connection, problem.to_owned());
        if let Some(problem) = crate::connection::id_problem(connection) {
            return Err(invalid(&problem));
        }
        if !is_connectable(registered.as_ref()) {
            return Err(invalid(
                "the integration's auth is not `oauth2_authorization_code`, so it has no connect flow",
            ));
        }
        match reqwest::Url::parse(return_to) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return Err(invalid("`return_to` must be an absolute http(s) URL")),
        }
        let base = self
            .connect_base(integration)
            .ok_or_else(|| invalid("the runtime has no public URL (`RuntimeBuilder::public_url`)"))?;
        let expires = (self.inner.settings.clock.now()
            + chrono::Duration::from_std(valid_for).unwrap_or(chrono::Duration::MAX))
        .timestamp();
        let signature = vault
            .keyring
            .sign(&link_message(integration, connection, return_to, expires));
        let expires = expires.to_string();
        with_query(
            &format!("{base}/start"),
            &[
                ("connection", connection),
                ("return_to", return_to),
                ("expires", &expires),
                ("signature", &signature),
            ],
        )
        .ok_or_else(|| invalid("the public URL is not a URL"))
    }

    /// The connect flow's routes, under `/connect`: empty when the runtime
    /// has no public URL, no credential key, or no integration with the
    /// authorization-code grant.
    pub(crate) fn connect_router(&self) -> Router {
        let connectable = self
            .integrations()
            .any(|integration| is_connectable(integration.as_ref()));
        if !connectable || self.inner.settings.public_url.is_none() || self.inner.connections.vault.is_none() {
            return Router::new();
        }
        Router::new()
            .route("/connect/{integration}/start", get(start))
            .route("/connect/{integration}/callback", get(callback))
            .with_state(Arc::new(self.clone()))
    }
}

/// Whether `integration` authorizes its connections through the connect flow.
fn is_connectable(integration: &dyn Integration) -> bool {
    integration
        .http_client()
        .and_then(|http| http.authorize_url("", "", ""))
        .is_some()
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    connection: String,
    return_to: String,
    expires: i64,
    signature: String,
}

async fn start(
    State(runtime): State<Arc<Runtime>>,
    Path(integration): Path<String>,
    Query(link): Query<StartQuery>,
) -> Response {
    let (Some(registered), Some(vault), Some(redirect_uri)) = (
        runtime.inner.integrations.get(integration.as_str()),
        runtime.inner.connections.vault.as_ref(),
        runtime.connect_callback_url(&integration),
    ) else {
        return refused(StatusCode::NOT_FOUND, "not_found", "no connect flow here");
    };
    let message = link_message(&integration, &link.connection, &link.return_to, link.expires);
    if !vault.keyring.verify(&message, &link.signature) {
        return refused(StatusCode::FORBIDDEN, "bad_link", "this connect link is not valid");
    }
    let now = runtime.inner.settings.clock.now();
    if now.timestamp() > link.expires {
        return refused(
            StatusCode::GONE,
            "link_expired",
            "this connect link expired: ask for a new one",
        );
    }
    let (state, verifier) = (random_token(), random_token());
    let state_digest = digest(&state);
    let place = SealedPlace::Verifier {
        state_digest: state_digest.clone(),
    };
    let pending = AuthorizationRow {
        verifier: vault.keyring.seal(&place, verifier.as_bytes()),
        state_digest,
        integration: integration.clone(),
        connection: link.connection,
        return_to: link.return_to,
        expires_at: now + chrono::Duration::from_std(AUTHORIZATION_TTL).unwrap_or_default(),
    };
    if let Err(error) = runtime.inner.store.put_authorization(pending).await {
        tracing::warn!(%error, "could not store a pending authorization");
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "try again shortly",
        );
    }
    let authorize = registered
        .http_client()
        .and_then(|http| http.authorize_url(&state, &challenge(&verifier), &redirect_uri));
    match authorize {
        Some(url) => redirect(url.as_str()),
        None => refused(StatusCode::NOT_FOUND, "not_found", "no connect flow here"),
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// The error code passed on to the application: the provider's, when it
/// is a plain OAuth2 error code, else a generic one.
fn error_code(said: &str) -> &str {
    let plain = !said.is_empty() && said.len() <= 64 && said.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    if plain {
        said
    } else {
        "authorization_failed"
    }
}

async fn callback(
    State(runtime): State<Arc<Runtime>>,
    Path(integration): Path<String>,
    Query(answer): Query<CallbackQuery>,
) -> Response {
    let Some(state) = answer.state.as_deref().filter(|s| !s.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "no_state",
            "the provider's answer has no state",
        );
    };
    let pending = match runtime.inner.store.take_authorization(&digest(state)).await {
        Ok(Some(pending)) if pending.integration == integration => pending,
        Ok(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "unknown_state",
                "this authorization is unknown or was already used: start connecting again",
            )
        }
        Err(error) => {
            tracing::warn!(%error, "could not take a pending authorization");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "try again shortly",
            );
        }
    };
    let back = |pairs: &[(&str, &str)]| {
        let mut all = vec![("connection", pending.connection.as_str())];
        all.extend_from_slice(pairs);
        match with_query(&pending.return_to, &all) {
            Some(url) => redirect(&url),
            None => refused(StatusCode::BAD_REQUEST, "bad_return_to", "the return URL is not a URL"),
        }
    };
    if runtime.inner.settings.clock.now() > pending.expires_at {
        return back(&[("error", "expired")]);
    }
    if let Some(said) = answer.error.as_deref() {
        return back(&[("error", error_code(said))]);
    }
    let Some(code) = answer.code.as_deref().filter(|c| !c.is_empty()) else {
        return back(&[("error", "invalid_response")]);
    };
    match connect(&runtime, &pending, code).await {
        Ok(()) => back(&[("status", "connected")]),
        Err(error) => {
            tracing::warn!(
                integration = %pending.integration,
                connection = %pending.connection,
                %error,
                "the connect flow failed"
            );
            back(&[("error", "token_exchange_failed")])
        }
    }
}

/// Exchanges `code` and stores the connection with its first tokens.
async fn connect(runtime: &Runtime, pending: &AuthorizationRow, code: &str) -> Result<(), String> {
    let vault = runtime.inner.connections.vault.as_ref().ok_or("no credential key")?;
    let http = runtime
        .inner
        .integrations
        .get(pending.integration.as_str())
        .and_then(|integration| integration.http_client())
        .ok_or("the integration is not registered")?;
    let redirect_uri = runtime
        .connect_callback_url(&pending.integration)
        .ok_or("no public URL")?;
    let place = SealedPlace::Verifier {
        state_digest: pending.state_digest.clone(),
    };
    let verifier = vault
        .keyring
        .open(&place, &pending.verifier)
        .map_err(|e| e.to_string())?;
    let verifier = String::from_utf8(verifier).map_err(|_| "the stored verifier is not text")?;
    let grant = http
        .exchange_code(code, &verifier, &redirect_uri)
        .await
        .map_err(|e| e.to_string())?;
    runtime
        .put_connection(NewConnection::new(
            &pending.integration,
            &pending.connection,
            Credentials::new(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    let tokens = vault.tokens(
        &pending.integration,
        &pending.connection,
        &format!("connect-{}", pending.state_digest),
    );
    let now = vault.clock.now();
    let stored = StoredTokens {
        access_token: Some(grant.access_token.expose().to_owned()),
        renew_at: grant
            .renew_at
            .map(|at| now + at.saturating_duration_since(std::time::Instant::now())),
        refresh_token: grant.refresh_token.map(|t| t.expose().to_owned()),
        seed: StoredTokens::seed_of(None),
    };
    if !tokens.lease().await.map_err(|e| e.to_string())? || !tokens.save(&stored).await.map_err(|e| e.to_string())? {
        return Err("another process holds the connection's tokens".to_owned());
    }
    Ok(())
}
