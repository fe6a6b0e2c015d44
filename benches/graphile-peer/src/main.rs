//! Baseline C of the PostgreSQL figure: N jobs added to graphile_worker's
//! PostgreSQL queue (one `add_job` per job), executed by P worker processes
//! at the runtime's concurrency, each job one POST to the loopback provider.
//!
//! Usage: `graphile-peer <url> <calls> <concurrency> <pg-url> <schema> [processes]`;
//! prints one JSON line:
//! `{"calls":N,"processes":P,"seconds":S,"calls_per_s":R,"create_seconds":C,"done":D,"left_in_store":L}`.
//!
//! graphile_worker deletes a job in PostgreSQL when it succeeds, so "all
//! done" is read from the database: the timer runs from the moment the
//! workers are told to start until the jobs table is empty. The server's
//! `synchronous_commit` is left as it is (on by default). graphile_worker's
//! own defaults are kept (no completion batching, no local queue), except:
//! - the poll interval is 5 ms (as for the apalis peer), not 1 s: in this
//!   port a job slot fetches one job per signal (a poll tick or a NOTIFY on
//!   add), so jobs queued before the workers start ran at 32 per second
//!   (measured: 32.2 jobs/s) instead of back to back as in graphile-worker.
//!
//! The pool keeps graphile_worker's default of 20 connections per process
//! (a job holds one only while it is fetched and completed, not during its
//! HTTP call); 32 per process would exceed PostgreSQL's default 100
//! connections with four processes.
//!
//! The schema is dropped before (a fresh one per run) and after the run.
//! Worker processes are this binary run as
//! `graphile-peer --worker <url> <concurrency> <pg-url> <schema>`: each
//! prints `ready` once connected, starts on a line on stdin and stops
//! gracefully when stdin closes, then prints how many jobs it ran.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graphile_worker::{IntoTaskHandlerResult, JobSpec, TaskHandler, WorkerContext, WorkerOptions};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The bench's message (`{"text": "call i"}`), POSTed as is.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    text: String,
}

/// What every job needs; cloned into each job's context.
#[derive(Debug, Clone)]
struct Ctx {
    client: reqwest::Client,
    url: String,
    done: Arc<AtomicU64>,
}

impl TaskHandler for Message {
    const IDENTIFIER: &'static str = "send";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        let Some(ctx) = ctx.get_ext::<Ctx>() else {
            return Err("no Ctx extension".to_owned());
        };
        let response = ctx
            .client
            .post(&ctx.url)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "text": self.text }).to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let _ = response.bytes().await;
        if !status.is_success() {
            // A failed job stays in the queue to be retried, as for the runtime.
            return Err(format!("provider answered {status}"));
        }
        ctx.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn options(pg: &str, schema: &str, concurrency: usize) -> WorkerOptions {
    WorkerOptions::default()
        .database_url(pg)
        .concurrency(concurrency)
        .poll_interval(Duration::from_millis(5))
        .schema(schema)
        .listen_os_shutdown_signals(false)
        .define_job::<Message>()
}

/// A worker process: connect, say `ready`, run from the first stdin line
/// until stdin closes, then print the number of jobs this process ran.
async fn worker(url: &str, concurrency: usize, pg: &str, schema: &str) -> Result<(), Error> {
    let done = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = options(pg, schema, concurrency)
        .add_extension(Ctx {
            client: reqwest::Client::new(),
            url: url.to_owned(),
            done: done.clone(),
        })
        .shutdown_signal(async move {
            let _ = stopped.await;
        })
        .init()
        .await?;
    println!("ready");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    stdin.next_line().await?;
    tokio::spawn(async move {
        // EOF (or an error) on stdin is the parent's "stop".
        while let Ok(Some(_)) = stdin.next_line().await {}
        let _ = stop.send(());
    });
    worker.run().await?;
    println!("done {}", done.load(Ordering::SeqCst));
    Ok(())
}

