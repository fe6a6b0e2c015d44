//! A rate-limited provider behind four worker processes on PostgreSQL: how
//! many requests reach it in its busiest 10 s, with the spec's rate limit
//! kept per process (the baseline) and shared through the store
//! (`RuntimeBuilder::shared_protection`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use integration_runtime::{Integration, Runtime};
use serde_json::{json, Value};

use crate::common::{line, this_exe, Figure, Result};
use crate::pg_cost::BenchDatabase;

const PROCESSES: usize = 4;

/// The rate-limited benchmark integration against `url`.
pub(crate) fn integration(url: &str) -> Result<crate::bench_limited::BenchLimited> {
    Ok(crate::bench_limited::BenchLimited::new(
        crate::bench_limited::BenchLimitedConfig {
            base_url: url.to_owned(),
        },
    )?)
}

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let name = "shared rate limit, 4 processes";
    let window = Duration::from_secs(if quick { 5 } else { 10 });
    let Ok(url) = std::env::var("INTEGRATION_TEST_DATABASE_URL") else {
        line(name, "skipped", "INTEGRATION_TEST_DATABASE_URL is unset");
        return Ok(Vec::new());
    };
    let limit = integration("http://127.0.0.1:9")?
        .descriptor()
        .policy
        .rate_limit
        .ok_or("specs/bench_limited.toml has no rate limit")?;
    println!(
        "\n== {PROCESSES} worker processes on PostgreSQL against a provider limited to {} requests/s \
         (burst {}): requests in the busiest {} s",
        limit.per_second,
        limit.burst,
        window.as_secs()
    );
    let database = BenchDatabase::create(&url).await?;
    let measured = async {
        let per_process = busiest(&database, false, window).await?;
        let shared = busiest(&database, true, window).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((per_process, shared))
    }
    .await;
    database.drop().await;
    let (per_process, shared) = measured?;
    let spec = limit.per_second * window.as_secs_f64();
    let ratio = |count: usize| count as f64 / spec;
    line(
        "limit per process (4 limiters)",
        &format!("{per_process} requests"),
        &format!("{:.2}x the spec's rate", ratio(per_process)),
    );
    line(
        "limit shared through the store",
        &format!("{shared} requests"),
        &format!("{:.2}x the spec's rate", ratio(shared)),
    );
    Ok(vec![Figure::new(
        name,
        format!(
            "{shared} requests in {} s: {:.2}x the spec's rate",
            window.as_secs(),
            ratio(shared)
        ),
        format!("per process: {per_process} ({:.2}x)", ratio(per_process)),
        "<= 1.1x",
        Some(ratio(shared) <= 1.1),
    )])
}

/// Runs the worker processes on a fresh schema with a backlog larger than
/// they can send, and returns the most requests the provider saw in any
/// `window`, after the first second (the processes start one by one).
async fn busiest(database: &BenchDatabase, shared: bool, window: Duration) -> Result<usize> {
    let provider = TimedProvider::start().await?;
    let schema = format!("limited_{}", if shared { "shared" } else { "per_process" });
    let store = crate::postgres::open(&database.url, &schema, 16).await?;
    let rt = Runtime::builder()
        .store(store)
        .integration(integration(&provider.url)?)
        .build()
        .await?;
    // Four unshared limiters of 50/s need 200 calls a second.
    let calls = 250 * (window.as_secs() + 3);
    let mut creators = tokio::task::JoinSet::new();
    for task in 0..16u64 {
        let rt = rt.clone();
        creators.spawn(async move {
            for i in (task..calls).step_by(16) {
                rt.create(crate::bench_limited::Message {
                    text: format!("call {i}"),
                })
                .await?;
            }
            Ok::<_, integration_runtime::EngineError>(())
        });
    }
    while let Some(created) = creators.join_next().await {
        created??;
    }
    let mut workers = Vec::new();
    for n in 0..PROCESSES {
        let mut command = tokio::process::Command::new(this_exe()?);
        command
            .args(["worker", "--limited", "--postgres", &database.url, "--schema", &schema])
            .args([
                "--url",
                &provider.url,
                "--concurrency",
                "8",
                "--idle-ms",
                "50",
                "--worker-id",
            ])
            .arg(format!("limited-{n}"))
            .kill_on_drop(true);
        if shared {
            command.arg("--shared-protection");
        }
        workers.push(command.spawn()?);
    }
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    for mut worker in workers {
        let _ = worker.kill().await;
    }
    Ok(provider.busiest(window, Duration::from_secs(1)))
}

/// A loopback provider that answers at once and keeps the time of every request.
struct TimedProvider {
    url: String,
    times: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TimedProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TimedProvider {
    async fn start() -> Result<TimedProvider> {
        let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let app = Router::new().route("/send", post(echo)).with_state(times.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TimedProvider { url, times, task })
    }

    /// The most requests in any `window`, counting from `skip` after the first.
    fn busiest(&self, window: Duration, skip: Duration) -> usize {
        let times = self.times.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(first) = times.first() else { return 0 };
        let counted: Vec<Instant> = times.iter().copied().filter(|t| *t >= *first + skip).collect();
        let mut most = 0;
        let mut start = 0;
        for (end, at) in counted.iter().enumerate() {
            while *at - counted[start] >= window {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }
}

async fn echo(State(times): State<Arc<Mutex<Vec<Instant>>>>, Json(body): Json<Value>) -> Json<Value> {
    times.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
    Json(json!({ "echoed": body.get("text").cloned().unwrap_or(Value::Null) }))
}
