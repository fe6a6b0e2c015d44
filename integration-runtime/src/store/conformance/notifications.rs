//! Terminal notifications: claimed, finished, retried, dead-lettered.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::{call, create, LONG, PAST_SHORT, SHORT};
use crate::lifecycle::CallStatus;
use crate::store::{system_now as now, CallId, NewEvent, NotificationOutcome, Store};

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
