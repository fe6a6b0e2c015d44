//! A terminal call whose record no longer decodes for its hook (the spec
//! changed since it was stored) is dead-lettered after a bounded number of
//! deliveries, visibly, instead of being delivered forever.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::store::NewEvent;
use integration_runtime::{CallRecord, MemoryStore, Metrics, NewCall, Runtime, Store};
use serde_json::json;

integration_runtime::integration!("tests/specs/engine_sync.toml");

const LIMIT: Duration = Duration::from_secs(20);

/// Waits until `store` shows call `id` satisfying `done`, failing with `what` after [`LIMIT`].
async fn wait_for(
    store: &dyn Store,
    id: integration_runtime::CallId,
    what: &str,
    done: impl Fn(&CallRecord) -> bool,
) -> CallRecord {
    let started = Instant::now();
    loop {
        let call = store.get(id).await.unwrap().expect("call exists");
        if done(&call) {
            return call;
        }
        assert!(started.elapsed() < LIMIT, "{what}: {call:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_call_is_dead_lettered_after_bounded_deliveries() {
    let store = Arc::new(MemoryStore::new());
    let metrics = Metrics::new();
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig {
        // Never sent to: the call below is terminal before the runtime starts.
        base_url: "http://127.0.0.1:9".into(),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(store.clone())
        .integration(integration)
        .metrics(metrics.clone())
        .poll_idle(Duration::from_millis(20))
        .hook_retry(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let ran: Arc<Mutex<u32>> = Arc::default();
    {
        let ran = ran.clone();
        rt.on_completed::<engine_sync::EngineSyncCall, _>(move |_| {
            let ran = ran.clone();
            async move { *ran.lock().unwrap() += 1 }
        });
    }
    // A call stored under an older spec: its parameters are no `Message` now.
    let id = store
        .create(NewCall::new("EngineSync", "send", json!({"legacy_field": 1})))
        .await
        .unwrap()
        .id;
    store
        .append_event(id, NewEvent::completed("terminal", json!({"echoed": "x"})))
        .await
        .unwrap();

    let worker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await.unwrap() })
    };
    let call = wait_for(&*store, id, "the notification is never dead-lettered", |call| {
        call.notification_error.is_some()
    })
    .await;
    assert_eq!(
        call.notification_attempts, 5,
        "dead-lettered on the fifth failed delivery"
    );
    let error = call.notification_error.unwrap();
    assert!(error.contains("EngineSync"), "{error}");
    // Nothing is delivered again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get(id).await.unwrap().unwrap().notification_attempts, 5);
    assert_eq!(*ran.lock().unwrap(), 0, "the hook never saw the undecodable call");
    let json = serde_json::to_value(store.get(id).await.unwrap().unwrap()).unwrap();
    assert_eq!(json["notification_error"], json!(error), "visible in the record's JSON");
    let exposition = metrics.exporter(store.clone()).render().await;
    assert!(
        exposition.contains("integration_hook_dead_letters_total{integration=\"EngineSync\"} 1"),
        "{exposition}"
    );

    rt.shutdown(Duration::from_secs(2)).await;
    tokio::time::timeout(LIMIT, worker).await.unwrap().unwrap();
}
