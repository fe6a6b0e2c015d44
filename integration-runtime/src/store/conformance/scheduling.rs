//! Calls due later: when the next one is due, and that none is claimed early.

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{call, create, ids, LONG};
use crate::store::{system_now as now, truncate, BoxFuture, NewEvent, Store};

fn in_ms(ms: i64) -> DateTime<Utc> {
    truncate(now() + chrono::Duration::milliseconds(ms))
}

pub async fn next_due_is_the_earliest_call_no_lease_holds(store: Arc<dyn Store>) {
    assert_eq!(store.next_due().await.unwrap(), None, "nothing scheduled");
    let (hour, two_hours) = (in_ms(3_600_000), in_ms(7_200_000));
    create(&*store, call(1).run_at(two_hours)).await;
    create(&*store, call(2).run_at(hour)).await;
    assert_eq!(store.next_due().await.unwrap(), Some(hour));

    let now_due = create(&*store, call(3)).await;
    let due = store.next_due().await.unwrap().expect("a call is due");
    assert!(due <= now(), "a call due now is due in the past: {due}");

    // Leased for longer than until its due time: not claimable, left out.
    assert_eq!(ids(&*store, "w", 1, LONG).await, vec![now_due]);
    assert_eq!(store.next_due().await.unwrap(), Some(hour));

    // Rescheduled sooner than the others: the earliest again.
    let half_hour = in_ms(1_800_000);
    store.reschedule(now_due, "w", Some(half_hour)).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(half_hour));

    // A terminal call is never due.
    store
        .append_event(now_due, NewEvent::failed("gave-up", "no more"))
        .await
        .unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(hour));
}

pub async fn claim_never_returns_a_call_before_its_run_at(store: Arc<dyn Store>) {
    let mut pending = Vec::new();
    for n in 0..6 {
        let at = in_ms(150 + 60 * i64::from(n));
        pending.push((create(&*store, call(n).run_at(at)).await, at));
    }
    let claiming = tokio::time::timeout(Duration::from_secs(10), async {
        while !pending.is_empty() {
            let claimed = store.claim("w", 10, LONG).await.expect("claim");
            let after = now();
            for record in claimed {
                let at = record.next_run_at.expect("a claimed call is scheduled");
                assert!(at <= after, "claimed at {after}, due at {at}");
                pending.retain(|(id, _)| *id != record.id);
            }
            for (id, at) in &pending {
                assert!(
                    *at > now() - chrono::Duration::seconds(2),
                    "{id} due at {at} was never claimed"
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(claiming.is_ok(), "some calls were never claimed");
}

pub async fn wait_for_work_wakes_when_a_call_is_scheduled_later(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w", 1, LONG).await, vec![id]);
    let waiting = registered(&*store);
    let later = Some(in_ms(3_600_000));
    store.finish_turn(id, "w", Vec::new(), later).await.expect("turn");
    let woke = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(woke.is_ok(), "a turn scheduling its call an hour ahead woke nobody");

    let waiting = registered(&*store);
    create(&*store, call(2).run_at(in_ms(1_800_000))).await;
    let woke = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(woke.is_ok(), "a call created for later woke nobody");
}

/// A wait for work, polled once so that it is registered before the write
/// that must wake it.
fn registered(store: &dyn Store) -> BoxFuture<'_, ()> {
    let mut context = Context::from_waker(Waker::noop());
    // A wait may end at once (a listener that just connected wakes
    // everyone); the next one is the one that counts.
    for _ in 0..10 {
        let mut waiting = store.wait_for_work();
        if waiting.as_mut().poll(&mut context).is_pending() {
            return waiting;
        }
    }
    panic!("wait_for_work keeps waking with no write");
}
