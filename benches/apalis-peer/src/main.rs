//! Baseline B of `integration-bench sync`: N jobs pushed to apalis's SQLite
//! storage, executed by an apalis worker that POSTs each to the loopback
//! provider with reqwest, at the same concurrency as the runtime.
//!
//! Usage: `apalis-peer <url> <calls> <concurrency> <db-path>`; prints one
//! JSON line: `{"calls":N,"seconds":S,"calls_per_s":R}`.
//!
//! Durability: WAL, `synchronous=FULL` on every connection (the runtime's
//! setting; apalis's own `setup` would choose NORMAL, so it is not used and
//! its migrations are run directly).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::layers::limit::ConcurrencyLimitLayer;
use apalis::prelude::*;
use apalis_sql::sqlite::SqliteStorage;
use apalis_sql::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use apalis_sql::Config;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Send {
    text: String,
}

#[derive(Clone)]
struct Ctx {
    client: reqwest::Client,
    url: String,
    done: Arc<AtomicUsize>,
    total: usize,
    finished: Arc<Notify>,
}

async fn send(job: Send, ctx: Data<Ctx>) -> Result<(), Error> {
    let response = ctx
        .client
        .post(&ctx.url)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "text": job.text }).to_string())
        .send()
        .await
        .map_err(|e| Error::Failed(Arc::new(Box::new(e))))?;
    let _ = response.bytes().await;
    if ctx.done.fetch_add(1, Ordering::SeqCst) + 1 == ctx.total {
        ctx.finished.notify_one();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, calls, concurrency, db] = args.as_slice() else {
        return Err("usage: apalis-peer <url> <calls> <concurrency> <db-path>".into());
    };
    let calls: usize = calls.parse()?;
    let concurrency: usize = concurrency.parse()?;
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    SqliteStorage::<()>::migrations().run(&pool).await?;
    let config = Config::new("bench")
        .set_buffer_size(concurrency.max(10))
        .set_poll_interval(Duration::from_millis(5));
    let mut storage: SqliteStorage<Send> = SqliteStorage::new_with_config(pool.clone(), config);

    // Create the jobs first (not timed, as for the runtime's figure the
    // creates are timed separately): one push per job.
    let created = Instant::now();
    for i in 0..calls {
        storage
            .push(Send {
                text: format!("call {i}"),
            })
            .await?;
    }
    let create_seconds = created.elapsed().as_secs_f64();

    let ctx = Ctx {
        client: reqwest::Client::new(),
        url: url.clone(),
        done: Arc::new(AtomicUsize::new(0)),
        total: calls,
        finished: Arc::new(Notify::new()),
    };
    let finished = ctx.finished.clone();
    let started = Instant::now();
    let worker = WorkerBuilder::new("bench-worker")
        .layer(ConcurrencyLimitLayer::new(concurrency))
        .data(ctx)
        .backend(storage)
        .build_fn(send);
    let handle = tokio::spawn(async move { Monitor::new().register(worker).run().await });
    finished.notified().await;
    let seconds = started.elapsed().as_secs_f64();
    // Let the last acks reach the store before reading the count back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done: i64 = apalis_sql::sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'")
        .fetch_one(&pool)
        .await
        .unwrap_or(-1);
    println!(
        "{{\"calls\":{calls},\"seconds\":{seconds:.4},\"calls_per_s\":{:.1},\"create_seconds\":{create_seconds:.4},\"done_in_store\":{done}}}",
        calls as f64 / seconds
    );
    handle.abort();
    std::process::exit(0);
}
