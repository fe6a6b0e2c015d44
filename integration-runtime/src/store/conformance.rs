//! The contract every [`Store`] must meet, as checks on a fresh store:
//! what [`store_conformance_tests!`](crate::store_conformance_tests) runs,
//! one test per check. Leases here are tens of milliseconds, so nothing
//! sleeps long.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use super::{now, AppendOutcome, CallId, Created, ListOrder, ListQuery, NewCall, NewEvent, NotificationOutcome, Store};
use crate::lifecycle::{CallStatus, EventKind};

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

pub async fn create_makes_a_pending_due_call(store: Arc<dyn Store>) {
    let before = now();
    let id = create(&*store, call(1)).await;
    let record = store.get(id).await.unwrap().expect("created call exists");
    assert_eq!(record.id, id);
    assert_eq!(
        (record.integration.as_str(), record.endpoint.as_str()),
        ("acme", "send")
    );
    assert_eq!(record.status, CallStatus::Pending);
    assert_eq!(record.params, json!({"n": 1}));
    assert_eq!(record.attempts, 0);
    assert_eq!(
        (record.external_id, record.response_data, record.error),
        (None, None, None)
    );
    assert_eq!((record.lease_owner, record.lease_expires_at), (None, None));
    assert!(record.created_at >= before && record.created_at <= now());
    assert_eq!(record.updated_at, record.created_at);
    assert_eq!(record.completed_at, None);
    assert_eq!(record.next_run_at, Some(record.created_at));

    let with_events = store.get_with_events(id).await.unwrap().unwrap();
    assert!(with_events.events.is_empty());
    let unknown = uuid::Uuid::new_v4().to_string().parse().unwrap();
    assert_eq!(store.get(unknown).await.unwrap(), None);
    assert_eq!(store.get_with_events(unknown).await.unwrap(), None);
}

pub async fn create_with_idempotency_key_returns_the_existing_call(store: Arc<dyn Store>) {
    let first = store.create(call(1).idempotency_key("order-7")).await.unwrap();
    assert!(first.created);
    let again = store.create(call(1).idempotency_key("order-7")).await.unwrap();
    assert_eq!(
        again,
        Created {
            id: first.id,
            created: false
        }
    );

    // The key is per integration; no key means no deduplication.
    let other = store
        .create(NewCall::new("other", "send", json!({"n": 1})).idempotency_key("order-7"))
        .await
        .unwrap();
    assert!(other.created && other.id != first.id);
    let a = create(&*store, call(1)).await;
    let b = create(&*store, call(1)).await;
    assert_ne!(a, b);

    // The same key for another request is a mistake, not a replay.
    let error = store.create(call(2).idempotency_key("order-7")).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let error = store
        .create(NewCall::new("acme", "refund", json!({"n": 1})).idempotency_key("order-7"))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(store.count_by_status(Some("acme")).await.unwrap().total(), 3);
}

pub async fn create_with_a_future_run_at_is_not_due_yet(store: Arc<dyn Store>) {
    let later = Utc::now() + chrono::Duration::hours(1);
    let id = create(&*store, call(1).run_at(later)).await;
    assert!(ids(&*store, "w", 10, LONG).await.is_empty());
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        record.next_run_at.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
}

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

