//! Signed webhook deliveries, for each verification scheme the spec language
//! knows. Signing uses the runtime's own signature code, so a delivery the
//! kit signs is exactly what a real provider would send.

use std::sync::atomic::{AtomicU64, Ordering};

use integration_runtime::webhook::signature::{generic, standard, stripe};
use integration_runtime::{SignatureEncoding, SignatureScheme};
use serde_json::Value;

use crate::TestkitError;

/// Sends signed webhook deliveries to a receiver.
///
/// ```no_run
/// # async fn demo() -> Result<(), integration_testkit::TestkitError> {
/// use integration_testkit::WebhookSender;
/// use serde_json::json;
///
/// let sender = WebhookSender::standard_webhooks("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
/// let status = sender
///     .send("http://127.0.0.1:8080/webhooks/volc-tts", &json!({ "task_id": "t-1", "state": "done" }))
///     .await?;
/// assert_eq!(status, 204);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebhookSender {
    scheme: SignatureScheme,
    secret: String,
    client: reqwest::Client,
    sent: AtomicU64,
}

/// One delivery's headers and body, signed, before sending (to tamper with it).
#[derive(Debug, Clone)]
pub struct SignedDelivery {
    /// The headers the scheme needs.
    pub headers: Vec<(String, String)>,
    /// The exact body that was signed.
    pub body: Vec<u8>,
}

impl WebhookSender {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`);
    /// `secret` is the `whsec_...` value.
    pub fn standard_webhooks(secret: impl Into<String>) -> Self {
        Self::new(SignatureScheme::StandardWebhooks, secret)
    }

    /// Stripe-style `Stripe-Signature: t=...,v1=...`; `secret` is used as it is.
    pub fn stripe(secret: impl Into<String>) -> Self {
        Self::new(SignatureScheme::Stripe, secret)
    }

    /// An HMAC-SHA256 of the body in `header`, hex or base64, after `prefix`
    /// (GitHub: `X-Hub-Signature-256`, hex, `sha256=`).
    pub fn hmac_sha256(
        header: &'static str,
        encoding: SignatureEncoding,
        prefix: &'static str,
        secret: impl Into<String>,
    ) -> Self {
        Self::new(
            SignatureScheme::HmacSha256 {
                header,
                encoding,
                prefix,
            },
            secret,
        )
    }

    /// A sender for a scheme named by a descriptor (`VolcTts::descriptor().webhook`).
    pub fn new(scheme: SignatureScheme, secret: impl Into<String>) -> Self {
        WebhookSender {
            scheme,
            secret: secret.into(),
            client: reqwest::Client::new(),
            sent: AtomicU64::new(0),
        }
    }

    /// Signs `body` as delivery `id` at `timestamp` (Unix seconds); the id is
    /// used by Standard Webhooks only. Old or future timestamps make stale or
    /// early deliveries for tests of the receiver's tolerance.
    pub fn sign_at(&self, body: &Value, id: &str, timestamp: i64) -> Result<SignedDelivery, TestkitError> {
        let body =
            serde_json::to_vec(body).map_err(|e| TestkitError::Webhook(format!("body is not serializable: {e}")))?;
        let headers = match self.scheme {
            SignatureScheme::StandardWebhooks => standard::sign(&self.secret, id, timestamp, &body)
                .ok_or_else(|| TestkitError::Webhook("a Standard Webhooks secret is `whsec_` + base64".into()))?,
            SignatureScheme::Stripe => stripe::sign(&self.secret, timestamp, &body),
            SignatureScheme::HmacSha256 {
                header,
                encoding,
                prefix,
            } => generic::sign(header, &self.secret, encoding, prefix, &body),
        };
        let headers = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        Ok(SignedDelivery { headers, body })
    }

    /// Signs `body` as a fresh delivery, now.
    pub fn sign(&self, body: &Value) -> Result<SignedDelivery, TestkitError> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        let id = format!("msg_testkit_{}_{n}", std::process::id());
        self.sign_at(body, &id, now())
    }

    /// Posts a delivery as it is; returns the HTTP status of the answer.
    pub async fn deliver(&self, url: &str, delivery: &SignedDelivery) -> Result<u16, TestkitError> {
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TestkitError::Webhook(format!("delivery to {url} failed: {e}")))?;
        Ok(response.status().as_u16())
    }

    /// Signs and posts `body` as a fresh delivery; returns the HTTP status.
    pub async fn send(&self, url: &str, body: &Value) -> Result<u16, TestkitError> {
        let delivery = self.sign(body)?;
        self.deliver(url, &delivery).await
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
