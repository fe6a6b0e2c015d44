//! The test kit used the way a user would, from outside the crate: a fake
//! provider built from each spec, driven by the generated clients.

use integration_runtime::{CallOptions, RemoteStatus, Secret};
use integration_testkit::{FakeProvider, Outcome};
use serde_json::json;

integration_runtime::integration!("../specs/translate.toml");
integration_runtime::integration!("../specs/volc_tts.toml");
integration_runtime::integration!("../specs/payments.toml");

const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs");

fn synthesis() -> volc_tts::Synthesis {
    volc_tts::Synthesis {
        text: "hello".into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    }
}

#[tokio::test]
async fn sync_endpoint_answers_with_the_scripted_result_at_the_spec_paths() {
    let fake = FakeProvider::from_spec_file(format!("{SPECS}/translate.toml"))
        .unwrap()
        .outcomes(
            "translate",
            [Outcome::complete(
                json!({ "text": "Hello", "detected_lang": "de", "characters": 5 }),
            )],
        )
        .start()
        .await
        .unwrap();
    let client = translate::TranslateClient::new(&translate::TranslateConfig {
        base_url: fake.url(),
        api_key: Secret::new("k"),
    })
    .unwrap();
    let request = translate::Translation {
        text: "Hallo".into(),
        source_lang: None,
        target_lang: "en".into(),
        formality: translate::TranslationFormality::Default,
        glossary_id: None,
    };
    let reply = client.translate(&request, &CallOptions::default()).await.unwrap();
    assert_eq!(
        reply.result,
        Some(translate::Translated {
            text: "Hello".into(),
            detected_lang: Some("de".into()),
            characters: 5
        })
    );
    let requests = fake.requests_to("translate");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-api-key"), Some("k"));
    assert_eq!(requests[0].json().unwrap()["text"], json!("Hallo"));
}

#[tokio::test]
async fn async_task_is_processing_until_the_scripted_number_of_polls() {
    let fake = FakeProvider::from_spec_file(format!("{SPECS}/volc_tts.toml"))
        .unwrap()
        .outcomes(
            "synthesize",
            [Outcome::complete(
                json!({ "url": "https://cdn/a.mp3", "duration_ms": 700 }),
            )],
        )
        .polls_until_done(2)
        .start()
        .await
        .unwrap();
    let config = volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: Secret::new("t"),
        webhook_secret: Secret::new("s"),
    };
    let client = volc_tts::VolcTtsClient::new(&config).unwrap();
    let started = client
        .synthesize(
            &synthesis(),
            &CallOptions {
                idempotency_key: Some("k-1".into()),
            },
        )
        .await
        .unwrap();
    let id = started.external_id.expect("the fake puts an id at $.data.task_id");
    assert_eq!(fake.task_ids(), vec![id.clone()]);
    for _ in 0..2 {
        assert_eq!(client.query(&id).await.unwrap().status, Some(RemoteStatus::Processing));
    }
    let done = client.query(&id).await.unwrap();
    assert_eq!(done.status, Some(RemoteStatus::Completed));
    assert_eq!(
        done.result,
        Some(volc_tts::Audio {
            url: "https://cdn/a.mp3".into(),
            duration_ms: 700
        })
    );
    assert_eq!(
        fake.requests_to("synthesize")[0].header("x-idempotency-key"),
        Some("k-1")
    );
    assert_eq!(fake.requests_to("query").len(), 3);
}

#[tokio::test]
async fn scripted_failures_and_rejections() {
    let fake = FakeProvider::from_spec_file(format!("{SPECS}/volc_tts.toml"))
        .unwrap()
        .outcomes(
            "synthesize",
            [
                Outcome::reject(429).retry_after(2).message("slow down"),
                Outcome::fail("voice not available"),
            ],
        )
        .start()
        .await
        .unwrap();
    let config = volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: Secret::new("t"),
        webhook_secret: Secret::new("s"),
    };
    let client = volc_tts::VolcTtsClient::new(&config).unwrap();

    let error = client
        .synthesize(&synthesis(), &CallOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert_eq!(error.provider_message(), Some("slow down"));

    let started = client.synthesize(&synthesis(), &CallOptions::default()).await.unwrap();
    let failed = client.query(&started.external_id.unwrap()).await.unwrap();
    assert_eq!(failed.status, Some(RemoteStatus::Failed));
    assert_eq!(failed.error.as_deref(), Some("voice not available"));
    assert!(client.query("unknown-task").await.unwrap_err().status() == Some(404));
}

#[tokio::test]
async fn made_up_results_fit_the_entity() {
    let fake = FakeProvider::from_spec_file(format!("{SPECS}/payments.toml"))
        .unwrap()
        .start()
        .await
        .unwrap();
    let config = payments::PaymentsConfig {
        base_url: fake.url(),
        token: Secret::new("sk"),
        webhook_secret: Secret::new("s"),
    };
    let client = payments::PaymentsClient::new(&config).unwrap();
    let intent = payments::PaymentIntent {
        amount: 100,
        currency: payments::PaymentIntentCurrency::Usd,
        customer: payments::Customer {
            email: "a@example.com".into(),
            name: None,
            address: None,
        },
        capture: payments::PaymentIntentCapture::Automatic,
        order_id: "o-1".into(),
        tags: None,
    };
    let started = client
        .create_payment(
            &intent,
            &CallOptions {
                idempotency_key: Some("i".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(started.status, Some(RemoteStatus::Processing));
    let done = client.retrieve_payment(&started.external_id.unwrap()).await.unwrap();
    let charge = done.result.expect("completed with a made-up charge");
    assert_eq!(charge.id, "fake-id");
    assert_eq!(charge.amount_received, 1);
}
