//! Listing and counting calls.

use std::sync::Arc;

use serde_json::json;

use super::{call, create};
use crate::lifecycle::CallStatus;
use crate::store::{ListOrder, ListQuery, NewCall, NewEvent, Store};

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
