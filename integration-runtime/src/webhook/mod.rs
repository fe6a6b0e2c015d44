//! The webhook receiver: an axum [`Router`] with one route per integration
//! whose spec has a `[webhook]`, at the spec's `path`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use integration_runtime::{Integration, Store, Metrics};
//! # use integration_runtime::webhook::WebhookReceiver;
//! # fn app(store: Arc<dyn Store>, tts: Arc<dyn Integration>) -> Result<axum::Router, Box<dyn std::error::Error>> {
//! let webhooks = WebhookReceiver::new(store)
//!     .metrics(Metrics::new())
//!     .integration(tts)? // reads the secret(s) from the spec's environment variable
//!     .router();
//! let app = axum::Router::new().merge(webhooks); // next to your own routes
//! # Ok(app) }
//! ```
//!
//! # What one delivery goes through
//!
//! 1. **Size.** The raw body is read up to the spec's `max_body_bytes`;
//!    past it: `413`.
//! 2. **Signature, before anything is parsed.** The headers and raw body are
//!    checked with the spec's scheme against every active secret (see
//!    [`signature`]); failure: `401`, nothing stored. The answer names what
//!    was wrong with the request (`missing_header`, `stale_timestamp`, ...),
//!    never anything about the secret.
//! 3. **JSON.** Malformed: `400`.
//! 4. **Mapping** through [`Integration::read_webhook`]: a status the spec does
//!    not map, a missing field, or no external id: `422`, nothing stored.
//! 5. **Storing**, durably, *before* answering `2xx`, through the runtime's
//!    event sink, the one path all provider news takes: the event is
//!    appended to the call the provider knows by that external id under the
//!    runtime's [`lifecycle_event_key`] (`processing`, `terminal`), the
//!    same keys the engine uses for what a start or a poll reported, with
//!    source `webhook` and the delivery id in its payload. A redelivery,
//!    and a terminal state reported by both a poll and a webhook, are
//!    therefore stored once and still answered `200`: a call never has two
//!    terminal events. Events the lifecycle ignores (a `processing` after
//!    `completed`) change nothing and are answered `200` too.
//!
//! A receiver from [`Runtime::webhook_receiver`](crate::Runtime::webhook_receiver)
//! (or inside [`Runtime::router`](crate::Runtime::router)) records through
//! that runtime: a webhook completion reaches
//! [`Runtime::subscribe`](crate::Runtime::subscribe), the finished counter
//! and the completion hooks as a worker's completion does. One built with
//! [`WebhookReceiver::new`] on a bare store only stores.
//!
//! # Delivery ids
//!
//! Where the scheme names the delivery (the signed `webhook-id` of Standard
//! Webhooks, the event `id` of Stripe, which stays the same across the
//! sender's retries), the id is stored with the event, and a later delivery
//! under an id already recorded for the call is answered `200 duplicate`
//! and stores nothing, whatever its (validly signed) body says, under
//! either kind of event key. Deliveries sharing an id are handled one at a
//! time within a process; the check is per call (the call the body names).
//! The generic HMAC scheme carries no delivery id.
//!
//! Answers are JSON: `{"received": true, "outcome": "applied" | "ignored" |
//! "duplicate"}` on success, `{"error": <code>, "message": <text>}` otherwise.
//!
//! # Rule for unknown external ids
//!
//! A webhook can beat the `initialized` event that records the external id
//! (the provider calls back before the start request's answer is stored).
//! The receiver does **not** park such events: it answers
//! **`503 Service Unavailable` with `Retry-After: 10`** and
//! `{"error": "unknown_external_id"}`, storing nothing, so the provider
//! redelivers later, by which time `initialized` is stored. Every supported
//! provider retries non-2xx answers with backoff. A delivery for an id that
//! never becomes known is retried until the provider gives up; it shows up in
//! the `integration_webhook_deliveries_total{reason="unknown_external_id"}`
//! metric. A failing store is also answered `503` with `Retry-After`, so no
//! accepted delivery is ever lost.
//!
//! # Replays
//!
//! The timestamped schemes reject deliveries signed more than `tolerance_s`
//! seconds ago (or ahead); within the window, a replayed delivery carries
//! the same delivery id and is a duplicate. The generic HMAC scheme signs no
//! timestamp: a replay of the same body is a duplicate, whenever it comes.

mod delivery;
pub mod signature;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::descriptor::WebhookDescriptor;
use crate::engine::events::news::terminal_of;
use crate::engine::events::{news, EventSink, Subject};
#[cfg(doc)]
use crate::engine::lifecycle_event_key;
use crate::integration::Integration;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{AppendOutcome, EventSource, NewEvent, Store, StoreError};
use signature::Verifier;

pub use crate::rejection::Rejection;

/// How long a sender is asked to wait before redelivering (seconds).
const RETRY_AFTER_S: u64 = 10;

/// The receiver could not be set up: an integration without `[webhook]`, a
/// missing or invalid secret, two integrations on one path. Lists every
/// problem; never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub struct WebhookConfigError {
    problems: Vec<String>,
}

