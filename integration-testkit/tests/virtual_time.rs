//! Virtual time end to end: a runtime on a real SQLite file (and on
//! PostgreSQL when `INTEGRATION_TEST_DATABASE_URL` is set) reads the test's
//! clock, and a call goes through retries, its polls, its deadline and its
//! pruning a day later in about a second of wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{CallStatus, FailureKind, Retention, Runtime, Secret, SqliteStore, Store};
use integration_testkit::{FakeProvider, Outcome, TestClock};

integration_runtime::integration!("../specs/volc_tts.toml");

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/volc_tts.toml");

fn synthesis(text: &str) -> volc_tts::Synthesis {
    volc_tts::Synthesis {
        text: text.into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    }
}

async fn stores(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![(
        "sqlite",
        Arc::new(SqliteStore::open(dir.join("calls.db")).await.unwrap()),
    )];
    match std::env::var("INTEGRATION_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let schema = format!("virtual_time_{}_{nanos}", std::process::id());
            let store = integration_runtime::PostgresStore::connect_with(
                url.parse().unwrap(),
                integration_runtime::PostgresOptions::default().schema(schema),
            )
            .await
            .unwrap();
            stores.push(("postgres", Arc::new(store)));
        }
        None => eprintln!("PostgreSQL part skipped: INTEGRATION_TEST_DATABASE_URL is not set"),
    }
    stores
}

#[tokio::test]
async fn retries_polls_a_deadline_and_retention_take_virtual_time_not_wall_time() {
    let dir = std::env::temp_dir().join(format!("testkit-virtual-time-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, store) in stores(&dir).await {
        let fake = FakeProvider::from_spec_file(SPEC)
            .unwrap()
            .outcomes(
                "synthesize",
                [
                    Outcome::reject(503).retry_after(30),
                    Outcome::reject(503).retry_after(30),
                    Outcome::complete_with_made_up_result(),
                ],
            )
            .polls_until_done(u32::MAX)
            .start()
            .await
            .unwrap();
        let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
            base_url: fake.url(),
            token: Secret::new("t"),
            webhook_secret: Secret::new("whsec_dW51c2Vk"),
        })
        .unwrap();
        let clock = TestClock::new();
        let rt = Runtime::builder()
            .store(Arc::clone(&store))
            .integration(tts)
            .clock(clock.clock())
            .poll_idle(Duration::from_millis(2))
            .retention(
                Retention::new()
                    .failed_after(Duration::from_secs(86_400))
                    .every(Duration::from_secs(3_600)),
            )
            .build()
            .await
            .unwrap();
        let worker = {
            let rt = rt.clone();
            tokio::spawn(async move { rt.run().await })
        };
        let wall = Instant::now();
        let id = rt.create(synthesis("hello")).await.unwrap();
        let created = rt.get(id).await.unwrap().unwrap();
        assert_eq!(
            created.created_at,
            clock.now(),
            "{name}: the store reads the test's clock"
        );

        let call = clock
            .run_until(&rt, id, Duration::from_secs(5), |call| call.is_terminal())
            .await;
        let wall = wall.elapsed();
        assert_eq!(call.status, CallStatus::Failed, "{name}: {call:?}");
        assert_eq!(call.error_kind, Some(FailureKind::Timeout), "{name}: {call:?}");
        // Retry-After 30 s twice, then polls until 600 s after the call was due.
        let starts = fake.requests_to("synthesize").len();
        assert_eq!(starts, 3, "{name}");
        let polls = fake.requests_to("query").len();
        assert!(
            polls >= 10,
            "{name}: polled on the spec's schedule, {polls} polls, {:?} {call:?}",
            clock.elapsed()
        );
        assert!(
            clock.elapsed() >= Duration::from_secs(600),
            "{name}: {:?}",
            clock.elapsed()
        );
        assert!(call.completed_at.unwrap() >= call.deadline_at.unwrap(), "{name}");
        assert!(
            wall < clock.elapsed() / 20,
            "{name}: {wall:?} of wall time for {:?} of virtual time",
            clock.elapsed()
        );

        // A day later (virtual), the retention task's next pass deletes it.
        let pruning = Instant::now();
        for _ in 0..30 {
            clock.advance(Duration::from_secs(3_600));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if rt.get(id).await.unwrap().is_none() {
                break;
            }
        }
        assert_eq!(rt.get(id).await.unwrap(), None, "{name}: pruned a day after it failed");
        assert!(clock.elapsed() >= Duration::from_secs(600 + 86_400), "{name}");
        assert!(
            pruning.elapsed() < Duration::from_secs(10),
            "{name}: {:?}",
            pruning.elapsed()
        );
        rt.shutdown(Duration::from_secs(1)).await;
        worker.await.unwrap().unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}
