//! Creating calls, and proving the store can write.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::{call, create, ids, LONG};
use crate::lifecycle::CallStatus;
use crate::store::{system_now as now, Created, NewCall, Store};

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
