//! Worker RSS with a growing backlog of pending calls: the backlog is
//! inserted with one batched statement per step, then a fresh worker
//! process runs on it for a few seconds and reports its resident memory.

use std::time::{Duration, Instant};

use integration_runtime::SqliteStore;
use serde_json::Value;

use crate::common::{insert_calls, line, this_exe, Figure, Provider, Result, Scratch, SQLITE_DURABILITY};

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let steps: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let seconds = if quick { 1.0 } else { 3.0 };
    println!("\n== worker RSS vs backlog (worker process runs {seconds} s on the backlog, concurrency 32)");
    let provider = Provider::start(false, Duration::ZERO).await?;
    let scratch = Scratch::new("rss")?;
    let db = scratch.path("backlog.db");
    let store = SqliteStore::open(&db).await?;

    // Baseline: the same worker on an empty store.
    let (empty_rss, empty_hwm, _) = worker(&db, &provider.url, seconds).await?;
    line(
        "baseline: worker on an empty store",
        &format!("{:.1} MB", mb(empty_hwm)),
        &format!("RSS now {:.1} MB", mb(empty_rss)),
    );

    let mut inserted = 0u64;
    let mut executed = 0u64;
    let mut results = Vec::new();
    for &step in steps {
        let started = Instant::now();
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM integration_calls WHERE status = 'pending'")
            .fetch_one(store.pool())
            .await?;
        let missing = step.saturating_sub(pending as u64);
        if missing > 0 {
            insert_calls(store.pool(), "BenchSync", "send", missing, inserted, None).await?;
            inserted += missing;
        }
        let insert_time = started.elapsed();
        let (rss, hwm, total_done) = worker(&db, &provider.url, seconds).await?;
        let done = total_done.saturating_sub(executed);
        executed = total_done;
        line(
            &format!("worker with {step} pending calls"),
            &format!("{:.1} MB peak", mb(hwm)),
            &format!(
                "RSS now {:.1} MB; executed {done} meanwhile; backlog insert {:.1} s",
                mb(rss),
                insert_time.as_secs_f64()
            ),
        );
        results.push((step, hwm));
    }
    let (largest, peak) = *results.last().ok_or("no step")?;
    let smallest = results.first().map_or(peak, |r| r.1);
    let growth = peak as f64 / smallest.max(1) as f64;
    let flat = growth < 1.25;
    line(
        "growth smallest -> largest backlog",
        &format!("{growth:.2}x"),
        &format!("flat: {flat}; {SQLITE_DURABILITY}"),
    );
    Ok(vec![Figure::new(
        format!("rss: worker, {largest} pending"),
        format!("{:.1} MB peak", mb(peak)),
        format!(
            "{:.2}x empty store ({:.1} MB); {growth:.2}x smallest backlog",
            peak as f64 / empty_hwm.max(1) as f64,
            mb(empty_hwm)
        ),
        "< 100 MB, flat",
        Some(mb(peak) < 100.0 && flat),
    )])
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Runs a worker process for `seconds`; returns (RSS KiB, peak KiB, completed calls).
async fn worker(db: &std::path::Path, url: &str, seconds: f64) -> Result<(u64, u64, u64)> {
    let output = tokio::process::Command::new(this_exe()?)
        .arg("worker")
        .arg("--sqlite")
        .arg(db)
        .args(["--url", url, "--concurrency", "32", "--seconds", &seconds.to_string()])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            format!(
                "worker printed no JSON: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let field = |name: &str| json[name].as_u64().unwrap_or(0);
    Ok((field("rss_kb"), field("hwm_kb"), field("completed")))
}
