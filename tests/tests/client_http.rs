//! Generated clients against a real HTTP server on loopback (wiremock):
//! the exact request each one sends, and the typed result it extracts.

use integration_runtime::{CallOptions, RemoteStatus, Secret};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

integration_runtime::integration!("../specs/translate.toml");
integration_runtime::integration!("../specs/volc_tts.toml");
integration_runtime::integration!("../specs/payments.toml");

/// The only request the server received.
async fn single_request(server: &MockServer) -> wiremock::Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1, "expected exactly one request");
    requests.remove(0)
}

fn header<'r>(request: &'r wiremock::Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn sync_translation_sends_the_mapped_request_and_extracts_the_result() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/translate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "translation": { "text": "Hello, world", "source": { "detected": "de" } },
            "usage": { "characters": 11 }
        })))
        .mount(&server)
        .await;
    let client = translate::TranslateClient::new(&translate::TranslateConfig {
        base_url: server.uri(),
        api_key: Secret::new("tr-key-123"),
    })
    .unwrap();
    let request = translate::Translation {
        text: "Hallo, Welt".into(),
        source_lang: Some("de".into()),
        target_lang: "en".into(),
        formality: translate::TranslationFormality::More,
        glossary_id: None,
    };

    let reply = client.translate(&request, &CallOptions::default()).await.unwrap();

    let sent = single_request(&server).await;
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v2/translate");
    assert_eq!(sent.url.query(), Some("source=de"));
    assert_eq!(header(&sent, "x-api-key"), Some("tr-key-123"));
    assert_eq!(header(&sent, "x-client"), Some("spec-integrations"));
    assert_eq!(header(&sent, "content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    // `glossary` is left out: the optional field is absent.
    assert_eq!(
        body,
        json!({ "text": "Hallo, Welt", "target": { "lang": "en", "formality": "formal" } })
    );

    assert_eq!(reply.http_status, 200);
    assert_eq!(
        reply.result,
        Some(translate::Translated {
            text: "Hello, world".into(),
            detected_lang: Some("de".into()),
            characters: 11
        })
    );
    assert_eq!(
        reply.external_id, None,
        "sync endpoint without an id path: the runtime generates one"
    );
}

#[tokio::test]
async fn constraint_violations_are_refused_before_sending() {
    let server = MockServer::start().await;
    let client = translate::TranslateClient::new(&translate::TranslateConfig {
        base_url: server.uri(),
        api_key: Secret::new("k"),
    })
    .unwrap();
    let request = translate::Translation {
        text: String::new(),
        source_lang: None,
        target_lang: "english-please".into(),
        formality: translate::TranslationFormality::Default,
        glossary_id: None,
    };
    let error = client.translate(&request, &CallOptions::default()).await.unwrap_err();
    assert!(error.is_invalid_request(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("text") && message.contains("target_lang"),
        "every violation is listed: {message}"
    );
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");
}

/// The engine checks a call's parameters once, when it creates the call
/// (`Integration::validate`); `start` sends what was stored without checking
/// the constraints again, and still refuses parameters that are not the entity.
#[tokio::test]
async fn start_sends_without_checking_the_constraints_again() {
    use integration_runtime::Integration;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/translate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "translation": { "text": "" }, "usage": { "characters": 0 }
        })))
        .mount(&server)
        .await;
    let integration = translate::Translate::new(translate::TranslateConfig {
        base_url: server.uri(),
        api_key: Secret::new("k"),
    })
    .unwrap();
    // `text` breaks its `min_len`: creating a call would have refused it.
    let params = json!({ "text": "", "target_lang": "en" });
    assert!(integration
        .validate("translate", &params)
        .unwrap_err()
        .is_invalid_request());

    let reply = integration
        .start("translate", &params, &CallOptions::default())
        .await
        .unwrap();
    assert_eq!(reply.result, Some(json!({ "text": "", "characters": 0 })));
    assert_eq!(single_request(&server).await.url.path(), "/v2/translate");

    let error = integration
        .start("translate", &json!({ "text": 1 }), &CallOptions::default())
        .await
        .unwrap_err();
    assert!(error.is_invalid_request(), "{error}");
}

