//! Connections (one spec, many customers): their rows, their tokens under
//! a lease, the pending authorizations of the connect flow, the sealed
//! values, and the calls sent with a connection.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{call, create, ids, LONG, PAST_SHORT, SHORT};
use crate::lifecycle::CallStatus;
use crate::store::{
    system_now as now, AuthorizationRow, CallId, ConnectionRow, ListOrder, ListQuery, SealedPlace, SealedValue, Store,
};

/// Long enough for the store's millisecond clock to move on.
const TICK: Duration = Duration::from_millis(5);

/// A connection of `integration` with sealed credentials `credentials`.
/// Its times are the caller's nonsense: the store sets them.
fn connection(integration: &str, id: &str, credentials: &str) -> ConnectionRow {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    ConnectionRow {
        integration: integration.to_owned(),
        id: id.to_owned(),
        credentials: credentials.to_owned(),
        base_url: None,
        params: json!({}),
        rate_per_second: None,
        rate_burst: None,
        created_at: epoch,
        updated_at: epoch,
        revoked_at: Some(epoch),
    }
}

/// A pending authorization of `state_digest`, expiring at `expires_at`.
fn authorization(state_digest: &str, expires_at: DateTime<Utc>) -> AuthorizationRow {
    AuthorizationRow {
        state_digest: state_digest.to_owned(),
        integration: "acme".to_owned(),
        connection: "cust-1".to_owned(),
        verifier: format!("sealed-verifier-{state_digest}"),
        return_to: "https://app.example/connected".to_owned(),
        expires_at,
    }
}

fn after(wait: Duration) -> DateTime<Utc> {
    now() + chrono::Duration::from_std(wait).expect("a short wait")
}

/// The sealed tokens saved for a connection, if any.
async fn saved_tokens(store: &dyn Store, integration: &str, connection: &str) -> Option<String> {
    store
        .token(integration, connection)
        .await
        .unwrap()
        .and_then(|row| row.tokens)
}

/// Saves `tokens` for a connection, as the process renewing them does.
async fn save(store: &dyn Store, integration: &str, connection: &str, tokens: &str) {
    assert!(store.lease_token(integration, connection, "saver", LONG).await.unwrap());
    let saved = store
        .save_token(integration, connection, "saver", tokens.to_owned())
        .await
        .unwrap();
    assert!(saved, "the lease holder saves");
}

pub async fn connections_are_stored_listed_and_replaced(store: Arc<dyn Store>) {
    let before = now();
    let mut custom = connection("acme", "cust-b", "sealed-b");
    custom.base_url = Some("https://eu.acme.example".to_owned());
    custom.params = json!({"region": "eu", "limit": 5});
    custom.rate_per_second = Some(2.5);
    custom.rate_burst = Some(10);
    let stored = store.put_connection(custom.clone()).await.unwrap();
    assert!(stored.created_at >= before && stored.created_at <= now(), "{stored:?}");
    assert_eq!(stored.updated_at, stored.created_at);
    assert_eq!(stored.revoked_at, None, "a stored connection is live");
    let expected = ConnectionRow {
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        revoked_at: None,
        ..custom
    };
    assert_eq!(stored, expected);
    assert_eq!(store.connection("acme", "cust-b").await.unwrap(), Some(expected));
    assert_eq!(store.connection("acme", "nobody").await.unwrap(), None);
    assert_eq!(store.connection("beta", "cust-b").await.unwrap(), None);

    // Listed by integration then id, whatever the order they were stored in.
    store.put_connection(connection("beta", "cust-a", "s")).await.unwrap();
    store.put_connection(connection("acme", "cust-a", "s")).await.unwrap();
    store.put_connection(connection("acme", "Cust-c", "s")).await.unwrap();
    let keys = |rows: Vec<ConnectionRow>| rows.into_iter().map(|r| (r.integration, r.id)).collect::<Vec<_>>();
    let key = |integration: &str, id: &str| (integration.to_owned(), id.to_owned());
    assert_eq!(
        keys(store.connections(None).await.unwrap()),
        [
            key("acme", "Cust-c"),
            key("acme", "cust-a"),
            key("acme", "cust-b"),
            key("beta", "cust-a")
        ]
    );
    assert_eq!(
        keys(store.connections(Some("acme")).await.unwrap()),
        [key("acme", "Cust-c"), key("acme", "cust-a"), key("acme", "cust-b")]
    );
    assert!(store.connections(Some("gamma")).await.unwrap().is_empty());

    // Replaced: new settings, the first creation time, live again.
    store
        .revoke_connection("acme", "cust-b")
        .await
        .unwrap()
        .expect("revoked");
    tokio::time::sleep(TICK).await;
    let mut replacement = connection("acme", "cust-b", "sealed-b");
    replacement.base_url = Some("https://us.acme.example".to_owned());
    let replaced = store.put_connection(replacement).await.unwrap();
    assert_eq!(replaced.created_at, stored.created_at, "the first creation stays");
    assert!(replaced.updated_at > stored.updated_at, "{replaced:?}");
    assert_eq!(replaced.revoked_at, None, "storing it again revives it");
    assert_eq!(
        (replaced.base_url.as_deref(), &replaced.params, replaced.rate_burst),
        (Some("https://us.acme.example"), &json!({}), None)
    );
    assert_eq!(store.connection("acme", "cust-b").await.unwrap(), Some(replaced));
}

