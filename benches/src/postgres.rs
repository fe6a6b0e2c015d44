//! The PostgreSQL store with 1, 2 and 4 worker processes (one as baseline):
//! calls/s, and what one call costs PostgreSQL and the workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{PostgresOptions, PostgresStore, Runtime, Store};

use crate::common::{bench_sync, line, message, this_exe, Figure, Provider, Result};
use crate::pg_cost::{BenchDatabase, ProcCpu, WireCounter};

/// The worker process counts measured; the first is the baseline.
const PROCESSES: [usize; 3] = [1, 2, 4];

/// How long the calls of one measurement may take.
const LIMIT: Duration = Duration::from_secs(600);

/// Opens the PostgreSQL store in `schema`.
pub(crate) async fn open(url: &str, schema: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let store = PostgresStore::connect_with(
        options,
        PostgresOptions::default()
            .schema(schema)
            .max_connections(max_connections),
    )
    .await?;
    Ok(Arc::new(store))
}

/// What executing the calls cost: calls/s, and per call the rest.
#[derive(Debug, Clone, Copy)]
struct Cost {
    rate: f64,
    commits: f64,
    /// WAL flushes of the server.
    wal_flushes: f64,
    statements: f64,
    round_trips: f64,
    /// CPU microseconds of the worker processes.
    worker_cpu: f64,
    /// CPU microseconds of the PostgreSQL server.
    server_cpu: f64,
}

/// One per-call column of the figure: its name, how to print it, where it
/// is, and the most it may be with 4 processes (issue 21's targets).
type Metric = (&'static str, usize, fn(&Cost) -> f64, Option<f64>);

const PER_CALL: [Metric; 6] = [
    ("commits", 2, |c| c.commits, Some(0.1)),
    ("WAL flushes", 2, |c| c.wal_flushes, None),
    ("statements", 1, |c| c.statements, None),
    ("round trips", 1, |c| c.round_trips, None),
    ("worker CPU µs", 0, |c| c.worker_cpu, None),
    ("server CPU µs", 0, |c| c.server_cpu, Some(150.0)),
];

/// Calls/s that 4 worker processes should reach (issue 21).
const TARGET_RATE: f64 = 5_000.0;

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let name = "postgres: 4 worker processes";
    println!("\n== PostgreSQL store, worker processes");
    let Ok(url) = std::env::var("INTEGRATION_TEST_DATABASE_URL") else {
        let reason = "INTEGRATION_TEST_DATABASE_URL is unset";
        line(name, "skipped", reason);
        return Ok(vec![Figure::skipped(name, reason)]);
    };
    let calls: u64 = if quick { 500 } else { 2_000 };
    let database = match BenchDatabase::create(&url).await {
        Ok(database) => database,
        Err(error) => {
            let reason = format!("PostgreSQL not usable: {error}");
            line(name, "skipped", &reason);
            return Ok(vec![Figure::skipped(name, reason)]);
        }
    };
    let costs = measure_all(&database, calls).await;
    let peer = baseline_c(&database.url, calls, quick).await;
    database.drop().await;
    let costs = costs?;
    let (one, four) = (costs[0], costs[PROCESSES.len() - 1]);
    let per_call = |cost: &Cost| {
        let columns = PER_CALL.map(|(what, digits, metric, _)| format!("{:.digits$} {what}", metric(cost)));
        format!("per call: {}", columns.join(", "))
    };
    let durability = "PostgreSQL defaults (synchronous_commit=on, fsync per commit)";
    for (workers, cost) in PROCESSES.iter().zip(&costs) {
        let label = format!("{workers} worker process{}", if *workers == 1 { "" } else { "es" });
        line(&label, &format!("{:.0} calls/s", cost.rate), &per_call(cost));
    }
    let ratios = PER_CALL.map(|(what, _, metric, _)| format!("{what} {:.2}x", metric(&four) / metric(&one)));
    line(
        "4 vs 1 worker processes",
        &format!("{:.2}x calls/s", four.rate / one.rate),
        &format!("per call: {}", ratios.join(", ")),
    );
    println!(
        "  {calls} calls per run, a database of its own; {durability}.\n  \
         commits: xact_commit of that database over the execution (the bench's own few status queries included);\n  \
         WAL flushes: wal_sync of pg_stat_wal, server-wide (commits waiting together share one flush);\n  \
         CPU: utime+stime from /proc of the worker processes and of the postgres processes (backends of other\n  \
         databases left out; the server's background processes in); statements (Execute + Query messages) and\n  \
         round trips (ReadyForQuery) counted by a relay between workers and server, in a second run of the same\n  \
         size whose time and CPU are not used (the relay slows it)."
    );
    let mut figures = vec![Figure::new(
        name,
        format!("{:.0} calls/s", four.rate),
        format!("{:.2}x one process ({:.0}/s)", four.rate / one.rate, one.rate),
        format!(">= {TARGET_RATE:.0}/s, >= 1.0x one"),
        Some(four.rate >= TARGET_RATE && four.rate >= one.rate),
    )];
    let peer_name = "postgres: 4 processes vs baseline C";
    match peer {
        Ok(peer) => {
            for (workers, rate, note) in &peer {
                line(
                    &format!("baseline C, {workers} process(es)"),
                    &format!("{rate:.0} jobs/s"),
                    note,
                );
            }
            let (_, c_four, _) = peer[peer.len() - 1];
            line(
                "4 worker processes vs baseline C",
                &format!("{:.2}x", four.rate / c_four),
                "same job, same provider, same database",
            );
            figures.push(Figure::new(
                peer_name,
                format!("{:.2}x", four.rate / c_four),
                format!("graphile_worker, 4 processes: {c_four:.0} jobs/s"),
                ">= 2x",
                Some(four.rate >= 2.0 * c_four),
            ));
        }
        Err(reason) => {
            line("baseline C: graphile_worker", "skipped", &reason);
            figures.push(Figure::skipped(peer_name, reason));
        }
    }
    let processes = PROCESSES.map(|n| n.to_string()).join("/");
    for (what, digits, metric, most) in PER_CALL {
        let values = costs.iter().map(|cost| format!("{:.digits$}", metric(cost)));
        figures.push(Figure::new(
            format!("postgres: {what}/call, {processes} proc."),
            values.collect::<Vec<_>>().join(" / "),
            format!("4 vs 1 process: {:.2}x", metric(&four) / metric(&one)),
            most.map_or(String::new(), |most| format!("<= {most} at 4 proc.")),
            most.map(|most| metric(&four) <= most),
        ));
    }
    Ok(figures)
}

