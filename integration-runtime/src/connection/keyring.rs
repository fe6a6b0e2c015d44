//! Sealing credentials for the store: XChaCha20-Poly1305 under keys from
//! the environment, each ciphertext naming the key that sealed it.
//!
//! A sealed value is `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`:
//! the key id lets an old key keep opening what it sealed while new values
//! are sealed under the current key (rotation), and the version lets the
//! format change later. Every seal draws a fresh random 24-byte nonce.
//!
//! The additional authenticated data is the value's place in the store
//! (`SealedPlace`): a ciphertext copied onto another connection's row does
//! not open there, so one customer's credentials can never be made to
//! serve another's calls, even by someone who can write to the database.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
#[cfg(feature = "server")]
use hmac::{Hmac, Mac};
#[cfg(feature = "server")]
use sha2::{Digest, Sha256};

use crate::store::SealedPlace;

/// The variable holding the current key: `<key id>:<base64 of 32 bytes>`.
pub const CREDENTIAL_KEY_ENV: &str = "INTEGRATION_CREDENTIAL_KEY";
/// The variable holding retired keys that still open what they sealed:
/// comma-separated `<key id>:<base64 of 32 bytes>`.
pub const OLD_CREDENTIAL_KEYS_ENV: &str = "INTEGRATION_CREDENTIAL_OLD_KEYS";

const VERSION: &str = "v1";
const NONCE_BYTES: usize = 24;
const KEY_BYTES: usize = 32;

/// Why the keyring could not be built, or could not open a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// A key variable is not set.
    #[error("{var} is not set: connections' credentials are encrypted with it (generate one with `integration keys generate`)")]
    Missing {
        /// The variable.
        var: &'static str,
    },
    /// A key variable is set but not a key.
    #[error("{var} is not a valid key: {problem} (expected `<key id>:<base64 of 32 random bytes>`)")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong with it (never the key itself).
        problem: String,
    },
    /// A value was sealed under a key the keyring does not have.
    #[error("a stored credential is sealed under key `{key_id}`, which is neither {CREDENTIAL_KEY_ENV} nor in {OLD_CREDENTIAL_KEYS_ENV}")]
    UnknownKey {
        /// The key id the value names.
        key_id: String,
    },
    /// The key named by the value does not open it: the key with that id
    /// is not the one that sealed it, or the value was altered or moved.
    #[error("a stored credential does not open with key `{key_id}`: the key is not the one that sealed it, or the value was altered")]
    WrongKey {
        /// The key id the value names.
        key_id: String,
    },
    /// The stored text is not a sealed value.
    #[error("a stored credential is not a sealed value ({problem})")]
    Malformed {
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl KeyringError {
    /// A key variable is not set.
    pub fn is_missing(&self) -> bool {
        matches!(self, KeyringError::Missing { .. })
    }

    /// A key variable does not hold a key.
    pub fn is_invalid(&self) -> bool {
        matches!(self, KeyringError::Invalid { .. })
    }

    /// A stored value could not be opened: unknown key, wrong key, altered.
    pub fn is_unopenable(&self) -> bool {
        matches!(
            self,
            KeyringError::UnknownKey { .. } | KeyringError::WrongKey { .. } | KeyringError::Malformed { .. }
        )
    }
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
    /// The key links are signed with: derived from the key, so that a
    /// signature never reuses the encryption key itself.
    #[cfg(feature = "server")]
    link_key: [u8; 32],
}

/// The keys credentials are sealed with: one current key that seals, and
/// retired ones that only open.
///
/// `Debug` shows the key ids, never a key.
pub struct Keyring {
    current: Key,
    retired: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retired: Vec<&str> = self.retired.iter().map(|key| key.id.as_str()).collect();
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("retired", &retired)
            .finish()
    }
}

fn key_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 32 {
        return Some("the key id must have 1 to 32 characters".to_owned());
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Some(format!("the key id `{id}` may only hold letters, digits, `-` and `_`"));
    }
    None
}

