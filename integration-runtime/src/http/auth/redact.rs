//! Scrubbing credentials out of text and JSON: error messages, and every
//! string of a successful answer (a provider may echo what it was sent), so
//! no credential reaches stored results, events, errors or logs.

use std::sync::PoisonError;

use serde_json::Value;

use crate::http::client::HttpClient;

/// Secrets shorter than this are taken for an echo in answer data only
/// where a whole string equals them: a one-letter test token or a Basic user
/// name such as `admin` is also a common part of ordinary data, which
/// replacing every occurrence would corrupt.
const MIN_DATA_SECRET_CHARS: usize = 8;

/// The credentials known at one moment (configured and learnt at run time).
pub(in crate::http) struct Redactor {
    /// Longest first: a secret that contains a shorter one is replaced
    /// whole, before the shorter one could cut it into unrecognisable parts.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor scrubbing `secrets`; empty ones are left out (they would
    /// match everywhere).
    pub(in crate::http) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.chars().count()));
        Redactor { secrets }
    }

    /// `text` with every credential replaced by `***`.
    pub(in crate::http) fn text(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }

    /// `value` with every credential in its strings (object keys too)
    /// replaced by `***`: secrets of [`MIN_DATA_SECRET_CHARS`] or more
    /// wherever they occur, shorter ones where a whole string equals them.
    /// Numbers, booleans and the structure are kept.
    pub(in crate::http) fn value(&self, value: Value) -> Value {
        if self.secrets.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.data_text(text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|item| self.value(item)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, item)| (self.data_text(key), self.value(item)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// One string of answer data, redacted as [`value`](Self::value) says.
    fn data_text(&self, text: String) -> String {
        if self.secrets.contains(&text) {
            return "***".to_owned();
        }
        self.secrets
            .iter()
            .filter(|secret| secret.chars().count() >= MIN_DATA_SECRET_CHARS)
            .fold(text, |text, secret| {
                if text.contains(secret.as_str()) {
                    text.replace(secret.as_str(), "***")
                } else {
                    text
                }
            })
    }
}

/// How many run-time credentials are remembered for scrubbing.
const LEARNT_SECRETS: usize = 8;

impl HttpClient {
    /// `text` with every credential replaced by `***`.
    pub(in crate::http) fn redact(&self, text: &str) -> String {
        self.redactor().text(text)
    }

    /// A redactor of the credentials known now: configured and learnt.
    pub(in crate::http) fn redactor(&self) -> Redactor {
        let learnt = self.inner.learnt.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Redactor::new(self.inner.secrets.iter().cloned().chain(learnt))
    }

    /// Remembers a credential obtained at run time, to scrub it from messages.
    pub(in crate::http) fn learn(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut learnt = self.inner.learnt.lock().unwrap_or_else(PoisonError::into_inner);
        if !learnt.iter().any(|known| known == secret) {
            if learnt.len() >= LEARNT_SECRETS {
                learnt.remove(0);
            }
            learnt.push(secret.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_string_of_a_value_is_redacted_and_the_rest_kept() {
        let redactor = Redactor::new(["tok-3f9a2c".to_owned(), String::new()]);
        let value =
            json!({"a": "Bearer tok-3f9a2c", "tok-3f9a2c": [1, "x tok-3f9a2c y", {"b": true, "c": null}], "n": 2.5});
        assert_eq!(
            redactor.value(value),
            json!({"a": "Bearer ***", "***": [1, "x *** y", {"b": true, "c": null}], "n": 2.5})
        );
        let nothing = Redactor::new(Vec::new());
        assert_eq!(nothing.value(json!({"tok": "tok"})), json!({"tok": "tok"}));
    }

    #[test]
    fn a_short_secret_does_not_mangle_answer_data() {
        // A one-letter test token, or a Basic user name such as `admin`, is
        // also a common substring of data: only a whole value equal to it is
        // taken for an echo.
        let redactor = Redactor::new(["t".to_owned(), "admin".to_owned(), "long-secret-1".to_owned()]);
        let value = json!({"data": {"task_id": "tts-1", "state": "t", "role": "admins", "who": "admin"}, "echo": "x long-secret-1 y"});
        assert_eq!(
            redactor.value(value),
            json!({"data": {"task_id": "tts-1", "state": "***", "role": "admins", "who": "***"}, "echo": "x *** y"})
        );
        // Error texts are for people: every occurrence goes there.
        assert_eq!(redactor.text("bad t"), "bad ***");
    }
}