pub async fn same_event_key_twice_is_a_duplicate(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    let first = store
        .append_event(id, NewEvent::initialized("init:1", "ext-1"))
        .await
        .unwrap();
    assert!(matches!(
        first,
        AppendOutcome::Applied {
            from: CallStatus::Pending,
            to: CallStatus::Processing,
            ..
        }
    ));
    assert_eq!(first.call_id(), id);
    let again = store
        .append_event(id, NewEvent::initialized("init:1", "ext-1"))
        .await
        .unwrap();
    assert_eq!(
        again,
        AppendOutcome::Duplicate {
            call_id: id,
            event_id: first.event_id(),
            status: CallStatus::Processing
        }
    );

    // Same through the external id, for a webhook delivered twice; the
    // duplicate is recognised by key even if its content differs.
    let done = NewEvent::completed("delivery-9", json!({"ok": true}));
    let applied = store
        .append_event_by_external_id("acme", "ext-1", done.clone())
        .await
        .unwrap();
    assert!(applied.is_applied());
    let redelivered = NewEvent::failed("delivery-9", "whatever");
    let duplicate = store
        .append_event_by_external_id("acme", "ext-1", redelivered)
        .await
        .unwrap();
    assert!(duplicate.is_duplicate());
    assert_eq!(duplicate.event_id(), applied.event_id());
    assert_eq!(duplicate.status(), CallStatus::Completed);

    let stored = store.get_with_events(id).await.unwrap().unwrap();
    let keys: Vec<_> = stored.events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["init:1", "delivery-9"], "one row per key");
    assert_eq!(stored.call.response_data, Some(json!({"ok": true})));
    assert_eq!(stored.call.error, None);

    // Keys are per call: another call may use the same key.
    let other = create(&*store, call(2)).await;
    let reused = store.append_event(other, NewEvent::processing("init:1")).await.unwrap();
    assert!(reused.is_applied());

    let unknown: CallId = uuid::Uuid::new_v4().to_string().parse().unwrap();
    let error = store
        .append_event(unknown, NewEvent::processing("p"))
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
}

pub async fn out_of_order_events_never_move_backwards(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    store
        .append_event(id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    let completed = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::completed("c", json!(42)))
        .await
        .unwrap();
    assert!(matches!(
        completed,
        AppendOutcome::Applied {
            from: CallStatus::Processing,
            to: CallStatus::Completed,
            ..
        }
    ));
    let late = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::processing("p"))
        .await
        .unwrap();
    assert!(matches!(
        late,
        AppendOutcome::Ignored {
            status: CallStatus::Completed,
            ..
        }
    ));
    let failed = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::failed("f", "too late"))
        .await
        .unwrap();
    assert!(matches!(
        failed,
        AppendOutcome::Ignored {
            status: CallStatus::Completed,
            ..
        }
    ));

    let stored = store.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(stored.call.status, CallStatus::Completed);
    assert_eq!(stored.call.error, None, "an ignored failure writes no error");
    let log: Vec<_> = stored.events.iter().map(|e| (e.kind, e.applied)).collect();
    assert_eq!(
        log,
        [
            (EventKind::Initialized, true),
            (EventKind::Completed, true),
            (EventKind::Processing, false),
            (EventKind::Failed, false),
        ]
    );
    assert!(
        stored.events.windows(2).all(|w| w[0].id < w[1].id),
        "log in recording order"
    );
    assert!(stored.events.iter().all(|e| e.call_id == id));
    assert_eq!(stored.events[1].payload.result, Some(json!(42)));
    assert_eq!(stored.events[3].payload.error.as_deref(), Some("too late"));

    // A terminal event may arrive without the ones before it.
    let sync = create(&*store, call(2)).await;
    let done = store
        .append_event(sync, NewEvent::failed("f", "rejected").external_id("gen-1"))
        .await
        .unwrap();
    assert!(matches!(
        done,
        AppendOutcome::Applied {
            from: CallStatus::Pending,
            to: CallStatus::Failed,
            ..
        }
    ));
    let record = store.get(sync).await.unwrap().unwrap();
    assert_eq!(record.error.as_deref(), Some("rejected"));
    assert_eq!(record.external_id.as_deref(), Some("gen-1"));
    let late_init = store
        .append_event(sync, NewEvent::initialized("i", "gen-1"))
        .await
        .unwrap();
    assert!(matches!(
        late_init,
        AppendOutcome::Ignored {
            status: CallStatus::Failed,
            ..
        }
    ));
}

