//! Pruning finished calls: what goes, what stays.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{call, create, LONG};
use crate::lifecycle::CallStatus;
use crate::store::{CallId, ListQuery, NewEvent, NotificationOutcome, PruneRule, Store};

/// Far enough ahead that every call stored by a check completed before it.
fn far_future() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(365)
}

fn rule(statuses: &[CallStatus], before: DateTime<Utc>) -> PruneRule {
    PruneRule::new(statuses.iter().copied(), before).expect("terminal statuses")
}

const BOTH: [CallStatus; 2] = [CallStatus::Completed, CallStatus::Failed];

/// Creates a call with external id `ext-<n>` and ends it with `end`
/// (`None`: leaves it `processing`); its notification, if any, is delivered.
async fn finished(store: &dyn Store, n: u32, end: Option<NewEvent>) -> CallId {
    let id = create(store, call(n)).await;
    store
        .append_event(id, NewEvent::initialized("i", format!("ext-{n}")))
        .await
        .unwrap();
    store.append_event(id, NewEvent::processing("p")).await.unwrap();
    if let Some(end) = end {
        store.append_event(id, end).await.unwrap();
        store
            .finish_notification(id, NotificationOutcome::Delivered)
            .await
            .unwrap();
    }
    id
}

async fn completed(store: &dyn Store, n: u32) -> CallId {
    finished(store, n, Some(NewEvent::completed("t", json!({"n": n})))).await
}

async fn failed(store: &dyn Store, n: u32) -> CallId {
    finished(store, n, Some(NewEvent::failed("t", "no"))).await
}

/// Just after call `id` completed: a cutoff that takes it and no call
/// completed a few milliseconds later.
async fn just_after(store: &dyn Store, id: CallId) -> DateTime<Utc> {
    let completed_at = store.get(id).await.unwrap().unwrap().completed_at.expect("terminal");
    // Calls finished after this sleep complete strictly after the cutoff.
    tokio::time::sleep(Duration::from_millis(5)).await;
    completed_at + chrono::Duration::milliseconds(1)
}

async fn exists(store: &dyn Store, id: CallId) -> bool {
    store.get(id).await.unwrap().is_some()
}

pub async fn prune_takes_old_terminal_calls_of_the_statuses_asked(store: Arc<dyn Store>) {
    let old_done = finished(&*store, 1, Some(NewEvent::completed("t", json!({})))).await;
    let old_failed = failed(&*store, 2).await;
    let cutoff = just_after(&*store, old_failed).await;
    let new_done = completed(&*store, 3).await;
    let running = finished(&*store, 4, None).await;
    let pending = create(&*store, call(5)).await;
    let other = create(&*store, crate::store::NewCall::new("other", "send", json!({}))).await;
    store.append_event(other, NewEvent::failed("t", "no")).await.unwrap();
    store
        .finish_notification(other, NotificationOutcome::Delivered)
        .await
        .unwrap();
    let before = store.count_by_status(None).await.unwrap();

    let completed_only = store.prune(&rule(&[CallStatus::Completed], cutoff), 100).await.unwrap();
    assert_eq!(completed_only, 1, "only the completed call older than the cutoff");
    assert!(!exists(&*store, old_done).await);
    assert!(exists(&*store, old_failed).await, "failed calls were not asked for");
    assert!(exists(&*store, new_done).await, "completed after the cutoff");

    let failed_too = store.prune(&rule(&BOTH, cutoff), 100).await.unwrap();
    assert_eq!(failed_too, 1, "the failed call older than the cutoff");
    assert!(!exists(&*store, old_failed).await);
    let after = store.count_by_status(None).await.unwrap();
    assert_eq!(after.completed, before.completed - 1);
    assert_eq!(after.failed, before.failed - 1);
    assert_eq!(after.total(), before.total() - 2, "nothing else left the counts");

    // Every call of every integration, whatever its status: only the
    // running and pending ones are left after this.
    let everything = store.prune(&rule(&BOTH, far_future()), 100).await.unwrap();
    assert_eq!(
        everything, 2,
        "the newer completed call and the other integration's failed one"
    );
    let left = store.list(&ListQuery::new("acme")).await.unwrap();
    let mut left: Vec<_> = left.calls.iter().map(|c| (c.id, c.status)).collect();
    left.sort();
    let mut expected = vec![(running, CallStatus::Processing), (pending, CallStatus::Pending)];
    expected.sort();
    assert_eq!(left, expected, "calls still running are never pruned");
    let kept = store
        .get_with_events(running)
        .await
        .unwrap()
        .expect("running call kept");
    assert_eq!(kept.events.len(), 2, "a kept call keeps its events");
    assert!(store.list(&ListQuery::new("other")).await.unwrap().calls.is_empty());
    assert_eq!(store.count_by_status(None).await.unwrap().total(), 2);
}

