//! Punctuality (issue 15): at idle, how late a polling integration's polls
//! reach the provider against the spec's schedule, on SQLite and on
//! PostgreSQL. Idle workers sleep until the next call is due
//! (`Store::next_due`), not until a fixed tick.
//!
//! The spec polls 1.0 s after the start, then each interval grows by half
//! of the time elapsed since creation (1.0 s, 1.5 s, 2.25 s, ...: the
//! runtime's `poll_delay`). A poll is due at the previous request's
//! arrival plus that delay; its lateness is its arrival minus that. The
//! worker computes the delay a little after the previous answer, so this
//! counts the worker's own turn as lateness too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use integration_runtime::{CallId, CallStatus, Runtime, SqliteStore, Store};
use serde_json::{json, Value};

use crate::common::{line, ms, quantile, Figure, Result, Scratch};

integration_runtime::integration!("specs/bench_poll.toml");

/// The spec's first interval and growth (`specs/bench_poll.toml`).
const INTERVAL: Duration = Duration::from_millis(1_000);
const BACKOFF: f64 = 1.5;
/// What the figure should show (issue 15).
const TARGET_P99: Duration = Duration::from_millis(50);

/// Requests each job received, in order, with their arrival times.
type Arrivals = Arc<Mutex<HashMap<String, Vec<DateTime<Utc>>>>>;

/// The provider: `POST /jobs` starts a job named after its text, `GET
/// /jobs/{id}` answers `running` until the job has been polled `polls`
/// times, then `done`.
struct PollProvider {
    url: String,
    arrivals: Arrivals,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PollProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct ProviderState {
    arrivals: Arrivals,
    polls: usize,
}

impl PollProvider {
    async fn start(polls: usize) -> Result<PollProvider> {
        let arrivals = Arrivals::default();
        let state = ProviderState {
            arrivals: arrivals.clone(),
            polls,
        };
        let app = Router::new()
            .route("/jobs", post(submit))
            .route("/jobs/{id}", get(status))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(PollProvider { url, arrivals, task })
    }
}

fn record(arrivals: &Arrivals, job: &str) -> usize {
    let mut arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let requests = arrivals.entry(job.to_owned()).or_default();
    requests.push(Utc::now());
    requests.len()
}

async fn submit(State(state): State<ProviderState>, Json(body): Json<Value>) -> Json<Value> {
    let job = body["text"].as_str().unwrap_or_default().to_owned();
    // A retried start (same job) is recorded once: it is not a poll.
    if !state
        .arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(&job)
    {
        record(&state.arrivals, &job);
    }
    Json(json!({ "job_id": job }))
}

async fn status(State(state): State<ProviderState>, Path(job): Path<String>) -> Json<Value> {
    let requests = record(&state.arrivals, &job);
    // The first request was the start.
    if requests > state.polls {
        Json(json!({ "state": "done", "url": "https://example.test/out" }))
    } else {
        Json(json!({ "state": "running" }))
    }
}

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let (calls, polls) = if quick { (8, 2) } else { (20, 4) };
    println!(
        "\n== punctuality: {calls} idle calls polled {polls} times each on the spec's schedule \
         (1.0 s, x{BACKOFF}), poll_idle 1 s"
    );
    let mut figures = Vec::new();
    let scratch = Scratch::new("punctuality")?;
    let sqlite = SqliteStore::open(scratch.path("punctuality.db")).await?;
    figures.push(measure("SQLite", Arc::new(sqlite), calls, polls).await?);

    let name = "punctuality: poll lateness, PostgreSQL";
    match std::env::var("INTEGRATION_TEST_DATABASE_URL") {
        Ok(url) => match crate::pg_cost::BenchDatabase::create(&url).await {
            Ok(database) => {
                let measured = async {
                    let store = crate::postgres::open(&database.url, "public", 8).await?;
                    measure("PostgreSQL", store, calls, polls).await
                }
                .await;
                database.drop().await;
                figures.push(measured?);
            }
            Err(error) => {
                let reason = format!("PostgreSQL not usable: {error}");
                line(name, "skipped", &reason);
                figures.push(Figure::skipped(name, reason));
            }
        },
        Err(_) => {
            let reason = "INTEGRATION_TEST_DATABASE_URL is unset";
            line(name, "skipped", reason);
            figures.push(Figure::skipped(name, reason));
        }
    }
    Ok(figures)
}

/// Runs `calls` polling calls, created 50 ms apart on an idle runtime, to
/// the end; the figure of their polls' lateness.
async fn measure(label: &str, store: Arc<dyn Store>, calls: usize, polls: usize) -> Result<Figure> {
    let provider = PollProvider::start(polls).await?;
    let rt = Runtime::builder()
        .store(store)
        .integration(bench_poll::BenchPoll::new(bench_poll::BenchPollConfig {
            base_url: provider.url.clone(),
        })?)
        .poll_idle(Duration::from_secs(1))
        .build()
        .await?;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    // Idle first: the worker must wake for what is due, not be busy anyway.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ids: Vec<(String, CallId)> = Vec::with_capacity(calls);
    for n in 0..calls {
        let job = format!("job-{n}");
        let id = rt.create(bench_poll::Job { text: job.clone() }).await?;
        ids.push((job, id));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last poll comes at about 8 s; allow for a slow machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut created = HashMap::new();
    for (job, id) in &ids {
        loop {
            let call = rt.get(*id).await?.ok_or("a created call is gone")?;
            if call.status == CallStatus::Completed {
                created.insert(job.clone(), call.created_at);
                break;
            }
            if call.status == CallStatus::Failed || tokio::time::Instant::now() > deadline {
                return Err(format!("{job} did not complete: {:?} {:?}", call.status, call.error).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;

    let arrivals = provider.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lateness = Vec::new();
    let mut early = 0;
    for (job, created_at) in &created {
        let requests = arrivals.get(job).ok_or("a job reached no provider")?;
        let started = requests[0];
        for pair in requests.windows(2) {
            let (previous, arrived) = (pair[0], pair[1]);
            let due = previous + poll_delay(previous - *created_at)?;
            lateness.push((arrived - due).to_std().unwrap_or_default());
            // Early, beyond the stores' millisecond rounding, even against
            // the latest creation time a worker may count from (a call
            // handed to its worker counts from when the create returned).
            let soonest = previous + poll_delay(previous - started)?;
            if soonest - arrived > chrono::Duration::milliseconds(2) {
                early += 1;
            }
        }
    }
    lateness.sort_unstable();
    let (p50, p99, max) = (
        quantile(&lateness, 0.5),
        quantile(&lateness, 0.99),
        lateness.last().copied().unwrap_or_default(),
    );
    let value = format!("p50 {} p99 {}", ms(p50), ms(p99));
    let note = format!("{} polls, max {}, {early} early", lateness.len(), ms(max));
    line(&format!("poll lateness, {label}"), &value, &note);
    Ok(Figure::new(
        format!("punctuality: poll lateness, {label}"),
        value,
        note,
        format!("p99 < {} ms, none early", TARGET_P99.as_millis()),
        Some(p99 < TARGET_P99 && early == 0 && !lateness.is_empty()),
    ))
}

/// The spec's delay before the next poll of a call `elapsed` old, as the
/// runtime computes it (`poll_delay`; no cap is reached here).
fn poll_delay(elapsed: chrono::Duration) -> Result<chrono::Duration> {
    let elapsed = elapsed.to_std().unwrap_or_default();
    Ok(chrono::Duration::from_std(INTERVAL + elapsed.mul_f64(BACKOFF - 1.0))?)
}
