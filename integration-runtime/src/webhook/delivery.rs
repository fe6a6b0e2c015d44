//! Delivery ids: the sender's name for one delivery, the same on every
//! retry of it; the event sink answers a delivery under an id the call
//! already recorded as a duplicate.

use serde_json::Value;

use crate::descriptor::SignatureScheme;

/// The sender's delivery id: the signed one (Standard Webhooks
/// `webhook-id`), else Stripe's event `id` (inside the signed body). The
/// generic HMAC scheme carries none.
pub(super) fn sender_id(signed: Option<String>, scheme: SignatureScheme, payload: &Value) -> Option<String> {
    signed.or_else(|| match scheme {
        SignatureScheme::Stripe => payload
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        SignatureScheme::StandardWebhooks | SignatureScheme::HmacSha256 { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_signed_ids_and_stripe_event_ids_are_delivery_ids() {
        let stripe = json!({"id": "evt_1"});
        let signed = Some("msg_1".to_owned());
        assert_eq!(
            sender_id(signed, SignatureScheme::StandardWebhooks, &stripe).as_deref(),
            Some("msg_1")
        );
        assert_eq!(
            sender_id(None, SignatureScheme::Stripe, &stripe).as_deref(),
            Some("evt_1")
        );
        assert_eq!(sender_id(None, SignatureScheme::Stripe, &json!({"id": ""})), None);
        let generic = SignatureScheme::HmacSha256 {
            header: "x-sig",
            encoding: crate::descriptor::SignatureEncoding::Hex,
            prefix: "",
        };
        assert_eq!(sender_id(None, generic, &stripe), None);
    }
}
