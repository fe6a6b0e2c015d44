//! What the figures share: the loopback provider, statistics, reporting,
//! scratch files and fast batched inserts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// Errors of the harness: reported and the process exits non-zero.
pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The durability settings of every SQLite figure (`SqliteStore::open`).
pub(crate) const SQLITE_DURABILITY: &str = "SQLite WAL, synchronous=FULL (SqliteStore::open)";

/// One measured figure, for the closing summary.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) versus: String,
    pub(crate) target: String,
    /// `None`: no target, or not measured.
    pub(crate) met: Option<bool>,
}

impl Figure {
    pub(crate) fn new(
        name: impl Into<String>,
        value: impl Into<String>,
        versus: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) -> Self {
        Figure {
            name: name.into(),
            value: value.into(),
            versus: versus.into(),
            target: target.into(),
            met,
        }
    }

    pub(crate) fn skipped(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Figure::new(name, "skipped", reason, "", None)
    }
}

pub(crate) fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    }
}

/// Prints the closing table of every figure.
pub(crate) fn print_summary(figures: &[Figure]) {
    if figures.is_empty() {
        return;
    }
    println!("\n== summary");
    for f in figures {
        println!(
            "  {:<44} {:<26} {:<46} {:<22} {}",
            f.name,
            f.value,
            f.versus,
            f.target,
            verdict(f.met)
        );
    }
}

/// Prints the machine and how busy it is (other builds skew every figure).
pub(crate) fn print_machine(quick: bool) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or("unknown".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {model}, {cores} cores, {:.1} GiB; load average {}; mode: {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        if quick { "quick" } else { "full" }
    );
    let rustc = count_processes("rustc");
    if rustc > 0 {
        println!("warning: {rustc} rustc processes running: the machine is busy, figures are pessimistic");
    }
}

/// How many processes have `name` as their command.
pub(crate) fn count_processes(name: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

/// Prints one figure line with its baseline ratio.
pub(crate) fn line(label: &str, value: &str, note: &str) {
    println!("  {label:<52} {value:>18}  {note}");
}

// ----- statistics -----------------------------------------------------------

/// The `p`-quantile (0..=1) of `sorted` samples, nearest rank.
pub(crate) fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A small xorshift generator: the kill moments need no crypto, and no dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `low..high` (`high > low`).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }
}

// ----- the loopback provider ------------------------------------------------

/// What the provider saw: requests per idempotency key.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) requests: AtomicU64,
    keys: Mutex<HashMap<String, u32>>,
}

impl Seen {
    /// Idempotency keys and how many requests carried each.
    pub(crate) fn keys(&self) -> HashMap<String, u32> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
struct ProviderState {
    seen: Arc<Seen>,
    record_keys: bool,
    delay: Duration,
}

/// A minimal, fast synchronous provider on 127.0.0.1: `POST /send` with
/// `{"text": ..}` answers `{"echoed": ..}`.
pub(crate) struct Provider {
    pub(crate) url: String,
    pub(crate) seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Provider {
    /// Starts it; `record_keys` keeps every `Idempotency-Key`, `delay`
    /// holds each answer back (the crash harness uses it to be killed mid-call).
    pub(crate) async fn start(record_keys: bool, delay: Duration) -> Result<Provider> {
        let seen = Arc::new(Seen::default());
        let state = ProviderState {
            seen: seen.clone(),
            record_keys,
            delay,
        };
        let app = Router::new().route("/send", post(send)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Provider { url, seen, task })
    }
}

async fn send(State(state): State<ProviderState>, headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
    state.seen.requests.fetch_add(1, Ordering::Relaxed);
    if state.record_keys {
        if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
            *state
                .seen
                .keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.to_owned())
                .or_default() += 1;
        }
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("text").cloned())
        .unwrap_or(Value::Null);
    axum::Json(json!({ "echoed": text }))
}

/// The generated integration against `url`.
pub(crate) fn bench_sync(url: &str) -> Result<crate::bench_sync::BenchSync> {
    Ok(crate::bench_sync::BenchSync::new(crate::bench_sync::BenchSyncConfig {
        base_url: url.to_owned(),
    })?)
}

/// A request of the benchmark integration.
pub(crate) fn message(i: u64) -> crate::bench_sync::Message {
    crate::bench_sync::Message {
        text: format!("call {i}"),
    }
}

// ----- files ----------------------------------------------------------------

/// A fresh scratch directory (removed on drop).
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("integration-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The workspace root (for the apalis peer and the macro crate).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `journal_mode` and `synchronous` as the store's connections report them.
pub(crate) async fn sqlite_pragmas(pool: &sqlx::SqlitePool) -> String {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap_or_else(|_| "?".into());
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap_or(-1);
    let sync = match sync {
        0 => "OFF",
        1 => "NORMAL",
        2 => "FULL",
        3 => "EXTRA",
        _ => "?",
    };
    format!("journal_mode={mode}, synchronous={sync}")
}

/// A UUID-shaped random id, in SQL (for batched inserts).
const SQL_UUID: &str = "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || \
     substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) || '-' || \
     lower(hex(randomblob(6)))";

/// Inserts `count` calls straight into the store's table in one
/// transaction (one statement): pending and due now when `external_prefix`
/// is `None`, else `processing` with external ids `<prefix><n>` (n from
/// `first`) and unscheduled, as after `initialized` + `processing`.
pub(crate) async fn insert_calls(
    pool: &sqlx::SqlitePool,
    integration: &str,
    endpoint: &str,
    count: u64,
    first: u64,
    external_prefix: Option<&str>,
) -> Result<()> {
    let now = chrono_millis();
    let (status, external, next_run) = match external_prefix {
        None => ("pending", "NULL".to_owned(), "?3".to_owned()),
        Some(_) => ("processing", "?5 || x".to_owned(), "NULL".to_owned()),
    };
    let sql = format!(
        "WITH RECURSIVE n(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM n WHERE x < ?2) \
         INSERT INTO integration_calls (id, integration, endpoint, status, external_id, params, \
             attempts, created_at, updated_at, next_run_at) \
         SELECT {SQL_UUID}, ?4, ?6, '{status}', {external}, json_object('text', 'call ' || x), 0, ?3, ?3, {next_run} \
         FROM n"
    );
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(first as i64)
        .bind((first + count - 1) as i64)
        .bind(now)
        .bind(integration)
        .bind(external_prefix.unwrap_or(""))
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) fn chrono_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// This process's resident set and its peak, in KiB.
pub(crate) fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// This executable (re-invoked as `worker`).
pub(crate) fn this_exe() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// The store with `synchronous=NORMAL` (otherwise `SqliteStore::open`'s
/// settings): commits survive a crash of the process but not a power cut.
/// Measured next to the default (`FULL`) to show what the `fsync` costs.
pub(crate) async fn open_normal_sync(path: &Path) -> Result<integration_runtime::SqliteStore> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    Ok(integration_runtime::SqliteStore::from_pool(pool).await?)
}
