//! Pruning (issue 15): what deleting a million old calls costs the workers.
//!
//! An SQLite store (`SqliteStore::open`: WAL, `synchronous=FULL`) is seeded
//! with finished calls two days old, each with the three events a sync call
//! records, straight into the tables with SQL (`seed`): the runtime would
//! take an hour to make them, and how they were made does not matter to
//! the deletes. Then the sync pipeline runs a closed loop of
//! [`CLIENTS`] clients, each creating a call and waiting for it to finish
//! (against the loopback provider): first alone, for the baseline, then
//! while `Runtime::prune` deletes every seeded call with the runtime's
//! retention defaults (batches of 500, 50 ms apart; the same loop as the
//! background task, called directly so that its end is known exactly),
//! then alone again (the machine is shared, and the file has grown).
//! Printed: calls/s and latency each time, the ratio, how long the prune
//! took, and the file's size (pages, free pages) after seeding, after the
//! prune, and after a `VACUUM` (SQLite reuses freed pages but only a
//! `VACUUM` gives them back to the file system).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::{CallId, CallStatus, Retention, Runtime, SqliteStore};
use sqlx::SqlitePool;
use tokio::sync::oneshot;

use crate::common::{bench_sync, line, message, ms, quantile, Figure, Provider, Result, Scratch};

/// Clients of the closed loop: as many as the workers' slots.
const CLIENTS: usize = crate::sync::CONCURRENCY;

/// Seeded calls per transaction.
const SEED_CHUNK: u64 = 50_000;

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let seeded: u64 = if quick { 100_000 } else { 1_000_000 };
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    println!(
        "\n== pruning: {seeded} finished calls (3 events each) deleted while {CLIENTS} clients run sync calls; SQLite"
    );
    crate::common::print_machine(quick);
    let provider = Provider::start(false, Duration::ZERO).await?;
    let scratch = Scratch::new("prune")?;
    let path = scratch.path("calls.db");
    let store = Arc::new(SqliteStore::open(&path).await?);
    let pool = store.pool().clone();

    let started = Instant::now();
    seed(&pool, seeded).await?;
    let seeding = started.elapsed();
    let seeded_size = FileSize::read(&pool, &path).await?;
    line(
        "seeded (SQL, chunks of 50 000)",
        &format!("{:.1} s", seeding.as_secs_f64()),
        &seeded_size.to_string(),
    );

    let rt = Runtime::builder()
        .store(store.clone())
        .integration(bench_sync(&provider.url)?)
        .concurrency(CLIENTS)
        .claim_batch(CLIENTS as u32)
        .changes_capacity(1 << 16)
        .build()
        .await?;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });

    // Warm the pipeline, then the baseline.
    Loop::run(&rt, Until::Elapsed(Duration::from_secs(1))).await?;
    let baseline = Loop::run(&rt, Until::Elapsed(window)).await?;

    let retention = Retention::new()
        .completed_after(Duration::from_secs(24 * 3600))
        .failed_after(Duration::from_secs(24 * 3600));
    let pruning = Arc::new(AtomicBool::new(true));
    let pruner = tokio::spawn({
        let (rt, pruning) = (rt.clone(), pruning.clone());
        async move {
            let started = Instant::now();
            let deleted = rt.prune(&retention).await;
            pruning.store(false, Ordering::SeqCst);
            deleted.map(|deleted| (deleted, started.elapsed()))
        }
    });
    let during = Loop::run(&rt, Until::Cleared(pruning)).await?;
    let (deleted, took) = pruner.await??;
    // Again without pruning: the machine is shared, and the file now holds
    // the calls made meanwhile; the ratio is to the mean of both.
    let after = Loop::run(&rt, Until::Elapsed(window)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    if deleted != seeded {
        return Err(format!("prune: deleted {deleted} calls, {seeded} were seeded").into());
    }
    let pruned_size = FileSize::read(&pool, &path).await?;
    let left = rt.count_by_status(None).await?;
    drop(rt);
    drop(store);
    let vacuumed_size = vacuum(&pool, &path).await?;
    pool.close().await;

    let not_pruning = (baseline.rate() + after.rate()) / 2.0;
    let ratio = during.rate() / not_pruning;
    baseline.print("baseline: sync calls, nothing pruned");
    during.print("same, while pruning");
    after.print("same, after the prune");
    line(
        "throughput while pruning / mean of both baselines",
        &format!("{:.0} %", ratio * 100.0),
        &format!(
            "p99 {} and {} -> {}",
            ms(baseline.p99()),
            ms(after.p99()),
            ms(during.p99())
        ),
    );
    line(
        "prune: every seeded call and its events",
        &format!("{:.1} s", took.as_secs_f64()),
        &format!(
            "{:.0} calls/s; batches of 500, 50 ms apart; {} calls left",
            deleted as f64 / took.as_secs_f64(),
            left.total()
        ),
    );
    line("file after seeding", &seeded_size.mib(), &seeded_size.to_string());
    line("file after the prune", &pruned_size.mib(), &pruned_size.to_string());
    line("file after VACUUM", &vacuumed_size.mib(), &vacuumed_size.to_string());
    Ok(vec![
        Figure::new(
            "prune: sync calls while pruning",
            format!("{:.0} calls/s", during.rate()),
            format!("{:.0} % of {not_pruning:.0}/s not pruning", ratio * 100.0),
            "",
            None,
        ),
        Figure::new(
            format!("prune: {seeded} calls"),
            format!("{:.1} s", took.as_secs_f64()),
            format!("file {} -> {} (VACUUM)", seeded_size.mib(), vacuumed_size.mib()),
            "",
            None,
        ),
    ])
}

