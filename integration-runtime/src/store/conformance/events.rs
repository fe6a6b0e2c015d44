//! Appending events: idempotent, folded forward only, terminal once,
//! by call id or by external id.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{call, create, ids, LONG};
use crate::lifecycle::{CallStatus, EventKind};
use crate::store::{AppendOutcome, CallId, NewCall, NewEvent, Store};

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
