//! Tests of the writer's batches: requests folded together, failure
//! isolation, and a `COMMIT` whose answer is lost (through a relay that
//! breaks the connection around it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgSslMode;
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::tests::{test_url, TestSchema};
use super::*;
use crate::lifecycle::CallStatus;
use crate::store::{system_now as now, AppendOutcome, CallId, NewEvent, Store};

const LONG: Duration = Duration::from_secs(600);

/// How the relay breaks the connection that sends the next `COMMIT`.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// Drops the `COMMIT` and the connection: the server rolls back.
    BeforeCommit,
    /// Passes the `COMMIT` on, waits for the server's answer and drops it
    /// with the connection: the transaction committed, the client never
    /// hears so.
    AfterCommit,
}

/// A TCP relay in front of the test server that can break one connection
/// around its next `COMMIT`.
struct Relay {
    addr: SocketAddr,
    armed: Arc<Mutex<Option<Break>>>,
    fired: Arc<AtomicBool>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            armed: Arc::default(),
            fired: Arc::default(),
        };
        let (armed, fired) = (relay.armed.clone(), relay.fired.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream).await.unwrap();
                tokio::spawn(relay_connection(client, server, armed.clone(), fired.clone()));
            }
        });
        relay
    }

    fn arm(&self, how: Break) {
        *self.armed.lock().unwrap() = Some(how);
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

/// Relays one connection (without TLS): the client's messages are read one
/// by one, so the relay sees a `COMMIT` (a simple query) whole.
async fn relay_connection(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<Mutex<Option<Break>>>,
    fired: Arc<AtomicBool>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // Set before a COMMIT is passed on: the server's next bytes answer it.
    let cut = Arc::new(AtomicBool::new(false));
    let answers = {
        let (cut, fired) = (cut.clone(), fired.clone());
        tokio::spawn(async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let Ok(n) = from_server.read(&mut buffer).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                if cut.load(Ordering::SeqCst) {
                    // The answer to the COMMIT: dropped with the connection.
                    fired.store(true, Ordering::SeqCst);
                    return;
                }
                if to_client.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        })
    };
    // The startup message has no type byte; every later one has.
    let Ok(startup) = read_message(&mut from_client, false).await else {
        return;
    };
    if to_server.write_all(&startup).await.is_err() {
        return;
    }
    while let Ok(message) = read_message(&mut from_client, true).await {
        let commit = message[0] == b'Q' && message[5..].starts_with(b"COMMIT");
        let how = if commit { armed.lock().unwrap().take() } else { None };
        match how {
            Some(Break::BeforeCommit) => {
                fired.store(true, Ordering::SeqCst);
                answers.abort();
                return;
            }
            Some(Break::AfterCommit) => {
                cut.store(true, Ordering::SeqCst);
                let _ = to_server.write_all(&message).await;
                // `answers` ends the connection once the answer came.
                let _ = answers.await;
                return;
            }
            None => {
                if to_server.write_all(&message).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One protocol message, with its type byte if `typed`.
async fn read_message(stream: &mut tokio::net::tcp::OwnedReadHalf, typed: bool) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    if typed {
        message.push(stream.read_u8().await?);
    }
    let length = stream.read_u32().await?;
    message.extend_from_slice(&length.to_be_bytes());
    let mut body = vec![0; (length as usize).saturating_sub(4)];
    stream.read_exact(&mut body).await?;
    message.extend_from_slice(&body);
    Ok(message)
}

/// A store on `schema` whose connections all go through `relay`.
async fn open_through(url: &str, relay: &Relay, schema: &str) -> PostgresStore {
    let connect: PgConnectOptions = url.parse().unwrap();
    let connect = connect
        .host(&relay.addr.ip().to_string())
        .port(relay.addr.port())
        .ssl_mode(PgSslMode::Disable);
    PostgresStore::connect_with(connect, PostgresOptions::default().schema(schema).listen(false))
        .await
        .unwrap()
}

/// The server's address, from the test URL.
fn server_addr(url: &str) -> SocketAddr {
    let connect: PgConnectOptions = url.parse().unwrap();
    let host = match connect.get_host() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", connect.get_port()).parse().unwrap()
}

/// A call of `store` claimed by worker `w`.
async fn claimed(store: &PostgresStore, n: u32) -> CallId {
    let id = store
        .create(NewCall::new("acme", "send", json!({ "n": n })))
        .await
        .unwrap()
        .id;
    let claimed = store.claim("w", 100, LONG).await.unwrap();
    assert!(claimed.iter().any(|call| call.id == id));
    id
}

fn started(external_id: &str) -> Vec<NewEvent> {
    vec![
        NewEvent::initialized("initialized", external_id),
        NewEvent::processing("processing"),
    ]
}

#[tokio::test]
async fn a_commit_answered_to_nobody_is_resolved_as_committed() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let relay = Relay::start(server_addr(&url)).await;
    let store = open_through(&url, &relay, &schema.name).await;
    let id = claimed(&store, 1).await;

    relay.arm(Break::AfterCommit);
    let outcomes = store
        .finish_turn(id, "w", started("x"), Some(now() + chrono::Duration::hours(1)))
        .await;
    assert!(relay.fired(), "the relay broke no COMMIT");
    // Not "failed": a worker told so would try the turn again.
    let outcomes = outcomes.expect("the turn committed, and its caller hears so");
    assert!(
        matches!(
            outcomes[0],
            AppendOutcome::Applied {
                to: CallStatus::Processing,
                ..
            }
        ),
        "{outcomes:?}"
    );
    let call = store.get_with_events(id).await.unwrap().unwrap();
    assert_eq!((call.call.attempts, call.call.lease_owner.as_deref()), (1, None));
    assert_eq!(call.events.len(), 2);
    store.pool().close().await;
}

#[tokio::test]
async fn a_commit_that_never_reached_the_server_fails_and_writes_nothing() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let relay = Relay::start(server_addr(&url)).await;
    let store = open_through(&url, &relay, &schema.name).await;
    let id = claimed(&store, 1).await;

    relay.arm(Break::BeforeCommit);
    let error = store.finish_turn(id, "w", started("x"), None).await.unwrap_err();
    assert!(relay.fired(), "the relay broke no COMMIT");
    assert!(error.is_backend() && !error.is_lease_lost(), "{error}");
    let call = store.get_with_events(id).await.unwrap().unwrap();
    assert_eq!((call.call.attempts, call.call.lease_owner.as_deref()), (0, Some("w")));
    assert!(call.events.is_empty());
    // So the worker's retry is right, and records the turn once.
    store.finish_turn(id, "w", started("x"), None).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().attempts, 1);
    store.pool().close().await;
}

