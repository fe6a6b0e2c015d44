//! Request preparation: a request is checked and encoded before anything is
//! sent (an invalid one never leaves the process), its URL built from the
//! base URL, path and query, with a query-string API key put in only where
//! it may go.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde_json::Value;

use super::auth::Auth;
use super::client::HttpClient;
use super::redirect::Hop;
use super::request::{BodyEncoding, HttpRequest};
use crate::error::{invalid_request, ClientError, ValidationError};
use crate::form::encode_form;
use crate::request::display_value;

/// A request checked and encoded, ready to be sent (possibly twice, see `send`).
pub(super) struct Prepared {
    pub(super) url: Url,
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Vec<u8>>,
}

/// Whether a path segment is `.` or `..` (plainly or percent-encoded), which URL
/// parsers would resolve away.
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    matches!(lower.as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e.")
}

/// Takes every value of query parameter `name` out of `url`.
fn remove_query_param(url: &mut Url, name: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(n, _)| n != name)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
}

/// Appends the query pairs of one parameter: lists repeat the key; nulls are left out.
fn push_query(name: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|item| !item.is_null()) {
                pairs.push((name.to_owned(), display_value(item)));
            }
        }
        other => pairs.push((name.to_owned(), display_value(other))),
    }
}

impl HttpClient {
    /// Checks and encodes a request: nothing is sent when it is invalid.
    pub(super) fn prepare(&self, request: &HttpRequest, url: Option<Url>) -> Result<Prepared, ClientError> {
        let endpoint = request.endpoint;
        let url = match url {
            Some(url) => self.same_origin_url(endpoint, url)?,
            None => self.url(request)?,
        };
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            invalid_request(
                endpoint,
                ValidationError::single("method", format!("`{}` is not an HTTP method", request.method)),
            )
        })?;
        let (headers, body) = request_headers_and_body(request)?;
        Ok(Prepared {
            url,
            method,
            headers,
            body,
        })
    }

    /// A redirect hop's URL with the query-string API key as the hop needs
    /// it: put in (once) on the origin, taken out off it.
    pub(super) fn with_query_key(&self, endpoint: &str, mut hop: Hop) -> Result<Hop, ClientError> {
        if hop.credentialed {
            hop.url = self.same_origin_url(endpoint, hop.url)?;
        } else if let Auth::ApiKeyQuery { name, .. } = &self.inner.auth {
            remove_query_param(&mut hop.url, name);
        }
        Ok(hop)
    }

    /// A next-page URL, checked to be on the base URL's origin (scheme, host
    /// and port), with the API key put in its query when it goes there.
    pub(super) fn same_origin_url(&self, endpoint: &str, mut url: Url) -> Result<Url, ClientError> {
        let base = Url::parse(&self.inner.base).map_err(|e| ClientError::config(endpoint, e.to_string()))?;
        if url.origin() != base.origin() {
            return Err(invalid_request(
                endpoint,
                ValidationError::single(
                    "next page link",
                    format!(
                        "points to {} instead of {}; it is not followed, so credentials never reach another origin",
                        url.origin().ascii_serialization(),
                        base.origin().ascii_serialization()
                    ),
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid_request(
                endpoint,
                ValidationError::single("next page link", "carries a user name or password; it is not followed"),
            ));
        }
        url.set_fragment(None);
        if let Auth::ApiKeyQuery { name, key } = &self.inner.auth {
            // A stale or foreign value of the key's parameter is replaced.
            remove_query_param(&mut url, name);
            url.query_pairs_mut().append_pair(name, key.expose());
        }
        Ok(url)
    }

    /// The full URL of a request: base + path, query, and an API key in the query.
    pub(super) fn url(&self, request: &HttpRequest) -> Result<Url, ClientError> {
        let endpoint = request.endpoint;
        if request.path.split('/').any(is_dot_segment) {
            return Err(invalid_request(
                endpoint,
                ValidationError::single(
                    "path",
                    "a path parameter is `.` or `..`, which would change the request's path",
                ),
            ));
        }
        let separator = if request.path.is_empty() || request.path.starts_with('/') {
            ""
        } else {
            "/"
        };
        let text = format!("{}{separator}{}", self.inner.base, request.path);
        let mut url = Url::parse(&text).map_err(|e| {
            invalid_request(
                endpoint,
                ValidationError::single("path", format!("`{}` does not make a valid URL: {e}", request.path)),
            )
        })?;
        let mut pairs = Vec::new();
        for (name, value) in &request.query {
            push_query(name, value, &mut pairs);
        }
        if let Auth::ApiKeyQuery { name, key } = &self.inner.auth {
            pairs.push(((*name).to_owned(), key.expose().to_owned()));
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }
}

/// The request's own headers (with `Accept` and `Content-Type` defaults) and its encoded body.
fn request_headers_and_body(request: &HttpRequest) -> Result<(HeaderMap, Option<Vec<u8>>), ClientError> {
    let endpoint = request.endpoint;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            invalid_request(
                endpoint,
                ValidationError::single(format!("header `{name}`"), "is not a valid header name"),
            )
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            invalid_request(
                endpoint,
                ValidationError::single(
                    format!("header `{name}`"),
                    "contains a character not allowed in an HTTP header value (such as CR, LF or NUL)",
                ),
            )
        })?;
        headers.append(header, value);
    }
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    let body = match &request.body {
        None => None,
        Some((BodyEncoding::Json, value)) => {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Some(serde_json::to_vec(value).map_err(|e| ClientError::config(endpoint, e.to_string()))?)
        }
        Some((BodyEncoding::Form, value)) => {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/x-www-form-urlencoded"));
            Some(encode_form(value).into_bytes())
        }
    };
    Ok((headers, body))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::descriptor::PolicyDescriptor;
    use crate::secret::Secret;

    static POLICY: PolicyDescriptor = PolicyDescriptor::DEFAULT;

    fn request(path: &str) -> HttpRequest {
        HttpRequest {
            endpoint: "get_item",
            method: "GET",
            path: path.to_owned(),
            query: vec![],
            headers: vec![],
            body: None,
            error_path: None,
            policy: &POLICY,
        }
    }

    fn client(base: &str, auth: Auth) -> HttpClient {
        HttpClient::new(base, auth).unwrap()
    }

    #[test]
    fn base_and_path_join_with_one_slash() {
        for base in ["https://api.example.com/v1", "https://api.example.com/v1/"] {
            let client = client(base, Auth::None);
            assert_eq!(client.base_url(), "https://api.example.com/v1");
            assert_eq!(
                client.url(&request("/items/1")).unwrap().as_str(),
                "https://api.example.com/v1/items/1"
            );
            assert_eq!(
                client.url(&request("items/1")).unwrap().as_str(),
                "https://api.example.com/v1/items/1"
            );
        }
        let root = client("https://api.example.com", Auth::None);
        assert_eq!(root.url(&request("/x")).unwrap().as_str(), "https://api.example.com/x");
        assert_eq!(root.url(&request("")).unwrap().as_str(), "https://api.example.com/");
    }

    #[test]
    fn query_repeats_lists_and_omits_nulls() {
        let client = client(
            "https://h",
            Auth::ApiKeyQuery {
                name: "api_key",
                key: Secret::new("k&1"),
            },
        );
        let mut req = request("/s");
        req.query = vec![
            ("q", json!("a b&c")),
            ("tag", json!(["x", null, 2])),
            ("skip", json!(null)),
            ("n", json!(5)),
            ("on", json!(true)),
        ];
        assert_eq!(
            client.url(&req).unwrap().as_str(),
            "https://h/s?q=a+b%26c&tag=x&tag=2&n=5&on=true&api_key=k%261"
        );
    }

    #[test]
    fn next_page_urls_stay_on_the_origin_and_carry_the_query_key_once() {
        let client = client(
            "https://h.example/v1",
            Auth::ApiKeyQuery {
                name: "api_key",
                key: Secret::new("k&1"),
            },
        );
        let next = Url::parse("https://h.example/v2/items?page=2&api_key=stale#top").unwrap();
        assert_eq!(
            client.same_origin_url("e", next).unwrap().as_str(),
            "https://h.example/v2/items?page=2&api_key=k%261"
        );
        for other in [
            "http://h.example/v1",
            "https://h.example:444/v1",
            "https://evil.example/v1",
            "https://u:p@h.example/v1",
        ] {
            let error = client.same_origin_url("e", Url::parse(other).unwrap()).unwrap_err();
            assert!(error.is_invalid_request(), "{other}");
            assert!(!error.to_string().contains("k&1"), "{error}");
        }
    }

    #[test]
    fn dot_segments_are_rejected() {
        let client = client("https://h/v1", Auth::None);
        for path in ["/items/..", "/items/%2E%2e/x", "/./x", "/a/.%2E"] {
            let error = client.url(&request(path)).unwrap_err();
            assert!(error.is_invalid_request(), "{path}");
        }
        assert!(client.url(&request("/items/...")).is_ok());
        assert!(client.url(&request("/items/a.b")).is_ok());
    }

    #[test]
    fn headers_and_bodies_are_prepared() {
        let mut req = request("/x");
        req.headers = vec![
            ("X-Trace", "abc".into()),
            ("x-multi", "1".into()),
            ("X-Multi", "2".into()),
        ];
        req.body = Some((BodyEncoding::Form, json!({"a": {"b": "c d"}})));
        let (headers, body) = request_headers_and_body(&req).unwrap();
        assert_eq!(headers.get("x-trace").unwrap(), "abc");
        assert_eq!(headers.get_all("x-multi").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(headers.get(ACCEPT).unwrap(), "application/json");
        assert_eq!(headers.get(CONTENT_TYPE).unwrap(), "application/x-www-form-urlencoded");
        assert_eq!(body.as_deref(), Some(&b"a%5Bb%5D=c+d"[..]));

        req.body = Some((BodyEncoding::Json, json!({"a": [1]})));
        let (headers, body) = request_headers_and_body(&req).unwrap();
        assert_eq!(headers.get(CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(body.as_deref(), Some(&b"{\"a\":[1]}"[..]));
    }

    #[test]
    fn control_characters_in_header_values_are_invalid_requests() {
        for bad in ["a\r\nX-Injected: 1", "a\nb", "nul\0"] {
            let mut req = request("/x");
            req.headers = vec![("X-Name", bad.to_owned())];
            let error = request_headers_and_body(&req).unwrap_err();
            assert!(error.is_invalid_request());
            assert_eq!(
                error.to_string(),
                "endpoint `get_item`: invalid request: header `X-Name`: contains a character not allowed in an HTTP header value (such as CR, LF or NUL)"
            );
        }
    }
}
