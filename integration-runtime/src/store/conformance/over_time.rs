//! What a call keeps for its life over time: its deadline, the spec it was
//! created under, and why it failed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{call, create, ids, LONG};
use crate::failure::FailureKind;
use crate::lifecycle::CallStatus;
use crate::store::{system_now as now, truncate, NewEvent, Store};

pub async fn a_call_keeps_its_deadline_and_spec_fingerprint(store: Arc<dyn Store>) {
    // Due later: the deadline counts from when the call is due.
    let due = now() + chrono::Duration::minutes(5);
    let scheduled = call(1)
        .run_at(due)
        .give_up_after(Duration::from_millis(90_500))
        .spec_fingerprint("fnv1a64:00000000000000aa");
    let id = create(&*store, scheduled).await;
    let record = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        record.deadline_at,
        Some(truncate(due) + chrono::Duration::milliseconds(90_500))
    );
    assert_eq!(record.spec_fingerprint.as_deref(), Some("fnv1a64:00000000000000aa"));

    // Due now: from its creation. Without a limit or fingerprint: none.
    let now_due = create(&*store, call(2).give_up_after(Duration::from_secs(1))).await;
    let record = store.get(now_due).await.unwrap().unwrap();
    assert_eq!(
        record.deadline_at,
        Some(record.created_at + chrono::Duration::seconds(1))
    );
    let plain = create(&*store, call(3)).await;
    let record = store.get(plain).await.unwrap().unwrap();
    assert_eq!((record.deadline_at, record.spec_fingerprint), (None, None));
    // Listing and claiming read them too.
    let claimed = store.claim("w", 10, LONG).await.unwrap();
    let with_deadline = claimed.iter().find(|c| c.id == now_due).expect("due now");
    assert!(with_deadline.deadline_at.is_some());
}

pub async fn a_failure_keeps_the_kind_its_terminal_event_says(store: Arc<dyn Store>) {
    // Failed by an append, by a worker's turn, and by external id.
    let appended = create(&*store, call(1)).await;
    let turned = create(&*store, call(2)).await;
    let external = create(&*store, call(3)).await;
    let completed = create(&*store, call(4)).await;
    let timeout = NewEvent::failed("terminal", "timed out").error_kind(FailureKind::Timeout);
    store.append_event(appended, timeout).await.unwrap();
    assert_eq!(ids(&*store, "w", 10, LONG).await.len(), 3);
    let rejected = NewEvent::failed("terminal", "HTTP 422").error_kind(FailureKind::Rejected);
    let turn = vec![NewEvent::initialized("initialized", "ext-2"), rejected];
    store.finish_turn(turned, "w", turn, None).await.unwrap();
    store
        .append_event(external, NewEvent::initialized("initialized", "ext-3"))
        .await
        .unwrap();
    let cancelled = NewEvent::failed("terminal", "cancelled").error_kind(FailureKind::Cancelled);
    store
        .append_event_by_external_id("acme", "ext-3", cancelled)
        .await
        .unwrap();
    store
        .append_event(completed, NewEvent::completed("terminal", json!({"ok": true})))
        .await
        .unwrap();

    let kind = |id| {
        let store = Arc::clone(&store);
        async move {
            let call = store.get(id).await.unwrap().unwrap();
            (call.status, call.error_kind)
        }
    };
    assert_eq!(kind(appended).await, (CallStatus::Failed, Some(FailureKind::Timeout)));
    assert_eq!(kind(turned).await, (CallStatus::Failed, Some(FailureKind::Rejected)));
    assert_eq!(kind(external).await, (CallStatus::Failed, Some(FailureKind::Cancelled)));
    assert_eq!(kind(completed).await, (CallStatus::Completed, None));

    // A later failure is recorded, not applied: the first kind stays.
    let late = NewEvent::failed("late", "provider said no").error_kind(FailureKind::ProviderFailed);
    store.append_event(appended, late).await.unwrap();
    assert_eq!(kind(appended).await, (CallStatus::Failed, Some(FailureKind::Timeout)));
    let logged = store.get_with_events(appended).await.unwrap().unwrap();
    assert_eq!(
        logged.events.last().unwrap().payload.error_kind,
        Some(FailureKind::ProviderFailed),
        "the log keeps what the ignored event said"
    );
    // Listing reads the kind too.
    let page = store
        .list(&crate::store::ListQuery::new("acme").status(CallStatus::Failed))
        .await
        .unwrap();
    assert!(page.calls.iter().all(|c| c.error_kind.is_some()));
}
