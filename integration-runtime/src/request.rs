//! Building requests: from an endpoint's static [`RequestSpec`] and the
//! caller's [`Input`], with paths, values and JSON bodies built piece by piece.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::call::CallOptions;
use crate::descriptor::{EndpointDescriptor, IdempotencyKeyPlacement};
use crate::http::{BodyEncoding, HttpRequest};
use crate::json_path::Seg;

/// Every byte but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How one endpoint's request is built: where each field of its request
/// entity (read by its JSON name) and each constant of the spec goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSpec {
    /// The endpoint: its name, method, policy and idempotency key placement.
    pub endpoint: &'static EndpointDescriptor,
    /// The path below the base URL, piece by piece.
    pub path: &'static [PathPart],
    /// Query parameters (a `null` value is left out when sending).
    pub query: &'static [(&'static str, Source)],
    /// Headers (a `null` value is left out).
    pub headers: &'static [(&'static str, Source)],
    /// Body members by key path (a `null` value is left out).
    pub body: &'static [(&'static [&'static str], Source)],
    /// How the body is encoded, when there is one.
    pub encoding: BodyEncoding,
    /// Where the provider's message is in a non-2xx body.
    pub error: Option<&'static [Seg]>,
}

/// One piece of a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPart {
    /// Text of the spec's path, as it is.
    Literal(&'static str),
    /// The call's external id, as one segment.
    ExternalId,
    /// A field of the request, as one segment.
    Field(&'static str),
}

/// Where one value of a request comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// A field of the request (`null` when absent).
    Field(&'static str),
    /// A constant of the spec.
    Constant(Constant),
    /// Text with fields interpolated ([`display_value`]); `null` when any is.
    Template(&'static [Piece]),
    /// A field's value (as text) translated by the map; `null` when absent or unmapped.
    ValueMap {
        /// The field read.
        field: &'static str,
        /// Its values and what is sent for each.
        map: &'static [(&'static str, Constant)],
    },
    /// A field, or `default` when it is absent.
    WithDefault {
        /// The field read.
        field: &'static str,
        /// What is sent without it.
        default: Constant,
    },
}

/// A constant of a spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constant {
    /// A string.
    String(&'static str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// One piece of a [`Source::Template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is.
    Literal(&'static str),
    /// A field of the request, as [`display_value`].
    Field(&'static str),
}

impl Constant {
    /// The constant as JSON.
    pub fn to_value(self) -> Value {
        match self {
            Constant::String(text) => Value::from(text),
            Constant::Int(int) => Value::from(int),
            Constant::Float(float) => Value::from(float),
            Constant::Bool(bool) => Value::from(bool),
        }
    }
}

/// What a caller gives one request: the request entity, the external id
/// (for the polling endpoint) and the call's options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Input<'a> {
    params: Value,
    external_id: Option<&'a str>,
    idempotency_key: Option<&'a str>,
}

impl<'a> Input<'a> {
    /// Nothing: an endpoint without request entity or external id.
    pub fn none() -> Self {
        Input::default()
    }

    /// The request entity (as JSON, read by field names).
    pub fn request<R: Serialize>(request: &R) -> Self {
        Input {
            params: to_value(request),
            ..Input::default()
        }
    }

    /// The external id of the call asked about.
    pub fn external_id(external_id: &'a str) -> Self {
        Input {
            external_id: Some(external_id),
            ..Input::default()
        }
    }

    /// This input with the call's options (its idempotency key).
    #[must_use]
    pub fn with_options(mut self, options: &'a CallOptions) -> Self {
        self.idempotency_key = options.idempotency_key.as_deref();
        self
    }

    /// The request's field `name`; `null` when absent.
    fn field(&self, name: &str) -> Value {
        self.params.get(name).cloned().unwrap_or(Value::Null)
    }
}

impl RequestSpec {
    /// The request for `input`.
    pub fn build(&self, input: &Input<'_>) -> HttpRequest {
        let mut path = PathBuilder::new();
        for part in self.path {
            match part {
                PathPart::Literal(text) => path.literal(text),
                PathPart::ExternalId => path.param(&Value::from(input.external_id.unwrap_or_default())),
                PathPart::Field(name) => path.param(&input.field(name)),
            }
        }
        let query = self
            .query
            .iter()
            .map(|(key, source)| (*key, source.value(input)))
            .collect();
        let mut headers: Vec<(&'static str, String)> = self
            .headers
            .iter()
            .map(|(key, source)| (*key, source.value(input)))
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key, display_value(&value)))
            .collect();
        let mut body = JsonBody::new();
        for (path, source) in self.body {
            let value = source.value(input);
            if !value.is_null() {
                body.set(path, value);
            }
        }
        let mut has_body = !self.body.is_empty();
        match (self.endpoint.idempotency_key, input.idempotency_key) {
            (Some(IdempotencyKeyPlacement::Header(header)), Some(key)) => headers.push((header, key.to_owned())),
            (Some(IdempotencyKeyPlacement::Body(path)), key) => {
                has_body = true;
                if let Some(key) = key {
                    body.set(path, Value::from(key));
                }
            }
            _ => {}
        }
        HttpRequest {
            endpoint: self.endpoint.name,
            method: self.endpoint.method,
            path: path.finish(),
            query,
            headers,
            body: has_body.then(|| (self.encoding, body.into_value())),
            error_path: self.error,
            policy: &self.endpoint.policy,
        }
    }
}