impl WebhookConfigError {
    /// Each problem, one sentence each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for WebhookConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "webhook receiver: {one}"),
            many => {
                write!(f, "webhook receiver: {} problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for WebhookConfigError {}

/// Builds the receiver's [`Router`]; see the [module docs](self).
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub struct WebhookReceiver {
    store: Arc<dyn Store>,
    metrics: Metrics,
    /// The runtime's sink, when the receiver records through a runtime.
    sink: Option<EventSink>,
    routes: Vec<Route>,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<&str> = self.routes.iter().map(|r| r.webhook.path).collect();
        f.debug_struct("WebhookReceiver")
            .field("paths", &paths)
            .finish_non_exhaustive()
    }
}

struct Route {
    integration: Arc<dyn Integration>,
    webhook: &'static WebhookDescriptor,
    verifier: Verifier,
}

struct Shared {
    route: Route,
    sink: EventSink,
    /// Where deliveries are counted.
    metrics: Metrics,
}

impl WebhookReceiver {
    /// A receiver storing events in `store`, with no routes yet. It only
    /// stores: to have deliveries reach a runtime's subscribers, finished
    /// counter and hooks, use
    /// [`Runtime::webhook_receiver`](crate::Runtime::webhook_receiver).
    pub fn new(store: Arc<dyn Store>) -> Self {
        WebhookReceiver {
            store,
            metrics: Metrics::new(),
            sink: None,
            routes: Vec::new(),
        }
    }

    /// A receiver recording through a runtime's event sink.
    pub(crate) fn with_sink(sink: EventSink) -> Self {
        WebhookReceiver {
            store: Arc::clone(sink.store()),
            metrics: sink.metrics().clone(),
            sink: Some(sink),
            routes: Vec::new(),
        }
    }

    /// Counts deliveries in `metrics` (by default, in a registry of its own;
    /// from a runtime, in the runtime's).
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Adds the route of `integration`, with the secret(s) it was configured
    /// with (a generated integration's `webhook_secret`), or else read now
    /// from the environment variable its spec names (several comma-separated
    /// secrets are all accepted).
    pub fn integration(mut self, integration: Arc<dyn Integration>) -> Result<Self, WebhookConfigError> {
        self.add(integration, None)
            .map(|()| self)
            .map_err(|problem| WebhookConfigError {
                problems: vec![problem],
            })
    }

    /// Adds the route of every integration that has a `[webhook]` (others are
    /// skipped), with secrets as in [`integration`](Self::integration);
    /// reports every problem at once.
    pub fn integrations(
        mut self,
        integrations: impl IntoIterator<Item = Arc<dyn Integration>>,
    ) -> Result<Self, WebhookConfigError> {
        let mut problems = Vec::new();
        for integration in integrations {
            if integration.descriptor().webhook.is_none() {
                continue;
            }
            match self.add(integration, None) {
                Ok(()) => {}
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(WebhookConfigError { problems })
        }
    }

    /// Adds the route of `integration` with explicit secrets (each may hold
    /// several, comma-separated), instead of the environment.
    pub fn integration_with_secrets(
        mut self,
        integration: Arc<dyn Integration>,
        secrets: &[Secret],
    ) -> Result<Self, WebhookConfigError> {
        self.add(integration, Some(secrets))
            .map(|()| self)
            .map_err(|problem| WebhookConfigError {
                problems: vec![problem],
            })
    }

    fn add(&mut self, integration: Arc<dyn Integration>, secrets: Option<&[Secret]>) -> Result<(), String> {
        let name = integration.descriptor().name;
        let webhook = webhook_of(&*integration)?;
        // Explicit secrets, else the integration's own configuration, else the environment.
        let configured;
        let secrets = match secrets {
            Some(secrets) => secrets,
            None => {
                configured = [match integration.webhook_secret() {
                    Some(secret) => secret,
                    None => secret_from_env(name, webhook)?,
                }];
                &configured
            }
        };
        let verifier = Verifier::new(webhook.scheme, webhook.tolerance_s, secrets)
            .map_err(|e| format!("{name}: {e} (from `{}`)", webhook.secret_env))?;
        if let Some(other) = self.routes.iter().find(|r| r.webhook.path == webhook.path) {
            return Err(format!(
                "{name} and {} both receive webhooks at `{}`",
                other.integration.descriptor().name,
                webhook.path
            ));
        }
        self.routes.push(Route {
            integration,
            webhook,
            verifier,
        });
        Ok(())
    }

    /// The router: `POST <path>` for every added integration.
    pub fn router(self) -> Router {
        let mut router = Router::new();
        let sink = self
            .sink
            .unwrap_or_else(|| EventSink::new(self.store, self.metrics.clone(), 1));
        for route in self.routes {
            let path = route.webhook.path;
            let limit = route.webhook.max_body_bytes;
            let shared = Arc::new(Shared {
                route,
                sink: sink.clone(),
                metrics: self.metrics.clone(),
            });
            router = router.route(
                path,
                post(receive).layer(DefaultBodyLimit::max(limit)).with_state(shared),
            );
        }
        router
    }
}

fn webhook_of(integration: &dyn Integration) -> Result<&'static WebhookDescriptor, String> {
    let descriptor = integration.descriptor();
    descriptor
        .webhook
        .as_ref()
        .ok_or_else(|| format!("{} has no [webhook] in its spec", descriptor.name))
}

fn secret_from_env(name: &str, webhook: &WebhookDescriptor) -> Result<Secret, String> {
    match std::env::var(webhook.secret_env) {
        Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(format!(
            "{name}: the webhook secret variable `{}` is not set (it holds one secret, or several comma-separated during rotation, a comma inside a secret written `\\,`)",
            webhook.secret_env
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{name}: the webhook secret variable `{}` is not valid UTF-8",
            webhook.secret_env
        )),
    }
}

/// What a stored delivery did, and the reason recorded in the metrics.
struct Accepted(AppendOutcome);

impl Accepted {
    fn reason(&self) -> &'static str {
        outcome_name(&self.0)
    }
}

/// `applied`, `ignored` or `duplicate`, as answered and counted.
pub(crate) fn outcome_name(outcome: &AppendOutcome) -> &'static str {
    match outcome {
        AppendOutcome::Applied { .. } => "applied",
        AppendOutcome::Ignored { .. } => "ignored",
        AppendOutcome::Duplicate { .. } => "duplicate",
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let name = shared.route.integration.descriptor().name;
    let span = tracing::info_span!(
        "webhook_delivery",
        integration = name,
        delivery_id = tracing::field::Empty,
        external_id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let result = shared.handle(&headers, body).instrument(span.clone()).await;
    let reason = match &result {
        Ok(accepted) => accepted.reason(),
        Err(rejection) => rejection.code(),
    };
    span.record("outcome", reason);
    shared
        .metrics
        .webhook_delivery(name, result.is_ok(), reason, started.elapsed());
    match result {
        Ok(_) => (StatusCode::OK, Json(json!({"received": true, "outcome": reason}))).into_response(),
        Err(rejection) => {
            span.in_scope(|| tracing::info!(code = rejection.code(), "delivery refused"));
            rejection.into_response()
        }
    }
}

impl Shared {
    async fn handle(&self, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Accepted, Rejection> {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Rejection::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than {} bytes", self.route.webhook.max_body_bytes),
                )
            } else {
                Rejection::new(StatusCode::BAD_REQUEST, "unreadable_body", "the body could not be read")
            }
        })?;