/// Inserts `count` completed calls, two days old, each with the events
/// `initialized`, `processing` and `completed`, in chunks of [`SEED_CHUNK`].
async fn seed(pool: &SqlitePool, count: u64) -> Result<()> {
    let two_days_ago = crate::common::chrono_millis() - 2 * 24 * 3600 * 1000;
    let mut first = 0;
    while first < count {
        let last = (first + SEED_CHUNK).min(count) - 1;
        let mut tx = pool.begin().await?;
        // A UUID-shaped id made of the number: unique, and no randomness to wait for.
        sqlx::query(
            "WITH RECURSIVE n(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM n WHERE x < ?2) \
             INSERT INTO integration_calls (id, integration, endpoint, status, external_id, params, \
                 response_data, attempts, created_at, updated_at, completed_at) \
             SELECT printf('00000000-0000-4000-8000-%012d', x), 'BenchSync', 'send', 'completed', \
                 'ext-' || x, json_object('text', 'call ' || x), json_object('echoed', 'call ' || x), 1, \
                 ?3 + x / 100, ?3 + x / 100, ?3 + x / 100 \
             FROM n",
        )
        .bind(first as i64)
        .bind(last as i64)
        .bind(two_days_ago)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO integration_call_events (call_id, kind, event_key, payload, applied, recorded_at) \
             SELECT c.id, e.kind, e.kind, '{\"source\":\"start\"}', 1, c.completed_at \
             FROM integration_calls AS c \
             CROSS JOIN (SELECT 'initialized' AS kind UNION ALL SELECT 'processing' UNION ALL SELECT 'completed') AS e \
             WHERE c.seq BETWEEN (SELECT min(seq) FROM integration_calls WHERE id = printf('00000000-0000-4000-8000-%012d', ?1)) \
                 AND (SELECT max(seq) FROM integration_calls WHERE id = printf('00000000-0000-4000-8000-%012d', ?2))",
        )
        .bind(first as i64)
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        first = last + 1;
    }
    Ok(())
}

/// The store file's size and what SQLite says of its pages, the WAL
/// checkpointed first so that the main file holds everything.
struct FileSize {
    bytes: u64,
    pages: i64,
    free: i64,
}