pub async fn terminal_state_is_reached_exactly_once(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    store
        .append_event(id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    let first = store
        .append_event(id, NewEvent::completed("c1", json!({"v": 1})))
        .await
        .unwrap();
    assert!(first.is_applied());
    let after_first = store.get(id).await.unwrap().unwrap();
    let completed_at = after_first.completed_at.expect("terminal sets completed_at");
    assert!(completed_at >= after_first.created_at);
    assert_eq!(after_first.response_data, Some(json!({"v": 1})));
    assert_eq!(after_first.next_run_at, None);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = store
        .append_event(id, NewEvent::completed("c2", json!({"v": 2})))
        .await
        .unwrap();
    assert!(matches!(second, AppendOutcome::Ignored { .. }));
    let failed = store.append_event(id, NewEvent::failed("f", "boom")).await.unwrap();
    assert!(matches!(failed, AppendOutcome::Ignored { .. }));
    let after = store.get(id).await.unwrap().unwrap();
    assert_eq!(after.completed_at, Some(completed_at));
    assert_eq!(after.response_data, Some(json!({"v": 1})));
    assert_eq!((after.status, after.error), (CallStatus::Completed, None));
    let events = store.get_with_events(id).await.unwrap().unwrap().events;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.applied && e.kind == EventKind::Completed)
            .count(),
        1
    );
}

pub async fn terminal_calls_are_never_claimed(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    // A webhook finishes the call while the worker still holds it...
    store
        .append_event(id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    store
        .append_event_by_external_id("acme", "ext-1", NewEvent::completed("c", json!(1)))
        .await
        .unwrap();
    // ...and the worker, unaware, schedules a poll: it must not run.
    store
        .reschedule(id, "w1", Some(Utc::now() - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty());
    assert_eq!(store.get(id).await.unwrap().unwrap().next_run_at, None);

    let failed = create(&*store, call(2)).await;
    store.append_event(failed, NewEvent::failed("f", "no")).await.unwrap();
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty());

    // A processing call with a due poll is claimable.
    let polling = create(&*store, call(3)).await;
    store
        .append_event(polling, NewEvent::initialized("i", "ext-3"))
        .await
        .unwrap();
    let claimed = store.claim("w2", 10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].status), (polling, CallStatus::Processing));
}

pub async fn find_and_append_by_external_id(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(store.find_by_external_id("acme", "ext-1").await.unwrap(), None);
    let early = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::completed("c", json!(1)))
        .await
        .unwrap_err();
    assert!(early.is_not_found(), "{early}");

    store
        .append_event(id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    let found = store
        .find_by_external_id("acme", "ext-1")
        .await
        .unwrap()
        .expect("found");
    assert_eq!((found.id, found.external_id.as_deref()), (id, Some("ext-1")));
    assert_eq!(store.find_by_external_id("other", "ext-1").await.unwrap(), None);

    let outcome = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::processing("p"))
        .await
        .unwrap();
    assert_eq!(outcome.call_id(), id);
    assert!(matches!(
        outcome,
        AppendOutcome::Ignored {
            status: CallStatus::Processing,
            ..
        }
    ));
}

