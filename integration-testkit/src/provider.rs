//! A fake provider built from a spec, served over loopback.
//!
//! It answers every endpoint of the spec the way the spec says the real one
//! does: ids, states and results are placed at the spec's JSON paths, states
//! are spelled with the provider's own words from the status maps. What
//! happens to each call is scripted per endpoint with [`Outcome`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use integration_spec::ir::{Endpoint, Mode, PathPart, RemoteStatus, ResultSpec, Spec, StatusMap, Type};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::json_write::set;
use crate::script::{Outcome, OutcomeKind, Script};
use crate::webhook::WebhookSender;
use crate::TestkitError;

/// One request the fake provider received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The endpoint it matched (the spec's name).
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Path, as sent (percent-encoded).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// Raw body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A task the fake accepted and is "working on".
#[derive(Debug, Clone)]
struct Task {
    outcome: Outcome,
    polls: u32,
}

/// Chooses an outcome for a request by its content; checked before the script.
type Rule = (String, Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>, Outcome);

struct State {
    spec: Spec,
    scripts: HashMap<String, Script>,
    rules: Vec<Rule>,
    polls_until_done: u32,
    tasks: HashMap<String, Task>,
    requests: Vec<RecordedRequest>,
    next_id: u64,
    webhooks: Option<Arc<Webhooks>>,
    deliveries: Vec<(String, Result<u16, String>)>,
}

/// Where and how the fake announces finished tasks.
struct Webhooks {
    url: String,
    sender: WebhookSender,
    delay: std::time::Duration,
}

/// Builds a [`FakeProvider`]; see [`FakeProvider::from_spec`].
pub struct FakeProviderBuilder {
    spec: Spec,
    scripts: HashMap<String, Script>,
    rules: Vec<Rule>,
    polls_until_done: u32,
    webhooks: Option<Webhooks>,
}

