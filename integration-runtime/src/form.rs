//! `application/x-www-form-urlencoded` bodies with nested keys.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// The application/x-www-form-urlencoded percent-encode set: every byte but
/// `A-Z a-z 0-9 * - . _` (a space becomes `+` separately).
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// Encodes one key or value the way application/x-www-form-urlencoded requires.
fn component(text: &str) -> String {
    text.split(' ')
        .map(|part| utf8_percent_encode(part, FORM).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Encodes a JSON object as an `application/x-www-form-urlencoded` body.
///
/// Nested objects become `a[b]=c`, list items `a[0]=c` (Stripe's convention),
/// bools `true`/`false`, numbers in decimal; nulls are left out. Keys and
/// values are percent-encoded as the format requires, brackets included
/// (`a%5Bb%5D=c`). Anything but an object encodes to the empty string.
///
/// ```
/// use integration_runtime::__private::{encode_form, serde_json::json};
///
/// let body = encode_form(&json!({"amount": 100, "metadata": {"order": "a b"}}));
/// assert_eq!(body, "amount=100&metadata%5Border%5D=a+b");
/// ```
pub fn encode_form(value: &Value) -> String {
    let mut pairs = Vec::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            flatten(key.clone(), value, &mut pairs);
        }
    }
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", component(key), component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn flatten(key: String, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => pairs.push((key, b.to_string())),
        Value::Number(n) => pairs.push((key, n.to_string())),
        Value::String(s) => pairs.push((key, s.clone())),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(format!("{key}[{index}]"), item, pairs);
            }
        }
        Value::Object(map) => {
            for (name, item) in map {
                flatten(format!("{key}[{name}]"), item, pairs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flat_values() {
        assert_eq!(
            sorted_pairs(&encode_form(
                &json!({"amount": 2000, "currency": "usd", "capture": false, "ratio": 0.5, "skip": null})
            )),
            ["amount=2000", "capture=false", "currency=usd", "ratio=0.5"]
        );
    }

    /// The pairs of a body, sorted: object key order depends on serde_json's features.
    fn sorted_pairs(body: &str) -> Vec<&str> {
        let mut pairs: Vec<&str> = body.split('&').collect();
        pairs.sort_unstable();
        pairs
    }

    #[test]
    fn nested_objects_and_lists() {
        let body = json!({
            "metadata": {"order_id": "6735", "gift": true},
            "items": [{"price": "p_1", "quantity": 2}, {"price": "p_2"}],
            "expand": ["customer", null, "invoice"],
        });
        assert_eq!(
            sorted_pairs(&encode_form(&body)),
            [
                "expand%5B0%5D=customer",
                "expand%5B2%5D=invoice",
                "items%5B0%5D%5Bprice%5D=p_1",
                "items%5B0%5D%5Bquantity%5D=2",
                "items%5B1%5D%5Bprice%5D=p_2",
                "metadata%5Bgift%5D=true",
                "metadata%5Border_id%5D=6735",
            ]
        );
        assert_eq!(
            encode_form(&json!({"a": {"b": [{"c": "d"}]}})),
            "a%5Bb%5D%5B0%5D%5Bc%5D=d"
        );
    }

    #[test]
    fn keys_and_values_are_percent_encoded() {
        assert_eq!(
            encode_form(&json!({"a b&c=": "x y+z&w=~é*-._!'()"})),
            "a+b%26c%3D=x+y%2Bz%26w%3D%7E%C3%A9*-._%21%27%28%29"
        );
    }

    #[test]
    fn non_objects_encode_to_nothing() {
        assert_eq!(encode_form(&json!(null)), "");
        assert_eq!(encode_form(&json!([1, 2])), "");
        assert_eq!(encode_form(&json!({})), "");
    }
}