pub async fn external_ids_are_unique_per_integration(store: Arc<dyn Store>) {
    let a = create(&*store, call(1)).await;
    let b = create(&*store, call(2)).await;
    store
        .append_event(a, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    let error = store
        .append_event(b, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let stored = store.get_with_events(b).await.unwrap().unwrap();
    assert_eq!(
        (stored.call.status, stored.call.external_id),
        (CallStatus::Pending, None)
    );
    assert!(stored.events.is_empty(), "a rejected event leaves no trace");

    // Another integration may use the same id.
    let other = create(&*store, NewCall::new("other", "send", json!({}))).await;
    store
        .append_event(other, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();

    // A call's external id never changes once set.
    let error = store
        .append_event(a, NewEvent::initialized("i2", "ext-2"))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let same = store
        .append_event(a, NewEvent::processing("p").external_id("ext-1"))
        .await
        .unwrap();
    assert!(!same.is_duplicate());
    assert_eq!(
        store.get(a).await.unwrap().unwrap().external_id.as_deref(),
        Some("ext-1")
    );
}

pub async fn pagination_has_no_duplicates_or_gaps(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for n in 0..23 {
        expected.push(create(&*store, call(n)).await);
        create(&*store, NewCall::new("other", "send", json!({}))).await;
    }
    let mut seen = Vec::new();
    let mut query = ListQuery::new("acme").limit(5);
    let mut pages = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        pages += 1;
        assert!(page.calls.len() <= 5);
        seen.extend(page.calls.iter().map(|c| c.id));
        if pages == 2 {
            // Calls created meanwhile neither shift nor repeat earlier pages.
            expected.push(create(&*store, call(100)).await);
        }
        match page.next {
            Some(next) => {
                let text = next.to_string();
                query = query.after(text.parse().expect("cursor round-trips"));
            }
            None => break,
        }
    }
    assert_eq!(seen, expected, "every call exactly once, in creation order");
    assert_eq!(pages, 5, "24 calls in pages of 5, no empty last page");

    let everything = store.list(&ListQuery::new("acme").limit(10_000)).await.unwrap();
    assert_eq!(everything.calls.len(), 24);
    assert_eq!(everything.next, None);
    let none = store.list(&ListQuery::new("nobody")).await.unwrap();
    assert!(none.calls.is_empty() && none.next.is_none());
}

pub async fn listing_filters_by_status_and_orders_newest_first(store: Arc<dyn Store>) {
    let mut processing = Vec::new();
    for n in 0..7 {
        let id = create(&*store, call(n)).await;
        if n % 2 == 0 {
            store
                .append_event(id, NewEvent::initialized("i", format!("ext-{n}")))
                .await
                .unwrap();
            processing.push(id);
        }
    }
    let mut seen = Vec::new();
    let mut query = ListQuery::new("acme")
        .status(CallStatus::Processing)
        .limit(3)
        .order(ListOrder::NewestFirst);
    loop {
        let page = store.list(&query).await.unwrap();
        assert!(page.calls.iter().all(|c| c.status == CallStatus::Processing));
        seen.extend(page.calls.iter().map(|c| c.id));
        match page.next {
            Some(next) => query = query.after(next),
            None => break,
        }
    }
    processing.reverse();
    assert_eq!(seen, processing);
    let pending = store
        .list(&ListQuery::new("acme").status(CallStatus::Pending))
        .await
        .unwrap();
    assert_eq!(pending.calls.len(), 3);
}

pub async fn count_by_status_counts_every_call(store: Arc<dyn Store>) {
    assert_eq!(store.count_by_status(None).await.unwrap().total(), 0);
    let ids: Vec<_> = {
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(create(&*store, call(n)).await);
        }
        ids
    };
    create(&*store, NewCall::new("other", "send", json!({}))).await;
    store
        .append_event(ids[0], NewEvent::initialized("i", "e0"))
        .await
        .unwrap();
    store
        .append_event(ids[1], NewEvent::completed("c", json!(1)))
        .await
        .unwrap();
    store.append_event(ids[2], NewEvent::failed("f", "x")).await.unwrap();
    store.append_event(ids[3], NewEvent::failed("f", "x")).await.unwrap();

    let acme = store.count_by_status(Some("acme")).await.unwrap();
    assert_eq!(
        [
            CallStatus::Pending,
            CallStatus::Processing,
            CallStatus::Completed,
            CallStatus::Failed
        ]
        .map(|s| acme.get(s)),
        [2, 1, 1, 2]
    );
    assert_eq!(acme.total(), 6);
    let all = store.count_by_status(None).await.unwrap();
    assert_eq!((all.pending, all.total()), (3, 7));
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
    assert_eq!(record.next_run_at, Some(super::truncate(later)));
    assert_eq!(record.lease_owner, None, "the lease is released");
    assert!(ids(&*store, "w", 10, LONG).await.is_empty(), "not due yet");
    let error = store.postpone(id, "w", later).await.unwrap_err();
    assert!(error.is_lease_lost(), "{error}");
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(ids(&*store, "w", 10, LONG).await, vec![id], "due again");
    let missing = store.postpone(CallId::new(), "w", later).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

pub async fn terminal_calls_are_notified_until_finished(store: Arc<dyn Store>) {
    let notified = |calls: Vec<crate::store::CallRecord>| calls.into_iter().map(|c| c.id).collect::<HashSet<_>>();
    let a = create(&*store, call(1)).await;
    let b = create(&*store, call(2)).await;
    let c = create(&*store, call(3)).await;
    assert!(store.claim_notifications(10, LONG).await.unwrap().is_empty());
    store
        .append_event(a, NewEvent::completed("t", json!({"ok": true})))
        .await
        .unwrap();
    store.append_event(b, NewEvent::failed("t", "no")).await.unwrap();
    store.append_event(c, NewEvent::processing("p")).await.unwrap();
    // A late terminal event is ignored and does not notify again.
    store.append_event(a, NewEvent::failed("late", "x")).await.unwrap();

    let one = store.claim_notifications(1, SHORT).await.unwrap();
    assert_eq!(one.len(), 1, "the limit holds");
    let rest = store.claim_notifications(10, SHORT).await.unwrap();
    let mut first = notified(one);
    first.extend(notified(rest.clone()));
    assert_eq!(first, HashSet::from([a, b]), "only terminal calls, each once");
    assert!(
        store.claim_notifications(10, SHORT).await.unwrap().is_empty(),
        "leased notifications are not handed out twice"
    );

    store
        .finish_notification(a, NotificationOutcome::Delivered)
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let again = store.claim_notifications(10, LONG).await.unwrap();
    assert_eq!(
        notified(again.clone()),
        HashSet::from([b]),
        "an expired lease is due again"
    );
    assert_eq!(again[0].status, CallStatus::Failed);

    store
        .finish_notification(b, NotificationOutcome::Retry(now()))
        .await
        .unwrap();
    assert_eq!(
        notified(store.claim_notifications(10, LONG).await.unwrap()),
        HashSet::from([b]),
        "a retry at a past time is due at once"
    );
    store
        .finish_notification(b, NotificationOutcome::Delivered)
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(store.claim_notifications(10, LONG).await.unwrap().is_empty());
    let missing = store
        .finish_notification(CallId::new(), NotificationOutcome::Delivered)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

pub async fn failed_notifications_are_counted_until_dead_lettered(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    store.append_event(id, NewEvent::failed("t", "no")).await.unwrap();
    for attempt in 1..=3 {
        let claimed = store.claim_notifications(10, LONG).await.unwrap();
        assert_eq!(claimed.len(), 1, "due again after {attempt} retries");
        assert_eq!(
            claimed[0].notification_attempts,
            attempt - 1,
            "the claim shows the failures so far"
        );
        store
            .finish_notification(id, NotificationOutcome::Retry(now()))
            .await
            .unwrap();
    }
    let stored = store.get(id).await.unwrap().expect("call exists");
    assert_eq!(stored.notification_attempts, 3, "every retry counted");
    assert_eq!(stored.notification_error, None, "a retry is not given up");

    assert_eq!(store.claim_notifications(10, LONG).await.unwrap().len(), 1);
    store
        .finish_notification(id, NotificationOutcome::DeadLetter("cannot decode".into()))
        .await
        .unwrap();
    let stored = store.get(id).await.unwrap().expect("call exists");
    assert_eq!(stored.notification_attempts, 4, "the dead letter counts too");
    assert_eq!(stored.notification_error.as_deref(), Some("cannot decode"));
    assert_eq!(stored.status, CallStatus::Failed, "the call itself is unchanged");
    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        store.claim_notifications(10, LONG).await.unwrap().is_empty(),
        "a dead letter is never delivered again"
    );
    let missing = store
        .finish_notification(CallId::new(), NotificationOutcome::DeadLetter("x".into()))
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
}

/// A call's log as `(kind, key, applied)`, oldest first.
async fn log_of(store: &dyn Store, id: CallId) -> Vec<(EventKind, String, bool)> {
    let stored = store.get_with_events(id).await.unwrap().expect("call exists");
    stored.events.into_iter().map(|e| (e.kind, e.key, e.applied)).collect()
}

/// What a sync provider answers: accepted, working, done.
fn sync_turn(external_id: &str) -> Vec<NewEvent> {
    vec![
        NewEvent::initialized("initialized", external_id),
        NewEvent::processing("processing"),
        NewEvent::completed("terminal", json!({"ok": true})),
    ]
}

pub async fn finish_turn_appends_and_reschedules_in_one_step(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    let outcomes = store
        .finish_turn(id, "w1", sync_turn("ext-1"), None)
        .await
        .expect("finish_turn");
    assert_eq!(outcomes.len(), 3);
    assert!(matches!(
        outcomes[0],
        AppendOutcome::Applied {
            from: CallStatus::Pending,
            to: CallStatus::Processing,
            ..
        }
    ));
    // `initialized` already moved the call to `processing`: recorded, not applied.
    assert!(matches!(
        outcomes[1],
        AppendOutcome::Ignored {
            status: CallStatus::Processing,
            ..
        }
    ));
    assert!(matches!(
        outcomes[2],
        AppendOutcome::Applied {
            from: CallStatus::Processing,
            to: CallStatus::Completed,
            ..
        }
    ));
    assert!(outcomes.iter().all(|o| o.call_id() == id));

    let stored = store.get_with_events(id).await.unwrap().unwrap();
    let record = &stored.call;
    assert_eq!(record.status, CallStatus::Completed);
    assert_eq!(record.external_id.as_deref(), Some("ext-1"));
    assert_eq!(record.response_data, Some(json!({"ok": true})));
    assert!(record.completed_at.is_some());
    assert_eq!(record.attempts, 1);
    assert_eq!((record.lease_owner.as_deref(), record.lease_expires_at), (None, None));
    assert_eq!(record.next_run_at, None);
    assert_eq!(
        stored.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        outcomes.iter().map(|o| o.event_id()).collect::<Vec<_>>(),
        "one event per outcome, in order"
    );
    let log = log_of(&*store, id).await;
    let expected = vec![
        (EventKind::Initialized, "initialized".to_owned(), true),
        (EventKind::Processing, "processing".to_owned(), false),
        (EventKind::Completed, "terminal".to_owned(), true),
    ];
    assert_eq!(log, expected);
    assert_eq!(
        store.find_by_external_id("acme", "ext-1").await.unwrap().map(|c| c.id),
        Some(id)
    );
    let notified = store.claim_notifications(10, LONG).await.unwrap();
    assert_eq!(
        notified.iter().map(|c| c.id).collect::<Vec<_>>(),
        [id],
        "a terminal turn is notified"
    );

    // The turn released the lease: the same turn again, by anyone, is refused.
    for worker in ["w2", "w1"] {
        let error = store
            .finish_turn(id, worker, sync_turn("ext-1"), None)
            .await
            .unwrap_err();
        assert!(error.is_lease_lost(), "{worker}: {error}");
    }
    assert_eq!(log_of(&*store, id).await, expected);
    assert_eq!(store.get(id).await.unwrap().unwrap(), *record);
}

pub async fn finish_turn_that_does_not_end_the_call_schedules_the_next_run(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    let poll_at = Utc::now() + chrono::Duration::minutes(5);
    let events = vec![
        NewEvent::initialized("initialized", "ext-1"),
        NewEvent::processing("processing"),
    ];
    let outcomes = store.finish_turn(id, "w1", events, Some(poll_at)).await.unwrap();
    assert_eq!(
        outcomes
            .iter()
            .map(|o| (o.status(), o.is_applied()))
            .collect::<Vec<_>>(),
        [(CallStatus::Processing, true), (CallStatus::Processing, false)]
    );
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(record.status, CallStatus::Processing);
    assert_eq!(record.external_id.as_deref(), Some("ext-1"));
    assert_eq!(record.next_run_at, Some(super::truncate(poll_at)));
    assert_eq!(record.attempts, 1);
    assert_eq!((record.lease_owner, record.lease_expires_at), (None, None));
    assert_eq!((record.completed_at, record.response_data), (None, None));
    assert!(ids(&*store, "w2", 10, LONG).await.is_empty(), "not due yet");
    assert!(store.claim_notifications(10, LONG).await.unwrap().is_empty());

    // A turn without events is a reschedule; a due time in the past makes
    // the call claimable at once.
    let retry = create(&*store, call(2)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [retry]);
    let past = Utc::now() - chrono::Duration::seconds(1);
    assert!(store
        .finish_turn(retry, "w1", Vec::new(), Some(past))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [retry]);
    let record = store.get(retry).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (CallStatus::Pending, 1));
}

pub async fn finish_turn_replays_and_ignores_events_like_append(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [id]);
    // An earlier, interrupted turn recorded `initialized` already.
    let first = store
        .append_event(id, NewEvent::initialized("initialized", "ext-1"))
        .await
        .unwrap();
    let events = vec![
        NewEvent::initialized("initialized", "ext-1"),
        NewEvent::completed("terminal", json!(1)),
        NewEvent::failed("late", "too late"),
        NewEvent::completed("terminal", json!(2)),
    ];
    // A due poll asked for, but the call is terminal now: no next run.
    let past = Utc::now() - chrono::Duration::seconds(1);
    let outcomes = store.finish_turn(id, "w1", events, Some(past)).await.unwrap();
    assert_eq!(
        outcomes[0],
        AppendOutcome::Duplicate {
            call_id: id,
            event_id: first.event_id(),
            status: CallStatus::Processing
        }
    );
    assert!(outcomes[1].is_applied() && outcomes[1].status() == CallStatus::Completed);
    assert!(matches!(
        outcomes[2],
        AppendOutcome::Ignored {
            status: CallStatus::Completed,
            ..
        }
    ));
    // A key repeated within the turn is a duplicate of the event just recorded.
    assert_eq!(
        outcomes[3],
        AppendOutcome::Duplicate {
            call_id: id,
            event_id: outcomes[1].event_id(),
            status: CallStatus::Completed
        }
    );
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!((record.status, record.error), (CallStatus::Completed, None));
    assert_eq!(record.response_data, Some(json!(1)), "terminal fields are written once");
    assert_eq!((record.next_run_at, record.attempts), (None, 1));
    assert_eq!(
        log_of(&*store, id).await,
        [
            (EventKind::Initialized, "initialized".to_owned(), true),
            (EventKind::Completed, "terminal".to_owned(), true),
            (EventKind::Failed, "late".to_owned(), false),
        ]
    );
    assert!(
        ids(&*store, "w2", 10, LONG).await.is_empty(),
        "terminal calls are never claimed"
    );
}