/// A started worker process and its stdout.
struct Child {
    process: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn spawn(url: &str, concurrency: usize, pg: &str, schema: &str) -> Result<Child, Error> {
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("--worker")
            .args([url, &concurrency.to_string(), pg, schema])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = process.stdout.take().ok_or("no stdout")?;
        Ok(Child {
            process,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next line that starts with `prefix`, without it.
    async fn expect(&mut self, prefix: &str) -> Result<String, Error> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
        Err(format!("a worker process exited before printing {prefix:?}").into())
    }
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) -> Result<(), Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

async fn left(pool: &sqlx::PgPool, schema: &str) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM \"{schema}\"._private_jobs"
    )))
    .fetch_one(pool)
    .await?)
}

async fn bench(
    url: &str,
    calls: u64,
    concurrency: usize,
    pg: &str,
    schema: &str,
    processes: usize,
) -> Result<String, Error> {
    if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("schema {schema:?}: letters, digits and _ only").into());
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(pg)
        .await?;
    drop_schema(&pool, schema).await?;
    let result = run(&pool, url, calls, concurrency, pg, schema, processes).await;
    // Dropped also when the run failed, so no schema is left behind.
    drop_schema(&pool, schema).await?;
    result
}

async fn run(
    pool: &sqlx::PgPool,
    url: &str,
    calls: u64,
    concurrency: usize,
    pg: &str,
    schema: &str,
    processes: usize,
) -> Result<String, Error> {
    // Migrate, then add the jobs (not timed: the runtime's figure times
    // execution only), one `add_job` (one transaction) per job.
    let adder = options(pg, schema, 1).init().await?;
    let utils = adder.create_utils();
    let created = Instant::now();
    for i in 0..calls {
        utils
            .add_job(
                Message {
                    text: format!("call {i}"),
                },
                JobSpec::default(),
            )
            .await?;
    }
    let create_seconds = created.elapsed().as_secs_f64();
    drop(adder);

    let mut children = Vec::with_capacity(processes);
    for _ in 0..processes {
        children.push(Child::spawn(url, concurrency, pg, schema).await?);
    }
    for child in &mut children {
        child.expect("ready").await?;
    }
    let started = Instant::now();
    for child in &mut children {
        child
            .process
            .stdin
            .as_mut()
            .ok_or("no stdin")?
            .write_all(b"go\n")
            .await?;
    }
    // Done = the jobs table is empty (each job's delete is committed).
    // One cheap EXISTS every 5 ms is the only load the poll adds.
    let deadline = started + Duration::from_secs(600);
    let exists = format!("SELECT EXISTS (SELECT 1 FROM \"{schema}\"._private_jobs)");
    while sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(exists.as_str()))
        .fetch_one(pool)
        .await?
    {
        if Instant::now() > deadline {
            return Err("jobs still queued after 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut done = 0_u64;
    for child in &mut children {
        // Closing stdin asks the worker to stop gracefully.
        drop(child.process.stdin.take());
        done += child.expect("done").await?.parse::<u64>()?;
        child.process.wait().await?;
    }
    let left = left(pool, schema).await?;
    Ok(format!(
        "{{\"calls\":{calls},\"processes\":{processes},\"seconds\":{seconds:.4},\"calls_per_s\":{:.1},\"create_seconds\":{create_seconds:.4},\"done\":{done},\"left_in_store\":{left}}}",
        calls as f64 / seconds
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, url, concurrency, pg, schema] if flag == "--worker" => {
            worker(url, concurrency.parse()?, pg, schema).await
        }
        [_, url, calls, concurrency, pg, schema, rest @ ..] if rest.len() <= 1 => {
            let processes = rest.first().map_or(Ok(1), |p| p.parse())?;
            let line = bench(url, calls.parse()?, concurrency.parse()?, pg, schema, processes).await?;
            println!("{line}");
            Ok(())
        }
        _ => Err("usage: graphile-peer <url> <calls> <concurrency> <pg-url> <schema> [processes]".into()),
    }
}
