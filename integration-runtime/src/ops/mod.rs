//! The operations API, health and the circuit-breaker report.
//!
//! [`OpsApi`] builds an axum [`Router`] for operators; mount it under a prefix
//! of your choice (`Router::new().nest("/ops", ops)`), apart from the public
//! webhook routes. [`Health`] serves `/health`, and
//! [`Metrics::exporter`](crate::Metrics::exporter) serves `/metrics`.
//!
//! # Authentication
//!
//! Every route needs `Authorization: Bearer <token>`, compared in constant
//! time (SHA-256 digests of both, compared with `subtle`, so neither content
//! nor length leaks). Wrong or missing: `401` with `WWW-Authenticate: Bearer`.
//! **Without a configured token the API is disabled**: the router answers
//! `404` to everything, exactly as if it were not mounted.
//!
//! # Routes
//!
//! JSON in and out; errors are `{"error": <code>, "message": <text>}`.
//!
//! | route | what it does |
//! | --- | --- |
//! | `GET /integrations` | The integrations given to the API, with their call counts by status. |
//! | `GET /calls?integration=X[&status=S][&connection=ID][&limit=N][&after=C][&order=oldest\|newest]` | One page of calls of integration `X` (required), optionally of status `S`, optionally only those of connection `ID`; `limit` 1..=1000 (default 100); `after` is the previous page's `next`; oldest first unless `order=newest`. Answers `{"calls": [...], "next": "C" \| null}`. |
//! | `GET /failed?integration=X[&connection=ID][&limit=N][&after=C][&order=oldest\|newest]` | The dead-letter view: failed calls of `X`, newest first unless `order=oldest`, same paging. |
//! | `GET /calls/{id}` | The call with its whole event log: `{"call": {...}, "events": [...]}`; `404` if unknown. |
//! | `POST /calls/{id}/refresh` | Asks the provider now ([`Integration::poll`] with the call's external id) and records the answer through the runtime's event sink, like a poll: lifecycle keys (news already recorded by a poll, a webhook or an earlier refresh is a duplicate; a call never gets a second terminal event), source `refresh`. Answers `{"outcome": "applied" \| "ignored" \| "duplicate", "call": {...}}`. `409` when the call is terminal, has no external id yet, or its integration is not given to the API or has no polling; `502` when the provider fails or answers without a status. |
//! | `POST /calls/{id}/cancel` | Cancels the call ([`Runtime::cancel`](crate::Runtime::cancel)): a pending call fails at once with kind `cancelled`; a processing one is stopped through the spec's cancel endpoint. Optional body `{"reason": "..."}`. Answers `{"call": {...}}` (the call afterwards: `failed`, or still `processing` while the provider stops it, or `completed` when it finished first). `409` (`already_terminal`) for a finished call, or when another event ended it first; `409` (`not_cancellable`) when the provider cannot be asked (no cancel endpoint, or the integration is not given to the API); `502` when the provider refuses or fails. |
//! | `POST /calls/{id}/retry` | Retries a **failed** call: see below. `409` (`not_retryable`) for any other status. |
//! | `GET /connections[?integration=X]` | Every connection (of `X`, when given), revoked ones included, by integration then id: `{"connections": [...]}`. Each shows its id, integration, the *names* of its credentials and the id of the key that sealed them (never a value), base URL, parameter overrides, rate budget and times (`revoked_at` when revoked). Credential names are empty when the API has no key to open them (an API not built by [`Runtime::router`](crate::Runtime::router)). |
//! | `GET /connections/{integration}/{id}` | One connection: `{"connection": {...}}`; `404` if unknown. |
//! | `POST /connections/{integration}/{id}/revoke` | Revokes it ([`Runtime::revoke_connection`](crate::Runtime::revoke_connection)): its tokens are deleted and every call of it that has not ended fails with kind `revoked`. Answers `{"connection": {...}, "calls_failed": N}`; `404` if unknown. |
//!
//! # Retry semantics
//!
//! The event log is append-only and a status never moves backwards, so a
//! failed call stays failed forever. A retry creates a **new** call of the same
//! integration, endpoint and parameters, with the idempotency key
//! `retry-of:<old call id>`: that key links the new call to the old one, and
//! makes the retry itself idempotent — retrying the same failed call again
//! returns the same new call (`201` the first time, `200` with
//! `"created": false` after). If the new call fails too, retry *it*. The answer
//! is `{"call_id": <new>, "retry_of": <old>, "created": bool}`. The engine
//! picks the new call up like any other pending call.

