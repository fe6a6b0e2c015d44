//! The runtime's one router (webhooks, health, metrics, operations API) with
//! the workers, as `Runtime::serve` runs them: an async call is completed by
//! a signed webhook, the metrics count what happened, the operations API
//! needs its token.

use std::path::Path;
use std::time::{Duration, Instant};

use integration_runtime::{CallStatus, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, WebhookSender};
use serde_json::json;

integration_runtime::integration!("../specs/volc_tts.toml");

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/volc_tts.toml");

/// A runtime on a SQLite file at `db` with the `VolcTts` integration against
/// the provider at `base_url`, its webhooks signed with [`SECRET`].
async fn runtime(db: &Path, base_url: String) -> Runtime {
    let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url,
        token: Secret::new("t"),
        webhook_secret: Secret::new(SECRET),
    })
    .unwrap();
    Runtime::builder()
        .store(SqliteStore::open(db).await.unwrap())
        .integration(tts)
        .build()
        .await
        .unwrap()
}

fn spawn_run(rt: &Runtime) -> tokio::task::JoinHandle<Result<(), integration_runtime::EngineError>> {
    let rt = rt.clone();
    tokio::spawn(async move { rt.run().await })
}

/// The call both tests make.
fn synthesis() -> volc_tts::Synthesis {
    volc_tts::Synthesis {
        text: "hi".into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_router_serves_webhooks_health_metrics_and_ops() {
    let dir = std::env::temp_dir().join(format!("serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake = FakeProvider::from_spec_file(SPEC)
        .unwrap()
        .outcomes(
            "synthesize",
            [Outcome::complete(
                json!({ "url": "https://cdn/a.mp3", "duration_ms": 5 }),
            )],
        )
        .polls_until_done(1000)
        .webhooks_to(
            format!("{base}/webhooks/volc-tts"),
            WebhookSender::standard_webhooks(SECRET),
            Duration::from_millis(50),
        )
        .start()
        .await
        .unwrap();
    let rt = runtime(&dir.join("serve.db"), fake.url()).await;
    let router = rt.router(Some(Secret::new("ops-token"))).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let worker = spawn_run(&rt);

    let id = rt.create(synthesis()).await.unwrap();
    let started = Instant::now();
    while rt.get(id).await.unwrap().unwrap().status != CallStatus::Completed {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the webhook did not complete the call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let health: serde_json::Value = serde_json::from_str(&health.text().await.unwrap()).unwrap();
    assert_eq!(health["status"], json!("up"), "{health}");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.contains("integration=\"VolcTts\"")),
        "{metrics}"
    );
    let created = metrics
        .lines()
        .find(|l| l.contains("created") && l.contains("VolcTts") && !l.starts_with('#'))
        .expect("a created counter");
    assert!(created.ends_with(" 1"), "{created}");

    // The operations API needs the token.
    let denied = http
        .get(format!("{base}/ops/calls?integration=VolcTts"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let listed = http
        .get(format!("{base}/ops/calls?integration=VolcTts"))
        .bearer_auth("ops-token")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let listed: serde_json::Value = serde_json::from_str(&listed.text().await.unwrap()).unwrap();
    assert_eq!(listed["calls"][0]["id"], json!(id.to_string()), "{listed}");

    rt.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_completes_a_business_call_once_and_replays_change_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = std::env::temp_dir().join(format!("serve-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = FakeProvider::from_spec_file(SPEC)
        .unwrap()
        .polls_until_done(1000) // only the webhook finishes the call
        .start()
        .await
        .unwrap();
    let rt = runtime(&dir.join("replay.db"), fake.url()).await;
    let hooks = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hooks);
    rt.on_completed(move |_call: volc_tts::VolcTtsCall| {
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/webhooks/volc-tts", listener.local_addr().unwrap());
    let router = rt.router(None).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let worker = spawn_run(&rt);

    // Business code creates the call; the worker starts it at the provider.
    let id = rt.create(synthesis()).await.unwrap();
    let started = Instant::now();
    let external_id = loop {
        if let Some(external_id) = rt.get(id).await.unwrap().unwrap().external_id {
            break external_id;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the call was not started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let sender = WebhookSender::standard_webhooks(SECRET);
    let done = json!({ "task_id": external_id, "state": "done", "audio_url": "https://cdn/a.mp3", "duration": 9 });
    assert_eq!(sender.send(&hook_url, &done).await.unwrap(), 200);
    let completed = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(completed.call.status, CallStatus::Completed, "stored before the 200");
    assert_eq!(
        completed.call.response_data,
        Some(json!({ "url": "https://cdn/a.mp3", "duration_ms": 9 }))
    );

    // The same webhook five times more (new deliveries): duplicates.
    for _ in 0..5 {
        assert_eq!(sender.send(&hook_url, &done).await.unwrap(), 200);
    }
    let replayed = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(replayed.call, completed.call, "nothing changed");
    assert_eq!(
        replayed.events, completed.events,
        "replays are duplicates, not new events"
    );

    // A late `processing`: kept in the log for the record, not applied.
    let late = json!({ "task_id": external_id, "state": "running" });
    assert_eq!(sender.send(&hook_url, &late).await.unwrap(), 200);
    let after = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(after.call, completed.call, "nothing changed");
    let new_events: Vec<_> = after.events.iter().skip(completed.events.len()).collect();
    assert_eq!(new_events.len(), 1);
    assert!(!new_events[0].applied, "the late event is recorded as ignored");

    let deadline = Instant::now() + Duration::from_secs(10);
    while hooks.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a duplicate delivery time to show up, if there were one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hooks.load(Ordering::SeqCst), 1, "the completion hook fires once");

    rt.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
