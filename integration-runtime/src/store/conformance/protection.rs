//! Shared rate limiters and circuit breakers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LONG, PAST_SHORT, SHORT};
use crate::store::{RateRequest, Store};

const SECOND: Duration = Duration::from_secs(1);

/// A limiter of one request per second, no burst.
fn per_second(cells: u32) -> RateRequest {
    RateRequest::new(cells, SECOND, Duration::ZERO)
}

/// `actual` is `expected` less at most the time that passed since `since`
/// (and the stores' rounding to the microsecond).
fn assert_about(actual: Duration, expected: Duration, since: Instant) {
    let slack = since.elapsed() + Duration::from_millis(1);
    assert!(
        actual <= expected && actual + slack >= expected,
        "{actual:?} is not {expected:?} (less at most {slack:?})"
    );
}

pub async fn rate_leases_are_spaced_by_their_cells(store: Arc<dyn Store>) {
    let start = Instant::now();
    let first = store.lease_rate("acme", per_second(3)).await.unwrap();
    assert_eq!(first.cells, 3);
    assert_eq!(first.ahead, Duration::ZERO);
    let second = store.lease_rate("acme", per_second(2)).await.unwrap();
    assert_eq!(second.cells, 2);
    assert_about(second.ahead, 3 * SECOND, start);
    // Another limiter is untouched.
    let other = store.lease_rate("acme.send", per_second(1)).await.unwrap();
    assert_eq!(other.ahead, Duration::ZERO);
    // With a tolerance (a burst of 3), the first cells go at once.
    let request = RateRequest::new(1, SECOND, 2 * SECOND);
    let third = store.lease_rate("acme", request).await.unwrap();
    assert_about(third.ahead, 5 * SECOND, start);
    assert_about(third.wait(0, &request), 3 * SECOND, start);
}

pub async fn a_rate_lease_beyond_its_wait_leases_nothing(store: Arc<dyn Store>) {
    let start = Instant::now();
    store.lease_rate("acme", per_second(5)).await.unwrap();
    let bounded = per_second(1).max_wait(Some(SECOND));
    let refused = store.lease_rate("acme", bounded).await.unwrap();
    assert_eq!(refused.cells, 0);
    assert_about(refused.wait(0, &bounded), 5 * SECOND, start);
    // Nothing was taken: the next lease sees the same arrival time.
    let next = store.lease_rate("acme", per_second(1)).await.unwrap();
    assert_eq!(next.cells, 1);
    assert_about(next.ahead, 5 * SECOND, start);
    // A bound the wait fits in leases.
    let fits = per_second(1).max_wait(Some(LONG));
    assert_eq!(store.lease_rate("acme", fits).await.unwrap().cells, 1);
}

pub async fn concurrent_rate_leases_never_overlap(store: Arc<dyn Store>) {
    const LEASES: u32 = 20;
    let start = Instant::now();
    let leases: Vec<_> = (0..LEASES)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.lease_rate("acme", per_second(1)).await.unwrap() })
        })
        .collect();
    let mut seconds = Vec::new();
    for lease in leases {
        let slice = lease.await.unwrap();
        assert_eq!(slice.cells, 1);
        // Whole seconds apart, less the time the leases took.
        seconds.push((slice.ahead + start.elapsed()).as_secs());
    }
    seconds.sort_unstable();
    assert_eq!(seconds, (0..u64::from(LEASES)).collect::<Vec<_>>());
    let last = store.lease_rate("acme", per_second(1)).await.unwrap();
    assert_about(last.ahead, LEASES * SECOND, start);
}

pub async fn an_open_circuit_is_shared_until_it_expires(store: Arc<dyn Store>) {
    assert_eq!(store.circuit_open_for("acme").await.unwrap(), None);
    let start = Instant::now();
    store.open_circuit("acme", LONG).await.unwrap();
    assert_about(store.circuit_open_for("acme").await.unwrap().unwrap(), LONG, start);
    // A shorter open does not shorten it.
    store.open_circuit("acme", SHORT).await.unwrap();
    assert_about(store.circuit_open_for("acme").await.unwrap().unwrap(), LONG, start);
    assert_eq!(store.circuit_open_for("acme.send").await.unwrap(), None);
    // A short one expires by itself.
    store.open_circuit("acme.send", SHORT).await.unwrap();
    assert!(store.circuit_open_for("acme.send").await.unwrap().is_some());
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(store.circuit_open_for("acme.send").await.unwrap(), None);
    // And a later open reopens it.
    store.open_circuit("acme.send", LONG).await.unwrap();
    assert!(store.circuit_open_for("acme.send").await.unwrap().is_some());
}
