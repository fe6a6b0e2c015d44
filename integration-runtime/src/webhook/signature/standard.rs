//! [Standard Webhooks](https://www.standardwebhooks.com/): headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (space-separated `v1,<base64>` signatures, several during the sender's
//! rotation); the secret is `whsec_` followed by the base64 key; the signed
//! content is `{id}.{timestamp}.{body}`.

use reqwest::header::HeaderMap;

use super::{any_key_matches, base64_decode, base64_encode, header, header_map, SignatureError, Verified, Window};

/// The delivery id header.
pub const ID_HEADER: &str = "webhook-id";
/// The timestamp header (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The key inside a `whsec_...` secret (the prefix is optional).
pub(super) fn key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64_decode(encoded).filter(|key| !key.is_empty())
}

pub(super) fn verify(
    keys: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    window: Window,
) -> Result<Verified, SignatureError> {
    let id = header(headers, ID_HEADER)?;
    let timestamp_text = header(headers, TIMESTAMP_HEADER)?;
    let signatures = header(headers, SIGNATURE_HEADER)?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| SignatureError::Malformed(TIMESTAMP_HEADER))?;
    // Unknown versions (`v1a,...`) are skipped, as the specification says.
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(base64_decode)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(SIGNATURE_HEADER));
    }
    window.check(timestamp)?;
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body];
    if !any_key_matches(keys, &parts, &candidates) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified {
        delivery_id: Some(id.to_owned()),
        timestamp: Some(timestamp),
    })
}

/// The `webhook-signature` value (`v1,<base64>`) of a delivery signed with
/// `secret` (`whsec_...`); `None` when the secret is not valid.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key(secret)?;
    let timestamp = timestamp.to_string();
    let mac = super::sign(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    Some(format!("v1,{}", base64_encode(&mac)))
}

/// The three headers of a delivery signed with `secret` (for tests and
/// senders); `None` when the secret is not valid.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<HeaderMap> {
    let signature = signature(secret, id, timestamp, body)?;
    Some(header_map(&[
        (ID_HEADER, id.to_owned()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, signature),
    ]))
}

#[cfg(test)]
mod tests {
    use super::super::Verifier;
    use super::*;
    use crate::descriptor::SignatureScheme;
    use crate::secret::Secret;

    // The example of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn verifier(secrets: &str) -> Verifier {
        Verifier::new(SignatureScheme::StandardWebhooks, 300, &[Secret::new(secrets)]).unwrap()
    }

    fn headers(signature: &str) -> HeaderMap {
        header_map(&[
            (ID_HEADER, ID.to_owned()),
            (TIMESTAMP_HEADER, TIMESTAMP.to_string()),
            (SIGNATURE_HEADER, signature.to_owned()),
        ])
    }

    #[test]
    fn known_vector_signs_and_verifies() {
        assert_eq!(signature(SECRET, ID, TIMESTAMP, BODY).as_deref(), Some(EXPECTED));
        let verified = verifier(SECRET).verify(&headers(EXPECTED), BODY, TIMESTAMP).unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some(ID));
        assert_eq!(verified.timestamp, Some(TIMESTAMP));
    }

    #[test]
    fn any_of_several_signatures_and_secrets_matches() {
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let several = format!("v1,AAAA v1a,xyz {EXPECTED}");
        assert!(verifier(SECRET).verify(&headers(&several), BODY, TIMESTAMP).is_ok());
        let rotated = format!("{other}, {SECRET}");
        assert!(verifier(&rotated).verify(&headers(EXPECTED), BODY, TIMESTAMP).is_ok());
        assert_eq!(
            verifier(other).verify(&headers(EXPECTED), BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampering_and_bad_headers_are_rejected() {
        let v = verifier(SECRET);
        let tampered = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert_eq!(
            v.verify(&headers(EXPECTED), tampered, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        let mut wrong_id = headers(EXPECTED);
        wrong_id.insert(ID_HEADER, "msg_other".parse().unwrap());
        assert_eq!(v.verify(&wrong_id, BODY, TIMESTAMP), Err(SignatureError::Mismatch));
        let mut missing = headers(EXPECTED);
        missing.remove(TIMESTAMP_HEADER);
        assert_eq!(
            v.verify(&missing, BODY, TIMESTAMP),
            Err(SignatureError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            v.verify(&headers("v2,abc"), BODY, TIMESTAMP),
            Err(SignatureError::Malformed(SIGNATURE_HEADER))
        );
        assert_eq!(
            v.verify(&headers(EXPECTED), BODY, TIMESTAMP + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v.verify(&headers(EXPECTED), BODY, TIMESTAMP - 301),
            Err(SignatureError::Future)
        );
    }
}
