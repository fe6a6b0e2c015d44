//! Claiming due calls under leases, and giving them back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{call, create, ids, LONG, PAST_SHORT, SHORT};
use crate::store::{system_now as now, CallId, Store};

pub async fn claim_respects_the_limit_and_due_order(store: Arc<dyn Store>) {
    let start = Utc::now() - chrono::Duration::seconds(10);
    let mut created = Vec::new();
    // Created in reverse due order: claims must follow next_run_at, not creation.
    for n in 0..5 {
        let at = start - chrono::Duration::seconds(i64::from(n));
        created.push(create(&*store, call(n).run_at(at)).await);
    }
    created.reverse();

    let before = now();
    let first = store.claim("w1", 2, LONG).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), created[..2]);
    for claimed in &first {
        assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
        let until = claimed.lease_expires_at.expect("leased");
        assert!(until >= before + chrono::Duration::seconds(59), "{until} vs {before}");
        assert_eq!(store.get(claimed.id).await.unwrap().unwrap(), *claimed);
    }
    assert_eq!(ids(&*store, "w2", 10, LONG).await, created[2..]);
    assert!(ids(&*store, "w3", 10, LONG).await.is_empty());
    assert!(ids(&*store, "w3", 0, LONG).await.is_empty());
}

pub async fn concurrent_claimers_never_share_a_call(store: Arc<dyn Store>) {
    const CALLS: u32 = 60;
    for n in 0..CALLS {
        create(&*store, call(n)).await;
    }
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = ids(&*store, &format!("w{w}"), 3, LONG).await;
                    if batch.is_empty() {
                        break mine;
                    }
                    assert!(batch.len() <= 3);
                    mine.extend(batch);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a call was claimed twice");
    assert_eq!(all.len(), CALLS as usize);
}

pub async fn an_expired_lease_is_claimable_again(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    let claimed_at = Instant::now();
    assert_eq!(ids(&*store, "w1", 10, SHORT).await, [id]);
    let early = ids(&*store, "w2", 10, SHORT).await;
    // Only a claim within the lease must find nothing (a loaded machine may
    // take longer than the lease between two statements).
    assert!(
        early.is_empty() || claimed_at.elapsed() >= SHORT,
        "lease not yet expired"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [id]);

    // The first worker lost it: none of its lease operations may succeed.
    for error in [
        store.extend_lease(id, "w1", LONG).await.unwrap_err(),
        store.release(id, "w1").await.unwrap_err(),
        store.reschedule(id, "w1", Some(Utc::now())).await.unwrap_err(),
    ] {
        assert!(error.is_lease_lost() && error.is_conflict(), "{error}");
    }
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.lease_owner.as_deref(), Some("w2"));
    assert_eq!(record.attempts, 0);
}

pub async fn extending_a_lease_keeps_the_call(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, SHORT).await, [id]);
    store.extend_lease(id, "w1", LONG).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty());
    let record = store.get(id).await.unwrap().unwrap();
    assert!(record.lease_expires_at.unwrap() > now() + chrono::Duration::seconds(30));
}

pub async fn release_and_lease_checks(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    let error = store.release(id, "w2").await.unwrap_err();
    assert!(error.is_lease_lost(), "{error}");
    store.release(id, "w1").await.unwrap();
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!((record.lease_owner, record.lease_expires_at), (None, None));
    assert_eq!(record.attempts, 0, "release is not an attempt");
    // Released and still due: claimable at once.
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [id]);

    let unknown: CallId = uuid::Uuid::new_v4().to_string().parse().unwrap();
    for error in [
        store.release(unknown, "w1").await.unwrap_err(),
        store.extend_lease(unknown, "w1", LONG).await.unwrap_err(),
        store.reschedule(unknown, "w1", None).await.unwrap_err(),
    ] {
        assert!(error.is_not_found(), "{error}");
    }
}