pub async fn finish_turn_with_a_conflict_writes_nothing(store: Arc<dyn Store>) {
    let first = create(&*store, call(1)).await;
    let second = create(&*store, call(2)).await;
    assert_eq!(ids(&*store, "w1", 1, LONG).await, [first]);
    store
        .finish_turn(first, "w1", sync_turn("x"), None)
        .await
        .expect("first call's turn");
    assert_eq!(ids(&*store, "w1", 10, LONG).await, [second]);
    let before = store.get(second).await.unwrap().unwrap();

    let turns = [
        // The external id belongs to the first call.
        vec![
            NewEvent::initialized("initialized", "x"),
            NewEvent::processing("processing"),
        ],
        // The same, after an event that alone would have moved the call.
        vec![
            NewEvent::processing("processing"),
            NewEvent::initialized("initialized", "x"),
        ],
        // The call's own external id, contradicted by a later event.
        vec![
            NewEvent::initialized("initialized", "y"),
            NewEvent::processing("processing").external_id("z"),
        ],
    ];
    for (n, events) in turns.into_iter().enumerate() {
        let error = store.finish_turn(second, "w1", events, None).await.unwrap_err();
        assert!(error.is_conflict() && !error.is_lease_lost(), "turn {n}: {error}");
        let after = store.get_with_events(second).await.unwrap().unwrap();
        assert!(after.events.is_empty(), "turn {n} left events: {:?}", after.events);
        assert_eq!(after.call.status, CallStatus::Pending, "turn {n}");
        assert_eq!(after.call.external_id, None, "turn {n}");
        assert_eq!(after.call.attempts, 0, "turn {n}");
        assert_eq!(
            after.call.lease_owner.as_deref(),
            Some("w1"),
            "turn {n}: the lease is kept"
        );
        assert_eq!(after.call, before, "turn {n}");
        assert_eq!(store.find_by_external_id("acme", "y").await.unwrap(), None, "turn {n}");
    }
    let owner = store
        .find_by_external_id("acme", "x")
        .await
        .unwrap()
        .expect("x is taken");
    assert_eq!((owner.id, owner.status), (first, CallStatus::Completed));
    assert_eq!(log_of(&*store, first).await.len(), 3);

    // Nothing of the failed turns lingers: the worker still finishes its turn.
    let events = vec![
        NewEvent::initialized("initialized", "y"),
        NewEvent::processing("processing"),
    ];
    let outcomes = store.finish_turn(second, "w1", events, None).await.unwrap();
    assert!(outcomes.iter().all(|o| !o.is_duplicate()), "{outcomes:?}");
    let record = store.get(second).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (CallStatus::Processing, 1));
    assert_eq!(record.external_id.as_deref(), Some("y"));
}