/// Baseline C (graphile_worker, see `crate::graphile`) with 1 and 4 worker
/// processes: (processes, jobs/s, note) each.
async fn baseline_c(url: &str, calls: u64, quick: bool) -> std::result::Result<Vec<(usize, f64, String)>, String> {
    let provider = Provider::start(false, Duration::ZERO)
        .await
        .map_err(|e| format!("no provider: {e}"))?;
    let mut rates = Vec::new();
    for processes in [1, 4] {
        let (rate, note) = crate::graphile::baseline_c(url, &provider.url, calls, processes, quick).await?;
        rates.push((processes, rate, note));
    }
    Ok(rates)
}

/// Every process count: a timed run, then one through the wire counter.
async fn measure_all(database: &BenchDatabase, calls: u64) -> Result<Vec<Cost>> {
    let provider = Provider::start(false, Duration::ZERO).await?;
    let cpu = ProcCpu::new()?;
    let wire = WireCounter::start(&database.url).await?;
    let mut costs = Vec::new();
    for workers in PROCESSES {
        let timed = measure(database, &provider, &cpu, calls, workers, None).await?;
        let counted = measure(database, &provider, &cpu, calls, workers, Some(&wire)).await?;
        costs.push(Cost {
            statements: counted.statements,
            round_trips: counted.round_trips,
            ..timed
        });
    }
    Ok(costs)
}

