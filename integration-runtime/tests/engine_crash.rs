//! Crash safety with a real process: a worker child is SIGKILLed in the
//! middle of a batch, restarted, and must finish every call exactly once in
//! the log, re-sending interrupted calls with the same idempotency key.
//!
//! The child is this test binary re-executed with `--exact child_worker`
//! and environment variables that make `child_worker` run a worker instead
//! of returning.

#![cfg(feature = "sqlite")]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::{CallId, CallStatus, EventKind, Runtime, SqliteStore};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");

const CHILD_DB: &str = "ENGINE_CRASH_CHILD_DB";
const CHILD_URL: &str = "ENGINE_CRASH_CHILD_URL";
const CHILD_WORKER: &str = "ENGINE_CRASH_CHILD_WORKER";
const CALLS: usize = 12;
const LIMIT: Duration = Duration::from_secs(30);

fn integration(base_url: String) -> engine_sync::EngineSync {
    engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url }).unwrap()
}

/// Not a test of its own: run by the crash test in a child process. In a
/// normal test run the variables are absent and it returns at once.
#[test]
fn child_worker() {
    let (Ok(db), Ok(url)) = (std::env::var(CHILD_DB), std::env::var(CHILD_URL)) else {
        return;
    };
    let worker = std::env::var(CHILD_WORKER).unwrap_or_else(|_| "child".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let rt = Runtime::builder()
            .store(SqliteStore::open(db).await.unwrap())
            .integration(integration(url))
            .worker_id(worker)
            .concurrency(4)
            .claim_batch(4)
            .lease(Duration::from_millis(600))
            .poll_idle(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        // Runs until the parent kills the process; bounded all the same.
        let _ = tokio::time::timeout(LIMIT, rt.run()).await;
    });
}

/// What the provider saw: the `text` and idempotency key of every request.
#[derive(Clone, Default)]
struct Provider {
    hits: Arc<Mutex<Vec<Sent>>>,
}

/// The `text` of a request and its idempotency key.
type Sent = (String, Option<String>);

impl Respond for Provider {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let text = body["text"].as_str().unwrap_or_default().to_owned();
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.hits.lock().unwrap().push((text.clone(), key));
        ResponseTemplate::new(200)
            .set_body_json(json!({ "echoed": text }))
            .set_delay(Duration::from_millis(300))
    }
}

impl Provider {
    fn hits(&self) -> Vec<Sent> {
        self.hits.lock().unwrap().clone()
    }
}

fn spawn_child(db: &PathBuf, url: &str, worker: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_URL, url)
        .env(CHILD_WORKER, worker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child worker")
}

/// Kills the child on drop, so a failing assertion leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_resends_with_the_same_key() {
    let dir = std::env::temp_dir().join(format!("engine-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("calls.db");

    let provider = Provider::default();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(provider.clone())
        .mount(&server)
        .await;

    // The parent only creates calls and reads the store.
    let rt = Runtime::builder()
        .store(SqliteStore::open(&db).await.unwrap())
        .integration(integration(server.uri()))
        .build()
        .await
        .unwrap();
    let mut ids: HashMap<String, CallId> = HashMap::new();
    for n in 0..CALLS {
        let text = format!("call-{n}");
        let id = rt.create(engine_sync::Message { text: text.clone() }).await.unwrap();
        ids.insert(text, id);
    }

    // First life: killed while its second batch is in flight.
    let started = Instant::now();
    let mut first = Killed(spawn_child(&db, &server.uri(), "child-1"));
    while provider.hits().len() < 6 {
        assert!(started.elapsed() < LIMIT, "the child sent nothing");
        assert!(first.0.try_wait().unwrap().is_none(), "the child exited early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.0.kill().unwrap(); // SIGKILL on unix: no cleanup, leases stay
    first.0.wait().unwrap();
    drop(first);

    let sent_before: HashSet<String> = provider.hits().into_iter().map(|(text, _)| text).collect();
    let mut interrupted = Vec::new();
    for (text, id) in &ids {
        let call = rt.get(*id).await.unwrap().unwrap();
        if sent_before.contains(text) && !call.is_terminal() {
            interrupted.push(text.clone());
        }
    }
    assert!(!interrupted.is_empty(), "the kill interrupted no call");
    assert!(
        rt.count_by_status(None).await.unwrap().completed < CALLS as u64,
        "the kill came too late"
    );

    // Second life: picks everything up once the dead worker's leases expire.
    let _second = Killed(spawn_child(&db, &server.uri(), "child-2"));
    loop {
        let counts = rt.count_by_status(None).await.unwrap();
        if counts.completed + counts.failed == CALLS as u64 {
            break;
        }
        assert!(started.elapsed() < LIMIT, "calls not finished in time: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let hits = provider.hits();
    for (text, id) in &ids {
        let full = rt.get_with_events(*id).await.unwrap().unwrap();
        assert_eq!(full.call.status, CallStatus::Completed, "{text}");
        let terminal = full
            .events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Completed | EventKind::Failed))
            .count();
        assert_eq!(terminal, 1, "{text}: {:?}", full.events);
        assert_eq!(full.events.len(), 3, "{text}: {:?}", full.events);
        let keys: Vec<_> = hits.iter().filter(|(t, _)| t == text).map(|(_, k)| k.clone()).collect();
        assert!(!keys.is_empty(), "{text} never sent");
        assert!(
            keys.iter().all(|k| k.as_deref() == Some(id.to_string().as_str())),
            "{text}: keys {keys:?}, call {id}"
        );
    }
    for text in &interrupted {
        let sends = hits.iter().filter(|(t, _)| t == text).count();
        assert!(sends >= 2, "{text} was interrupted but not re-executed ({sends} sends)");
    }
    std::fs::remove_dir_all(&dir).ok();
}
