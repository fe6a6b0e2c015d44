//! Building the parts of a request: values, paths and JSON bodies.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::{Map, Value};

/// Every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The JSON of `value`; `Null` in the (for generated types impossible) case that it fails.
pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A value as text in a path, query or header: strings unquoted, others as JSON text.
pub fn display_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Builds a request path from literal pieces and parameters.
///
/// ```
/// use integration_runtime::__private::{PathBuilder, serde_json::json};
///
/// let mut path = PathBuilder::new();
/// path.literal("/files/");
/// path.param(&json!("a/b c"));
/// assert_eq!(path.finish(), "/files/a%2Fb%20c");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathBuilder(String);

impl PathBuilder {
    /// An empty path.
    pub fn new() -> Self {
        PathBuilder(String::new())
    }

    /// Appends a piece of the spec's path as it is.
    pub fn literal(&mut self, s: &'static str) {
        self.0.push_str(s);
    }

    /// Appends a parameter as ONE path segment: its [`display_value`], with every
    /// byte but the unreserved characters percent-encoded (`/`, `?`, `#`, `%` included).
    pub fn param(&mut self, value: &Value) {
        self.0.extend(utf8_percent_encode(&display_value(value), PATH_SEGMENT));
    }

    /// The path.
    pub fn finish(self) -> String {
        self.0
    }
}

/// A JSON object body built field by field, with dotted keys as nesting.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody(Value);

impl Default for JsonBody {
    fn default() -> Self {
        JsonBody::new()
    }
}

impl JsonBody {
    /// An empty object.
    pub fn new() -> Self {
        JsonBody(Value::Object(Map::new()))
    }

    /// Sets `value` at the key path, creating intermediate objects (and replacing
    /// whatever non-object stood in their place). An empty path replaces the whole body.
    pub fn set(&mut self, path: &[&str], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            self.0 = value;
            return;
        };
        let mut current = &mut self.0;
        for key in parents {
            current = object(current).entry(*key).or_insert_with(|| Value::Object(Map::new()));
        }
        object(current).insert((*last).to_owned(), value);
    }

    /// The body.
    pub fn into_value(self) -> Value {
        self.0
    }
}

/// `value` as an object, replacing it by an empty one if it is something else.
fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("the value was just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn display_value_unquotes_strings_only() {
        assert_eq!(display_value(&json!("a b")), "a b");
        assert_eq!(display_value(&json!(42)), "42");
        assert_eq!(display_value(&json!(1.5)), "1.5");
        assert_eq!(display_value(&json!(true)), "true");
        assert_eq!(display_value(&json!(null)), "null");
        assert_eq!(display_value(&json!([1, "x"])), "[1,\"x\"]");
    }

    #[test]
    fn to_value_serializes() {
        assert_eq!(to_value(&vec![1, 2]), json!([1, 2]));
        assert_eq!(to_value(&Some("x")), json!("x"));
    }

    #[test]
    fn params_are_one_encoded_segment() {
        let mut path = PathBuilder::new();
        path.literal("/v1/items/");
        path.param(&json!("a/b?c#d%e f"));
        path.literal("/parts/");
        path.param(&json!(7));
        path.literal("/");
        path.param(&json!("héllo-._~+="));
        assert_eq!(
            path.finish(),
            "/v1/items/a%2Fb%3Fc%23d%25e%20f/parts/7/h%C3%A9llo-._~%2B%3D"
        );
    }

    #[test]
    fn json_body_nests_dotted_keys() {
        let mut body = JsonBody::new();
        body.set(&["input", "text"], json!("hi"));
        body.set(&["input", "voice", "type"], json!("en_1"));
        body.set(&["speed"], json!(1.5));
        body.set(&["input", "text"], json!("hello"));
        assert_eq!(
            body.into_value(),
            json!({"input": {"text": "hello", "voice": {"type": "en_1"}}, "speed": 1.5})
        );
    }

    #[test]
    fn json_body_replaces_non_objects_on_the_way() {
        let mut body = JsonBody::new();
        body.set(&["a"], json!(1));
        body.set(&["a", "b"], json!(2));
        assert_eq!(body.clone().into_value(), json!({"a": {"b": 2}}));
        body.set(&[], json!([1]));
        assert_eq!(body.into_value(), json!([1]));
        assert_eq!(JsonBody::new().into_value(), json!({}));
    }
}
