//! Calls created by a running runtime go to its own worker without a claim:
//! created under the worker's lease and handed over in process.
//!
//! The store here is the in-memory one behind a wrapper whose claims find
//! nothing: a call that completes anyway was handed over, not claimed.

mod store_quirks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{CallId, CallRecord, CallStatus, MemoryStore, Runtime, Store};
use serde_json::json;
use store_quirks::Quirky;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");

const LIMIT: Duration = Duration::from_secs(20);

async fn provider(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"echoed": "hi"}))
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

async fn runtime(store: Arc<dyn Store>, server: &MockServer, concurrency: usize) -> Runtime {
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url: server.uri() }).unwrap();
    Runtime::builder()
        .store(store)
        .integration(integration)
        .worker_id("here")
        .concurrency(concurrency)
        .lease(Duration::from_secs(30))
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

fn message(n: usize) -> engine_sync::Message {
    engine_sync::Message { text: format!("m{n}") }
}

async fn wait_status(rt: &Runtime, id: CallId, status: CallStatus) -> CallRecord {
    let started = Instant::now();
    loop {
        let call = rt.get(id).await.unwrap().expect("call exists");
        if call.status == status {
            return call;
        }
        assert!(started.elapsed() < LIMIT, "call {id} not {status:?} in time: {call:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_created_while_the_worker_runs_complete_without_a_claim() {
    let server = provider(Duration::ZERO).await;
    let store = Arc::new(Quirky::new().claims_find_nothing());
    let rt = runtime(store.clone(), &server, 4).await;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await.unwrap() }
    });
    // The worker has claimed (and found nothing) at least once: it runs.
    let started = Instant::now();
    while store.claims() == 0 {
        assert!(started.elapsed() < LIMIT, "the worker never claimed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    for n in 0..10 {
        let id = rt.create(message(n)).await.unwrap();
        let call = wait_status(&rt, id, CallStatus::Completed).await;
        assert_eq!(call.response_data, Some(json!({"echoed": "hi"})));
    }
    tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_secs(2)))
        .await
        .unwrap();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_leaves_new_calls_to_be_claimed() {
    let server = provider(Duration::from_millis(500)).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rt = runtime(store, &server, 1).await;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The first call takes the only slot (handed over, leased at creation).
    let first = rt.create(message(1)).await.unwrap();
    let created = rt.get(first).await.unwrap().unwrap();
    assert_eq!(created.lease_owner.as_deref(), Some("here"));
    // No slot is free for the second: it is created unleased, for any worker.
    let second = rt.create(message(2)).await.unwrap();
    let waiting = rt.get(second).await.unwrap().unwrap();
    assert_eq!((waiting.lease_owner, waiting.status), (None, CallStatus::Pending));
    wait_status(&rt, second, CallStatus::Completed).await;

    tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_secs(2)))
        .await
        .unwrap();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_running_worker_calls_are_created_unleased() {
    let server = provider(Duration::ZERO).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let rt = runtime(store, &server, 4).await;
    let id = rt.create(message(1)).await.unwrap();
    let call = rt.get(id).await.unwrap().unwrap();
    assert_eq!((call.lease_owner, call.lease_expires_at), (None, None));
}
