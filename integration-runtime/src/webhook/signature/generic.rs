//! A generic HMAC-SHA256 of the raw body in one header, hex or base64, after
//! an optional prefix: GitHub's `X-Hub-Signature-256: sha256=<hex>`, and many
//! others. The header may list several signatures separated by commas or
//! spaces (any may match). There is no timestamp: freshness cannot be
//! checked, and the delivery id is a hash of the body.

use reqwest::header::HeaderMap;

use super::{
    any_key_matches, base64_decode, base64_encode, header_map, hex_decode, hex_encode, SignatureError, Verified,
};
use crate::descriptor::SignatureEncoding;

pub(super) fn verify(
    keys: &[Vec<u8>],
    name: &'static str,
    encoding: SignatureEncoding,
    prefix: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, SignatureError> {
    let value = super::header(headers, name)?;
    let candidates: Vec<Vec<u8>> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .filter_map(|item| item.strip_prefix(prefix))
        .filter_map(|encoded| match encoding {
            SignatureEncoding::Hex => hex_decode(encoded),
            SignatureEncoding::Base64 => base64_decode(encoded),
        })
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed(name));
    }
    if !any_key_matches(keys, &[body], &candidates) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified {
        delivery_id: None,
        timestamp: None,
    })
}

/// The header value (`prefix` + encoded HMAC-SHA256 of `body`) of a delivery
/// signed with `secret`.
pub fn signature(secret: &str, encoding: SignatureEncoding, prefix: &str, body: &[u8]) -> String {
    let mac = super::sign(secret.as_bytes(), &[body]);
    let encoded = match encoding {
        SignatureEncoding::Hex => hex_encode(&mac),
        SignatureEncoding::Base64 => base64_encode(&mac),
    };
    format!("{prefix}{encoded}")
}

/// The header of a delivery signed with `secret` (for tests and senders).
pub fn sign(header: &'static str, secret: &str, encoding: SignatureEncoding, prefix: &str, body: &[u8]) -> HeaderMap {
    header_map(&[(header, signature(secret, encoding, prefix, body))])
}

#[cfg(test)]
mod tests {
    use super::super::Verifier;
    use super::*;
    use crate::descriptor::SignatureScheme;
    use crate::secret::Secret;

    const GITHUB: SignatureScheme = SignatureScheme::HmacSha256 {
        header: "x-hub-signature-256",
        encoding: SignatureEncoding::Hex,
        prefix: "sha256=",
    };
    // GitHub's documented example ("Validating webhook deliveries").
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const EXPECTED: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(value: &str) -> HeaderMap {
        header_map(&[("x-hub-signature-256", value.to_owned())])
    }

    #[test]
    fn githubs_example_signs_and_verifies() {
        assert_eq!(signature(SECRET, SignatureEncoding::Hex, "sha256=", BODY), EXPECTED);
        let verifier = Verifier::new(GITHUB, 0, &[Secret::new(SECRET)]).unwrap();
        assert!(verifier.verify(&headers(EXPECTED), BODY, 0).is_ok());
        assert!(verifier
            .verify(
                &headers(&EXPECTED.to_uppercase().replace("SHA256=", "sha256=")),
                BODY,
                0
            )
            .is_ok());
        assert_eq!(
            verifier.verify(&headers(EXPECTED), b"Hello, World?", 0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verifier.verify(&headers(&EXPECTED["sha256=".len()..]), BODY, 0),
            Err(SignatureError::Malformed("x-hub-signature-256"))
        );
        assert_eq!(
            verifier.verify(&HeaderMap::new(), BODY, 0),
            Err(SignatureError::MissingHeader("x-hub-signature-256"))
        );
    }

    #[test]
    fn base64_without_prefix_and_rotation() {
        let scheme = SignatureScheme::HmacSha256 {
            header: "x-signature",
            encoding: SignatureEncoding::Base64,
            prefix: "",
        };
        let value = signature("new", SignatureEncoding::Base64, "", BODY);
        let headers = header_map(&[("x-signature", value)]);
        let verifier = Verifier::new(scheme, 0, &[Secret::new("old,new")]).unwrap();
        assert!(verifier.verify(&headers, BODY, 0).is_ok());
        let only_old = Verifier::new(scheme, 0, &[Secret::new("old")]).unwrap();
        assert_eq!(only_old.verify(&headers, BODY, 0), Err(SignatureError::Mismatch));
    }
}