/// Creates `calls` calls in a fresh schema, then runs `workers` worker
/// processes (connected through `wire` if given, else directly) until all
/// calls are terminal; returns what the execution cost (no statements or
/// round trips without `wire`).
async fn measure(
    database: &BenchDatabase,
    provider: &Provider,
    cpu: &ProcCpu,
    calls: u64,
    workers: usize,
    wire: Option<&WireCounter>,
) -> Result<Cost> {
    let schema = format!("bench_{workers}_{}", if wire.is_some() { "counted" } else { "timed" });
    create_calls(&database.url, &schema, &provider.url, calls).await?;
    // A live backend publishes its commits up to a second late, an ending one
    // at once: with every session gone, the counter holds all of them.
    database.wait_no_sessions().await?;
    let commits = database.commits().await?;
    let wal_flushes = database.wal_flushes().await?;
    let server = cpu.server()?;
    let wire_before = wire.map_or((0, 0), WireCounter::counts);
    let worker_url = match wire {
        Some(wire) => wire.url(&database.url)?,
        None => database.url.clone(),
    };
    let sent = provider.seen.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut children = Vec::new();
    for n in 0..workers {
        children.push(
            tokio::process::Command::new(this_exe()?)
                .args([
                    "worker",
                    "--postgres",
                    &worker_url,
                    "--schema",
                    &schema,
                    "--url",
                    &provider.url,
                ])
                .args(["--concurrency", "32", "--idle-ms", "50", "--worker-id"])
                .arg(format!("pg-{n}"))
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let executed = async {
        // The bench connects only once the provider has answered every call,
        // so its own status queries are a few, not one per 10 ms.
        while provider.seen.requests.load(Ordering::Relaxed) < sent + calls {
            if started.elapsed() > LIMIT {
                return Err(format!("the provider saw fewer than {calls} calls in {LIMIT:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rt = runtime(&database.url, &schema, &provider.url).await?;
        crate::sync::wait_terminal(&rt, calls, LIMIT).await?;
        let elapsed = started.elapsed();
        // Read before the workers go: their backends end with them.
        let worker_cpu: u64 = children.iter().filter_map(|c| cpu.process(c.id()?)).sum();
        let server_cpu = server.spent_until(&cpu.server()?, &database.other_backends().await?);
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((elapsed, worker_cpu, server_cpu))
    }
    .await;
    for mut child in children {
        let _ = child.kill().await;
    }
    let (elapsed, worker_cpu, server_cpu) = executed?;
    database.wait_no_sessions().await?;
    let commits = database.commits().await? - commits;
    let wal_flushes = database.wal_flushes().await? - wal_flushes;
    let (statements, round_trips) = wire.map_or((0, 0), WireCounter::counts);
    let per_call = |count: u64| count as f64 / calls as f64;
    Ok(Cost {
        rate: calls as f64 / elapsed.as_secs_f64(),
        commits: per_call(commits),
        wal_flushes: per_call(wal_flushes),
        statements: per_call(statements - wire_before.0),
        round_trips: per_call(round_trips - wire_before.1),
        worker_cpu: per_call(worker_cpu),
        server_cpu: per_call(server_cpu),
    })
}

/// A runtime of the benchmark integration on `schema`, in this process.
async fn runtime(url: &str, schema: &str, provider: &str) -> Result<Runtime> {
    Ok(Runtime::builder()
        .store(open(url, schema, 16).await?)
        .integration(bench_sync(provider)?)
        .build()
        .await?)
}

/// Creates `calls` calls from 16 tasks, with connections of its own that close on return.
async fn create_calls(url: &str, schema: &str, provider: &str, calls: u64) -> Result<()> {
    let rt = runtime(url, schema, provider).await?;
    let mut creators = tokio::task::JoinSet::new();
    for worker in 0..16u64 {
        let rt = rt.clone();
        creators.spawn(async move {
            let mut i = worker;
            while i < calls {
                rt.create(message(i)).await?;
                i += 16;
            }
            Ok::<_, integration_runtime::EngineError>(())
        });
    }
    while let Some(result) = creators.join_next().await {
        result??;
    }
    Ok(())
}