mod connections;
mod health;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::call::CallId;
use crate::connection::Vault;
use crate::engine::events::news::{self, terminal_of};
use crate::engine::events::{EventSink, Subject};
use crate::engine::Connections;
use crate::integration::Integration;
use crate::lifecycle::CallStatus;
use crate::metrics::Metrics;
pub use crate::rejection::Rejection;
use crate::secret::Secret;
use crate::store::{CallRecord, Cursor, EventSource, ListOrder, ListQuery, NewCall, Page, Store, StoreError};
use crate::webhook::outcome_name;
pub use health::{CheckResult, CircuitReport, CircuitSource, Health, HealthCheck, HealthStatus};

/// Builds the operations [`Router`]; see the [module docs](self).
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub struct OpsApi {
    store: Arc<dyn Store>,
    /// The runtime's sink, when refreshes record through a runtime.
    events: Option<EventSink>,
    integrations: BTreeMap<String, Arc<dyn Integration>>,
    token: Option<Secret>,
    /// The runtime's connections (and the worker id renewals are leased
    /// under): they open credentials to show their names, and cancel a
    /// connection's call with its credentials.
    connections: Option<(Arc<Connections>, String)>,
}

impl fmt::Debug for OpsApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsApi")
            .field("integrations", &self.integrations.keys().collect::<Vec<_>>())
            .field("enabled", &self.token.is_some())
            .finish()
    }
}

struct OpsState {
    store: Arc<dyn Store>,
    events: EventSink,
    integrations: BTreeMap<String, Arc<dyn Integration>>,
    connections: Option<(Arc<Connections>, String)>,
    token_digest: [u8; 32],
}

impl OpsState {
    /// The vault that opens connections' credentials, when the runtime has a key.
    fn vault(&self) -> Option<&Vault> {
        self.connections
            .as_ref()
            .and_then(|(connections, _)| connections.vault.as_ref())
    }
}

impl OpsApi {
    /// An API over `store`, disabled until a token is set.
    pub fn new(store: Arc<dyn Store>) -> Self {
        OpsApi {
            store,
            events: None,
            integrations: BTreeMap::new(),
            token: None,
            connections: None,
        }
    }

    /// An API whose refreshes record through a runtime's event sink.
    pub(crate) fn with_sink(events: EventSink) -> Self {
        OpsApi {
            events: Some(events.clone()),
            ..OpsApi::new(Arc::clone(events.store()))
        }
    }

    /// Uses the runtime's connections, with `worker` as the holder of
    /// token renewals: credential names are shown, and a connection's call
    /// is cancelled with its own credentials (never without them).
    #[must_use]
    pub(crate) fn connections(mut self, connections: Arc<Connections>, worker: String) -> Self {
        self.connections = Some((connections, worker));
        self
    }

    /// Makes `integration` refreshable and listed under `/integrations`.
    #[must_use]
    pub fn integration(mut self, integration: Arc<dyn Integration>) -> Self {
        self.integrations
            .insert(integration.descriptor().name.to_owned(), integration);
        self
    }

    /// The bearer token operators must send; `None` (or an empty token)
    /// disables the API.
    #[must_use]
    pub fn token(mut self, token: Option<Secret>) -> Self {
        self.token = token.filter(|t| !t.expose().is_empty());
        self
    }

    /// The token from environment variable `var` (unset or empty: disabled).
    #[must_use]
    pub fn token_from_env(self, var: &str) -> Self {
        let token = std::env::var(var).ok().map(Secret::new);
        self.token(token)
    }

    /// Whether a token is configured (otherwise every route answers `404`).
    pub fn is_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// The router (relative routes; nest it under a prefix of your choice).
    pub fn router(self) -> Router {
        let Some(token) = self.token else {
            return Router::new();
        };
        let events = self
            .events
            .unwrap_or_else(|| EventSink::new(Arc::clone(&self.store), Metrics::new(), 1));
        let state = Arc::new(OpsState {
            store: self.store,
            events,
            integrations: self.integrations,
            connections: self.connections,
            token_digest: Sha256::digest(token.expose().as_bytes()).into(),
        });
        Router::new()
            .route("/integrations", get(integrations))
            .route("/calls", get(list_calls))
            .route("/failed", get(failed_calls))
            .route("/calls/{id}", get(show_call))
            .route("/calls/{id}/refresh", post(refresh_call))
            .route("/calls/{id}/cancel", post(cancel_call))
            .route("/calls/{id}/retry", post(retry_call))
            .route("/connections", get(connections::list_connections))
            .route("/connections/{integration}/{id}", get(connections::show_connection))
            .route(
                "/connections/{integration}/{id}/revoke",
                post(connections::revoke_connection),
            )
            .route_layer(middleware::from_fn_with_state(Arc::clone(&state), authorize))
            .with_state(state)
    }
}

