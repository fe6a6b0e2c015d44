//! Scrubbing credentials out of text and JSON: error messages, and every
//! string of a successful answer (a provider may echo what it was sent), so
//! no credential reaches stored results, events, errors or logs.

use serde_json::Value;

/// The credentials known at one moment (configured and learnt at run time).
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor scrubbing `secrets`; empty ones are left out (they would
    /// match everywhere).
    pub(super) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        Redactor {
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// `text` with every credential replaced by `***`.
    pub(super) fn text(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }

    /// `value` with every string in it (object keys too) redacted; numbers,
    /// booleans and the structure are kept.
    pub(super) fn value(&self, value: Value) -> Value {
        if self.secrets.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|item| self.value(item)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, item)| (self.text(&key), self.value(item)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_string_of_a_value_is_redacted_and_the_rest_kept() {
        let redactor = Redactor::new(["tok".to_owned(), String::new()]);
        let value = json!({"a": "Bearer tok", "tok": [1, "x tok y", {"b": true, "c": null}], "n": 2.5});
        assert_eq!(
            redactor.value(value),
            json!({"a": "Bearer ***", "***": [1, "x *** y", {"b": true, "c": null}], "n": 2.5})
        );
        let nothing = Redactor::new(Vec::new());
        assert_eq!(nothing.value(json!({"tok": "tok"})), json!({"tok": "tok"}));
    }
}
