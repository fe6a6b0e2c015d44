//! Webhook signature verification, one module per scheme.
//!
//! Every scheme is an HMAC-SHA256 over some signed content; they differ only
//! in where the signature, the timestamp and the delivery id travel, how the
//! signature is encoded and how the secret is written. Each scheme module
//! parses its headers and hands the signed parts to the one shared helper
//! (`any_key_matches`), which compares in constant time
//! (`hmac`'s `verify_slice`).
//!
//! - [`standard`]: [Standard Webhooks](https://www.standardwebhooks.com/)
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`;
//!   `whsec_<base64>` secrets; signed content `id.timestamp.body`).
//! - [`stripe`]: Stripe (`Stripe-Signature: t=<unix>,v1=<hex>,...`; the raw
//!   secret is the key; signed content `t.body`).
//! - [`generic`]: an HMAC-SHA256 of the raw body in one header, hex or base64,
//!   with an optional prefix (GitHub's `X-Hub-Signature-256: sha256=<hex>`).
//!   There is no timestamp, so no freshness check: replays are caught only by
//!   the delivery key (a hash of the body).
//!
//! **Rotation.** A [`Verifier`] holds every active secret (the environment
//! variable may hold several, comma-separated, a comma inside a secret
//! written `\,`); a signature made with any of them is accepted, and a
//! header may carry several signatures (the sender's own rotation), any of
//! which may match.
//!
//! **Freshness.** The timestamped schemes reject a timestamp more than
//! `tolerance_s` seconds in the past (stale: a replay) or in the future.
//!
//! Verification errors name what was wrong with the *request* (a missing
//! header, a stale timestamp, no matching signature) and never anything about
//! the secrets.

pub mod generic;
pub mod standard;
pub mod stripe;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

use crate::descriptor::SignatureScheme;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was not accepted.
///
/// The `Display` text is safe to send back to the sender: it describes the
/// request, never the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// A header the scheme needs is absent (or not visible ASCII).
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's format.
    Malformed(&'static str),
    /// The signed timestamp is older than the tolerance allows (a replay?).
    Stale,
    /// The signed timestamp is further in the future than the tolerance allows.
    Future,
    /// No signature matches any active secret.
    Mismatch,
}

impl SignatureError {
    /// A short machine-readable reason: `missing_header`, `malformed_header`,
    /// `stale_timestamp`, `future_timestamp` or `signature_mismatch`.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_header",
            SignatureError::Malformed(_) => "malformed_header",
            SignatureError::Stale => "stale_timestamp",
            SignatureError::Future => "future_timestamp",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::MissingHeader(name) => write!(f, "the `{name}` header is missing"),
            SignatureError::Malformed(name) => write!(f, "the `{name}` header is malformed"),
            SignatureError::Stale => f.write_str("the signed timestamp is too old"),
            SignatureError::Future => f.write_str("the signed timestamp is too far in the future"),
            SignatureError::Mismatch => f.write_str("no signature matches"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// A secret that cannot be used with its scheme (a Standard Webhooks secret
/// that is not base64, or no secret at all).
///
/// Its message names the environment variable or position, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSecret(String);

/// What a verified delivery says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's id of the delivery, when the scheme carries one in its
    /// headers (Standard Webhooks' `webhook-id`).
    pub delivery_id: Option<String>,
    /// The signed timestamp (Unix seconds), for the timestamped schemes.
    pub timestamp: Option<i64>,
}

/// Checks deliveries of one scheme against every active secret.
///
/// ```
/// use integration_runtime::webhook::signature::{standard, Verifier};
/// use integration_runtime::{Secret, SignatureScheme};
///
/// let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// let verifier =
///     Verifier::new(SignatureScheme::StandardWebhooks, 300, &[Secret::new(secret)]).unwrap();
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
/// let headers = standard::sign(secret, "msg_1", 1_700_000_000, body).unwrap();
/// let verified = verifier.verify(&headers, body, 1_700_000_010).unwrap();
/// assert_eq!(verified.delivery_id.as_deref(), Some("msg_1"));
/// ```
#[derive(Clone)]
pub struct Verifier {
    scheme: SignatureScheme,
    tolerance_s: u64,
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("tolerance_s", &self.tolerance_s)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting signatures made with any of `secrets`.
    ///
    /// Each [`Secret`] may itself hold several comma-separated secrets (as the
    /// environment variable does); blanks around them are ignored. A comma
    /// that belongs to a secret is written `\,`, and a backslash right
    /// before a separating comma `\\`.
    pub fn new(scheme: SignatureScheme, tolerance_s: u64, secrets: &[Secret]) -> Result<Self, InvalidSecret> {
        let mut keys = Vec::new();
        for (position, secret) in split_secrets(secrets).iter().enumerate() {
            let secret = secret.expose();
            let key = match scheme {
                SignatureScheme::StandardWebhooks => standard::key(secret).ok_or_else(|| {
                    InvalidSecret(format!(
                        "secret #{} is not a Standard Webhooks secret (`whsec_` followed by base64)",
                        position + 1
                    ))
                })?,
                SignatureScheme::Stripe | SignatureScheme::HmacSha256 { .. } => secret.as_bytes().to_vec(),
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(InvalidSecret("no webhook secret is configured".to_owned()));
        }
        Ok(Verifier {
            scheme,
            tolerance_s,
            keys,
        })
    }

    /// The scheme checked.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// How many secrets are active.
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks one delivery's headers and raw body; `now` is the current
    /// Unix time in seconds (for the freshness check).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, SignatureError> {
        let window = Window {
            now,
            tolerance_s: self.tolerance_s,
        };
        match self.scheme {
            SignatureScheme::StandardWebhooks => standard::verify(&self.keys, headers, body, window),
            SignatureScheme::Stripe => stripe::verify(&self.keys, headers, body, window),
            SignatureScheme::HmacSha256 {
                header,
                encoding,
                prefix,
            } => generic::verify(&self.keys, header, encoding, prefix, headers, body),
        }
    }
}