#[tokio::test]
async fn a_batch_folds_in_order_and_a_failing_request_fails_alone() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = Arc::new(super::tests::open(&url, &schema.name).await);
    let (stuck, a, b, c, d, e) = (
        claimed(&store, 0).await,
        claimed(&store, 1).await,
        claimed(&store, 2).await,
        claimed(&store, 3).await,
        claimed(&store, 4).await,
        claimed(&store, 5).await,
    );
    // `d` owns the external id `taken`, committed before the batch.
    store.finish_turn(d, "w", started("taken"), None).await.unwrap();

    // Another transaction holds `stuck`'s row: the writer's batch with the
    // turn on `stuck` waits for it, and everything queued meanwhile goes
    // into the next batch.
    let mut blocker = store.pool().begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SELECT 1 FROM {} WHERE id = $1 FOR UPDATE",
        store.calls
    )))
    .bind(stuck.as_uuid())
    .execute(&mut *blocker)
    .await
    .unwrap();
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.finish_turn(stuck, "w", started("s"), None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let batch = tokio::spawn({
        let store = store.clone();
        async move {
            let keyed = |n: u32| NewCall::new("acme", "send", json!({ "n": n })).idempotency_key("k");
            tokio::join!(
                store.finish_turn(a, "w", started("x"), None),
                // The same worker again on `a`: the first turn released the lease.
                store.finish_turn(a, "w", started("x"), None),
                // `a` sets `x` earlier in this batch.
                store.finish_turn(b, "w", started("x"), None),
                // `d` has `taken`: the server refuses it (unique constraint).
                store.finish_turn(c, "w", started("taken"), None),
                store.finish_turn(e, "w", started("y"), None),
                store.create(keyed(1)),
                store.create(keyed(1)),
                store.create(keyed(2)),
                store.create(NewCall::new("acme", "send", json!({}))),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.rollback().await.unwrap();
    first.await.unwrap().unwrap();
    let (turn_a, again, taken_in_batch, taken_before, turn_e, key, key_again, key_other, plain) = batch.await.unwrap();

    turn_a.unwrap();
    assert!(again.unwrap_err().is_lease_lost());
    for (error, call) in [(taken_in_batch.unwrap_err(), b), (taken_before.unwrap_err(), c)] {
        assert!(error.is_conflict() && !error.is_lease_lost(), "{error}");
        let call = store.get_with_events(call).await.unwrap().unwrap();
        assert_eq!(
            call.call.status,
            CallStatus::Pending,
            "the conflicting turn wrote nothing"
        );
        assert_eq!((call.call.attempts, call.call.lease_owner.as_deref()), (0, Some("w")));
        assert!(call.events.is_empty());
    }
    turn_e.unwrap();
    let e = store.get(e).await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.external_id.as_deref()),
        (CallStatus::Processing, Some("y"))
    );
    let key = key.unwrap();
    assert!(key.created);
    let key_again = key_again.unwrap();
    assert_eq!((key_again.id, key_again.created), (key.id, false));
    assert!(key_other.unwrap_err().is_conflict());
    assert!(plain.unwrap().created);
    store.pool().close().await;
}

#[tokio::test]
async fn writes_survive_pooled_connections_the_server_closed() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let name = format!("irt_{}", &schema.name[9..25]);
    let connect: PgConnectOptions = url.parse().unwrap();
    let store = PostgresStore::connect_with(
        connect.application_name(&name),
        PostgresOptions::default().schema(&schema.name).listen(false),
    )
    .await
    .unwrap();
    for n in 0..3 {
        store
            .create(NewCall::new("acme", "send", json!({ "n": n })))
            .await
            .unwrap();
    }
    // Every session of the store ends while idle in its pool.
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let terminated: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(!terminated.is_empty() && terminated.iter().all(|t| *t));
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        > 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Used within the last second, so not tested before use.
    let created = store.create(NewCall::new("acme", "send", json!({ "n": 3 }))).await;
    created.expect("the writer tried again on a live connection");
    store.pool().close().await;
}

#[tokio::test]
async fn only_batches_that_make_a_call_due_or_due_sooner_notify() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = super::tests::open(&url, &schema.name).await;
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen(&store.channel).await.unwrap();
    let id = claimed(&store, 1).await;
    assert_eq!(listener.recv().await.unwrap().payload(), "", "a call due now");

    // Due later: announced with its due time, once, for nobody knows yet
    // when the workers wake; a call due even later needs no announcement.
    let later = crate::store::truncate(now() + chrono::Duration::hours(1));
    store
        .create(NewCall::new("acme", "send", json!({})).run_at(later))
        .await
        .unwrap();
    let announced = listener.recv().await.unwrap();
    assert_eq!(announced.payload(), later.timestamp_millis().to_string());
    store
        .create(NewCall::new("acme", "send", json!({"n": 2})).run_at(later + chrono::Duration::hours(1)))
        .await
        .unwrap();
    let completed = vec![NewEvent::completed("done", json!({"ok": true}))];
    store.finish_turn(id, "w", completed, None).await.unwrap();
    // Notifications arrive in commit order: the marker comes first unless
    // the writes above notified.
    sqlx::query("SELECT pg_notify($1, 'marker')")
        .bind(&store.channel)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(listener.recv().await.unwrap().payload(), "marker");

    let due = claimed(&store, 2).await;
    assert_eq!(listener.recv().await.unwrap().payload(), "");
    store.finish_turn(due, "w", Vec::new(), Some(now())).await.unwrap();
    assert_eq!(
        listener.recv().await.unwrap().payload(),
        "",
        "a turn that made its call due"
    );
    store.pool().close().await;
}