pub async fn reschedule_sets_the_next_run_and_counts_attempts(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    let later = Utc::now() + chrono::Duration::minutes(5);
    store.reschedule(id, "w1", Some(later)).await.unwrap();
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.attempts, 1);
    assert_eq!((record.lease_owner, record.lease_expires_at), (None, None));
    assert_eq!(
        record.next_run_at.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty(), "not due yet");

    // Rescheduling released the lease: the worker cannot reschedule again.
    let error = store.reschedule(id, "w1", None).await.unwrap_err();
    assert!(error.is_lease_lost(), "{error}");

    // `None` parks the call; a due time in the past makes it claimable at once.
    let parked = create(&*store, call(2)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [parked]);
    store.reschedule(parked, "w1", None).await.unwrap();
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty());
    assert_eq!(store.get(parked).await.unwrap().unwrap().next_run_at, None);

    let retry = create(&*store, call(3)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [retry]);
    store
        .reschedule(retry, "w1", Some(Utc::now() - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [retry]);
    store.reschedule(retry, "w2", Some(Utc::now())).await.unwrap();
    assert_eq!(store.get(retry).await.unwrap().unwrap().attempts, 2);
}

pub async fn wait_for_work_wakes_on_create(store: Arc<dyn Store>) {
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_work().await })
    };
    // Keep creating until the waiter has registered and been woken: it is a
    // hint, and the test must not depend on when the task first runs.
    let woke = tokio::time::timeout(Duration::from_secs(5), async {
        let mut n = 0;
        while !waiter.is_finished() {
            create(&*store, call(n)).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(woke.is_ok(), "wait_for_work never woke");
}

pub async fn postpone_does_not_count_an_attempt(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w", 10, LONG).await, vec![id]);
    let later = now() + chrono::Duration::milliseconds(80);
    store.postpone(id, "w", later).await.expect("postpone");
    let record = store.get(id).await.unwrap().expect("call");
    assert_eq!(record.attempts, 0, "postponing is not an attempt");
    assert_eq!(record.next_run_at, Some(crate::store::truncate(later)));
    assert_eq!(record.lease_owner, None, "the lease is released");
    assert!(ids(&*store, "w", 10, LONG).await.is_empty(), "not due yet");
    let error = store.postpone(id, "w", later).await.unwrap_err();
    assert!(error.is_lease_lost(), "{error}");
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(ids(&*store, "w", 10, LONG).await, vec![id], "due again");
    let missing = store.postpone(CallId::new(), "w", later).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

pub async fn a_call_created_under_a_lease_is_its_owners_until_the_lease_ends(store: Arc<dyn Store>) {
    let before = now();
    let leased = store.create(call(1).leased_to("w1", LONG)).await.unwrap();
    assert!(leased.created);
    let record = store.get(leased.id).await.unwrap().unwrap();
    assert_eq!(record.lease_owner.as_deref(), Some("w1"));
    let until = record.lease_expires_at.expect("leased at creation");
    assert!(until >= before + chrono::Duration::seconds(59), "{until} vs {before}");
    // Due as any new call: claimable by anyone once the lease is gone.
    assert_eq!(record.next_run_at, Some(record.created_at));

    // Nobody else claims it; its owner works it like a claimed call.
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty());
    store.extend_lease(leased.id, "w1", LONG).await.unwrap();
    assert!(store
        .extend_lease(leased.id, "w2", LONG)
        .await
        .unwrap_err()
        .is_lease_lost());
    store.release(leased.id, "w1").await.unwrap();
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [leased.id]);

    // A lease that runs out (its owner crashed) leaves the call claimable.
    let orphan = store.create(call(2).leased_to("gone", SHORT)).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(ids(&*store, "w3", 10, LONG).await, [orphan.id]);

    // A replayed key leases nothing: the existing call stays as it was.
    let first = store.create(call(3).idempotency_key("k")).await.unwrap();
    let again = store
        .create(call(3).idempotency_key("k").leased_to("w4", LONG))
        .await
        .unwrap();
    assert_eq!((again.id, again.created), (first.id, false));
    let existing = store.get(first.id).await.unwrap().unwrap();
    assert_eq!((existing.lease_owner, existing.lease_expires_at), (None, None));
}