impl FileSize {
    async fn read(pool: &SqlitePool, path: &Path) -> Result<FileSize> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(pool).await?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(pool).await?;
        Ok(FileSize {
            bytes: std::fs::metadata(path)?.len(),
            pages,
            free,
        })
    }

    fn mib(&self) -> String {
        format!("{:.0} MiB", self.bytes as f64 / 1024.0 / 1024.0)
    }
}

impl std::fmt::Display for FileSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pages, {} of them free", self.pages, self.free)
    }
}

/// Gives the free pages back to the file system (the store is closed).
async fn vacuum(pool: &SqlitePool, path: &Path) -> Result<FileSize> {
    sqlx::query("VACUUM").execute(pool).await?;
    FileSize::read(pool, path).await
}

/// When a closed loop stops.
enum Until {
    Elapsed(Duration),
    /// When the flag is cleared.
    Cleared(Arc<AtomicBool>),
}

impl Until {
    fn reached(&self, started: Instant) -> bool {
        match self {
            Until::Elapsed(limit) => started.elapsed() >= *limit,
            Until::Cleared(flag) => !flag.load(Ordering::SeqCst),
        }
    }
}

/// What a closed loop measured: each call's time from create to terminal.
struct Loop {
    latencies: Vec<Duration>,
    took: Duration,
}

/// Calls finished before their client waits for them, and clients waiting.
#[derive(Default)]
struct Waiters {
    early: HashSet<CallId>,
    waiting: HashMap<CallId, oneshot::Sender<()>>,
}

impl Loop {
    /// [`CLIENTS`] clients, each creating a call and waiting for it to end,
    /// until `until`.
    async fn run(rt: &Runtime, until: Until) -> Result<Loop> {
        let waiters: Arc<Mutex<Waiters>> = Arc::default();
        let mut changes = rt.subscribe();
        let listener = tokio::spawn({
            let waiters = waiters.clone();
            async move {
                loop {
                    let change = match changes.recv().await {
                        Ok(change) => change,
                        // Notices lost to lag: their clients ask the store.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    };
                    if matches!(change.to, CallStatus::Completed | CallStatus::Failed) {
                        let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
                        match waiters.waiting.remove(&change.call_id) {
                            Some(waiter) => drop(waiter.send(())),
                            None => drop(waiters.early.insert(change.call_id)),
                        }
                    }
                }
            }
        });
        let until = Arc::new(until);
        let started = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        for client in 0..CLIENTS {
            let (rt, waiters, until) = (rt.clone(), waiters.clone(), until.clone());
            clients.spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !until.reached(started) {
                    let sent = Instant::now();
                    let id = rt.create(message(client as u64 * 1_000_000_000 + n)).await?;
                    n += 1;
                    let (done, finished) = oneshot::channel();
                    {
                        let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
                        if !waiters.early.remove(&id) {
                            waiters.waiting.insert(id, done);
                        }
                    }
                    // A closed sender means the call finished before we waited.
                    // The broadcast is lossy: after a second without a notice,
                    // the store says whether the call is done.
                    tokio::pin!(finished);
                    while tokio::time::timeout(Duration::from_secs(1), &mut finished)
                        .await
                        .is_err()
                    {
                        if rt.get(id).await?.is_some_and(|call| call.is_terminal()) {
                            break;
                        }
                    }
                    latencies.push(sent.elapsed());
                }
                Ok::<_, integration_runtime::EngineError>(latencies)
            });
        }
        let mut latencies = Vec::new();
        while let Some(result) = clients.join_next().await {
            latencies.extend(result??);
        }
        let took = started.elapsed();
        listener.abort();
        latencies.sort_unstable();
        Ok(Loop { latencies, took })
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.took.as_secs_f64()
    }

    fn p99(&self) -> Duration {
        quantile(&self.latencies, 0.99)
    }

    fn print(&self, label: &str) {
        line(
            label,
            &format!("{:.0} calls/s", self.rate()),
            &format!(
                "{} calls in {:.1} s; create -> finished p50 {}, p99 {}",
                self.latencies.len(),
                self.took.as_secs_f64(),
                ms(quantile(&self.latencies, 0.5)),
                ms(self.p99())
            ),
        );
    }
}
