//! Credentials: an integration built from the environment reports every
//! missing variable with its purpose in one error, and a secret appears in no
//! stored record, error or Debug output after a completed and a failed call
//! (log lines are covered by `integration-runtime/tests/auth_flows.rs`).

use std::time::{Duration, Instant};

use integration_runtime::{CallStatus, Runtime, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, RecordedRequest};
use serde_json::json;

integration_runtime::integration!("../specs/volc_tts.toml");

const TOKEN: &str = "tts-token-7c1f0a9d-very-secret";

// Both checks change the process environment, so they run in one test.
fn every_missing_variable_is_reported_with_its_purpose() {
    std::env::remove_var("VOLC_TTS_TOKEN");
    std::env::remove_var("VOLC_TTS_WEBHOOK_SECRET");
    let error = volc_tts::VolcTts::from_env().unwrap_err().to_string();
    assert!(
        error.contains("VOLC_TTS_TOKEN") && error.contains("API token from the provider console"),
        "{error}"
    );
    assert!(
        error.contains("VOLC_TTS_WEBHOOK_SECRET") && error.contains("webhook signing secret"),
        "{error}"
    );
    assert!(
        !error.contains("VOLC_TTS_BASE_URL"),
        "a variable with a default is not missing: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_are_listed_and_a_secret_shows_up_nowhere() {
    every_missing_variable_is_reported_with_its_purpose();
    let dir = std::env::temp_dir().join(format!("credentials-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The provider refuses one request and echoes its Authorization header
    // back in the error message, as careless APIs do.
    let fake = FakeProvider::from_spec_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/volc_tts.toml"))
        .unwrap()
        .when(
            "synthesize",
            |r: &RecordedRequest| r.json().is_some_and(|b| b["input"]["text"] == "fail"),
            Outcome::reject(400).message(format!("bad request with Authorization: Bearer {TOKEN}")),
        )
        .outcomes(
            "synthesize",
            [Outcome::complete(
                json!({ "url": "https://cdn/a.mp3", "duration_ms": 1 }),
            )],
        )
        .polls_until_done(0)
        .start()
        .await
        .unwrap();
    std::env::set_var("VOLC_TTS_BASE_URL", fake.url());
    std::env::set_var("VOLC_TTS_TOKEN", TOKEN);
    std::env::set_var("VOLC_TTS_WEBHOOK_SECRET", "whsec_dW51c2Vk");
    let tts = volc_tts::VolcTts::from_env().unwrap();
    assert!(!format!("{tts:?}").contains(TOKEN), "Debug of the integration");
    let store = SqliteStore::open(dir.join("secrets.db")).await.unwrap();
    let rt = Runtime::builder()
        .store(store)
        .integration(tts)
        .polling_time_scale(0.001)
        .poll_idle(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let request = |text: &str| volc_tts::Synthesis {
        text: text.into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    };
    let ok = rt.create(request("hello")).await.unwrap();
    let failed = rt.create(request("fail")).await.unwrap();
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let started = Instant::now();
    loop {
        let mut done = true;
        for id in [ok, failed] {
            done &= rt.get(id).await.unwrap().unwrap().is_terminal();
        }
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "calls did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap().unwrap();

    // The token did reach the provider...
    assert_eq!(
        fake.requests_to("synthesize")[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    // ...and nothing stored, printed or returned carries it.
    for id in [ok, failed] {
        let found = rt.store().get_with_events(id).await.unwrap().unwrap();
        let everything = format!("{:?}", found);
        assert!(!everything.contains(TOKEN), "stored call {id}: {everything}");
    }
    let failed_call = rt.get(failed).await.unwrap().unwrap();
    assert_eq!(failed_call.status, CallStatus::Failed);
    assert!(
        failed_call.error.as_deref().unwrap_or_default().contains("***"),
        "{:?}",
        failed_call.error
    );
    assert_eq!(rt.get(ok).await.unwrap().unwrap().status, CallStatus::Completed);
    std::fs::remove_dir_all(&dir).ok();
}