/// Parses `<key id>:<base64>` from `var`.
fn parse_key(var: &'static str, text: &str) -> Result<Key, KeyringError> {
    let invalid = |problem: String| KeyringError::Invalid { var, problem };
    let (id, encoded) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| invalid("there is no `:` between the key id and the key".to_owned()))?;
    if let Some(problem) = key_id_problem(id) {
        return Err(invalid(problem));
    }
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid(format!("the key of `{id}` is not base64")))?;
    if bytes.len() != KEY_BYTES {
        return Err(invalid(format!(
            "the key of `{id}` has {} bytes, not {KEY_BYTES}",
            bytes.len()
        )));
    }
    Key::new(id, &bytes).ok_or_else(|| invalid(format!("the key of `{id}` is not a key")))
}

impl Key {
    fn new(id: &str, bytes: &[u8]) -> Option<Key> {
        Some(Key {
            id: id.to_owned(),
            cipher: XChaCha20Poly1305::new_from_slice(bytes).ok()?,
            #[cfg(feature = "server")]
            link_key: {
                let mut derivation = Sha256::new();
                derivation.update(b"integration-runtime link signing key\0");
                derivation.update(bytes);
                derivation.finalize().into()
            },
        })
    }

    #[cfg(feature = "server")]
    fn mac(&self, message: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.link_key).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac
    }
}

impl Keyring {
    /// The keyring of the process environment: the current key from
    /// [`CREDENTIAL_KEY_ENV`], retired ones from [`OLD_CREDENTIAL_KEYS_ENV`].
    ///
    /// # Errors
    ///
    /// [`KeyringError::is_missing`] when the current key is not set,
    /// [`KeyringError::is_invalid`] (naming the variable) when a key is not
    /// `<key id>:<base64 of 32 bytes>` or two keys share an id.
    pub fn from_env() -> Result<Keyring, KeyringError> {
        Keyring::from_vars(|var| std::env::var(var).ok())
    }

    /// As [`from_env`](Keyring::from_env), reading the variables from `read`.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Keyring::from_env).
    pub fn from_vars(read: impl Fn(&str) -> Option<String>) -> Result<Keyring, KeyringError> {
        let current = read(CREDENTIAL_KEY_ENV)
            .filter(|text| !text.trim().is_empty())
            .ok_or(KeyringError::Missing {
                var: CREDENTIAL_KEY_ENV,
            })?;
        let mut keyring = Keyring {
            current: parse_key(CREDENTIAL_KEY_ENV, &current)?,
            retired: Vec::new(),
        };
        let retired = read(OLD_CREDENTIAL_KEYS_ENV).unwrap_or_default();
        for text in retired.split(',').filter(|text| !text.trim().is_empty()) {
            let key = parse_key(OLD_CREDENTIAL_KEYS_ENV, text)?;
            if keyring.key(&key.id).is_some() {
                return Err(KeyringError::Invalid {
                    var: OLD_CREDENTIAL_KEYS_ENV,
                    problem: format!("the key id `{}` is used twice", key.id),
                });
            }
            keyring.retired.push(key);
        }
        Ok(keyring)
    }

    /// A keyring of one key, `id`, with the 32 bytes `key`.
    ///
    /// # Errors
    ///
    /// [`KeyringError::is_invalid`] when the id or the key length is wrong.
    pub fn new(id: &str, key: &[u8]) -> Result<Keyring, KeyringError> {
        let invalid = |problem: String| KeyringError::Invalid {
            var: CREDENTIAL_KEY_ENV,
            problem,
        };
        if let Some(problem) = key_id_problem(id) {
            return Err(invalid(problem));
        }
        if key.len() != KEY_BYTES {
            return Err(invalid(format!("the key has {} bytes, not {KEY_BYTES}", key.len())));
        }
        let current = Key::new(id, key).ok_or_else(|| invalid("not a key".to_owned()))?;
        Ok(Keyring {
            current,
            retired: Vec::new(),
        })
    }

