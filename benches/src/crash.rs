//! The crash harness: worker child processes are SIGKILLed at random
//! moments while they execute a batch of calls, and restarted each time;
//! afterwards nothing may be lost, finished twice or left unfinished.
//!
//! Two stores: one worker on a SQLite file, or four workers on a
//! PostgreSQL database of the harness's own (each kill strikes one of the
//! four at random, so the others keep claiming and finishing meanwhile).
//! The verdict reads the store through the `Store` trait, the same way for
//! both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{provider_idempotency_key, CallId, CallStatus, EventKind, Runtime, SqliteStore, Store};

use crate::common::{bench_sync, line, message, this_exe, Figure, Provider, Result, Rng, Scratch, SQLITE_DURABILITY};
use crate::pg_cost::BenchDatabase;

/// The lease of the worker children: a killed worker's calls are claimed
/// again this long after its last renewal.
const LEASE_MS: u64 = 1_000;

/// Worker processes on PostgreSQL.
const POSTGRES_WORKERS: usize = 4;

/// Where the calls live while the workers are killed.
enum Target {
    Sqlite {
        _scratch: Scratch,
        file: std::path::PathBuf,
    },
    Postgres(BenchDatabase),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Sqlite { .. } => "SQLite",
            Target::Postgres(_) => "PostgreSQL",
        }
    }

    fn workers(&self) -> usize {
        match self {
            Target::Sqlite { .. } => 1,
            Target::Postgres(_) => POSTGRES_WORKERS,
        }
    }

    /// The durability settings the workers run with, as the server reports them.
    async fn durability(&self) -> Result<String> {
        match self {
            Target::Sqlite { .. } => Ok(SQLITE_DURABILITY.to_owned()),
            Target::Postgres(database) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&database.url).await?;
                let commit: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(&mut conn)
                    .await?;
                let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&mut conn).await?;
                Ok(format!("PostgreSQL synchronous_commit={commit}, fsync={fsync}"))
            }
        }
    }

    /// The store options of a worker child.
    fn worker_args(&self) -> Vec<String> {
        match self {
            Target::Sqlite { file, .. } => vec!["--sqlite".into(), file.display().to_string()],
            Target::Postgres(database) => vec![
                "--postgres".into(),
                database.url.clone(),
                "--schema".into(),
                "public".into(),
            ],
        }
    }

    /// A runtime on the target's store, in this process, with `calls` calls
    /// created (none executed: this process runs no worker).
    async fn prepare(&self, provider: &str, calls: u64) -> Result<(Runtime, Vec<CallId>)> {
        match self {
            Target::Sqlite { file, .. } => {
                let store = Arc::new(SqliteStore::open(file).await?);
                let rt = runtime(store.clone(), provider).await?;
                // Every call in one transaction (the outbox API): seconds less than one by one.
                let mut ids = Vec::with_capacity(calls as usize);
                let mut tx = store.pool().begin().await?;
                for i in 0..calls {
                    ids.push(store.create_in_tx(&mut tx, rt.new_call(message(i))?).await?.id);
                }
                tx.commit().await?;
                Ok((rt, ids))
            }
            Target::Postgres(database) => {
                let rt = runtime(crate::postgres::open(&database.url, "public", 16).await?, provider).await?;
                let ids = create_concurrently(&rt, calls).await?;
                Ok((rt, ids))
            }
        }
    }
}

async fn runtime(store: Arc<dyn Store>, provider: &str) -> Result<Runtime> {
    Ok(Runtime::builder()
        .store(store)
        .integration(bench_sync(provider)?)
        .build()
        .await?)
}

/// Creates `calls` calls from 16 tasks; their ids in creation order.
async fn create_concurrently(rt: &Runtime, calls: u64) -> Result<Vec<CallId>> {
    const TASKS: u64 = 16;
    let mut creators = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let rt = rt.clone();
        creators.spawn(async move {
            let mut created = Vec::new();
            for i in (task..calls).step_by(TASKS as usize) {
                created.push((i, rt.create(message(i)).await?));
            }
            Ok::<_, integration_runtime::EngineError>(created)
        });
    }
    let mut ids = Vec::with_capacity(calls as usize);
    while let Some(created) = creators.join_next().await {
        ids.extend(created??);
    }
    ids.sort_by_key(|(i, _)| *i);
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

/// What the store says after the run.
#[derive(Debug, Default)]
struct Verdict {
    lost: usize,
    duplicate_terminal: usize,
    duplicate_events: usize,
    not_terminal: usize,
    failed: usize,
}

/// Runs the harness on SQLite, or on PostgreSQL when `postgres` names a
/// server (a database of the harness's own is created there and dropped).
pub(crate) async fn run(
    quick: bool,
    kills: Option<u32>,
    calls: Option<u32>,
    seed: Option<u64>,
    postgres: Option<&str>,
) -> Result<(Vec<Figure>, bool)> {
    let target = match postgres {
        None => {
            let scratch = Scratch::new("crash")?;
            let file = scratch.path("crash.db");
            Target::Sqlite {
                _scratch: scratch,
                file,
            }
        }
        Some(url) => Target::Postgres(BenchDatabase::create(url).await?),
    };
    let outcome = run_on(&target, quick, kills, calls, seed).await;
    if let Target::Postgres(database) = target {
        database.drop().await;
    }
    outcome
}

