//! Any headers and body: webhook signature verification (all three schemes)
//! and payload mapping through a generated integration's `read_webhook`
//! never panic; a delivery signed with the right secret always verifies.
//!
//! Input layout: byte 0 chooses the scheme (bits 0-1) and whether the
//! harness signs the body itself (bit 2), so mutations also reach the
//! payload mapping behind a valid signature; then `name: value` header
//! lines up to an empty line; the rest is the body.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use integration_runtime::webhook::signature::{generic, standard, stripe, Verifier};
use integration_runtime::{Integration, Secret, SignatureEncoding, SignatureScheme};
use libfuzzer_sys::fuzz_target;

integration_runtime::integration!("../specs/volc_tts.toml");
integration_runtime::integration!("../specs/payments.toml");

const STANDARD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PLAIN_SECRET: &str = "whsec_fuzz_plain_secret";
const NOW: i64 = 1_700_000_000;
const GENERIC: SignatureScheme = SignatureScheme::HmacSha256 {
    header: "x-hub-signature-256",
    encoding: SignatureEncoding::Hex,
    prefix: "sha256=",
};

struct Fixture {
    standard: Verifier,
    stripe: Verifier,
    generic: Verifier,
    tts: volc_tts::VolcTts,
    payments: payments::Payments,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        standard: Verifier::new(SignatureScheme::StandardWebhooks, 300, &[Secret::new(STANDARD_SECRET)]).unwrap(),
        stripe: Verifier::new(SignatureScheme::Stripe, 300, &[Secret::new(PLAIN_SECRET)]).unwrap(),
        generic: Verifier::new(GENERIC, 0, &[Secret::new(PLAIN_SECRET)]).unwrap(),
        tts: volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
            base_url: "http://127.0.0.1:9".into(),
            token: Secret::new("t"),
            webhook_secret: Secret::new(STANDARD_SECRET),
        })
        .unwrap(),
        payments: payments::Payments::new(payments::PaymentsConfig {
            base_url: "http://127.0.0.1:9".into(),
            token: Secret::new("t"),
            webhook_secret: Secret::new(PLAIN_SECRET),
        })
        .unwrap(),
    })
}

/// Splits the input into the control byte, headers and body.
fn split(data: &[u8]) -> Option<(u8, HeaderMap, &[u8])> {
    let (&control, rest) = data.split_first()?;
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[][..], rest),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    Some((control, headers, body))
}

fuzz_target!(|data: &[u8]| {
    let Some((control, mut headers, body)) = split(data) else {
        return;
    };
    let f = fixture();
    let sign = control & 4 != 0;
    let (verifier, integration): (&Verifier, &dyn Integration) = match control & 3 {
        0 | 3 => {
            if sign {
                for (name, value) in &standard::sign(STANDARD_SECRET, "msg_fuzz", NOW, body).unwrap() {
                    headers.insert(name.clone(), value.clone());
                }
            }
            (&f.standard, &f.tts)
        }
        1 => {
            if sign {
                for (name, value) in &stripe::sign(PLAIN_SECRET, NOW, body) {
                    headers.insert(name.clone(), value.clone());
                }
            }
            (&f.stripe, &f.payments)
        }
        _ => {
            if sign {
                let signed = generic::sign(
                    "x-hub-signature-256",
                    PLAIN_SECRET,
                    SignatureEncoding::Hex,
                    "sha256=",
                    body,
                );
                for (name, value) in &signed {
                    headers.insert(name.clone(), value.clone());
                }
            }
            (&f.generic, &f.tts)
        }
    };
    let verified = verifier.verify(&headers, body, NOW);
    if sign {
        assert!(
            verified.is_ok(),
            "a correctly signed delivery was refused: {verified:?}"
        );
    }
    // The other schemes see the same request too: none may panic.
    let _ = f.standard.verify(&headers, body, NOW);
    let _ = f.stripe.verify(&headers, body, NOW);
    let _ = f.generic.verify(&headers, body, NOW);
    if let Err(error) = &verified {
        let _ = error.reason();
        let _ = error.to_string();
    }
    // Payload mapping (the receiver maps only verified deliveries, but the
    // mapping must be total on any JSON).
    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) {
        for integration in [integration, &f.tts as &dyn Integration, &f.payments as &dyn Integration] {
            match integration.read_webhook(&payload) {
                Some(Ok(reply)) => {
                    let _ = reply.external_id.as_deref();
                }
                Some(Err(error)) => {
                    let _ = error.to_string();
                }
                None => {}
            }
        }
    }
});
