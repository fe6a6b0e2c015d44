//! What generated code hands the client and gets back: a request already
//! mapped from the call's fields ([`HttpRequest`]) and a 2xx answer
//! ([`HttpResponse`]). How a request is checked and encoded is in
//! `prepare`; how it is sent, in `client`.

use serde_json::Value;

use crate::descriptor::PolicyDescriptor;
use crate::json_path::Seg;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyEncoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`, see [`encode_form`](crate::form::encode_form).
    Form,
}

/// One request, as generated code builds it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The endpoint's name, for errors.
    pub endpoint: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// The path below the base URL, already percent-encoded (see `PathBuilder`).
    pub path: String,
    /// Query parameters: lists repeat the key; null values are left out.
    pub query: Vec<(&'static str, Value)>,
    /// Request headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body and its encoding.
    pub body: Option<(BodyEncoding, Value)>,
    /// Where the provider's message is in a non-2xx body.
    pub error_path: Option<&'static [Seg]>,
    /// Timeouts of this request.
    pub policy: &'static PolicyDescriptor,
}

/// A 2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body: JSON as parsed, an empty body as `Null`, anything else as a `Value::String`.
    pub body: Value,
    /// The response headers in received order, names in lower case; values
    /// that are not visible ASCII text are left out.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in received order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
