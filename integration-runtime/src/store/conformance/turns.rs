//! A worker's turn recorded in one write.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{call, create, ids, LONG};
use crate::lifecycle::{CallStatus, EventKind};
use crate::store::{AppendOutcome, CallId, NewEvent, Store};

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
    assert_eq!(record.next_run_at, Some(crate::store::truncate(poll_at)));
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
