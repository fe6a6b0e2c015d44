//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>,v1=<hex>,...`; the
//! HMAC-SHA256 of `{t}.{body}` keyed by the raw secret (`whsec_...` as it is),
//! hex-encoded. Several `v1` entries appear while Stripe rolls a secret;
//! other schemes (`v0`) are ignored. The delivery id is the event's `id` in
//! the payload, read after verification.

use reqwest::header::HeaderMap;

use super::{any_key_matches, header, header_map, hex_decode, hex_encode, SignatureError, Verified, Window};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

pub(super) fn verify(
    keys: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    window: Window,
) -> Result<Verified, SignatureError> {
    let value = header(headers, SIGNATURE_HEADER)?;
    let mut timestamp_text = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) if timestamp_text.is_none() => timestamp_text = Some(t),
            Some(("v1", signature)) => candidates.extend(hex_decode(signature)),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or(SignatureError::Malformed(SIGNATURE_HEADER))?;
    let timestamp: i64 = timestamp_text
        .parse()
        .map_err(|_| SignatureError::Malformed(SIGNATURE_HEADER))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(SIGNATURE_HEADER));
    }
    window.check(timestamp)?;
    if !any_key_matches(keys, &[timestamp_text.as_bytes(), b".", body], &candidates) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified {
        delivery_id: None,
        timestamp: Some(timestamp),
    })
}

/// The `Stripe-Signature` value of a delivery signed with `secret` at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mac = super::sign(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex_encode(&mac))
}

/// The header of a delivery signed with `secret` (for tests and senders).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    header_map(&[(SIGNATURE_HEADER, signature(secret, timestamp, body))])
}

#[cfg(test)]
mod tests {
    use super::super::Verifier;
    use super::*;
    use crate::descriptor::SignatureScheme;
    use crate::secret::Secret;

    const SECRET: &str = "whsec_test_secret";
    const T: i64 = 1_492_774_577;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    fn verifier(secrets: &str) -> Verifier {
        Verifier::new(SignatureScheme::Stripe, 300, &[Secret::new(secrets)]).unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        header_map(&[(SIGNATURE_HEADER, value.to_owned())])
    }

    #[test]
    fn signature_follows_stripes_documented_scheme() {
        // Computed independently with openssl: printf '1492774577.{"id":"evt_1","object":"event"}' |
        //   openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            signature(SECRET, T, BODY),
            "t=1492774577,v1=654b43d3508ecadb3f8cefc4bc7d3d2bdc5ba9e03bf2c89b2d0657a8e24e4543"
        );
    }

    #[test]
    fn verifies_with_any_v1_and_any_secret() {
        let good = signature(SECRET, T, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        assert!(verifier(SECRET).verify(&headers(&good), BODY, T).is_ok());
        let rolled = format!("t={T},v0=00,v1={},v1={v1}", "ab".repeat(32));
        assert!(verifier(SECRET).verify(&headers(&rolled), BODY, T + 10).is_ok());
        assert!(verifier(&format!("whsec_old,{SECRET}"))
            .verify(&headers(&good), BODY, T)
            .is_ok());
        assert_eq!(
            verifier("whsec_other").verify(&headers(&good), BODY, T),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bad_headers_and_times_are_rejected() {
        let v = verifier(SECRET);
        let good = signature(SECRET, T, BODY);
        assert_eq!(v.verify(&headers(&good), b"{}", T), Err(SignatureError::Mismatch));
        assert_eq!(
            v.verify(&HeaderMap::new(), BODY, T),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            v.verify(&headers("v1=abcd"), BODY, T),
            Err(SignatureError::Malformed(SIGNATURE_HEADER))
        );
        assert_eq!(
            v.verify(&headers(&format!("t={T}")), BODY, T),
            Err(SignatureError::Malformed(SIGNATURE_HEADER))
        );
        assert_eq!(v.verify(&headers(&good), BODY, T + 301), Err(SignatureError::Stale));
        assert_eq!(v.verify(&headers(&good), BODY, T - 301), Err(SignatureError::Future));
    }
}