impl Source {
    /// The value for `input`.
    fn value(&self, input: &Input<'_>) -> Value {
        match *self {
            Source::Field(name) => input.field(name),
            Source::Constant(constant) => constant.to_value(),
            Source::Template(pieces) => {
                let mut text = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Literal(literal) => text.push_str(literal),
                        Piece::Field(name) => match input.field(name) {
                            Value::Null => return Value::Null,
                            value => text.push_str(&display_value(&value)),
                        },
                    }
                }
                Value::String(text)
            }
            Source::ValueMap { field, map } => {
                let value = input.field(field);
                if value.is_null() {
                    return Value::Null;
                }
                let text = display_value(&value);
                map.iter()
                    .find(|(from, _)| *from == text)
                    .map_or(Value::Null, |(_, to)| to.to_value())
            }
            Source::WithDefault { field, default } => match input.field(field) {
                Value::Null => default.to_value(),
                value => value,
            },
        }
    }
}

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

    use crate::descriptor::{Mode, PolicyDescriptor, RequestFields};

    static ENDPOINT: EndpointDescriptor = EndpointDescriptor {
        name: "create",
        method: "POST",
        path: "/v1/{kind}/items",
        mode: Mode::Sync,
        starts_calls: true,
        idempotent: false,
        idempotency_key: Some(IdempotencyKeyPlacement::Header("Idempotency-Key")),
        policy: PolicyDescriptor::DEFAULT,
        request_fields: RequestFields {
            all: &["kind", "text", "speed", "voice", "order"],
            path: &["kind"],
            headers: &[],
        },
        give_up_after_s: None,
        cancel: None,
    };

    /// Every kind of source, in the path, the query, headers and the body.
    static CREATE: RequestSpec = RequestSpec {
        endpoint: &ENDPOINT,
        path: &[
            PathPart::Literal("/v1/"),
            PathPart::Field("kind"),
            PathPart::Literal("/items"),
        ],
        query: &[
            ("speed", Source::Field("speed")),
            ("v", Source::Constant(Constant::Int(2))),
        ],
        headers: &[
            (
                "X-Order",
                Source::Template(&[Piece::Literal("order "), Piece::Field("order")]),
            ),
            ("X-Absent", Source::Field("order")),
        ],
        body: &[
            (&["input", "text"], Source::Field("text")),
            (
                &["voice"],
                Source::ValueMap {
                    field: "voice",
                    map: &[("warm", Constant::String("en_warm")), ("cold", Constant::Bool(false))],
                },
            ),
            (
                &["speed"],
                Source::WithDefault {
                    field: "speed",
                    default: Constant::Float(1.0),
                },
            ),
        ],
        encoding: BodyEncoding::Form,
        error: Some(&[Seg::Key("error")]),
    };

    #[test]
    fn a_request_is_built_from_its_spec_and_the_entity_s_json() {
        let options = CallOptions {
            idempotency_key: Some("k-1".into()),
        };
        let params = json!({"kind": "a/b", "text": "hi", "voice": "warm", "order": 7});
        let request = CREATE.build(&Input::request(&params).with_options(&options));
        assert_eq!((request.endpoint, request.method), ("create", "POST"));
        assert_eq!(request.path, "/v1/a%2Fb/items");
        assert_eq!(request.query, [("speed", Value::Null), ("v", json!(2))]);
        assert_eq!(
            request.headers,
            [
                ("X-Order", "order 7".to_owned()),
                ("X-Absent", "7".to_owned()),
                ("Idempotency-Key", "k-1".to_owned())
            ]
        );
        assert_eq!(
            request.body,
            Some((
                BodyEncoding::Form,
                json!({"input": {"text": "hi"}, "voice": "en_warm", "speed": 1.0})
            ))
        );
        assert_eq!(request.error_path, Some(&[Seg::Key("error")][..]));
        assert!(std::ptr::eq(request.policy, &ENDPOINT.policy));
    }

    #[test]
    fn absent_fields_leave_their_values_out() {
        let params = json!({"kind": "k", "voice": "unmapped", "speed": 0.5});
        let request = CREATE.build(&Input::request(&params));
        assert_eq!(request.query, [("speed", json!(0.5)), ("v", json!(2))]);
        // An absent field, a template with one, and no idempotency key: no header.
        assert!(request.headers.is_empty(), "{:?}", request.headers);
        assert_eq!(request.body, Some((BodyEncoding::Form, json!({"speed": 0.5}))));
    }

    #[test]
    fn the_external_id_is_one_segment_and_a_body_key_makes_a_body() {
        static BY_BODY: EndpointDescriptor = EndpointDescriptor {
            idempotency_key: Some(IdempotencyKeyPlacement::Body(&["meta", "key"])),
            ..ENDPOINT
        };
        static POLL: RequestSpec = RequestSpec {
            endpoint: &BY_BODY,
            path: &[PathPart::Literal("/tasks/"), PathPart::ExternalId],
            query: &[],
            headers: &[],
            body: &[],
            encoding: BodyEncoding::Json,
            error: None,
        };
        let request = POLL.build(&Input::external_id("t 1"));
        assert_eq!(request.path, "/tasks/t%201");
        assert_eq!(request.body, Some((BodyEncoding::Json, json!({}))));
        let options = CallOptions {
            idempotency_key: Some("k".into()),
        };
        let keyed = POLL.build(&Input::none().with_options(&options));
        assert_eq!(keyed.body, Some((BodyEncoding::Json, json!({"meta": {"key": "k"}}))));
        let bodiless = RequestSpec {
            endpoint: &ENDPOINT,
            ..POLL
        }
        .build(&Input::none());
        assert_eq!(bodiless.body, None);
    }

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
