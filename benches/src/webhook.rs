//! Webhook ingest: signed Standard Webhooks deliveries verified and stored
//! through the runtime's `WebhookReceiver`, against a bare axum handler
//! doing the same HMAC check and one SQLite insert.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use integration_runtime::webhook::signature::standard;
use integration_runtime::webhook::WebhookReceiver;
use integration_runtime::{Integration, Secret, SqliteStore, Store};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::common::{insert_calls, line, ms, quantile, sqlite_pragmas, Figure, Result, Scratch};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Concurrent senders.
const SENDERS: usize = 16;

/// One prepared delivery.
struct Delivery {
    headers: HeaderMap,
    body: Vec<u8>,
}

struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
    ok: usize,
}

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let deliveries: u64 = if quick { 500 } else { 5_000 };
    println!("\n== webhook ingest: {deliveries} signed Standard Webhooks deliveries, {SENDERS} concurrent senders");
    let scratch = Scratch::new("webhook")?;
    let prepared = Arc::new(prepare(deliveries)?);

    // The runtime's receiver over the SQLite store, calls already `processing`.
    let store = SqliteStore::open(scratch.path("runtime.db")).await?;
    let pragmas = sqlite_pragmas(store.pool()).await;
    let (runtime_url, store) = receiver(store, deliveries).await?;
    let normal = crate::common::open_normal_sync(&scratch.path("normal.db")).await?;
    let (normal_url, _normal_store) = receiver(normal, deliveries).await?;

    // The bare handler: same check, one insert, same durability.
    let bare_db = scratch.path("bare.db");
    let options = SqliteConnectOptions::new()
        .filename(&bare_db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL UNIQUE, \
         external_id TEXT NOT NULL, payload TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let bare_pragmas = sqlite_pragmas(&pool).await;
    let bare = Router::new()
        .route("/hook", post(bare_handler))
        .with_state(pool.clone());
    let bare_url = serve(bare, "/hook").await?;

    // Warm both (not counted), then measure, alternating order is not needed: separate files.
    let runtime_load = load(&runtime_url, prepared.clone()).await?;
    let bare_load = load(&bare_url, prepared.clone()).await?;
    let normal_load = load(&normal_url, prepared.clone()).await?;

    let counts = store.count_by_status(Some("BenchHook")).await?;
    if runtime_load.ok as u64 != deliveries || counts.completed != deliveries {
        return Err(format!(
            "webhook: {} of {deliveries} deliveries answered 2xx, store has {counts:?}",
            runtime_load.ok
        )
        .into());
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&pool)
        .await?;
    if bare_load.ok as u64 != deliveries || stored as u64 != deliveries {
        return Err(format!("bare handler: {} answered 2xx, {stored} stored", bare_load.ok).into());
    }
    let ratio = runtime_load.rate / bare_load.rate;
    line(
        "runtime WebhookReceiver (verify, map, append)",
        &format!("{:.0} deliveries/s", runtime_load.rate),
        &format!(
            "p50 {} p99 {}; SQLite {pragmas}",
            ms(runtime_load.p50),
            ms(runtime_load.p99)
        ),
    );
    line(
        "baseline: bare axum handler (HMAC + 1 INSERT)",
        &format!("{:.0} deliveries/s", bare_load.rate),
        &format!(
            "p50 {} p99 {}; SQLite {bare_pragmas}",
            ms(bare_load.p50),
            ms(bare_load.p99)
        ),
    );
    line(
        "ratio",
        &format!("{:.1} %", ratio * 100.0),
        "target >= 70 %, p99 < 10 ms",
    );
    line(
        "  runtime receiver, synchronous=NORMAL",
        &format!("{:.0} deliveries/s", normal_load.rate),
        &format!(
            "p50 {} p99 {}; crash-safe, not power-cut-safe",
            ms(normal_load.p50),
            ms(normal_load.p99)
        ),
    );
    Ok(vec![
        Figure::new(
            "webhook: throughput",
            format!("{:.0} deliveries/s", runtime_load.rate),
            format!("{:.1} % of bare handler ({:.0}/s)", ratio * 100.0, bare_load.rate),
            ">= 70 % of bare",
            Some(ratio >= 0.70),
        ),
        Figure::new(
            "webhook: latency",
            format!("p50 {} p99 {}", ms(runtime_load.p50), ms(runtime_load.p99)),
            format!("bare: p50 {} p99 {}", ms(bare_load.p50), ms(bare_load.p99)),
            "p99 < 10 ms",
            Some(runtime_load.p99 < Duration::from_millis(10)),
        ),
        Figure::new(
            "webhook: synchronous=NORMAL",
            format!(
                "{:.0}/s p50 {} p99 {}",
                normal_load.rate,
                ms(normal_load.p50),
                ms(normal_load.p99)
            ),
            format!("{:.1} % of bare handler", normal_load.rate / bare_load.rate * 100.0),
            "",
            None,
        ),
    ])
}