async fn run_on(
    target: &Target,
    quick: bool,
    kills: Option<u32>,
    calls: Option<u32>,
    seed: Option<u64>,
) -> Result<(Vec<Figure>, bool)> {
    let kills = kills.unwrap_or(if quick { 10 } else { 100 });
    let calls = u64::from(calls.unwrap_or(if quick { 500 } else { 10_000 }));
    let seed = seed.unwrap_or_else(|| crate::common::chrono_millis() as u64);
    let mut rng = Rng::new(seed);
    let store_name = target.name();
    let processes = target.workers();
    println!(
        "\n== crash harness on {store_name}: {kills} SIGKILLs during {calls} calls, {processes} worker process(es) \
         (seed {seed}; {}, lease {LEASE_MS} ms)",
        target.durability().await?
    );
    // The provider outlives every worker and counts requests per idempotency key.
    let provider = Provider::start(true, Duration::from_millis(2)).await?;
    let (rt, ids) = target.prepare(&provider.url, calls).await?;

    let mut workers = (0..processes)
        .map(|slot| spawn_worker(target, &provider.url, slot as u32))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut landed = 0u32;
    // Kill moments spread over the whole run: the mean gap is the expected
    // remaining time (from the rate so far) over the kills left.
    let mut mean_gap_ms = 150u64;
    for kill in 0..kills {
        let wait = rng.range(mean_gap_ms / 5 + 10, mean_gap_ms * 9 / 5 + 20);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let slot = rng.range(0, processes as u64) as usize;
        workers[slot].start_kill()?; // SIGKILL
        workers[slot].wait().await?;
        let counts = rt.count_by_status(None).await?;
        let unfinished = counts.pending + counts.processing;
        if unfinished > 0 {
            landed += 1;
        }
        workers[slot] = spawn_worker(target, &provider.url, processes as u32 + kill)?;
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

    // The surviving workers finish the rest (leases of the last victims expire first).
    let finished = crate::sync::wait_terminal(&rt, calls, Duration::from_secs(120)).await;
    for mut worker in workers {
        worker.start_kill()?;
        worker.wait().await?;
    }
    if let Err(error) = finished {
        println!("  the workers did not finish: {error}");
        print_unfinished(rt.store(), &ids).await?;
    }

    let verdict = verdict(rt.store(), &ids).await?;
    let keys = provider.seen.keys();
    let never_sent = ids
        .iter()
        .filter(|id| !keys.contains_key(&provider_idempotency_key(**id)))
        .count();
    let resent: u64 = keys.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    let requests = provider.seen.requests.load(std::sync::atomic::Ordering::Relaxed);

    line("lost calls", &verdict.lost.to_string(), "must be 0");
    line(
        "calls with two terminal events",
        &verdict.duplicate_terminal.to_string(),
        "must be 0",
    );
    line("calls not terminal", &verdict.not_terminal.to_string(), "must be 0");
    line(
        "calls whose request never reached the provider",
        &never_sent.to_string(),
        "must be 0",
    );
    line(
        "failed calls",
        &verdict.failed.to_string(),
        "expected 0 (the provider always answers)",
    );
    line(
        "duplicate (call, kind) events",
        &verdict.duplicate_events.to_string(),
        "expected 0 (keyed appends)",
    );
    line(
        "requests re-sent with the same key",
        &resent.to_string(),
        &format!("at-least-once after a kill mid-call; {requests} requests for {calls} calls"),
    );
    let ok = verdict.lost == 0
        && verdict.duplicate_terminal == 0
        && verdict.not_terminal == 0
        && never_sent == 0
        && verdict.failed == 0;
    println!(
        "  crash harness on {store_name}: {}",
        if ok { "PASSED" } else { "FAILED" }
    );
    let figure = Figure::new(
        format!("crash ({store_name}, {processes} process(es)): {kills} SIGKILLs, {calls} calls"),
        format!(
            "lost {}, dup terminal {}, unfinished {}",
            verdict.lost, verdict.duplicate_terminal, verdict.not_terminal
        ),
        format!("{landed} kills mid-run, {resent} re-sent requests"),
        "all 0",
        Some(ok),
    );
    Ok((vec![figure], ok))
}

/// Reads every call and its events back through the `Store` trait.
async fn verdict(store: &Arc<dyn Store>, ids: &[CallId]) -> Result<Verdict> {
    let mut verdict = Verdict::default();
    for id in ids {
        let Some(stored) = store.get_with_events(*id).await? else {
            verdict.lost += 1;
            continue;
        };
        let kinds: Vec<EventKind> = stored.events.iter().map(|event| event.kind).collect();
        let terminal = kinds
            .iter()
            .filter(|kind| matches!(kind, EventKind::Completed | EventKind::Failed))
            .count();
        verdict.duplicate_terminal += usize::from(terminal > 1);
        verdict.duplicate_events += usize::from(kinds.iter().collect::<HashSet<_>>().len() < kinds.len());
        verdict.not_terminal += usize::from(!stored.call.status.is_terminal());
        verdict.failed += usize::from(stored.call.status == CallStatus::Failed);
    }
    Ok(verdict)
}

/// Prints up to five unfinished calls with their schedule, for diagnosis.
async fn print_unfinished(store: &Arc<dyn Store>, ids: &[CallId]) -> Result<()> {
    println!("  now {}; unfinished calls:", chrono::Utc::now());
    let mut shown = 0;
    for id in ids {
        let Some(call) = store.get(*id).await? else { continue };
        if call.status.is_terminal() {
            continue;
        }
        println!(
            "    {id}: {:?}, {} attempts, lease {:?} until {:?}, next run {:?}",
            call.status, call.attempts, call.lease_owner, call.lease_expires_at, call.next_run_at
        );
        shown += 1;
        if shown == 5 {
            break;
        }
    }
    Ok(())
}

fn spawn_worker(target: &Target, url: &str, n: u32) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(this_exe()?)
        .arg("worker")
        .args(target.worker_args())
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
