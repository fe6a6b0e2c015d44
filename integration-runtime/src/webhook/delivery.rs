//! Delivery ids: the sender's name for one delivery, the same on every
//! retry of it. A delivery under an id already recorded for the call is a
//! duplicate, whatever its body says: the event keys alone (one per
//! lifecycle step by default) would let a second body under the same id
//! move the call on, or add an ignored event to its log.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::descriptor::SignatureScheme;
use crate::store::{AppendOutcome, Store, StoreError};

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

/// How many locks deliveries are spread over.
const STRIPES: usize = 64;

/// Serializes, within this process, the deliveries that share an id, so
/// that looking for an earlier delivery and appending are one step for
/// them; deliveries under other ids rarely share a lock.
pub(super) struct DeliveryLocks([Mutex<()>; STRIPES]);

impl DeliveryLocks {
    pub(super) fn new() -> Self {
        DeliveryLocks(std::array::from_fn(|_| Mutex::new(())))
    }

    pub(super) async fn lock(&self, delivery_id: &str) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        delivery_id.hash(&mut hasher);
        // The remainder is below STRIPES, so it fits any usize.
        let stripe = usize::try_from(hasher.finish() % STRIPES as u64).unwrap_or_default();
        self.0[stripe].lock().await
    }
}

/// The answer to a delivery under `delivery_id` for the call of
/// `integration` known as `external_id`, when that call already recorded a
/// delivery under this id: a duplicate of that event. `None` when it did
/// not, or when no call has that external id (the append reports it).
pub(super) async fn earlier(
    store: &dyn Store,
    integration: &str,
    external_id: &str,
    delivery_id: &str,
) -> Result<Option<AppendOutcome>, StoreError> {
    let Some(call) = store.find_by_external_id(integration, external_id).await? else {
        return Ok(None);
    };
    let Some(logged) = store.get_with_events(call.id).await? else {
        return Ok(None);
    };
    Ok(logged
        .events
        .iter()
        .find(|event| event.payload.delivery_id.as_deref() == Some(delivery_id))
        .map(|event| AppendOutcome::Duplicate {
            call_id: call.id,
            event_id: event.id,
            status: logged.call.status,
        }))
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