pub async fn new_credentials_delete_the_connections_tokens(store: Arc<dyn Store>) {
    store.put_connection(connection("acme", "a", "grant-1")).await.unwrap();
    store.put_connection(connection("acme", "b", "grant-1")).await.unwrap();
    save(&*store, "acme", "a", "tokens-a").await;
    save(&*store, "acme", "b", "tokens-b").await;

    // The same credentials, other settings: the tokens still answer them.
    let mut moved = connection("acme", "a", "grant-1");
    moved.base_url = Some("https://eu.acme.example".to_owned());
    store.put_connection(moved).await.unwrap();
    assert_eq!(saved_tokens(&*store, "acme", "a").await.as_deref(), Some("tokens-a"));

    // A new grant: the old grant's tokens are gone, and only this connection's.
    store.put_connection(connection("acme", "a", "grant-2")).await.unwrap();
    assert_eq!(store.token("acme", "a").await.unwrap(), None);
    assert_eq!(saved_tokens(&*store, "acme", "b").await.as_deref(), Some("tokens-b"));
}

pub async fn revoking_keeps_the_first_time_and_deletes_the_tokens(store: Arc<dyn Store>) {
    store.put_connection(connection("acme", "a", "grant")).await.unwrap();
    store.put_connection(connection("acme", "b", "grant")).await.unwrap();
    save(&*store, "acme", "a", "tokens-a").await;
    save(&*store, "acme", "b", "tokens-b").await;

    let before = now();
    let revoked = store
        .revoke_connection("acme", "a")
        .await
        .unwrap()
        .expect("a connection");
    let at = revoked.revoked_at.expect("revoked");
    assert!(at >= before && at <= now(), "{revoked:?}");
    assert_eq!(revoked.updated_at, at);
    assert_eq!(store.token("acme", "a").await.unwrap(), None, "its tokens are gone");
    assert_eq!(saved_tokens(&*store, "acme", "b").await.as_deref(), Some("tokens-b"));
    assert_eq!(store.connection("acme", "a").await.unwrap(), Some(revoked.clone()));
    assert_eq!(
        store.connections(Some("acme")).await.unwrap().len(),
        2,
        "revoked ones are listed"
    );

    tokio::time::sleep(TICK).await;
    let again = store.revoke_connection("acme", "a").await.unwrap();
    assert_eq!(again, Some(revoked), "the first revocation stays");
    assert_eq!(store.revoke_connection("acme", "nobody").await.unwrap(), None);
    assert_eq!(store.revoke_connection("beta", "b").await.unwrap(), None);
    assert_eq!(saved_tokens(&*store, "acme", "b").await.as_deref(), Some("tokens-b"));
}

