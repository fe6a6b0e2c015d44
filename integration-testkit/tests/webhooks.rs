//! Signed deliveries from the test kit verify with the runtime's verifier,
//! for every scheme; the fake provider announces finished tasks by webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use integration_runtime::webhook::signature::Verifier;
use integration_runtime::{CallOptions, Secret, SignatureEncoding, SignatureScheme};
use integration_testkit::{FakeProvider, Outcome, WebhookSender};
use serde_json::{json, Value};

integration_runtime::integration!("../specs/volc_tts.toml");

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A receiver that verifies with `scheme` and records accepted bodies.
async fn receiver(scheme: SignatureScheme, secret: &str) -> (String, Arc<Mutex<Vec<Value>>>) {
    let verifier = Arc::new(Verifier::new(scheme, 300, &[Secret::new(secret)]).unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (verifier, sink) = (Arc::clone(&verifier), Arc::clone(&sink));
        async move {
            match verifier.verify(&headers, &body, now()) {
                Ok(_) => {
                    sink.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                    StatusCode::NO_CONTENT
                }
                Err(_) => StatusCode::UNAUTHORIZED,
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test]
async fn every_scheme_signs_what_the_runtime_verifies() {
    let github = SignatureScheme::HmacSha256 {
        header: "x-hub-signature-256",
        encoding: SignatureEncoding::Hex,
        prefix: "sha256=",
    };
    let cases = [
        (
            SignatureScheme::StandardWebhooks,
            WHSEC,
            WebhookSender::standard_webhooks(WHSEC),
        ),
        (
            SignatureScheme::Stripe,
            "whsec_stripe_style",
            WebhookSender::stripe("whsec_stripe_style"),
        ),
        (
            github,
            "It's a Secret to Everybody",
            WebhookSender::hmac_sha256(
                "x-hub-signature-256",
                SignatureEncoding::Hex,
                "sha256=",
                "It's a Secret to Everybody",
            ),
        ),
    ];
    for (scheme, secret, sender) in cases {
        let (url, received) = receiver(scheme, secret).await;
        assert_eq!(sender.send(&url, &json!({ "n": 1 })).await.unwrap(), 204, "{scheme:?}");
        // Signed with another secret: refused.
        let impostor = WebhookSender::new(scheme, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            impostor.send(&url, &json!({ "n": 2 })).await.unwrap(),
            401,
            "{scheme:?}"
        );
        assert_eq!(*received.lock().unwrap(), vec![json!({ "n": 1 })]);
    }
}

#[tokio::test]
async fn stale_deliveries_can_be_made_for_tolerance_tests() {
    let (url, received) = receiver(SignatureScheme::StandardWebhooks, WHSEC).await;
    let sender = WebhookSender::standard_webhooks(WHSEC);
    let stale = sender.sign_at(&json!({ "late": true }), "msg_1", now() - 3600).unwrap();
    assert_eq!(sender.deliver(&url, &stale).await.unwrap(), 401);
    let mut tampered = sender.sign(&json!({ "amount": 1 })).unwrap();
    tampered.body = br#"{"amount":1000}"#.to_vec();
    assert_eq!(sender.deliver(&url, &tampered).await.unwrap(), 401);
    assert!(received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_fake_provider_announces_outcomes_at_the_spec_paths() {
    let (url, received) = receiver(SignatureScheme::StandardWebhooks, WHSEC).await;
    let fake = FakeProvider::from_spec_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/volc_tts.toml"))
        .unwrap()
        .outcomes(
            "synthesize",
            [
                Outcome::complete(json!({ "url": "https://cdn/x.mp3", "duration_ms": 42 })),
                Outcome::fail("no such voice"),
            ],
        )
        .polls_until_done(100)
        .webhooks_to(url, WebhookSender::standard_webhooks(WHSEC), Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let config = volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: Secret::new("t"),
        webhook_secret: Secret::new(WHSEC),
    };
    let client = volc_tts::VolcTtsClient::new(&config).unwrap();
    let request = volc_tts::Synthesis {
        text: "hi".into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    };
    let first = client
        .synthesize(&request, &CallOptions::default())
        .await
        .unwrap()
        .external_id
        .unwrap();
    let second = client
        .synthesize(&request, &CallOptions::default())
        .await
        .unwrap()
        .external_id
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.webhook_deliveries().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhooks not sent: {:?}",
            fake.webhook_deliveries()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fake.webhook_deliveries().iter().all(|(_, status)| *status == Ok(204)));
    let mut bodies = received.lock().unwrap().clone();
    bodies.sort_by_key(|b| b["task_id"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies[0],
        json!({ "task_id": first, "state": "done", "audio_url": "https://cdn/x.mp3", "duration": 42 })
    );
    assert_eq!(
        bodies[1],
        json!({ "task_id": second, "state": "error", "message": "no such voice" })
    );

    // After the announcement, polling tells the same story.
    let polled = client.query(&first).await.unwrap();
    assert_eq!(polled.status, Some(integration_runtime::RemoteStatus::Completed));
}
