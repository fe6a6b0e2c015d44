//! The generated request and response types, and the derives on a user's
//! own structs, used the way business code uses them.

use integration_runtime::{CallRequest, FromResult, Integration, IntoCall};
use serde_json::json;

integration_runtime::integration!("../specs/volc_tts.toml");

use volc_tts::{Audio, SynthesisFormat, VolcTtsRequest};

/// A struct of the user's own, bound to the `synthesize` endpoint.
#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "../specs/volc_tts.toml", endpoint = "synthesize")]
struct ThankYouVoice {
    text: String,
    #[integration(rename = "voice")]
    voice_type: String,
    speed: Option<f32>,
    #[integration(skip)]
    #[allow(dead_code)]
    internal_note: u8,
}

/// A struct of the user's own that reads the `Audio` result.
#[derive(Debug, PartialEq, integration_runtime::IntegrationResponse)]
#[integration(spec = "../specs/volc_tts.toml", entity = "Audio")]
struct VoiceFile {
    #[integration(rename = "url")]
    location: String,
    duration_ms: u64,
}

fn audio() -> Audio {
    Audio {
        url: "https://cdn.example.com/1.mp3".into(),
        duration_ms: 900,
    }
}

#[test]
fn derived_request_becomes_the_entity_params() {
    let voice = ThankYouVoice {
        text: "Thank you, Ada".into(),
        voice_type: "en_male_2".into(),
        speed: None,
        internal_note: 7,
    };
    assert_eq!(<ThankYouVoice as IntoCall>::INTEGRATION, "VolcTts");
    assert_eq!(voice.endpoint(), "synthesize");
    let params = voice.into_params();
    assert_eq!(params, json!({ "text": "Thank you, Ada", "voice": "en_male_2" }));

    // The params are exactly what the generated request entity reads back.
    let request = VolcTtsRequest::from_params("synthesize", &params).unwrap();
    let VolcTtsRequest::Synthesize(synthesis) = request;
    assert_eq!(synthesis.voice, "en_male_2");
    assert_eq!(synthesis.format, SynthesisFormat::Mp3, "default from the spec");
}

#[test]
fn validation_through_the_glue_reports_constraint_violations() {
    let integration = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: "http://127.0.0.1:9".into(),
        token: "t".into(),
        webhook_secret: "s".into(),
    })
    .unwrap();
    let ok = ThankYouVoice {
        text: "hi".into(),
        voice_type: "v".into(),
        speed: Some(1.0),
        internal_note: 0,
    }
    .into_params();
    integration.validate("synthesize", &ok).unwrap();

    let too_fast = ThankYouVoice {
        text: "hi".into(),
        voice_type: "v".into(),
        speed: Some(9.5),
        internal_note: 0,
    }
    .into_params();
    let error = integration.validate("synthesize", &too_fast).unwrap_err();
    assert!(error.is_invalid_request(), "{error}");
    assert!(error.to_string().contains("speed"), "{error}");

    let wrong_shape = json!({ "text": 5 });
    assert!(integration
        .validate("synthesize", &wrong_shape)
        .unwrap_err()
        .is_invalid_request());
    assert!(integration.validate("nope", &ok).unwrap_err().is_unknown_endpoint());
}

#[test]
fn derived_response_reads_stored_results() {
    let stored = json!({ "url": "https://cdn.example.com/1.mp3", "duration_ms": 900 });
    let file = VoiceFile::from_result(&stored).unwrap();
    assert_eq!(
        file,
        VoiceFile {
            location: "https://cdn.example.com/1.mp3".into(),
            duration_ms: 900
        }
    );
    assert_eq!(Audio::from_result(&stored).unwrap(), audio());
    assert!(
        VoiceFile::from_result(&json!({ "url": "x" })).is_err(),
        "a missing required field is an error"
    );
}

#[test]
fn webhook_payloads_map_to_lifecycle_replies() {
    let integration = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: "http://127.0.0.1:9".into(),
        token: "t".into(),
        webhook_secret: "s".into(),
    })
    .unwrap();
    let done =
        json!({ "task_id": "task-1", "state": "done", "audio_url": "https://cdn.example.com/1.mp3", "duration": 900 });
    let reply = integration.read_webhook(&done).expect("spec has a webhook").unwrap();
    assert_eq!(reply.external_id.as_deref(), Some("task-1"));
    assert_eq!(reply.status, Some(integration_runtime::RemoteStatus::Completed));
    assert_eq!(
        reply.result,
        Some(json!({ "url": "https://cdn.example.com/1.mp3", "duration_ms": 900 }))
    );

    let unknown = json!({ "task_id": "task-1", "state": "exploded" });
    let error = integration.read_webhook(&unknown).unwrap().unwrap_err();
    assert!(error.to_string().contains("exploded"), "{error}");
    assert_eq!(
        volc_tts::VolcTts::descriptor().webhook.as_ref().map(|w| w.path),
        Some("/webhooks/volc-tts")
    );
}

integration_runtime::integration!("tests/specs/numbered.toml");

#[test]
fn request_enums_are_tagged_with_the_endpoint_name_as_the_spec_writes_it() {
    use numbered::{NumberedRequest, Thing};
    let request = NumberedRequest::from(Thing { name: "a".into() });
    assert_eq!(request.endpoint(), "create_2");
    assert_eq!(
        serde_json::to_value(&request).unwrap(),
        json!({ "endpoint": "create_2", "params": { "name": "a" } })
    );
    let params = json!({ "name": "a" });
    assert_eq!(NumberedRequest::from_params("create_2", &params).unwrap(), request);
    for not_a_call in ["create2", "status_v2"] {
        let error = NumberedRequest::from_params(not_a_call, &params).unwrap_err();
        assert!(error.is_unknown_endpoint(), "{not_a_call}: {error}");
    }
    let error = NumberedRequest::from_params("create_2", &json!({ "name": 5 })).unwrap_err();
    assert!(error.is_decode(), "{error}");
    assert!(
        error
            .to_string()
            .contains("stored request parameters do not fit the spec"),
        "{error}"
    );
}
