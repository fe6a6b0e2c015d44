//! `GET /health`: see [`Health`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "server")]
use axum::{http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::call::CallId;
use crate::integration::BoxFuture;
use crate::policy::CircuitState;
use crate::store::Store;

/// How long the store check waits before calling the store down.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// One circuit breaker's state, named (usually by its integration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitReport {
    /// The circuit's name (`VolcTts`, or `VolcTts.synthesize`).
    pub name: String,
    /// Its state.
    pub state: CircuitState,
}

/// Reports the state of circuit breakers, for `/health` and `/metrics`.
///
/// Implemented for closures `Fn() -> Vec<CircuitReport>`.
pub trait CircuitSource: Send + Sync {
    /// Every circuit breaker's current state.
    fn circuits(&self) -> Vec<CircuitReport>;
}

impl<F> CircuitSource for F
where
    F: Fn() -> Vec<CircuitReport> + Send + Sync,
{
    fn circuits(&self) -> Vec<CircuitReport> {
        self()
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working.
    Up,
    /// Working, with a dependency in trouble (an open circuit).
    Degraded,
    /// Not working: the instance should not get traffic.
    Down,
}

/// What a check found: its status and details shown as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The status.
    pub status: HealthStatus,
    /// Details for humans (latency, error message, states).
    pub detail: Value,
}

/// One named health check.
pub trait HealthCheck: Send + Sync {
    /// The name shown in the report (`store`, `circuits`, ...).
    fn name(&self) -> &str;
    /// Runs the check; should be cheap and bounded in time.
    fn check(&self) -> BoxFuture<'_, CheckResult>;
}

struct StoreCheck(Arc<dyn Store>);

impl HealthCheck for StoreCheck {
    fn name(&self) -> &str {
        "store"
    }

    fn check(&self) -> BoxFuture<'_, CheckResult> {
        Box::pin(async move {
            let started = Instant::now();
            let probe = async {
                // A primary-key lookup of an id that never exists: one indexed read.
                let read = self.0.get(CallId::from_uuid(uuid::Uuid::nil())).await;
                read.map_err(|error| format!("reads fail: {error}"))?;
                // A read passes while the database is locked or its disk full.
                let write = self.0.probe_write().await;
                write.map_err(|error| format!("writes fail: {error}"))
            };
            match tokio::time::timeout(STORE_TIMEOUT, probe).await {
                Ok(Ok(())) => CheckResult {
                    status: HealthStatus::Up,
                    detail: json!({"latency_ms": started.elapsed().as_millis() as u64}),
                },
                Ok(Err(error)) => CheckResult {
                    status: HealthStatus::Down,
                    detail: json!({"error": error}),
                },
                Err(_) => CheckResult {
                    status: HealthStatus::Down,
                    detail: json!({"error": format!(
                        "no answer to a read and a write within {} ms (a locked database?)",
                        STORE_TIMEOUT.as_millis()
                    )}),
                },
            }
        })
    }
}

struct CircuitCheck(Arc<dyn CircuitSource>);

impl HealthCheck for CircuitCheck {
    fn name(&self) -> &str {
        "circuits"
    }

    fn check(&self) -> BoxFuture<'_, CheckResult> {
        Box::pin(async move {
            let mut detail = Map::new();
            let mut status = HealthStatus::Up;
            for report in self.0.circuits() {
                let state = match report.state {
                    CircuitState::Closed => "closed",
                    CircuitState::HalfOpen => "half_open",
                    CircuitState::Open { .. } => {
                        status = HealthStatus::Degraded;
                        "open"
                    }
                };
                detail.insert(report.name, Value::from(state));
            }
            CheckResult {
                status,
                detail: Value::Object(detail),
            }
        })
    }
}

/// `GET /health`: a list of named checks, each `up`, `degraded` or `down`.
///
/// Built in: `store` (a primary-key lookup and a small write, see
/// [`Store::probe_write`], bounded together by a 2 s timeout) and, once a
/// [`CircuitSource`] is given, `circuits` (degraded while any circuit is
/// open). Add your own with [`Health::check`].
///
/// The answer is `200` unless a check is `down` (then `503`), so a load
/// balancer keeps routing to an instance whose provider is failing (its
/// circuit is open, the instance itself is fine) but not to one that lost
/// its database:
///
/// ```json
/// {"status": "degraded",
///  "checks": {"store": {"status": "up", "detail": {"latency_ms": 1}},
///             "circuits": {"status": "degraded", "detail": {"VolcTts": "open"}}}}
/// ```
///
/// Circuit breakers live in each integration's HTTP client
/// (`HttpClient::circuit_state`), which the dyn [`Integration`](crate::Integration)
/// trait does not expose; whoever holds the clients (the engine, or the
/// application) reports them through [`CircuitSource`] — a closure returning
/// [`CircuitReport`]s will do.
#[derive(Clone)]
pub struct Health {
    checks: Vec<Arc<dyn HealthCheck>>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|c| c.name()).collect();
        f.debug_struct("Health").field("checks", &names).finish()
    }
}

impl Health {
    /// Health with the store check.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Health {
            checks: vec![Arc::new(StoreCheck(store))],
        }
    }

    /// Adds the `circuits` check: degraded while any circuit is open.
    #[must_use]
    pub fn circuits(self, source: Arc<dyn CircuitSource>) -> Self {
        self.check(Arc::new(CircuitCheck(source)))
    }

    /// Adds a check of your own.
    #[must_use]
    pub fn check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Runs every check: the overall status (the worst) and the JSON report.
    pub async fn report(&self) -> (HealthStatus, Value) {
        let mut overall = HealthStatus::Up;
        let mut checks = Map::new();
        for check in &self.checks {
            let result = check.check().await;
            overall = overall.max(result.status);
            checks.insert(
                check.name().to_owned(),
                json!({"status": result.status, "detail": result.detail}),
            );
        }
        (overall, json!({"status": overall, "checks": checks}))
    }

    /// A router serving `GET /health`: `200`, or `503` when a check is down.
    #[cfg(feature = "server")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn router(self) -> Router {
        let health = Arc::new(self);
        Router::new().route(
            "/health",
            get(move || {
                let health = Arc::clone(&health);
                async move {
                    let (status, report) = health.report().await;
                    let code = if status == HealthStatus::Down {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    (code, Json(report)).into_response()
                }
            }),
        )
    }
}