/// The accepted range of signed timestamps.
#[derive(Debug, Clone, Copy)]
struct Window {
    now: i64,
    tolerance_s: u64,
}

impl Window {
    fn check(self, timestamp: i64) -> Result<(), SignatureError> {
        let tolerance = i64::try_from(self.tolerance_s).unwrap_or(i64::MAX);
        if timestamp < self.now.saturating_sub(tolerance) {
            Err(SignatureError::Stale)
        } else if timestamp > self.now.saturating_add(tolerance) {
            Err(SignatureError::Future)
        } else {
            Ok(())
        }
    }
}

/// Every non-blank secret of every comma-separated list (the rotation
/// syntax: `new,old`), blanks around each trimmed.
///
/// A comma inside a secret is escaped as `\,` and a backslash before a
/// separating comma as `\\`; any other backslash is kept as it is, so a
/// list written before escaping existed reads as it did unless one of its
/// secrets held `\\` or ended in `\`. Standard Webhooks and Stripe secrets
/// (`whsec_` and base64) never need an escape.
fn split_secrets(secrets: &[Secret]) -> Vec<Secret> {
    let mut split = Vec::new();
    for list in secrets {
        let mut current = String::new();
        let mut chars = list.expose().chars();
        while let Some(c) = chars.next() {
            match c {
                ',' => push_trimmed(&mut split, &mut current),
                '\\' => match chars.clone().next() {
                    Some(escaped @ (',' | '\\')) => {
                        current.push(escaped);
                        chars.next();
                    }
                    _ => current.push(c),
                },
                _ => current.push(c),
            }
        }
        push_trimmed(&mut split, &mut current);
    }
    split
}

/// Moves `current`, trimmed, to `split` unless blank.
fn push_trimmed(split: &mut Vec<Secret>, current: &mut String) {
    let secret = current.trim();
    if !secret.is_empty() {
        split.push(Secret::new(secret));
    }
    current.clear();
}

/// The one HMAC helper: whether any `candidate` signature is the
/// HMAC-SHA256, under any of `keys`, of the concatenation of `parts`.
///
/// Comparison is constant-time (`verify_slice`); every pair is tried, so the
/// time taken does not depend on which secret matched.
fn any_key_matches(keys: &[Vec<u8>], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    let mut matched = false;
    for key in keys {
        let mac = mac_of(key, parts);
        for candidate in candidates {
            matched |= mac.clone().verify_slice(candidate).is_ok();
        }
    }
    matched
}

/// The HMAC-SHA256 of the concatenation of `parts` under `key` (signing).
fn sign(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    mac_of(key, parts).finalize().into_bytes().into()
}

fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The value of header `name`, if present and visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(SignatureError::MissingHeader(name))
}

/// Lowercase hexadecimal.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Hexadecimal of either case; `None` on an odd length or a non-hex digit.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Builds a header map from name/value pairs (signing helpers).
fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        // `from_bytes` lowercases, so names from specs (`X-Hub-Signature-256`) work.
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, value.parse()) {
            headers.insert(name, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_encode(&[0, 0x7f, 0xff]), "007fff");
        assert_eq!(hex_decode("007FfF"), Some(vec![0, 0x7f, 0xff]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn secrets_are_split_on_commas_not_escaped_ones() {
        let split = |lists: &[&str]| -> Vec<String> {
            let secrets: Vec<Secret> = lists.iter().map(|list| Secret::new(*list)).collect();
            split_secrets(&secrets)
                .iter()
                .map(|secret| secret.expose().to_owned())
                .collect()
        };
        assert_eq!(split(&[" a , b,,", "c"]), ["a", "b", "c"]);
        assert_eq!(split(&[r"a\,b, c"]), ["a,b", "c"]);
        assert_eq!(split(&[r"a\\,b"]), [r"a\", "b"]);
        assert_eq!(split(&[r"a\b\"]), [r"a\b\"]);
        let error = Verifier::new(SignatureScheme::Stripe, 300, &[Secret::new(" , ")]).unwrap_err();
        assert_eq!(error.to_string(), "no webhook secret is configured");
    }

    #[test]
    fn invalid_standard_secrets_are_reported_without_their_value() {
        let error = Verifier::new(
            SignatureScheme::StandardWebhooks,
            300,
            &[Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD,whsec_%%%notbase64")],
        )
        .unwrap_err();
        assert!(error.to_string().contains("secret #2"), "{error}");
        assert!(!error.to_string().contains("notbase64"), "{error}");
    }

    #[test]
    fn window_rejects_both_sides() {
        let window = Window {
            now: 1000,
            tolerance_s: 10,
        };
        assert_eq!(window.check(990), Ok(()));
        assert_eq!(window.check(1010), Ok(()));
        assert_eq!(window.check(989), Err(SignatureError::Stale));
        assert_eq!(window.check(1011), Err(SignatureError::Future));
    }

    #[test]
    fn debug_redacts_keys() {
        let verifier = Verifier::new(SignatureScheme::Stripe, 1, &[Secret::new("sk_secret")]).unwrap();
        let text = format!("{verifier:?}");
        assert!(!text.contains("sk_secret") && text.contains("redacted"), "{text}");
    }
}