/// A fake of the provider a spec describes, listening on 127.0.0.1.
///
/// ```no_run
/// # async fn demo() -> Result<(), integration_testkit::TestkitError> {
/// use integration_testkit::{FakeProvider, Outcome};
/// use serde_json::json;
///
/// let fake = FakeProvider::from_spec_file("specs/volc_tts.toml")?
///     .outcomes("synthesize", [Outcome::reject(503), Outcome::complete(json!({ "url": "u", "duration_ms": 5 }))])
///     .polls_until_done(2)
///     .start()
///     .await?;
/// std::env::set_var("VOLC_TTS_BASE_URL", fake.url());
/// # Ok(()) }
/// ```
pub struct FakeProvider {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl FakeProvider {
    /// A fake for the spec in `path` (read at run time).
    pub fn from_spec_file(path: impl AsRef<Path>) -> Result<FakeProviderBuilder, TestkitError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|e| TestkitError::Io(path.display().to_string(), e))?;
        let spec = integration_spec::parse(&source, &path.display().to_string()).map_err(TestkitError::Spec)?;
        Ok(Self::from_spec(spec))
    }

    /// A fake for an already parsed spec.
    pub fn from_spec(spec: Spec) -> FakeProviderBuilder {
        FakeProviderBuilder {
            spec,
            scripts: HashMap::new(),
            rules: Vec::new(),
            polls_until_done: 0,
            webhooks: None,
        }
    }

    /// The base URL to point the integration at.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Requests received for one endpoint.
    pub fn requests_to(&self, endpoint: &str) -> Vec<RecordedRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// Webhook deliveries sent so far: the external id and the receiver's
    /// HTTP status (or why the delivery failed).
    pub fn webhook_deliveries(&self) -> Vec<(String, Result<u16, String>)> {
        self.lock().deliveries.clone()
    }

    /// The external ids of the tasks the fake accepted.
    pub fn task_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().tasks.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeProviderBuilder {
    /// Scripts what happens to calls of `endpoint`, in order; the last
    /// outcome repeats. Unscripted endpoints complete with a made-up result.
    pub fn outcomes(mut self, endpoint: &str, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.scripts
            .insert(endpoint.to_owned(), Script::new(outcomes.into_iter().collect()));
        self
    }

    /// Gives requests of `endpoint` that `matches` this outcome, whatever
    /// their order (calls run concurrently, so order-based scripts are not
    /// deterministic for batches). Rules are checked before the script, in
    /// the order they were added.
    ///
    /// ```no_run
    /// # fn demo(builder: integration_testkit::FakeProviderBuilder) -> integration_testkit::FakeProviderBuilder {
    /// use integration_testkit::Outcome;
    /// builder.when(
    ///     "synthesize",
    ///     |request| request.json().is_some_and(|body| body["input"]["voice_type"] == "en_robot_9"),
    ///     Outcome::fail("voice not available"),
    /// )
    /// # }
    /// ```
    pub fn when(
        mut self,
        endpoint: &str,
        matches: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        outcome: Outcome,
    ) -> Self {
        self.rules.push((endpoint.to_owned(), Box::new(matches), outcome));
        self
    }

    /// How many status queries of an async call answer `processing` before
    /// the scripted outcome shows. Counting polls instead of time keeps
    /// tests deterministic and fast.
    pub fn polls_until_done(mut self, polls: u32) -> Self {
        self.polls_until_done = polls;
        self
    }

    /// Announces every accepted async task's outcome with a signed webhook
    /// to `url`, `delay` after accepting it (the spec must have `[webhook]`;
    /// the payload follows its paths and status map).
    pub fn webhooks_to(mut self, url: impl Into<String>, sender: WebhookSender, delay: std::time::Duration) -> Self {
        self.webhooks = Some(Webhooks {
            url: url.into(),
            sender,
            delay,
        });
        self
    }

    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(self) -> Result<FakeProvider, TestkitError> {
        if self.webhooks.is_some() && self.spec.webhook.is_none() {
            return Err(TestkitError::Webhook(format!(
                "spec `{}` has no [webhook] section",
                self.spec.integration.name
            )));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::Io("127.0.0.1:0".into(), e))?;
        let address = listener
            .local_addr()
            .map_err(|e| TestkitError::Io("127.0.0.1:0".into(), e))?;
        let state = Arc::new(Mutex::new(State {
            spec: self.spec,
            scripts: self.scripts,
            rules: self.rules,
            polls_until_done: self.polls_until_done,
            tasks: HashMap::new(),
            requests: Vec::new(),
            next_id: 0,
            webhooks: self.webhooks.map(Arc::new),
            deliveries: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { handle(state, method, uri, headers, body).await }
        });
        let server = tokio::spawn(async move {
            // The server ends when the FakeProvider is dropped (the task is aborted).
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeProvider { address, state, server })
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the state half-written in
    // a way that matters to a fake; keep serving.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which endpoint a request is for, and the external id in its path.
fn route<'s>(spec: &'s Spec, method: &Method, path: &str) -> Option<(&'s Endpoint, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    spec.endpoints
        .iter()
        .filter(|e| e.method.as_str() == method.as_str())
        .find_map(|endpoint| {
            let template = template_segments(endpoint);
            if template.len() != segments.len() {
                return None;
            }
            let mut external_id = None;
            for (part, actual) in template.iter().zip(&segments) {
                match part {
                    TemplateSegment::Literal(text) if text == actual => {}
                    TemplateSegment::Literal(_) => return None,
                    TemplateSegment::ExternalId => external_id = Some(percent_decode(actual)),
                    TemplateSegment::Field => {}
                }
            }
            Some((endpoint, external_id))
        })
}

enum TemplateSegment {
    Literal(String),
    ExternalId,
    Field,
}

/// The endpoint's path template split at `/` (parameters fill whole segments).
fn template_segments(endpoint: &Endpoint) -> Vec<TemplateSegment> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut param: Option<TemplateSegment> = None;
    let flush = |current: &mut String, param: &mut Option<TemplateSegment>, segments: &mut Vec<TemplateSegment>| {
        match param.take() {
            Some(p) => segments.push(p),
            None => segments.push(TemplateSegment::Literal(std::mem::take(current))),
        }
        current.clear();
    };
    for part in &endpoint.path {
        match part {
            PathPart::Literal(text) => {
                for (i, piece) in text.split('/').enumerate() {
                    if i > 0 {
                        flush(&mut current, &mut param, &mut segments);
                    }
                    current.push_str(piece);
                }
            }
            PathPart::ExternalId => param = Some(TemplateSegment::ExternalId),
            PathPart::Field(_) => param = Some(TemplateSegment::Field),
        }
    }
    flush(&mut current, &mut param, &mut segments);
    segments.retain(|s| !matches!(s, TemplateSegment::Literal(text) if text.is_empty()));
    segments
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(state: Arc<Mutex<State>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let shared = Arc::clone(&state);
    let (delay, response) = {
        let mut guard = lock(&state);
        let state = &mut *guard;
        let Some((endpoint, external_id)) = route(&state.spec, &method, uri.path()) else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "error": "no endpoint of the spec matches" })),
            )
                .into_response();
        };
        let endpoint = endpoint.clone();
        state.requests.push(RecordedRequest {
            endpoint: endpoint.name.clone(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body,
        });
        match external_id {
            Some(id) => (std::time::Duration::ZERO, status_query(state, &endpoint, &id)),
            None => {
                let (delay, response, accepted) = start(state, &endpoint);
                if let (Some(external_id), Some(webhooks)) = (accepted, state.webhooks.clone()) {
                    tokio::spawn(announce(shared, webhooks, external_id));
                }
                (delay, response)
            }
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Sends the signed webhook that announces a task's outcome; afterwards
/// status queries report the outcome too.
async fn announce(state: Arc<Mutex<State>>, webhooks: Arc<Webhooks>, external_id: String) {
    tokio::time::sleep(webhooks.delay).await;
    let payload = {
        let mut guard = lock(&state);
        let state = &mut *guard;
        let polls_until_done = state.polls_until_done;
        let Some(task) = state.tasks.get_mut(&external_id) else {
            return;
        };
        task.polls = task.polls.max(polls_until_done);
        let outcome = task.outcome.clone();
        let Some(webhook) = &state.spec.webhook else { return };
        let mut body = json!({});
        set(&mut body, &webhook.external_id.segments, json!(external_id));
        write_outcome(
            &state.spec,
            &mut body,
            Some(&webhook.status),
            webhook.result.as_ref(),
            webhook.error.as_ref(),
            &outcome,
        );
        body
    };
    let delivered = webhooks
        .sender
        .send(&webhooks.url, &payload)
        .await
        .map_err(|e| e.to_string());
    lock(&state).deliveries.push((external_id, delivered));
}

/// A request that starts a call; the external id when an async task was accepted.
fn start(state: &mut State, endpoint: &Endpoint) -> (std::time::Duration, Response, Option<String>) {
    let request = state.requests.last();
    let ruled = state
        .rules
        .iter()
        .find(|(name, matches, _)| *name == endpoint.name && request.is_some_and(matches))
        .map(|(_, _, outcome)| outcome.clone());
    let outcome = match ruled {
        Some(outcome) => outcome,
        None => state
            .scripts
            .get_mut(&endpoint.name)
            .map_or_else(Outcome::complete_with_made_up_result, Script::next),
    };
    let delay = outcome.delay;
    if let OutcomeKind::Reject {
        status,
        retry_after,
        message,
    } = &outcome.kind
    {
        let mut body = json!({});
        if let Some(path) = &endpoint.error {
            set(&mut body, &path.segments, json!(message));
        }
        let mut response = (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(*seconds));
        }
        return (delay, response, None);
    }
    state.next_id += 1;
    let external_id = format!("{}-{}", endpoint.name, state.next_id);
    let mut body = json!({});
    if let Some(path) = endpoint.external_id.path() {
        set(&mut body, &path.segments, json!(external_id));
    }
    match endpoint.mode {
        Mode::Sync => {
            let response_status = write_outcome(
                &state.spec,
                &mut body,
                endpoint.status.as_ref(),
                endpoint.result.as_ref(),
                endpoint.error.as_ref(),
                &outcome,
            );
            (delay, (response_status, axum::Json(body)).into_response(), None)
        }
        Mode::Async => {
            if let Some(status) = &endpoint.status {
                if let Some(word) = provider_word(status, RemoteStatus::Processing) {
                    set(&mut body, &status.path.segments, json!(word));
                }
            }
            state.tasks.insert(external_id.clone(), Task { outcome, polls: 0 });
            (
                delay,
                (StatusCode::OK, axum::Json(body)).into_response(),
                Some(external_id),
            )
        }
    }
}

/// A status query (the polling endpoint, or any endpoint addressed by external id).
fn status_query(state: &mut State, endpoint: &Endpoint, external_id: &str) -> Response {
    let polls_until_done = state.polls_until_done;
    let Some(task) = state.tasks.get_mut(external_id) else {
        let mut body = json!({});
        if let Some(path) = &endpoint.error {
            set(&mut body, &path.segments, json!(format!("no task `{external_id}`")));
        }
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    task.polls += 1;
    let done = task.polls > polls_until_done;
    let outcome = task.outcome.clone();
    let mut body = json!({});
    if !done {
        if let Some(status) = &endpoint.status {
            if let Some(word) = provider_word(status, RemoteStatus::Processing) {
                set(&mut body, &status.path.segments, json!(word));
            }
        }
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let status = write_outcome(
        &state.spec,
        &mut body,
        endpoint.status.as_ref(),
        endpoint.result.as_ref(),
        endpoint.error.as_ref(),
        &outcome,
    );
    (status, axum::Json(body)).into_response()
}

/// Writes a terminal outcome into `body` at the spec's paths; returns the
/// HTTP status to answer with.
fn write_outcome(
    spec: &Spec,
    body: &mut Value,
    status: Option<&StatusMap>,
    result: Option<&ResultSpec>,
    error: Option<&integration_spec::ir::JsonPath>,
    outcome: &Outcome,
) -> StatusCode {
    let (target, code) = match &outcome.kind {
        OutcomeKind::Complete(_) => (RemoteStatus::Completed, StatusCode::OK),
        OutcomeKind::Fail(_) | OutcomeKind::Reject { .. } => (RemoteStatus::Failed, StatusCode::OK),
    };
    match status.and_then(|s| provider_word(s, target).map(|w| (s, w))) {
        Some((status, word)) => set(body, &status.path.segments, json!(word)),
        // Without a status field, a failure can only be told by the HTTP status.
        None if target == RemoteStatus::Failed => {
            if let Some(path) = error {
                set(body, &path.segments, json!(failure_message(outcome)));
            }
            return StatusCode::UNPROCESSABLE_ENTITY;
        }
        None => {}
    }
    match &outcome.kind {
        OutcomeKind::Complete(given) => {
            if let Some(result) = result {
                let values = given.clone().unwrap_or_else(|| made_up_entity(spec, &result.entity, 0));
                for (field, path) in &result.fields {
                    if let Some(value) = values.get(field) {
                        set(body, &path.segments, value.clone());
                    }
                }
            }
        }
        _ => {
            if let Some(path) = error {
                set(body, &path.segments, json!(failure_message(outcome)));
            }
        }
    }
    code
}

fn failure_message(outcome: &Outcome) -> String {
    match &outcome.kind {
        OutcomeKind::Fail(message) | OutcomeKind::Reject { message, .. } => message.clone(),
        OutcomeKind::Complete(_) => String::new(),
    }
}

/// The provider's first word for a lifecycle state, from a status map.
pub(crate) fn provider_word(status: &StatusMap, target: RemoteStatus) -> Option<&str> {
    status
        .map
        .iter()
        .find(|(_, s)| *s == target)
        .map(|(word, _)| word.as_str())
}

/// A plausible value for every field of an entity.
pub(crate) fn made_up_entity(spec: &Spec, entity: &str, depth: usize) -> Value {
    let Some(entity) = spec.entity(entity) else {
        return json!({});
    };
    let mut object = serde_json::Map::new();
    for field in &entity.fields {
        object.insert(field.name.clone(), made_up_value(spec, &field.ty, &field.name, depth));
    }
    Value::Object(object)
}

fn made_up_value(spec: &Spec, ty: &Type, name: &str, depth: usize) -> Value {
    match ty {
        Type::String => json!(format!("fake-{name}")),
        Type::Int => json!(1),
        Type::Float => json!(1.0),
        Type::Bool => json!(true),
        Type::Timestamp => json!("2026-01-01T00:00:00Z"),
        Type::Uuid => json!("00000000-0000-4000-8000-000000000000"),
        Type::Json => json!({}),
        Type::Enum(values) => json!(values.first().cloned().unwrap_or_default()),
        Type::List(_) => json!([]),
        // Depth-limited: entities may nest through lists only, but be safe.
        Type::Entity(inner) if depth < 8 => made_up_entity(spec, inner, depth + 1),
        Type::Entity(_) => json!({}),
    }
}