    /// A new random key as the variables hold it: `<id>:<base64>`.
    ///
    /// # Panics
    ///
    /// When the operating system has no random numbers to give.
    pub fn generate(id: &str) -> String {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).expect("the operating system's random number generator failed");
        format!("{id}:{}", STANDARD.encode(key))
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// The id of the key `sealed` names, if it is a sealed value.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(VERSION), Some(id), Some(_)) => Some(id),
            _ => None,
        }
    }

    fn key(&self, id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|key| key.id == id)
    }

    /// A signature of `message` by the current key: `<key id>.<base64url mac>`.
    #[cfg(feature = "server")]
    pub(crate) fn sign(&self, message: &str) -> String {
        let tag = self.current.mac(message).finalize().into_bytes();
        format!("{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `signature` is a signature of `message` by one of the keys
    /// (a retired key's links stay valid until they expire).
    #[cfg(feature = "server")]
    pub(crate) fn verify(&self, message: &str, signature: &str) -> bool {
        let Some((id, tag)) = signature.split_once('.') else {
            return false;
        };
        let (Some(key), Ok(tag)) = (self.key(id), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        key.mac(message).verify_slice(&tag).is_ok()
    }

    /// Seals `plain` for `place` under the current key.
    pub(crate) fn seal(&self, place: &SealedPlace, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
        let aad = place.context();
        let sealed = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message that fits in memory");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{VERSION}.{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Opens `sealed`, which must have been sealed for `place`.
    ///
    /// # Errors
    ///
    /// [`KeyringError::is_unopenable`]: not a sealed value, sealed under a
    /// key this keyring lacks, or not opening with the key of its id.
    pub(crate) fn open(&self, place: &SealedPlace, sealed: &str) -> Result<Vec<u8>, KeyringError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyringError::Malformed {
                problem: "not `v1.<key id>.<data>`",
            });
        };
        let key = self
            .key(id)
            .ok_or_else(|| KeyringError::UnknownKey { key_id: id.to_owned() })?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyringError::Malformed {
            problem: "the data is not base64",
        })?;
        if bytes.len() < NONCE_BYTES {
            return Err(KeyringError::Malformed {
                problem: "the data is too short",
            });
        }
        let (nonce, message) = bytes.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| KeyringError::Malformed {
            problem: "the nonce is not 24 bytes",
        })?;
        let aad = place.context();
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: message,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyringError::WrongKey { key_id: id.to_owned() })
    }

    /// `sealed`, sealed again under the current key; `None` when it already is.
    ///
    /// # Errors
    ///
    /// As [`open`](Keyring::open).
    pub(crate) fn reseal(&self, place: &SealedPlace, sealed: &str) -> Result<Option<String>, KeyringError> {
        if Keyring::key_id_of(sealed) == Some(self.current.id.as_str()) {
            // Opened anyway: a value under the current id that does not open
            // is reported, not skipped.
            self.open(place, sealed)?;
            return Ok(None);
        }
        let plain = self.open(place, sealed)?;
        Ok(Some(self.seal(place, &plain)))
    }
}

impl SealedPlace {
    /// The additional authenticated data of a value sealed here.
    fn context(&self) -> String {
        match self {
            SealedPlace::Credentials {
                integration,
                connection,
            } => format!("credentials\0{integration}\0{connection}"),
            SealedPlace::Tokens {
                integration,
                connection,
            } => format!("tokens\0{integration}\0{connection}"),
            SealedPlace::Verifier { state_digest } => format!("verifier\0{state_digest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(connection: &str) -> SealedPlace {
        SealedPlace::Credentials {
            integration: "Crm".into(),
            connection: connection.into(),
        }
    }

    fn keyring(vars: &[(&str, String)]) -> Result<Keyring, KeyringError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        Keyring::from_vars(move |var| vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_place_and_hides_its_text() {
        let ring = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("k1"))]).unwrap();
        let sealed = ring.seal(&place("acme"), b"sk-live-acme");
        assert!(sealed.starts_with("v1.k1."), "{sealed}");
        assert!(!sealed.contains("sk-live"));
        assert_eq!(ring.open(&place("acme"), &sealed).unwrap(), b"sk-live-acme");
        // Moved to another customer's row: refused.
        assert_eq!(
            ring.open(&place("globex"), &sealed).unwrap_err(),
            KeyringError::WrongKey { key_id: "k1".into() }
        );
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(sealed, ring.seal(&place("acme"), b"sk-live-acme"));
    }

