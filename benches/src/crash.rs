//! The crash harness: a worker child process is SIGKILLed at random
//! moments while it executes a batch of calls on SQLite, and restarted
//! each time; afterwards nothing may be lost, finished twice or left
//! unfinished.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use integration_runtime::{provider_idempotency_key, Runtime, SqliteStore};

use crate::common::{bench_sync, line, message, this_exe, Figure, Provider, Result, Rng, Scratch, SQLITE_DURABILITY};

/// An unfinished call as the diagnostics show it: status, attempts, lease
/// owner, lease end, next run (milliseconds).
type StuckCall = (String, i64, Option<String>, Option<i64>, Option<i64>);

/// The lease of the worker children: a killed worker's calls are claimed
/// again this long after its last renewal.
const LEASE_MS: u64 = 1_000;

pub(crate) async fn run(
    quick: bool,
    kills: Option<u32>,
    calls: Option<u32>,
    seed: Option<u64>,
) -> Result<(Vec<Figure>, bool)> {
    let kills = kills.unwrap_or(if quick { 10 } else { 100 });
    let calls = u64::from(calls.unwrap_or(if quick { 500 } else { 10_000 }));
    let seed = seed.unwrap_or_else(|| crate::common::chrono_millis() as u64);
    let mut rng = Rng::new(seed);
    println!("\n== crash harness: {kills} SIGKILLs during {calls} calls (seed {seed}; {SQLITE_DURABILITY}, lease {LEASE_MS} ms)");
    // The provider outlives every worker and counts requests per idempotency key.
    let provider = Provider::start(true, Duration::from_millis(2)).await?;
    let scratch = Scratch::new("crash")?;
    let db = scratch.path("crash.db");
    let store = std::sync::Arc::new(SqliteStore::open(&db).await?);
    let pool = store.pool().clone();
    let rt = Runtime::builder()
        .store(store.clone())
        .integration(bench_sync(&provider.url)?)
        .build()
        .await?;

    // Every call created up front, in one transaction (the outbox API).
    let mut ids = Vec::with_capacity(calls as usize);
    let mut tx = pool.begin().await?;
    for i in 0..calls {
        ids.push(store.create_in_tx(&mut tx, rt.new_call(message(i))?).await?.id);
    }
    tx.commit().await?;

    let started = Instant::now();
    let mut landed = 0u32;
    // Kill moments spread over the whole run: the mean gap is the expected
    // remaining time (from the rate so far) over the kills left.
    let mut mean_gap_ms = 150u64;
    for kill in 0..kills {
        let mut child = spawn_worker(&db, &provider.url, kill)?;
        let wait = rng.range(mean_gap_ms / 5 + 10, mean_gap_ms * 9 / 5 + 20);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.start_kill()?; // SIGKILL
        child.wait().await?;
        let counts = rt.count_by_status(None).await?;
        let unfinished = counts.pending + counts.processing;
        if unfinished > 0 {
            landed += 1;
        }
        let done = (calls - unfinished).max(1) as f64;
        let remaining_s = unfinished as f64 * started.elapsed().as_secs_f64() / done;
        let kills_left = u64::from(kills - kill).max(1);
        mean_gap_ms = ((remaining_s * 1000.0) as u64 / kills_left).clamp(20, 3_000);
    }
    let killed_for = started.elapsed();
    let counts = rt.count_by_status(None).await?;
    line(
        "after the kills",
        &format!("{} of {calls} terminal", counts.completed + counts.failed),
        &format!(
            "{landed} of {kills} kills landed while calls were unfinished; {:.1} s",
            killed_for.as_secs_f64()
        ),
    );

    // A last worker finishes the rest (leases of the last victim expire first).
    let mut last = spawn_worker(&db, &provider.url, kills)?;
    let finished = crate::sync::wait_terminal(&rt, calls, Duration::from_secs(120)).await;
    last.start_kill()?;
    last.wait().await?;
    if let Err(error) = finished {
        println!("  the last worker did not finish: {error}");
        let stuck: Vec<StuckCall> = sqlx::query_as(
            "SELECT status, attempts, lease_owner, lease_expires_at, next_run_at FROM integration_calls \
             WHERE status IN ('pending', 'processing') LIMIT 5",
        )
        .fetch_all(&pool)
        .await?;
        println!(
            "  now {} ms; unfinished calls (status, attempts, lease owner, lease end, next run): {stuck:?}",
            crate::common::chrono_millis()
        );
    }

    // The verdict, from the store and the provider.
    let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM integration_calls")
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
    let lost = ids.iter().filter(|id| !stored.contains(&id.to_string())).count();
    let duplicate_terminal: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT call_id FROM integration_call_events \
         WHERE kind IN ('completed', 'failed') GROUP BY call_id HAVING COUNT(*) > 1)",
    )
    .fetch_one(&pool)
    .await?;
    let duplicate_events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT call_id FROM integration_call_events \
         GROUP BY call_id, kind HAVING COUNT(*) > 1)",
    )
    .fetch_one(&pool)
    .await?;
    let counts = rt.count_by_status(None).await?;
    let not_terminal = counts.pending + counts.processing;
    let keys = provider.seen.keys();
    let never_sent = ids
        .iter()
        .filter(|id| !keys.contains_key(&provider_idempotency_key(**id)))
        .count();
    let resent: u64 = keys.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    let requests = provider.seen.requests.load(std::sync::atomic::Ordering::Relaxed);

    line("lost calls", &lost.to_string(), "must be 0");
    line(
        "calls with two terminal events",
        &duplicate_terminal.to_string(),
        "must be 0",
    );
    line("calls not terminal", &not_terminal.to_string(), "must be 0");
    line(
        "calls whose request never reached the provider",
        &never_sent.to_string(),
        "must be 0",
    );
    line(
        "failed calls",
        &counts.failed.to_string(),
        "expected 0 (the provider always answers)",
    );
    line(
        "duplicate (call, kind) events",
        &duplicate_events.to_string(),
        "expected 0 (keyed appends)",
    );
    line(
        "requests re-sent with the same key",
        &resent.to_string(),
        &format!("at-least-once after a kill mid-call; {requests} requests for {calls} calls"),
    );
    let ok = lost == 0 && duplicate_terminal == 0 && not_terminal == 0 && never_sent == 0 && counts.failed == 0;
    println!("  crash harness: {}", if ok { "PASSED" } else { "FAILED" });
    let figure = Figure::new(
        format!("crash: {kills} SIGKILLs, {calls} calls"),
        format!("lost {lost}, dup terminal {duplicate_terminal}, unfinished {not_terminal}"),
        format!("{landed} kills mid-run, {resent} re-sent requests"),
        "all 0",
        Some(ok),
    );
    Ok((vec![figure], ok))
}

fn spawn_worker(db: &std::path::Path, url: &str, n: u32) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(this_exe()?)
        .arg("worker")
        .arg("--sqlite")
        .arg(db)
        .args(["--url", url, "--concurrency", "16", "--idle-ms", "50"])
        .args([
            "--lease-ms",
            &LEASE_MS.to_string(),
            "--worker-id",
            &format!("crash-{n}"),
        ])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()?)
}
