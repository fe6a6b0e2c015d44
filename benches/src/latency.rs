//! create -> `initialized` latency on an idle runtime: one call at a time,
//! the clock stopped when the runtime broadcasts the durable `initialized`.

use std::time::{Duration, Instant};

use integration_runtime::{CallStatus, EventKind, Runtime, SqliteStore};

use crate::common::{bench_sync, line, message, ms, quantile, sqlite_pragmas, Figure, Provider, Result, Scratch};

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let samples: u64 = if quick { 100 } else { 500 };
    println!("\n== create -> initialized latency: {samples} calls one at a time on an idle runtime");
    let scratch = Scratch::new("latency")?;
    let normal = crate::common::open_normal_sync(&scratch.path("normal.db")).await?;
    let (n50, n99) = measure(normal, samples, &scratch, true).await?.0;
    let store = SqliteStore::open(scratch.path("latency.db")).await?;
    let ((p50, p99), figure) = measure(store, samples, &scratch, false).await?;
    let _ = (p50, p99);
    line(
        "  same, synchronous=NORMAL (no fsync per commit)",
        &format!("p50 {} p99 {}", ms(n50), ms(n99)),
        "crash-safe, not power-cut-safe",
    );
    Ok(vec![
        figure,
        Figure::new(
            "latency: same, synchronous=NORMAL",
            format!("p50 {} p99 {}", ms(n50), ms(n99)),
            "",
            "",
            None,
        ),
    ])
}

/// Measures on `store`; prints unless `quiet`.
async fn measure(
    store: SqliteStore,
    samples: u64,
    _scratch: &Scratch,
    quiet: bool,
) -> Result<((Duration, Duration), Figure)> {
    let provider = Provider::start(false, Duration::ZERO).await?;
    let pragmas = sqlite_pragmas(store.pool()).await;
    let pool = store.pool().clone();
    let rt = Runtime::builder()
        .store(store)
        .integration(bench_sync(&provider.url)?)
        .build()
        .await?;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let mut changes = rt.subscribe();
    let mut to_initialized = Vec::new();
    let mut create_only = Vec::new();
    for i in 0..samples + 20 {
        let started = Instant::now();
        let id = rt.create(message(i)).await?;
        let created = started.elapsed();
        let mut initialized = None;
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
                .await
                .map_err(|_| "no status change within 10 s")??;
            if change.call_id != id {
                continue;
            }
            if change.event == EventKind::Initialized {
                initialized = Some(started.elapsed());
            }
            if change.to == CallStatus::Completed || change.to == CallStatus::Failed {
                break;
            }
        }
        // The first 20 warm the connections.
        if i >= 20 {
            create_only.push(created);
            to_initialized.push(initialized.ok_or("no `initialized` seen")?);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;

    // Baseline: one durable SQLite commit plus one HTTP round trip to the same provider.
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, v TEXT)")
        .execute(&pool)
        .await?;
    let client = reqwest::Client::new();
    let mut floor = Vec::new();
    for i in 0..samples {
        let started = Instant::now();
        sqlx::query("INSERT INTO bench_floor (v) VALUES (?)")
            .bind(i.to_string())
            .execute(&pool)
            .await?;
        client
            .post(format!("{}/send", provider.url))
            .header("content-type", "application/json")
            .body(r#"{"text":"x"}"#)
            .send()
            .await?
            .bytes()
            .await?;
        floor.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    to_initialized.sort();
    create_only.sort();
    floor.sort();
    let (p50, p99) = (quantile(&to_initialized, 0.50), quantile(&to_initialized, 0.99));
    let (f50, f99) = (quantile(&floor, 0.50), quantile(&floor, 0.99));
    let durability = format!("SQLite {pragmas}");
    let figure = Figure::new(
        "latency: create -> initialized",
        format!("p50 {} p99 {}", ms(p50), ms(p99)),
        format!(
            "{:.1}x (1 commit + 1 HTTP: p50 {})",
            p50.as_secs_f64() / f50.as_secs_f64().max(1e-9),
            ms(f50)
        ),
        "p50 < 1.5 ms",
        Some(p50 < Duration::from_micros(1_500)),
    );
    if quiet {
        return Ok(((p50, p99), figure));
    }
    line(
        "create returned (durable pending call)",
        &format!(
            "p50 {} p99 {}",
            ms(quantile(&create_only, 0.5)),
            ms(quantile(&create_only, 0.99))
        ),
        &durability,
    );
    line(
        "create -> initialized",
        &format!("p50 {} p99 {}", ms(p50), ms(p99)),
        &format!("target p50 < 1.5 ms; {durability}"),
    );
    let ratio = p50.as_secs_f64() / f50.as_secs_f64().max(1e-9);
    line(
        "baseline: 1 durable INSERT + 1 HTTP round trip",
        &format!("p50 {} p99 {}", ms(f50), ms(f99)),
        &format!("runtime p50 = {ratio:.1}x baseline"),
    );
    Ok(((p50, p99), figure))
}
