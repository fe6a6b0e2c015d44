//! Sync-call pipeline: N calls created, executed against the loopback
//! provider, all three events durable in SQLite; against a raw reqwest loop
//! (baseline A, no store) and apalis + SQLite (baseline B, a subprocess).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{IntoCall, Runtime, SqliteStore};
use serde_json::Value;

use crate::common::{bench_sync, line, message, sqlite_pragmas, Figure, Provider, Result, Scratch};

/// Calls in flight at once, for the runtime and both baselines.
pub(crate) const CONCURRENCY: usize = 32;

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let calls: u64 = if quick { 1_000 } else { 5_000 };
    println!("\n== sync-call pipeline: {calls} calls, concurrency {CONCURRENCY}, loopback axum provider");
    let provider = Provider::start(false, Duration::ZERO).await?;
    let scratch = Scratch::new("sync")?;

    // Warm the provider and the loopback path once.
    raw_loop(&provider.url, 200, CONCURRENCY).await?;

    let (create_rate, runtime_rate, pragmas) = runtime_run(&provider.url, &scratch, calls, false).await?;
    let (normal_create, normal_rate, _) = runtime_run(&provider.url, &scratch, calls.min(2_000), true).await?;
    let a = raw_loop(&provider.url, calls, CONCURRENCY).await?;
    let b = apalis(&provider.url, &scratch, calls, quick).await;

    let durability = format!("SQLite {pragmas}");
    line(
        "runtime: create (concurrent `Runtime::create`)",
        &format!("{create_rate:.0} calls/s"),
        &durability,
    );
    line(
        "runtime: execute, 3 events durable per call",
        &format!("{runtime_rate:.0} calls/s"),
        &durability,
    );
    line(
        "  same, synchronous=NORMAL (<= 2000 calls)",
        &format!("{normal_rate:.0} calls/s"),
        &format!("create {normal_create:.0} calls/s; crash-safe, not power-cut-safe"),
    );
    let of_a = runtime_rate / a;
    line(
        "baseline A: raw reqwest loop, no store",
        &format!("{a:.0} calls/s"),
        &format!("runtime = {:.1} % of A (target >= 40 %)", of_a * 100.0),
    );
    let mut figures = vec![
        Figure::new(
            "sync: create",
            format!("{create_rate:.0} calls/s"),
            durability.clone(),
            "",
            None,
        ),
        Figure::new(
            "sync: execute, synchronous=NORMAL",
            format!("{normal_rate:.0} calls/s"),
            format!("{:.1} % of raw reqwest", normal_rate / a * 100.0),
            "",
            None,
        ),
        Figure::new(
            "sync: execute (runtime)",
            format!("{runtime_rate:.0} calls/s"),
            format!("{:.1} % of raw reqwest ({a:.0}/s)", of_a * 100.0),
            ">= 40 % of A",
            Some(of_a >= 0.40),
        ),
    ];
    match b {
        Ok((b, note)) => {
            let times = runtime_rate / b;
            line(
                "baseline B: apalis 0.7 + SQLite (WAL, FULL) + reqwest",
                &format!("{b:.0} calls/s"),
                &format!("runtime = {times:.1}x B (target >= 10x); {note}"),
            );
            figures.push(Figure::new(
                "sync: execute vs apalis",
                format!("{runtime_rate:.0} calls/s"),
                format!("{times:.1}x apalis ({b:.0}/s)"),
                ">= 10x B",
                Some(times >= 10.0),
            ));
        }
        Err(reason) => {
            line("baseline B: apalis 0.7 + SQLite", "skipped", &reason);
            figures.push(Figure::skipped("sync: execute vs apalis", reason));
        }
    }
    Ok(figures)
}

/// Creates `calls` calls, then runs the runtime until all are terminal.
/// Returns (creates/s, executions/s, the store's pragmas).
async fn runtime_run(url: &str, scratch: &Scratch, calls: u64, normal: bool) -> Result<(f64, f64, String)> {
    let store = if normal {
        crate::common::open_normal_sync(&scratch.path("normal.db")).await?
    } else {
        SqliteStore::open(scratch.path("runtime.db")).await?
    };
    let pragmas = sqlite_pragmas(store.pool()).await;
    let rt = Runtime::builder()
        .store(store)
        .integration(bench_sync(url)?)
        .concurrency(CONCURRENCY)
        .claim_batch(CONCURRENCY as u32)
        .build()
        .await?;

    let create_rate = create_all(&rt, calls, message).await?;
    let rate = execute_all(&rt, calls).await?;
    Ok((create_rate, rate, pragmas))
}

/// Creates `calls` calls, `request(i)` each, from [`CONCURRENCY`] tasks.
/// Returns creates/s.
pub(crate) async fn create_all<R: IntoCall + Send + 'static>(
    rt: &Runtime,
    calls: u64,
    request: fn(u64) -> R,
) -> Result<f64> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut creators = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (rt, next) = (rt.clone(), next.clone());
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return Ok::<_, integration_runtime::EngineError>(());
                }
                rt.create(request(i)).await?;
            }
        });
    }
    while let Some(result) = creators.join_next().await {
        result??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// Runs the runtime until the `calls` stored calls are terminal, then
/// stops it; fails unless all completed. Returns executions/s.
pub(crate) async fn execute_all(rt: &Runtime, calls: u64) -> Result<f64> {
    let started = Instant::now();
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    wait_terminal(rt, calls, Duration::from_secs(600)).await?;
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    let counts = rt.count_by_status(None).await?;
    if counts.completed != calls {
        return Err(format!("expected {calls} completed calls, store has {counts:?}").into());
    }
    Ok(rate)
}

/// Waits until `calls` calls are terminal (checked every 10 ms).
pub(crate) async fn wait_terminal(rt: &Runtime, calls: u64, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let counts = rt.count_by_status(None).await?;
        if counts.completed + counts.failed >= calls {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!("calls not terminal after {limit:?}: {counts:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Baseline A: `calls` POSTs from `concurrency` tasks with one reqwest
/// client, no store. Returns requests/s.
pub(crate) async fn raw_loop(url: &str, calls: u64, concurrency: usize) -> Result<f64> {
    let client = reqwest::Client::new();
    let endpoint = format!("{url}/send");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, endpoint, next) = (client.clone(), endpoint.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return Ok::<_, reqwest::Error>(());
                }
                let body = serde_json::json!({ "text": format!("call {i}") }).to_string();
                let response = client
                    .post(&endpoint)
                    .header("content-type", "application/json")
                    .header("idempotency-key", i.to_string())
                    .body(body)
                    .send()
                    .await?;
                let bytes = response.bytes().await?;
                let _: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// Baseline B: builds and runs `benches/apalis-peer`; `Err(reason)` when it
/// cannot. Returns (jobs/s, a note).
async fn apalis(url: &str, scratch: &Scratch, calls: u64, quick: bool) -> std::result::Result<(f64, String), String> {
    let args = [
        format!("{url}/send"),
        calls.to_string(),
        CONCURRENCY.to_string(),
        scratch.path("apalis.db").display().to_string(),
    ];
    let json = crate::peer::run("apalis-peer", quick, &args).await?;
    let rate = json["calls_per_s"]
        .as_f64()
        .ok_or("no calls_per_s in the peer's JSON")?;
    Ok((rate, format!("apalis done in store: {}", json["done_in_store"])))
}