#[tokio::test]
async fn async_tts_start_and_status_query() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/tts/tasks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": { "task_id": 4711 } })))
        .mount(&server)
        .await;
    let client = volc_tts::VolcTtsClient::new(&volc_tts::VolcTtsConfig {
        base_url: server.uri(),
        token: Secret::new("tts-token"),
        webhook_secret: Secret::new("whsec_unused"),
    })
    .unwrap();
    let request = volc_tts::Synthesis {
        text: "Thank you, Ada".into(),
        voice: "en_female_1".into(),
        speed: Some(1.25),
        format: volc_tts::SynthesisFormat::Wav,
    };
    let options = CallOptions {
        idempotency_key: Some("call-1234".into()),
    };

    let reply = client.synthesize(&request, &options).await.unwrap();

    let sent = single_request(&server).await;
    assert_eq!(sent.url.path(), "/api/v1/tts/tasks");
    assert_eq!(sent.url.query(), None);
    assert_eq!(header(&sent, "authorization"), Some("Bearer tts-token"));
    assert_eq!(header(&sent, "x-idempotency-key"), Some("call-1234"));
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        json!({ "input": { "text": "Thank you, Ada", "voice_type": "en_female_1" }, "speed_ratio": 1.25, "audio": { "format": "wav" } })
    );
    assert_eq!(reply.external_id.as_deref(), Some("4711"), "numeric ids become text");

    // The status query puts the external id into one path segment, encoded.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "state": "done", "audio_url": "https://cdn.example.com/a.wav", "duration": 1830 }
        })))
        .mount(&server)
        .await;
    let client = volc_tts::VolcTtsClient::new(&volc_tts::VolcTtsConfig {
        base_url: server.uri(),
        token: Secret::new("tts-token"),
        webhook_secret: Secret::new("whsec_unused"),
    })
    .unwrap();
    let reply = client.query("a/b?c#d%é").await.unwrap();
    let sent = single_request(&server).await;
    assert_eq!(sent.method.as_str(), "GET");
    assert_eq!(sent.url.path(), "/api/v1/tts/tasks/a%2Fb%3Fc%23d%25%C3%A9");
    assert_eq!(sent.url.query(), None);
    assert_eq!(reply.status, Some(RemoteStatus::Completed));
    assert_eq!(
        reply.result,
        Some(volc_tts::Audio {
            url: "https://cdn.example.com/a.wav".into(),
            duration_ms: 1830
        })
    );
}

#[tokio::test]
async fn provider_errors_carry_status_and_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "data": { "message": "no such task" } })))
        .mount(&server)
        .await;
    let client = volc_tts::VolcTtsClient::new(&volc_tts::VolcTtsConfig {
        base_url: server.uri(),
        token: Secret::new("tts-token"),
        webhook_secret: Secret::new("whsec_unused"),
    })
    .unwrap();
    let error = client.query("missing").await.unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.provider_message(), Some("no such task"));
    assert!(!error.to_string().contains("tts-token"));
}

#[tokio::test]
async fn payment_form_body_nests_stripe_style_with_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "pi_123", "status": "processing" })))
        .mount(&server)
        .await;
    let client = payments::PaymentsClient::new(&payments::PaymentsConfig {
        base_url: server.uri(),
        token: Secret::new("sk_test_abc"),
        webhook_secret: Secret::new("whsec_unused"),
    })
    .unwrap();
    let request = payments::PaymentIntent {
        amount: 1999,
        currency: payments::PaymentIntentCurrency::Eur,
        customer: payments::Customer {
            email: "ada@example.com".into(),
            name: None,
            address: Some(payments::Address {
                line1: "1 Main St".into(),
                city: "London".into(),
                postal_code: "N1 9GU".into(),
                country: "GB".into(),
            }),
        },
        capture: payments::PaymentIntentCapture::Manual,
        order_id: "A-17".into(),
        tags: Some(vec!["vip".into(), "first & only".into()]),
    };
    let options = CallOptions {
        idempotency_key: Some("idem-42".into()),
    };

    let reply = client.create_payment(&request, &options).await.unwrap();

    let sent = single_request(&server).await;
    assert_eq!(header(&sent, "idempotency-key"), Some("idem-42"));
    assert_eq!(header(&sent, "authorization"), Some("Bearer sk_test_abc"));
    assert_eq!(header(&sent, "content-type"), Some("application/x-www-form-urlencoded"));
    let pairs: Vec<(String, String)> = form_pairs(std::str::from_utf8(&sent.body).unwrap());
    let expected = [
        ("amount", "1999"),
        ("capture_method", "manual"),
        ("currency", "eur"),
        ("customer[address][city]", "London"),
        ("customer[address][country]", "GB"),
        ("customer[address][line1]", "1 Main St"),
        ("customer[address][postal_code]", "N1 9GU"),
        ("customer[email]", "ada@example.com"),
        ("description", "Order A-17"),
        ("metadata[order_id]", "A-17"),
        ("metadata[tags][0]", "vip"),
        ("metadata[tags][1]", "first & only"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(pairs, expected);
    assert_eq!(reply.external_id.as_deref(), Some("pi_123"));
    assert_eq!(reply.status, Some(RemoteStatus::Processing));
}

/// Decodes `application/x-www-form-urlencoded` (the test's own, independent decoder).
fn form_pairs(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("valid escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8")
    }
    body.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            (decode(k), decode(v))
        })
        .collect()
}