        let now = chrono::Utc::now().timestamp();
        let verified = self
            .route
            .verifier
            .verify(headers, &body, now)
            .map_err(|e| Rejection::new(StatusCode::UNAUTHORIZED, e.reason(), e.to_string()))?;

        let payload: Value = serde_json::from_slice(&body).map_err(|e| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;

        let delivery_id = delivery::sender_id(verified.delivery_id, self.route.webhook.scheme, &payload);
        let (external_id, event) = self.event_of(&payload)?;
        let span = tracing::Span::current();
        if let Some(id) = &delivery_id {
            span.record("delivery_id", id.as_str());
        }
        span.record("external_id", external_id.as_str());
        let name = self.route.integration.descriptor().name;
        let mut outcomes = self
            .sink
            .record(
                name,
                Subject::External {
                    external_id: &external_id,
                },
                EventSource::Webhook,
                vec![event],
                delivery_id.as_deref(),
            )
            .await
            .map_err(|error| store_rejection(name, &external_id, &error))?;
        let outcome = outcomes.pop().expect("one event recorded, or its earlier duplicate");
        Ok(Accepted(outcome))
    }

    /// Maps a verified payload to the external id and the event to append.
    fn event_of(&self, payload: &Value) -> Result<(String, NewEvent), Rejection> {
        let unreadable =
            |message: String| Rejection::new(StatusCode::UNPROCESSABLE_ENTITY, "unreadable_payload", message);
        let reply = match self.route.integration.read_webhook(payload) {
            Some(Ok(reply)) => reply,
            Some(Err(error)) => return Err(unreadable(error.to_string())),
            None => {
                return Err(unreadable(format!(
                    "{} does not read webhook payloads",
                    self.route.integration.descriptor().name
                )))
            }
        };
        let external_id = reply
            .external_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| unreadable("the payload carries no external id".to_owned()))?;
        let status = reply
            .status
            .ok_or_else(|| unreadable("the payload carries no status".to_owned()))?;
        // One event per delivery: what the payload says, not the steps before it.
        let event = terminal_of(status, &reply).unwrap_or_else(news::processing);
        Ok((external_id, event))
    }
}

fn store_rejection(integration: &str, external_id: &str, error: &StoreError) -> Rejection {
    if error.is_not_found() {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unknown_external_id",
            format!("no {integration} call has external id `{external_id}` yet; deliver again later"),
        )
        .retry_after(RETRY_AFTER_S)
    } else if error.is_conflict() {
        Rejection::new(StatusCode::CONFLICT, "store_conflict", error.to_string())
    } else {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            "the event could not be stored; deliver again later",
        )
        .retry_after(RETRY_AFTER_S)
    }
}