pub async fn a_pruned_call_is_gone_with_its_events_and_keys(store: Arc<dyn Store>) {
    let keyed = call(1).idempotency_key("order-1");
    let id = create(&*store, keyed.clone()).await;
    store
        .append_event(id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    store
        .append_event(id, NewEvent::completed("t", json!({"ok": true})))
        .await
        .unwrap();
    store
        .finish_notification(id, NotificationOutcome::Delivered)
        .await
        .unwrap();
    assert_eq!(store.get_with_events(id).await.unwrap().unwrap().events.len(), 2);

    assert_eq!(store.prune(&rule(&BOTH, far_future()), 10).await.unwrap(), 1);
    assert!(store.get(id).await.unwrap().is_none());
    assert!(
        store.get_with_events(id).await.unwrap().is_none(),
        "its events went with it"
    );
    assert!(store.find_by_external_id("acme", "ext-1").await.unwrap().is_none());
    assert!(store
        .list(&ListQuery::new("acme").status(CallStatus::Completed))
        .await
        .unwrap()
        .calls
        .is_empty());
    assert_eq!(store.count_by_status(Some("acme")).await.unwrap().total(), 0);
    let appended = store
        .append_event_by_external_id("acme", "ext-1", NewEvent::processing("late"))
        .await
        .unwrap_err();
    assert!(appended.is_not_found(), "{appended}");

    // The key and the external id are free again: a new call takes both.
    let again = store.create(keyed).await.unwrap();
    assert!(again.created, "the idempotency key names no call any more");
    assert_ne!(again.id, id);
    store
        .append_event(again.id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    let found = store.find_by_external_id("acme", "ext-1").await.unwrap().unwrap();
    assert_eq!(found.id, again.id);
    assert_eq!(
        store.get_with_events(again.id).await.unwrap().unwrap().events.len(),
        1,
        "no event of the pruned call shows up on the new one"
    );
}

pub async fn prune_keeps_calls_whose_notification_is_pending(store: Arc<dyn Store>) {
    let id = create(&*store, call(1)).await;
    store.append_event(id, NewEvent::failed("t", "no")).await.unwrap();
    let all = rule(&BOTH, far_future());
    assert_eq!(store.prune(&all, 10).await.unwrap(), 0, "hooks not delivered yet");

    let claimed = store.claim_notifications(10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(store.prune(&all, 10).await.unwrap(), 0, "hooks being delivered");

    let later = Utc::now() + chrono::Duration::hours(1);
    store
        .finish_notification(id, NotificationOutcome::Retry(later))
        .await
        .unwrap();
    assert_eq!(store.prune(&all, 10).await.unwrap(), 0, "hooks to retry");
    assert!(exists(&*store, id).await);

    store
        .finish_notification(id, NotificationOutcome::DeadLetter("gone".into()))
        .await
        .unwrap();
    assert_eq!(
        store.prune(&all, 10).await.unwrap(),
        1,
        "hooks given up: nothing left to deliver"
    );
    assert!(!exists(&*store, id).await);
}

pub async fn prune_takes_the_oldest_first_up_to_the_limit(store: Arc<dyn Store>) {
    // Created a, b, c; finished c, a, b: the order to prune is c, a, b.
    let [a, b, c] = [
        finished(&*store, 1, None).await,
        finished(&*store, 2, None).await,
        finished(&*store, 3, None).await,
    ];
    for (id, end) in [
        (c, NewEvent::completed("t", json!({}))),
        (a, NewEvent::failed("t", "no")),
        (b, NewEvent::completed("t", json!({}))),
    ] {
        store.append_event(id, end).await.unwrap();
        store
            .finish_notification(id, NotificationOutcome::Delivered)
            .await
            .unwrap();
        // Distinct completion times, to the millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all = rule(&BOTH, far_future());
    assert_eq!(store.prune(&all, 0).await.unwrap(), 0, "a limit of 0 deletes nothing");
    assert_eq!(store.prune(&all, 2).await.unwrap(), 2, "the limit holds");
    assert!(
        !exists(&*store, c).await && !exists(&*store, a).await,
        "the two oldest went"
    );
    assert!(exists(&*store, b).await, "the newest stays");
    assert_eq!(store.prune(&all, 2).await.unwrap(), 1);
    assert_eq!(store.prune(&all, 2).await.unwrap(), 0, "nothing left to prune");
    let nothing = PruneRule::new([], far_future()).unwrap();
    assert_eq!(store.prune(&nothing, 10).await.unwrap(), 0);
}
