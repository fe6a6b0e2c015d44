//! The contract every [`Store`] must meet, as checks on a fresh store:
//! what [`store_conformance_tests!`](crate::store_conformance_tests) runs,
//! one test per check. Leases here are tens of milliseconds, so nothing
//! sleeps long.

mod connections;
mod creating;
mod events;
mod leases;
mod listing;
mod notifications;
mod over_time;
mod protection;
mod retention;
mod scheduling;
mod turns;

use std::time::Duration;

use serde_json::json;

pub use connections::*;
pub use creating::*;
pub use events::*;
pub use leases::*;
pub use listing::*;
pub use notifications::*;
pub use over_time::*;
pub use protection::*;
pub use retention::*;
pub use scheduling::*;
pub use turns::*;

use super::{CallId, NewCall, Store};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(50);
/// Comfortably past [`SHORT`], with the millisecond rounding of stored times.
const PAST_SHORT: Duration = Duration::from_millis(120);

fn call(n: u32) -> NewCall {
    NewCall::new("acme", "send", json!({ "n": n }))
}

async fn create(store: &dyn Store, new: NewCall) -> CallId {
    let created = store.create(new).await.expect("create");
    assert!(created.created);
    created.id
}

async fn ids(store: &dyn Store, worker: &str, limit: u32, lease: Duration) -> Vec<CallId> {
    store
        .claim(worker, limit, lease)
        .await
        .expect("claim")
        .iter()
        .map(|c| c.id)
        .collect()
}
