//! Reading provider answers with JSON paths pre-parsed at compile time.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::call::RemoteStatus;
use crate::error::{decode_error, ClientError};

/// One segment of a singular JSON path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seg {
    /// An object member: `.name`, `['name']`.
    Key(&'static str),
    /// An array element: `[0]`; negative counts from the end (`[-1]` is the last).
    Index(i64),
}

/// The value at `path`, if there is one.
pub fn lookup<'v>(value: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    path.iter().try_fold(value, |current, seg| match (seg, current) {
        (Seg::Key(key), Value::Object(map)) => map.get(*key),
        (Seg::Index(index), Value::Array(items)) => {
            let len = i64::try_from(items.len()).ok()?;
            let at = if *index < 0 { len + index } else { *index };
            usize::try_from(at).ok().and_then(|at| items.get(at))
        }
        _ => None,
    })
}

/// Where one field of a result entity is read: the field's name in the
/// entity, and the pre-parsed path.
pub type FieldPath = (&'static str, &'static [Seg]);

/// `path` written as a JSON path (`$.data.items[0]['content-type']`), for
/// messages: the text is rebuilt from the segments, so generated code
/// carries each path once.
pub(crate) fn path_text(path: &[Seg]) -> String {
    let mut text = String::from("$");
    for seg in path {
        match seg {
            Seg::Key(key) if is_shorthand(key) => {
                text.push('.');
                text.push_str(key);
            }
            Seg::Key(key) => {
                text.push_str("['");
                text.push_str(&key.replace('\\', "\\\\").replace('\'', "\\'"));
                text.push_str("']");
            }
            Seg::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// Whether `key` can be written `.key` (RFC 9535 member-name-shorthand).
fn is_shorthand(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_alphanumeric() || c == '_' || !c.is_ascii())
}

/// Builds `{field: value}` from the paths (absent / null values left out), then deserializes `T`.
///
/// A missing required field is a decode error naming its JSON path.
pub fn extract<T: DeserializeOwned>(endpoint: &str, body: &Value, fields: &[FieldPath]) -> Result<T, ClientError> {
    let mut object = Map::new();
    for (field, path) in fields {
        match lookup(body, path) {
            None | Some(Value::Null) => {}
            Some(value) => {
                object.insert((*field).to_owned(), value.clone());
            }
        }
    }
    T::deserialize(Value::Object(object)).map_err(|error| {
        let message = error.to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .and_then(|name| fields.iter().find(|(field, _)| *field == name));
        match missing {
            Some((field, path)) => decode_error(
                endpoint,
                format!(
                    "`{}` is missing from the response (needed for field `{field}`)",
                    path_text(path)
                ),
            ),
            None => decode_error(endpoint, format!("the result does not match the spec: {message}")),
        }
    })
}

/// The provider's id at `path`: strings as they are, numbers in decimal; anything else / absent: `None`.
pub fn extract_id(body: &Value, path: &[Seg]) -> Option<String> {
    match lookup(body, path)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The external id at `path` (as [`extract_id`]); absent, a decode error
/// naming the path, so a reply without its declared id fails the call instead
/// of the call getting a made-up id.
pub fn require_id(endpoint: &str, body: &Value, path: &[Seg]) -> Result<String, ClientError> {
    extract_id(body, path).ok_or_else(|| {
        decode_error(
            endpoint,
            format!(
                "the answer carries no external id at `{}` (a string or number)",
                path_text(path)
            ),
        )
    })
}

/// Looks the value at `path` up in `map` (JSON strings, numbers and bools compared by their text).
///
/// Absent or unmapped: a decode error naming the path and the value.
pub fn map_status(
    endpoint: &str,
    body: &Value,
    path: &[Seg],
    map: &[(&str, RemoteStatus)],
) -> Result<RemoteStatus, ClientError> {
    let text = path_text(path);
    let value = match lookup(body, path) {
        None | Some(Value::Null) => {
            return Err(decode_error(
                endpoint,
                format!("the status at `{text}` is missing from the response"),
            ))
        }
        Some(value) => value,
    };
    let key = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(decode_error(
                endpoint,
                format!("the status at `{text}` is not a string, number or bool: {other}"),
            ))
        }
    };
    map.iter()
        .find(|(external, _)| *external == key)
        .map(|(_, status)| *status)
        .ok_or_else(|| {
            let known: Vec<String> = map.iter().map(|(external, _)| format!("`{external}`")).collect();
            decode_error(
                endpoint,
                format!(
                    "the status `{key}` at `{text}` is not in the spec's status map (known: {})",
                    known.join(", ")
                ),
            )
        })
}

/// The provider's message at `path`: a string as it is, other values as JSON text;
/// absent, null or empty: `None`.
pub fn extract_message(body: &Value, path: &[Seg]) -> Option<String> {
    match lookup(body, path)? {
        Value::Null => None,
        Value::String(text) if text.trim().is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    fn body() -> Value {
        json!({
            "data": {"task_id": "t-42", "num_id": 1234567890123_i64, "items": [{"n": 1}, {"n": 2}, {"n": 3}]},
            "state": 2,
            "ok": true,
            "message": "quota exceeded",
            "nothing": null,
            "detail": {"code": 7},
        })
    }

    #[test]
    fn lookup_follows_keys_and_indices() {
        let body = body();
        assert_eq!(lookup(&body, &[]), Some(&body));
        assert_eq!(
            lookup(&body, &[Seg::Key("data"), Seg::Key("task_id")]),
            Some(&json!("t-42"))
        );
        let items = [Seg::Key("data"), Seg::Key("items")];
        assert_eq!(
            lookup(&body, &[items[0], items[1], Seg::Index(0), Seg::Key("n")]),
            Some(&json!(1))
        );
        assert_eq!(
            lookup(&body, &[items[0], items[1], Seg::Index(-1), Seg::Key("n")]),
            Some(&json!(3))
        );
        assert_eq!(
            lookup(&body, &[items[0], items[1], Seg::Index(-3), Seg::Key("n")]),
            Some(&json!(1))
        );
        assert_eq!(lookup(&body, &[items[0], items[1], Seg::Index(-4)]), None);
        assert_eq!(lookup(&body, &[items[0], items[1], Seg::Index(3)]), None);
        assert_eq!(lookup(&body, &[Seg::Key("data"), Seg::Index(0)]), None);
        assert_eq!(lookup(&body, &[Seg::Key("absent")]), None);
        assert_eq!(lookup(&body, &[Seg::Key("message"), Seg::Key("x")]), None);
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Audio {
        id: String,
        first: i64,
        note: Option<String>,
    }

    static FIELDS: [FieldPath; 3] = [
        ("id", &[Seg::Key("data"), Seg::Key("task_id")]),
        (
            "first",
            &[Seg::Key("data"), Seg::Key("items"), Seg::Index(0), Seg::Key("n")],
        ),
        ("note", &[Seg::Key("nothing")]),
    ];

    #[test]
    fn path_text_writes_the_segments_as_a_json_path() {
        assert_eq!(path_text(&[]), "$");
        assert_eq!(path_text(FIELDS[1].1), "$.data.items[0].n");
        assert_eq!(
            path_text(&[
                Seg::Key("content-type"),
                Seg::Index(-1),
                Seg::Key("it's"),
                Seg::Key("_ok"),
                Seg::Key("9")
            ]),
            "$['content-type'][-1]['it\\'s']._ok['9']"
        );
    }

    #[test]
    fn extract_builds_the_entity() {
        let audio: Audio = extract("query", &body(), &FIELDS).unwrap();
        assert_eq!(
            audio,
            Audio {
                id: "t-42".into(),
                first: 1,
                note: None
            }
        );
    }

    #[test]
    fn extract_names_the_path_of_a_missing_field() {
        let error = extract::<Audio>("query", &json!({"data": {"items": [{"n": 1}]}}), &FIELDS).unwrap_err();
        assert!(error.is_decode());
        assert_eq!(
            error.to_string(),
            "endpoint `query`: could not read the provider's answer: `$.data.task_id` is missing from the response (needed for field `id`)"
        );
    }

    #[test]
    fn extract_reports_type_mismatches() {
        let error =
            extract::<Audio>("query", &json!({"data": {"task_id": 5, "items": [{"n": 1}]}}), &FIELDS).unwrap_err();
        assert!(error.is_decode());
        assert!(
            error
                .to_string()
                .contains("the result does not match the spec: invalid type: integer `5`, expected a string"),
            "{error}"
        );
    }

    #[test]
    fn require_id_names_the_path_of_a_missing_id() {
        let body = body();
        let id = require_id("q", &body, &[Seg::Key("data"), Seg::Key("task_id")]).unwrap();
        assert_eq!(id, "t-42");
        let error = require_id("q", &body, &[Seg::Key("ok")]).unwrap_err();
        assert!(error.is_decode());
        assert_eq!(
            error.to_string(),
            "endpoint `q`: could not read the provider's answer: the answer carries no external id at `$.ok` (a string or number)"
        );
    }

    #[test]
    fn extract_id_reads_strings_and_numbers() {
        let body = body();
        assert_eq!(
            extract_id(&body, &[Seg::Key("data"), Seg::Key("task_id")]).as_deref(),
            Some("t-42")
        );
        assert_eq!(
            extract_id(&body, &[Seg::Key("data"), Seg::Key("num_id")]).as_deref(),
            Some("1234567890123")
        );
        assert_eq!(extract_id(&body, &[Seg::Key("ok")]), None);
        assert_eq!(extract_id(&body, &[Seg::Key("nothing")]), None);
        assert_eq!(extract_id(&body, &[Seg::Key("absent")]), None);
    }

    const MAP: [(&str, RemoteStatus); 4] = [
        ("1", RemoteStatus::Processing),
        ("2", RemoteStatus::Completed),
        ("true", RemoteStatus::Completed),
        ("quota exceeded", RemoteStatus::Failed),
    ];

    #[test]
    fn map_status_compares_by_text() {
        let body = body();
        assert_eq!(
            map_status("q", &body, &[Seg::Key("state")], &MAP).unwrap(),
            RemoteStatus::Completed
        );
        assert_eq!(
            map_status("q", &body, &[Seg::Key("ok")], &MAP).unwrap(),
            RemoteStatus::Completed
        );
        assert_eq!(
            map_status("q", &body, &[Seg::Key("message")], &MAP).unwrap(),
            RemoteStatus::Failed
        );
    }

    #[test]
    fn map_status_names_the_path_and_value() {
        let error = map_status("q", &json!({"state": 9}), &[Seg::Key("state")], &MAP).unwrap_err();
        assert!(error.is_decode());
        assert_eq!(
            error.to_string(),
            "endpoint `q`: could not read the provider's answer: the status `9` at `$.state` is not in the spec's status map (known: `1`, `2`, `true`, `quota exceeded`)"
        );
        let missing = map_status("q", &json!({}), &[Seg::Key("state")], &MAP).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "endpoint `q`: could not read the provider's answer: the status at `$.state` is missing from the response"
        );
        let object = map_status("q", &json!({"state": {"a": 1}}), &[Seg::Key("state")], &MAP).unwrap_err();
        assert!(object
            .to_string()
            .ends_with("the status at `$.state` is not a string, number or bool: {\"a\":1}"));
    }

    #[test]
    fn extract_message_reads_text_or_json() {
        let body = body();
        assert_eq!(
            extract_message(&body, &[Seg::Key("message")]).as_deref(),
            Some("quota exceeded")
        );
        assert_eq!(
            extract_message(&body, &[Seg::Key("detail")]).as_deref(),
            Some("{\"code\":7}")
        );
        assert_eq!(extract_message(&body, &[Seg::Key("nothing")]), None);
        assert_eq!(extract_message(&json!({"m": " "}), &[Seg::Key("m")]), None);
        assert_eq!(extract_message(&body, &[Seg::Key("absent")]), None);
    }
}