pub async fn one_process_at_a_time_leases_a_connections_tokens(store: Arc<dyn Store>) {
    let before = now();
    assert!(store.lease_token("acme", "a", "p1", SHORT).await.unwrap(), "free");
    let row = store
        .token("acme", "a")
        .await
        .unwrap()
        .expect("the lease creates the row");
    assert_eq!((row.tokens, row.lease_owner.as_deref()), (None, Some("p1")));
    let until = row.lease_expires_at.expect("a lease end");
    assert!(
        until >= before + chrono::Duration::milliseconds(50) && until <= after(SHORT),
        "{until}"
    );

    assert!(
        !store.lease_token("acme", "a", "p2", LONG).await.unwrap(),
        "p1 holds it"
    );
    assert!(
        store.lease_token("acme", "a", "p1", SHORT).await.unwrap(),
        "p1 again: renewed"
    );
    // Other connections, the default one (empty id) included, are other leases.
    assert!(store.lease_token("acme", "b", "p2", LONG).await.unwrap());
    assert!(store.lease_token("acme", "", "p2", LONG).await.unwrap());
    assert!(store.lease_token("beta", "a", "p2", LONG).await.unwrap());

    tokio::time::sleep(PAST_SHORT).await;
    assert!(
        store.lease_token("acme", "a", "p2", LONG).await.unwrap(),
        "p1's lease expired"
    );
    assert!(
        !store.lease_token("acme", "a", "p1", LONG).await.unwrap(),
        "p2 holds it now"
    );
    let row = store.token("acme", "a").await.unwrap().unwrap();
    assert_eq!(row.lease_owner.as_deref(), Some("p2"));

    // Of processes racing for a free lease, one wins.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.lease_token("acme", "race", &format!("p{n}"), LONG).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap().unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn only_the_lease_holder_saves_tokens_and_saving_ends_the_lease(store: Arc<dyn Store>) {
    assert!(
        !store.save_token("acme", "a", "p1", "t0".into()).await.unwrap(),
        "no lease, no row"
    );
    assert_eq!(store.token("acme", "a").await.unwrap(), None);

    assert!(store.lease_token("acme", "a", "p1", LONG).await.unwrap());
    assert!(
        !store.save_token("acme", "a", "p2", "t-p2".into()).await.unwrap(),
        "not p2's lease"
    );
    assert_eq!(saved_tokens(&*store, "acme", "a").await, None);
    let before = now();
    assert!(store.save_token("acme", "a", "p1", "t1".into()).await.unwrap());
    let row = store.token("acme", "a").await.unwrap().unwrap();
    assert_eq!(row.tokens.as_deref(), Some("t1"));
    assert_eq!(
        (row.lease_owner.as_deref(), row.lease_expires_at),
        (None, None),
        "saving ends the lease"
    );
    assert!(row.updated_at >= before && row.updated_at <= now(), "{row:?}");
    assert!(
        !store.save_token("acme", "a", "p1", "t1-again".into()).await.unwrap(),
        "lease ended"
    );
    assert_eq!(saved_tokens(&*store, "acme", "a").await.as_deref(), Some("t1"));

    // An expired lease saves nothing: who took over keeps their tokens.
    assert!(
        store.lease_token("acme", "a", "p3", SHORT).await.unwrap(),
        "free at once"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert!(!store.save_token("acme", "a", "p3", "t-late".into()).await.unwrap());
    assert_eq!(saved_tokens(&*store, "acme", "a").await.as_deref(), Some("t1"));
    assert!(store.lease_token("acme", "a", "p4", LONG).await.unwrap());
    assert!(!store.save_token("acme", "a", "p3", "t-late".into()).await.unwrap());
    assert!(store.save_token("acme", "a", "p4", "t2".into()).await.unwrap());
    assert_eq!(saved_tokens(&*store, "acme", "a").await.as_deref(), Some("t2"));
}

pub async fn releasing_a_token_lease_frees_it_for_another_process(store: Arc<dyn Store>) {
    store.release_token("acme", "a", "p1").await.expect("no row: a no-op");
    assert!(store.lease_token("acme", "a", "p1", LONG).await.unwrap());
    store.release_token("acme", "a", "p2").await.unwrap();
    assert!(
        !store.lease_token("acme", "a", "p2", LONG).await.unwrap(),
        "not p2's to release"
    );
    store.release_token("acme", "a", "p1").await.unwrap();
    let row = store.token("acme", "a").await.unwrap().unwrap();
    assert_eq!((row.tokens, row.lease_owner, row.lease_expires_at), (None, None, None));
    assert!(
        store.lease_token("acme", "a", "p2", LONG).await.unwrap(),
        "free at once"
    );
    assert!(!store.save_token("acme", "a", "p1", "t".into()).await.unwrap());
}

pub async fn an_authorization_is_taken_once(store: Arc<dyn Store>) {
    let pending = authorization("digest-1", after(LONG));
    store.put_authorization(pending.clone()).await.unwrap();
    store
        .put_authorization(authorization("digest-2", after(LONG)))
        .await
        .unwrap();
    assert_eq!(store.take_authorization("digest-1").await.unwrap(), Some(pending));
    assert_eq!(store.take_authorization("digest-1").await.unwrap(), None, "used once");
    assert_eq!(store.take_authorization("unknown").await.unwrap(), None);

    // Two requests racing with one state: one gets it.
    let (first, second) = tokio::join!(
        store.take_authorization("digest-2"),
        store.take_authorization("digest-2")
    );
    let taken = [first.unwrap(), second.unwrap()];
    assert_eq!(taken.iter().filter(|row| row.is_some()).count(), 1, "{taken:?}");

    // Expired: still taken, so the user hears it expired, not that it is unknown.
    let expiring = authorization("digest-3", after(SHORT));
    store.put_authorization(expiring.clone()).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(store.take_authorization("digest-3").await.unwrap(), Some(expiring));
}

pub async fn storing_an_authorization_purges_the_expired_ones(store: Arc<dyn Store>) {
    store
        .put_authorization(authorization("expiring", after(SHORT)))
        .await
        .unwrap();
    store
        .put_authorization(authorization("pending", after(LONG)))
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    store
        .put_authorization(authorization("new", after(LONG)))
        .await
        .unwrap();
    assert_eq!(store.take_authorization("expiring").await.unwrap(), None, "purged");
    assert!(store.take_authorization("pending").await.unwrap().is_some());
    assert!(store.take_authorization("new").await.unwrap().is_some());

    // Put again under its digest: replaced, not purged.
    store
        .put_authorization(authorization("again", after(SHORT)))
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let renewed = authorization("again", after(LONG));
    store.put_authorization(renewed.clone()).await.unwrap();
    assert_eq!(store.take_authorization("again").await.unwrap(), Some(renewed));
}

fn credentials_at(integration: &str, connection: &str) -> SealedPlace {
    SealedPlace::Credentials {
        integration: integration.to_owned(),
        connection: connection.to_owned(),
    }
}

fn tokens_at(integration: &str, connection: &str) -> SealedPlace {
    SealedPlace::Tokens {
        integration: integration.to_owned(),
        connection: connection.to_owned(),
    }
}

fn sealed(place: SealedPlace, sealed: &str) -> SealedValue {
    SealedValue {
        place,
        sealed: sealed.to_owned(),
    }
}

/// Every sealed value the store lists, in no particular order.
async fn sealed_set(store: &dyn Store) -> HashSet<(SealedPlace, String)> {
    let values = store.sealed_values().await.unwrap();
    let count = values.len();
    let set: HashSet<_> = values.into_iter().map(|value| (value.place, value.sealed)).collect();
    assert_eq!(set.len(), count, "each value once");
    set
}

pub async fn sealed_values_lists_every_kind(store: Arc<dyn Store>) {
    assert!(store.sealed_values().await.unwrap().is_empty());
    store.put_connection(connection("acme", "a", "creds-a")).await.unwrap();
    save(&*store, "acme", "a", "tokens-a").await;
    save(&*store, "acme", "", "tokens-default").await;
    // A lease without tokens yet holds nothing sealed.
    assert!(store.lease_token("acme", "b", "p1", LONG).await.unwrap());
    store
        .put_authorization(authorization("digest-1", after(LONG)))
        .await
        .unwrap();

    let expected: HashSet<(SealedPlace, String)> = [
        (credentials_at("acme", "a"), "creds-a".to_owned()),
        (tokens_at("acme", "a"), "tokens-a".to_owned()),
        (tokens_at("acme", ""), "tokens-default".to_owned()),
        (
            SealedPlace::Verifier {
                state_digest: "digest-1".to_owned(),
            },
            "sealed-verifier-digest-1".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(sealed_set(&*store).await, expected);
}

pub async fn replace_sealed_compares_and_sets(store: Arc<dyn Store>) {
    store.put_connection(connection("acme", "a", "creds-v1")).await.unwrap();
    save(&*store, "acme", "a", "tokens-v1").await;
    store
        .put_authorization(authorization("digest-1", after(LONG)))
        .await
        .unwrap();
    let verifier = SealedPlace::Verifier {
        state_digest: "digest-1".to_owned(),
    };

    // Each kind: re-sealed while unchanged.
    let credentials = sealed(credentials_at("acme", "a"), "creds-v1");
    assert!(store.replace_sealed(&credentials, "creds-v2".into()).await.unwrap());
    let tokens = sealed(tokens_at("acme", "a"), "tokens-v1");
    assert!(store.replace_sealed(&tokens, "tokens-v2".into()).await.unwrap());
    let old_verifier = sealed(verifier.clone(), "sealed-verifier-digest-1");
    assert!(store.replace_sealed(&old_verifier, "verifier-v2".into()).await.unwrap());
    let connection_row = store.connection("acme", "a").await.unwrap().unwrap();
    assert_eq!(connection_row.credentials, "creds-v2");
    assert_eq!(saved_tokens(&*store, "acme", "a").await.as_deref(), Some("tokens-v2"));

    // Stale (changed meanwhile): refused, the newer value kept.
    assert!(!store.replace_sealed(&credentials, "creds-stale".into()).await.unwrap());
    assert!(!store.replace_sealed(&tokens, "tokens-stale".into()).await.unwrap());
    assert!(!store
        .replace_sealed(&old_verifier, "verifier-stale".into())
        .await
        .unwrap());
    let expected: HashSet<(SealedPlace, String)> = [
        (credentials_at("acme", "a"), "creds-v2".to_owned()),
        (tokens_at("acme", "a"), "tokens-v2".to_owned()),
        (verifier, "verifier-v2".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(sealed_set(&*store).await, expected);
    let pending = store.take_authorization("digest-1").await.unwrap().unwrap();
    assert_eq!(pending.verifier, "verifier-v2");

    // Nothing there: nothing replaced, nothing created.
    let gone = sealed(credentials_at("acme", "nobody"), "creds-v1");
    assert!(!store.replace_sealed(&gone, "x".into()).await.unwrap());
    let no_tokens = sealed(tokens_at("acme", "b"), "x");
    assert!(store.lease_token("acme", "b", "p1", LONG).await.unwrap());
    assert!(!store.replace_sealed(&no_tokens, "y".into()).await.unwrap());
    assert_eq!(store.connection("acme", "nobody").await.unwrap(), None);
    assert_eq!(saved_tokens(&*store, "acme", "b").await, None);
}

pub async fn calls_carry_their_connection(store: Arc<dyn Store>) {
    let first = create(&*store, call(1).on_connection("cust-1")).await;
    let default = create(&*store, call(2)).await;
    let second = create(&*store, call(3).on_connection("cust-2")).await;
    let again = create(&*store, call(4).on_connection("cust-1")).await;
    let connection_of = |id| {
        let store = store.clone();
        async move { store.get(id).await.unwrap().unwrap().connection }
    };
    assert_eq!(connection_of(first).await.as_deref(), Some("cust-1"));
    assert_eq!(connection_of(default).await, None);
    assert_eq!(connection_of(second).await.as_deref(), Some("cust-2"));

    let listed = |query: ListQuery| {
        let store = store.clone();
        async move {
            let page = store.list(&query).await.unwrap();
            page.calls.into_iter().map(|c| (c.id, c.connection)).collect::<Vec<_>>()
        }
    };
    let one = Some("cust-1".to_owned());
    assert_eq!(
        listed(ListQuery::new("acme").connection("cust-1")).await,
        [(first, one.clone()), (again, one.clone())]
    );
    assert_eq!(
        listed(
            ListQuery::new("acme")
                .connection("cust-1")
                .order(ListOrder::NewestFirst)
        )
        .await,
        [(again, one.clone()), (first, one.clone())]
    );
    assert!(listed(ListQuery::new("other").connection("cust-1")).await.is_empty());
    assert_eq!(
        listed(ListQuery::new("acme")).await.len(),
        4,
        "no filter: every connection's"
    );

    // With a status too: both filters apply.
    assert_eq!(ids(&*store, "w", 10, LONG).await.len(), 4);
    let claimed = store.get(first).await.unwrap().unwrap();
    assert_eq!(claimed.connection, one, "claiming keeps it");
    store
        .append_event(first, crate::store::NewEvent::processing("processing"))
        .await
        .unwrap();
    let processing = ListQuery::new("acme")
        .connection("cust-1")
        .status(CallStatus::Processing);
    assert_eq!(listed(processing).await, [(first, one.clone())]);
    let pending = ListQuery::new("acme").status(CallStatus::Pending).connection("cust-1");
    assert_eq!(listed(pending).await, [(again, one)]);
    let paged = store
        .list(&ListQuery::new("acme").connection("cust-1").limit(1))
        .await
        .unwrap();
    let rest = store
        .list(
            &ListQuery::new("acme")
                .connection("cust-1")
                .after(paged.next.expect("a next page")),
        )
        .await
        .unwrap();
    assert_eq!(rest.calls.iter().map(|c| c.id).collect::<Vec<CallId>>(), [again]);
}

pub async fn an_idempotency_key_is_one_connections_request(store: Arc<dyn Store>) {
    let keyed = |connection: Option<&str>| {
        let new = call(1).idempotency_key("order-7");
        match connection {
            Some(id) => new.on_connection(id),
            None => new,
        }
    };
    let first = store.create(keyed(Some("cust-1"))).await.unwrap();
    assert!(first.created);
    let replayed = store.create(keyed(Some("cust-1"))).await.unwrap();
    assert_eq!((replayed.id, replayed.created), (first.id, false));
    for other in [Some("cust-2"), None] {
        let error = store.create(keyed(other)).await.unwrap_err();
        assert!(error.is_conflict(), "{other:?}: {error}");
    }
    assert_eq!(store.count_by_status(Some("acme")).await.unwrap().total(), 1);
}