    #[test]
    fn a_different_key_under_the_same_id_opens_nothing() {
        let first = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("k1"))]).unwrap();
        let other = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("k1"))]).unwrap();
        let sealed = first.seal(&place("acme"), b"secret");
        let error = other.open(&place("acme"), &sealed).unwrap_err();
        assert!(error.is_unopenable());
        assert!(matches!(error, KeyringError::WrongKey { .. }));
    }

    #[test]
    fn retired_keys_open_and_reseal_moves_values_to_the_current_key() {
        let (old, new) = (Keyring::generate("2025"), Keyring::generate("2026"));
        let before = keyring(&[(CREDENTIAL_KEY_ENV, old.clone())]).unwrap();
        let sealed = before.seal(&place("acme"), b"secret");
        let rotated = keyring(&[(CREDENTIAL_KEY_ENV, new.clone()), (OLD_CREDENTIAL_KEYS_ENV, old)]).unwrap();
        assert_eq!(rotated.open(&place("acme"), &sealed).unwrap(), b"secret");
        let resealed = rotated.reseal(&place("acme"), &sealed).unwrap().unwrap();
        assert_eq!(Keyring::key_id_of(&resealed), Some("2026"));
        assert_eq!(rotated.reseal(&place("acme"), &resealed).unwrap(), None);
        // Once the old key is dropped, only the resealed value opens.
        let after = keyring(&[(CREDENTIAL_KEY_ENV, new)]).unwrap();
        assert_eq!(after.open(&place("acme"), &resealed).unwrap(), b"secret");
        assert_eq!(
            after.open(&place("acme"), &sealed).unwrap_err(),
            KeyringError::UnknownKey { key_id: "2025".into() }
        );
    }

    #[test]
    fn bad_variables_are_named_and_never_echoed() {
        assert_eq!(
            keyring(&[]).unwrap_err(),
            KeyringError::Missing {
                var: CREDENTIAL_KEY_ENV
            }
        );
        let short = format!("k1:{}", STANDARD.encode([1u8; 16]));
        let error = keyring(&[(CREDENTIAL_KEY_ENV, short.clone())]).unwrap_err();
        assert!(error.is_invalid());
        let text = error.to_string();
        assert!(text.starts_with(CREDENTIAL_KEY_ENV), "{text}");
        assert!(text.contains("16 bytes"), "{text}");
        assert!(!text.contains(&short[3..]), "the key shows: {text}");
        let error = keyring(&[(CREDENTIAL_KEY_ENV, "no-colon".into())]).unwrap_err();
        assert!(error.is_invalid(), "{error}");
        let twice = Keyring::generate("k1");
        let error = keyring(&[(CREDENTIAL_KEY_ENV, twice.clone()), (OLD_CREDENTIAL_KEYS_ENV, twice)]).unwrap_err();
        assert!(error.to_string().starts_with(OLD_CREDENTIAL_KEYS_ENV), "{error}");
        let ring = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("k1"))]).unwrap();
        assert_eq!(format!("{ring:?}"), r#"Keyring { current: "k1", retired: [] }"#);
    }

    #[test]
    #[cfg(feature = "server")]
    fn signatures_verify_with_any_key_and_only_for_their_message() {
        let (old, new) = (Keyring::generate("a"), Keyring::generate("b"));
        let before = keyring(&[(CREDENTIAL_KEY_ENV, old.clone())]).unwrap();
        let signature = before.sign("start acme");
        assert!(before.verify("start acme", &signature));
        assert!(!before.verify("start globex", &signature));
        let rotated = keyring(&[(CREDENTIAL_KEY_ENV, new), (OLD_CREDENTIAL_KEYS_ENV, old)]).unwrap();
        assert!(rotated.verify("start acme", &signature));
        let stranger = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("a"))]).unwrap();
        assert!(!stranger.verify("start acme", &signature));
        assert!(!before.verify("start acme", "garbage"));
    }

    #[test]
    fn altered_or_foreign_text_is_refused() {
        let ring = keyring(&[(CREDENTIAL_KEY_ENV, Keyring::generate("k1"))]).unwrap();
        let sealed = ring.seal(&place("acme"), b"secret");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(ring.open(&place("acme"), &altered).unwrap_err().is_unopenable());
        assert!(matches!(
            ring.open(&place("acme"), "plain text").unwrap_err(),
            KeyringError::Malformed { .. }
        ));
    }
}