/// The runtime's receiver over `store` with `deliveries` calls waiting for their webhook.
async fn receiver(store: SqliteStore, deliveries: u64) -> Result<(String, Arc<dyn Store>)> {
    insert_calls(store.pool(), "BenchHook", "start", deliveries, 0, Some("task-")).await?;
    let store: Arc<dyn Store> = Arc::new(store);
    let hook: Arc<dyn Integration> = Arc::new(crate::bench_hook::BenchHook::new(crate::bench_hook::BenchHookConfig {
        base_url: "http://127.0.0.1:9".into(),
        webhook_secret: Secret::new(SECRET),
    })?);
    let router = WebhookReceiver::new(store.clone())
        .integration_with_secrets(hook, &[Secret::new(SECRET)])?
        .router();
    Ok((serve(router, "/webhooks/bench").await?, store))
}

/// Signs every delivery up front (not timed).
fn prepare(count: u64) -> Result<Vec<Delivery>> {
    let now = crate::common::chrono_millis() / 1000;
    (0..count)
        .map(|i| {
            let body = json!({ "task_id": format!("task-{i}"), "state": "done", "url": format!("https://cdn.example.com/{i}.mp3") })
                .to_string()
                .into_bytes();
            let headers = standard::sign(SECRET, &format!("msg_{i}"), now, &body).ok_or("invalid secret")?;
            Ok(Delivery { headers, body })
        })
        .collect()
}

async fn serve(router: Router, path: &str) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{path}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}

/// Posts every delivery from `SENDERS` tasks; per-request latency on the client.
async fn load(url: &str, deliveries: Arc<Vec<Delivery>>) -> Result<Load> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (client, url, next, deliveries) = (client.clone(), url.to_owned(), next.clone(), deliveries.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut ok = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(delivery) = deliveries.get(i) else {
                    return Ok::<_, reqwest::Error>((latencies, ok));
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .headers(delivery.headers.clone())
                    .header("content-type", "application/json")
                    .body(delivery.body.clone())
                    .send()
                    .await?;
                let success = response.status().is_success();
                response.bytes().await?;
                latencies.push(sent.elapsed());
                ok += usize::from(success);
            }
        });
    }
    let mut latencies = Vec::new();
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        let (mut l, n) = result??;
        latencies.append(&mut l);
        ok += n;
    }
    let rate = deliveries.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Load {
        rate,
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        ok,
    })
}

/// The bare handler: Standard Webhooks HMAC check, JSON parse, one INSERT.
async fn bare_handler(
    State(pool): State<sqlx::SqlitePool>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) =
        (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"))
    else {
        return (StatusCode::UNAUTHORIZED, "missing header");
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return (StatusCode::UNAUTHORIZED, "bad timestamp");
    };
    if (crate::common::chrono_millis() / 1000 - ts).abs() > 300 {
        return (StatusCode::UNAUTHORIZED, "stale");
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "key");
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected = mac.finalize().into_bytes();
    let valid = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| {
            base64::engine::general_purpose::STANDARD.decode(s).is_ok_and(|sig| {
                sig.len() == expected.len()
                    && sig.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            })
        });
    if !valid {
        return (StatusCode::UNAUTHORIZED, "signature");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "json");
    };
    let external = payload["task_id"].as_str().unwrap_or_default().to_owned();
    let inserted = sqlx::query(
        "INSERT INTO deliveries (delivery_id, external_id, payload) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(external)
    .bind(String::from_utf8_lossy(&body).into_owned())
    .execute(&pool)
    .await;
    match inserted {
        Ok(_) => (StatusCode::OK, r#"{"received":true}"#),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store"),
    }
}