async fn authorize(State(state): State<Arc<OpsState>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let authorized = presented.is_some_and(|token| {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(digest.ct_eq(&state.token_digest))
    });
    if authorized {
        next.run(request).await
    } else {
        let mut response = Rejection::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

fn store_error(error: StoreError) -> Rejection {
    if error.is_not_found() {
        Rejection::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
    } else if error.is_conflict() {
        Rejection::new(StatusCode::CONFLICT, "conflict", error.to_string())
    } else {
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_error", error.to_string()).retry_after(5)
    }
}

fn bad_request(message: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn conflict(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new(StatusCode::CONFLICT, code, message)
}

fn parse_id(id: &str) -> Result<CallId, Rejection> {
    id.parse()
        .map_err(|_| bad_request(format!("`{id}` is not a call id (a UUID)")))
}

async fn load(state: &OpsState, id: CallId) -> Result<CallRecord, Rejection> {
    state
        .store
        .get(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, "not_found", format!("call {id} not found")))
}

/// Query parameters of the listings.
#[derive(Debug, Deserialize)]
struct ListParams {
    integration: Option<String>,
    status: Option<String>,
    connection: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
    order: Option<String>,
}

impl ListParams {
    fn query(self, default_order: ListOrder) -> Result<ListQuery, Rejection> {
        let integration = self
            .integration
            .filter(|i| !i.is_empty())
            .ok_or_else(|| bad_request("the `integration` query parameter is required"))?;
        let mut query = ListQuery::new(integration).order(default_order);
        if let Some(status) = self.status {
            let status: CallStatus = status
                .parse()
                .map_err(|e| bad_request(format!("{e}; expected pending, processing, completed or failed")))?;
            query = query.status(status);
        }
        if let Some(connection) = self.connection.filter(|c| !c.is_empty()) {
            query = query.connection(connection);
        }
        if let Some(limit) = self.limit {
            query = query.limit(limit);
        }
        if let Some(after) = self.after {
            let cursor: Cursor = after
                .parse()
                .map_err(|_| bad_request(format!("`{after}` is not a cursor")))?;
            query = query.after(cursor);
        }
        match self.order.as_deref() {
            None => {}
            Some("oldest") => query = query.order(ListOrder::OldestFirst),
            Some("newest") => query = query.order(ListOrder::NewestFirst),
            Some(other) => {
                return Err(bad_request(format!(
                    "unknown order `{other}`; expected oldest or newest"
                )))
            }
        }
        Ok(query)
    }
}

fn page_json(page: Page) -> Value {
    json!({
        "calls": page.calls,
        "next": page.next.map(|cursor| cursor.to_string()),
    })
}

fn params(params: Result<Query<ListParams>, QueryRejection>) -> Result<ListParams, Rejection> {
    params
        .map(|Query(params)| params)
        .map_err(|e| bad_request(e.body_text()))
}

async fn integrations(State(state): State<Arc<OpsState>>) -> Result<Json<Value>, Rejection> {
    let mut list = Vec::new();
    for (name, integration) in &state.integrations {
        let counts = state.store.count_by_status(Some(name)).await.map_err(store_error)?;
        let descriptor = integration.descriptor();
        list.push(json!({
            "name": name,
            "polling": descriptor.polling.is_some(),
            "webhook": descriptor.webhook.map(|w| w.path),
            "calls": counts,
        }));
    }
    Ok(Json(json!({ "integrations": list })))
}

async fn list_calls(
    State(state): State<Arc<OpsState>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let query = params(query)?.query(ListOrder::OldestFirst)?;
    let page = state.store.list(&query).await.map_err(store_error)?;
    Ok(Json(page_json(page)))
}

async fn failed_calls(
    State(state): State<Arc<OpsState>>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let params = params(query)?;
    if params.status.as_deref().is_some_and(|s| s != "failed") {
        return Err(bad_request("the dead-letter view lists failed calls only"));
    }
    let query = params.query(ListOrder::NewestFirst)?.status(CallStatus::Failed);
    let page = state.store.list(&query).await.map_err(store_error)?;
    Ok(Json(page_json(page)))
}

async fn show_call(State(state): State<Arc<OpsState>>, Path(id): Path<String>) -> Result<Json<Value>, Rejection> {
    let id = parse_id(&id)?;
    let call = state
        .store
        .get_with_events(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, "not_found", format!("call {id} not found")))?;
    Ok(Json(json!(call)))
}

async fn refresh_call(State(state): State<Arc<OpsState>>, Path(id): Path<String>) -> Result<Json<Value>, Rejection> {
    let id = parse_id(&id)?;
    let call = load(&state, id).await?;
    if call.is_terminal() {
        return Err(conflict(
            "already_terminal",
            format!("call {id} is already {}; there is nothing to refresh", call.status),
        ));
    }
    let Some(external_id) = call.external_id.as_deref() else {
        return Err(conflict(
            "no_external_id",
            format!("call {id} has no external id yet: the provider has not acknowledged it"),
        ));
    };
    let integration = state.integrations.get(&call.integration).ok_or_else(|| {
        conflict(
            "unknown_integration",
            format!(
                "integration {} is not registered with the operations API",
                call.integration
            ),
        )
    })?;
    let poll = integration.poll(external_id).ok_or_else(|| {
        conflict(
            "no_polling",
            format!("integration {} has no polling endpoint", call.integration),
        )
    })?;
    let reply = poll
        .await
        .map_err(|e| Rejection::new(StatusCode::BAD_GATEWAY, "provider_error", e.to_string()))?;
    let Some(status) = reply.status else {
        return Err(Rejection::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            "the provider's answer carries no status",
        ));
    };
    let event = terminal_of(status, &reply).unwrap_or_else(news::processing);
    let mut outcomes = state
        .events
        .record(
            &call.integration,
            Subject::Call(id),
            EventSource::Refresh,
            vec![event],
            None,
        )
        .await
        .map_err(store_error)?;
    let outcome = outcomes.pop().expect("one event recorded");
    let call = load(&state, id).await?;
    Ok(Json(json!({"outcome": outcome_name(&outcome), "call": call})))
}

