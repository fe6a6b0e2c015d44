//! The `[webhook]` section: where the provider's push carries the external
//! id, status and result, and how its signature is verified.

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{Entry, Table};

impl Lower<'_> {
    pub(super) fn webhook(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<Webhook> {
        let t = Table::new(
            self.cx,
            "webhook",
            e.key_span.into(),
            e.value,
            &[
                "path",
                "verify",
                "external_id",
                "status",
                "result",
                "error",
                "max_body_bytes",
                "give_up_after_s",
            ],
        )?;
        let path = t
            .require_str(self.cx, "path", "add `path = \"/webhooks/provider\"`")
            .map(|(p, span)| {
                if !p.starts_with('/') {
                    self.cx
                        .error(span, "webhook.path", format!("webhook path `{p}` must start with `/`"))
                        .help(format!("write `/{p}`"));
                }
                p.to_owned()
            });
        let verify = t
            .require(self.cx, "verify", "webhooks must be verified: add `verify = { scheme = \"standard-webhooks\", secret = { env = \"WEBHOOK_SECRET\" } }`")
            .and_then(|v| self.verify(v));
        let external_id = t
            .require_str(
                self.cx,
                "external_id",
                "add `external_id = \"$.path.to.id\"`: without it a delivery cannot be matched to its call",
            )
            .and_then(|(text, span)| self.json_path(text, span, "webhook.external_id"));
        let status = t
            .require(
                self.cx,
                "status",
                "add `status = { path = \"$.state\", map = { ... } }`",
            )
            .and_then(|s| self.status_map(s));
        let result = t.get("result").and_then(|r| self.result(r, entities));
        let error = t
            .str(self.cx, "error")
            .and_then(|(text, span)| self.json_path(text, span, "webhook.error"));
        let max_body_bytes = t.positive(self.cx, "max_body_bytes").unwrap_or(1 << 20);
        let give_up_after_s = t.positive(self.cx, "give_up_after_s");
        Some(Webhook {
            path: path?,
            verify: verify?,
            external_id: external_id?,
            status: status?,
            result,
            error,
            max_body_bytes,
            give_up_after_s,
        })
    }

    fn verify(&mut self, e: Entry<'_, '_>) -> Option<Verify> {
        let t = Table::new(
            self.cx,
            "webhook.verify",
            e.key_span.into(),
            e.value,
            &["scheme", "secret", "tolerance_s", "header", "encoding", "prefix"],
        )?;
        let schemes = ["standard-webhooks", "stripe", "hmac-sha256"];
        let (scheme_name, span) = t.require_str(
            self.cx,
            "scheme",
            "add `scheme = \"standard-webhooks\"` (or stripe, hmac-sha256)",
        )?;
        let scheme = match scheme_name {
            "standard-webhooks" => SignatureScheme::StandardWebhooks,
            "stripe" => SignatureScheme::Stripe,
            "hmac-sha256" => {
                let header = t.require_str(
                    self.cx,
                    "header",
                    "add `header = \"X-Hub-Signature-256\"` (where the signature is)",
                );
                if let Some((h, span)) = &header {
                    check::header_name(self.cx, h, span.clone(), "webhook.verify.header");
                }
                let encoding = match t.str(self.cx, "encoding") {
                    None | Some(("hex", _)) => SignatureEncoding::Hex,
                    Some(("base64", _)) => SignatureEncoding::Base64,
                    Some((other, span)) => {
                        self.cx
                            .error(
                                span,
                                "webhook.verify.encoding",
                                format!("unknown signature encoding `{other}`"),
                            )
                            .expected_one_of(other, ["hex", "base64"]);
                        SignatureEncoding::Hex
                    }
                };
                let prefix = t.str(self.cx, "prefix").map_or_else(String::new, |(p, _)| p.to_owned());
                SignatureScheme::HmacSha256 {
                    header: header?.0.to_owned(),
                    encoding,
                    prefix,
                }
            }
            other => {
                self.cx
                    .error(
                        span,
                        "webhook.verify.scheme",
                        format!("unknown signature scheme `{other}`"),
                    )
                    .expected_one_of(other, schemes);
                return None;
            }
        };
        if scheme_name != "hmac-sha256" {
            for key in ["header", "encoding", "prefix"] {
                if let Some(extra) = t.get(key) {
                    self.cx
                        .error(
                            extra.key_span.into(),
                            extra.key_path(),
                            format!("`{key}` applies to the `hmac-sha256` scheme only"),
                        )
                        .help(format!("`{scheme_name}` fixes its own headers; remove `{key}`"));
                }
            }
        }
        if let (SignatureScheme::HmacSha256 { .. }, Some(extra)) = (&scheme, t.get("tolerance_s")) {
            self.cx
                .error(
                    extra.key_span.into(),
                    extra.key_path(),
                    "`tolerance_s` applies to timestamped schemes; `hmac-sha256` signs no timestamp",
                )
                .help("remove `tolerance_s`");
        }
        let secret = self.required_secret(t, "secret")?;
        let tolerance_s = t.positive(self.cx, "tolerance_s").unwrap_or(300);
        Some(Verify {
            scheme,
            secret,
            tolerance_s,
        })
    }
}
