//! Delivery ids: the sender's name for one delivery, the same on every
//! retry of it. A delivery under an id already recorded for the call is a
//! duplicate, whatever its body says: the lifecycle keys alone would let a
//! second body under the same id move the call on.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

use crate::store::{AppendOutcome, CallWithEvents};

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

/// The answer to a delivery under `delivery_id` when `logged` already
/// recorded an event of that delivery: a duplicate of that event.
pub(super) fn earlier(logged: &CallWithEvents, delivery_id: &str) -> Option<AppendOutcome> {
    logged
        .events
        .iter()
        .find(|event| event.payload.delivery_id.as_deref() == Some(delivery_id))
        .map(|event| AppendOutcome::Duplicate {
            call_id: logged.call.id,
            event_id: event.id,
            status: logged.call.status,
        })
}