pub async fn finish_turn_without_the_lease_writes_nothing(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    let error = store.finish_turn(id, "w1", sync_turn("ext-1"), None).await.unwrap_err();
    assert!(error.is_lease_lost(), "not claimed: {error}");

    // Leased to another worker.
    assert_eq!(ids(&*store, "w2", 10, LONG).await, [id]);
    let error = store.finish_turn(id, "w1", sync_turn("ext-1"), None).await.unwrap_err();
    assert!(error.is_lease_lost(), "leased to w2: {error}");
    let stored = store.get_with_events(id).await.unwrap().unwrap();
    assert!(stored.events.is_empty(), "{:?}", stored.events);
    assert_eq!(
        (stored.call.status, stored.call.external_id),
        (CallStatus::Pending, None)
    );
    assert_eq!(stored.call.attempts, 0);
    assert_eq!(stored.call.lease_owner.as_deref(), Some("w2"));
    assert_eq!(store.find_by_external_id("acme", "ext-1").await.unwrap(), None);
    assert!(store.claim_notifications(10, LONG).await.unwrap().is_empty());

    let unknown = CallId::new();
    let error = store
        .finish_turn(unknown, "w1", sync_turn("ext-2"), None)
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert_eq!(store.find_by_external_id("acme", "ext-2").await.unwrap(), None);
}

pub async fn a_healthy_store_passes_the_write_probe_and_keeps_its_calls(store: Arc<dyn Store>) {
    let id = create(store.as_ref(), call(1)).await;
    for _ in 0..3 {
        store.probe_write().await.expect("a healthy store can write");
    }
    assert_eq!(
        store.count_by_status(None).await.unwrap().total(),
        1,
        "the probe adds no call"
    );
    let kept = store.get(id).await.unwrap().expect("the call is still there");
    assert_eq!(kept.status, CallStatus::Pending);
}
