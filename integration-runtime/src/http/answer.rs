//! Reading answers within bounds: one hostile answer must not take the
//! worker's memory. A 2xx body is read up to the policy's
//! `max_response_bytes`; an error body only for its message, from a prefix.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::client::{not_redirected, HttpClient};
use crate::descriptor::PolicyDescriptor;
use crate::error::ClientError;

/// How much of a non-2xx body is read for its error message; the rest is
/// left unread (the connection is closed, not reused).
pub(super) const ERROR_PREFIX_BYTES: usize = 64 * 1024;

/// A response body as JSON: empty -> `Null`, not JSON -> `Value::String`.
pub(super) fn decode_body(bytes: &[u8]) -> Value {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Why a body could not be read whole.
pub(super) enum ReadError {
    /// It is larger than the limit: by its `Content-Length`, or once more
    /// than the limit arrived.
    TooLarge,
    /// The connection failed while it was read.
    Transport(reqwest::Error),
}

/// The whole body, at most `limit` bytes. A `Content-Length` over the limit
/// is refused before any of the body is read; a chunked body is cut off as
/// soon as it passes the limit.
pub(super) async fn read_limited(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit) {
        return Err(ReadError::TooLarge);
    }
    // The announced length (within the limit) is a good first capacity.
    let capacity = usize::try_from(announced.unwrap_or(0)).unwrap_or(0);
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most the first `max` bytes of the body; the rest is not read.
pub(super) async fn read_prefix(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < max {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// An answer read within the policy's bounds.
pub(super) struct Answer {
    pub(super) status: u16,
    /// The decoded body: whole for a 2xx, its first [`ERROR_PREFIX_BYTES`] otherwise.
    pub(super) body: Value,
    pub(super) retry_after: Option<Duration>,
    /// The headers in received order; values that are not visible ASCII are left out.
    pub(super) headers: Vec<(String, String)>,
}

impl HttpClient {
    /// Sends a request to `url` and reads its answer (see
    /// [`read_answer`](Self::read_answer)); redirects are not followed.
    pub(super) async fn exchange(
        &self,
        endpoint: &str,
        policy: &PolicyDescriptor,
        url: &Url,
        builder: reqwest::RequestBuilder,
    ) -> Result<Answer, ClientError> {
        let mut response = builder
            .send()
            .await
            .map_err(|e| self.transport_error(endpoint, policy, e))?;
        not_redirected(endpoint, url, &response)?;
        self.read_answer(endpoint, policy, &mut response).await
    }

    /// Reads an answer: a 2xx body whole, up to the policy's
    /// `max_response_bytes`; of any other, only a prefix, for its message.
    pub(super) async fn read_answer(
        &self,
        endpoint: &str,
        policy: &PolicyDescriptor,
        response: &mut reqwest::Response,
    ) -> Result<Answer, ClientError> {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| crate::error::parse_retry_after(value, chrono::Utc::now()));
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let bytes = if (200..300).contains(&status) {
            read_limited(response, policy.max_response_bytes)
                .await
                .map_err(|error| match error {
                    ReadError::TooLarge => ClientError::too_large(endpoint, policy.max_response_bytes),
                    ReadError::Transport(e) => self.transport_error(endpoint, policy, e),
                })?
        } else {
            read_prefix(response, ERROR_PREFIX_BYTES)
                .await
                .map_err(|e| self.transport_error(endpoint, policy, e))?
        };
        Ok(Answer {
            status,
            body: decode_body(&bytes),
            retry_after,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_decode_leniently() {
        assert_eq!(decode_body(b""), Value::Null);
        assert_eq!(decode_body(b" \n"), Value::Null);
        assert_eq!(decode_body(b"{\"a\":1}"), json!({"a": 1}));
        assert_eq!(decode_body(b"\"s\""), json!("s"));
        assert_eq!(decode_body(b"Bad Gateway"), json!("Bad Gateway"));
        assert_eq!(decode_body(b"\xff ok"), json!("\u{fffd} ok"));
    }
}