/// The optional body of `POST /calls/{id}/cancel`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: String,
}

async fn cancel_call(
    State(state): State<Arc<OpsState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Rejection> {
    let id = parse_id(&id)?;
    let reason = match body.iter().all(u8::is_ascii_whitespace) {
        true => String::new(),
        false => {
            serde_json::from_slice::<CancelBody>(&body)
                .map_err(|e| bad_request(format!("the body must be `{{\"reason\": \"...\"}}` or empty: {e}")))?
                .reason
        }
    };
    let call = crate::engine::cancel(
        &state.events,
        |name| state.integrations.get(name).cloned(),
        state
            .connections
            .as_ref()
            .map(|(connections, worker)| (&**connections, worker.as_str())),
        id,
        &reason,
    )
    .await
    .map_err(|error| {
        if error.is_not_found() {
            Rejection::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
        } else if error.is_terminal() {
            conflict("already_terminal", error.to_string())
        } else if error.is_not_cancellable() {
            conflict("not_cancellable", error.to_string())
        } else if error.is_provider() {
            Rejection::new(StatusCode::BAD_GATEWAY, "provider_error", error.to_string())
        } else {
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_error", error.to_string()).retry_after(5)
        }
    })?;
    Ok(Json(json!({ "call": call })))
}

async fn retry_call(State(state): State<Arc<OpsState>>, Path(id): Path<String>) -> Result<Response, Rejection> {
    let id = parse_id(&id)?;
    let created = retry_failed(&*state.store, id).await.map_err(|error| match error {
        RetryError::NotFound(_) => Rejection::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
        RetryError::NotFailed { .. } => conflict("not_retryable", error.to_string()),
        RetryError::Store(e) => store_error(e),
    })?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({"call_id": created.id, "retry_of": id, "created": created.created});
    Ok((status, Json(body)).into_response())
}

/// Why [`retry_failed`] did not retry a call.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub enum RetryError {
    /// No call has that id.
    #[error("call {0} not found")]
    NotFound(CallId),
    /// The call did not fail (it is completed or still in flight).
    #[error("call {id} is {status}; only failed calls can be retried")]
    NotFailed {
        /// The call.
        id: CallId,
        /// Its status.
        status: CallStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Retries a failed call: a call's log is append-only and its status never
/// moves back, so a retry is a NEW call with the same integration, endpoint
/// and parameters, created with the idempotency key `retry-of:<id>`. That
/// key links the two, and retrying the same call again returns the same new
/// call (`created == false`). Used by the operations API and the CLI.
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub async fn retry_failed(store: &dyn Store, id: CallId) -> Result<crate::store::Created, RetryError> {
    let call = store.get(id).await?.ok_or(RetryError::NotFound(id))?;
    if call.status != CallStatus::Failed {
        return Err(RetryError::NotFailed {
            id,
            status: call.status,
        });
    }
    let new = NewCall::new(call.integration, call.endpoint, call.params).idempotency_key(format!("retry-of:{id}"));
    Ok(store.create(new).await?)
}
