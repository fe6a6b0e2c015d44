//! The PostgreSQL store with four worker processes (one as baseline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{PostgresOptions, PostgresStore, Runtime, Store};

use crate::common::{bench_sync, line, message, this_exe, Figure, Provider, Result};

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

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let name = "postgres: 4 worker processes";
    println!("\n== PostgreSQL store, worker processes");
    let Ok(url) = std::env::var("INTEGRATION_TEST_DATABASE_URL") else {
        let reason = "INTEGRATION_TEST_DATABASE_URL is unset";
        line(name, "skipped", reason);
        return Ok(vec![Figure::skipped(name, reason)]);
    };
    let calls: u64 = if quick { 500 } else { 2_000 };
    let provider = Provider::start(false, Duration::ZERO).await?;
    let one = match measure(&url, &provider.url, calls, 1).await {
        Ok(rate) => rate,
        Err(error) => {
            let reason = format!("PostgreSQL not usable: {error}");
            line(name, "skipped", &reason);
            return Ok(vec![Figure::skipped(name, reason)]);
        }
    };
    let four = measure(&url, &provider.url, calls, 4).await?;
    let durability = "PostgreSQL defaults (synchronous_commit=on, fsync per commit)";
    line("1 worker process", &format!("{one:.0} calls/s"), durability);
    line(
        "4 worker processes",
        &format!("{four:.0} calls/s"),
        &format!("{:.2}x one process; {durability}", four / one),
    );
    Ok(vec![Figure::new(
        name,
        format!("{four:.0} calls/s"),
        format!("{:.2}x one process ({one:.0}/s)", four / one),
        "",
        None,
    )])
}

/// Creates `calls` calls in a fresh schema, runs `workers` worker processes
/// until all are terminal; returns calls/s (execution only).
async fn measure(url: &str, provider: &str, calls: u64, workers: usize) -> Result<f64> {
    let schema = format!("bench_{}_{workers}", std::process::id());
    let store = open(url, &schema, 16).await?;
    let result = async {
        let rt = Runtime::builder()
            .store(store.clone())
            .integration(bench_sync(provider)?)
            .build()
            .await?;
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
        let started = Instant::now();
        let mut children = Vec::new();
        for n in 0..workers {
            children.push(
                tokio::process::Command::new(this_exe()?)
                    .args(["worker", "--postgres", url, "--schema", &schema, "--url", provider])
                    .args(["--concurrency", "32", "--idle-ms", "50", "--worker-id"])
                    .arg(format!("pg-{n}"))
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        let waited = crate::sync::wait_terminal(&rt, calls, Duration::from_secs(600)).await;
        let rate = calls as f64 / started.elapsed().as_secs_f64();
        for mut child in children {
            let _ = child.kill().await;
        }
        waited?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(rate)
    }
    .await;
    drop_schema(url, &schema).await;
    result
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(pool) = sqlx::PgPool::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await;
    }
}
