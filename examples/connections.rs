//! One spec, many customers: the `Payments` integration sends for two
//! customers (connections `acme` and `globex`), each with its own secret
//! key, and for the application itself (the default connection, its key
//! from the config).
//!
//! ```sh
//! cargo run --example connections
//! # as in production, with the credential key from the environment:
//! INTEGRATION_CREDENTIAL_KEY=$(cargo run -q -p integration-cli -- keys generate) cargo run --example connections
//! ```
//!
//! Look for: every request reaches the provider with its own customer's key
//! (the fake provider refuses any other key with a 401, which would fail
//! the payment); the connections are listed with the *names* of their
//! credentials and the id of the key that sealed them, never a value; after
//! `globex` is revoked, its payment still waiting fails with kind `revoked`
//! and is never sent.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use integration_runtime::connection::{Keyring, CREDENTIAL_KEY_ENV};
use integration_runtime::{
    CallId, CallStatus, Credentials, FailureKind, Integration, IntoCall, NewConnection, Runtime, Secret, SqliteStore,
};
use integration_testkit::{FakeProvider, Outcome, RecordedRequest, WebhookSender};

integration_runtime::integration!("../specs/payments.toml");

const WEBHOOK_SECRET: &str = "whsec_connections_demo";
/// The application's own key: the default connection's, from the config.
const DEFAULT_KEY: &str = "sk_test_application";
/// Each customer's key, as the provider issued it to them.
const CUSTOMER_KEYS: [(&str, &str); 2] = [("acme", "sk_test_acme_51Hx"), ("globex", "sk_test_globex_77Qm")];

/// The key the provider expects for an order: orders are named
/// `<customer>-<n>`, the application's own `default-<n>`.
fn expected_key(order_id: &str) -> &'static str {
    let customer = order_id.split('-').next().unwrap_or_default();
    CUSTOMER_KEYS
        .iter()
        .find(|(id, _)| *id == customer)
        .map_or(DEFAULT_KEY, |(_, key)| key)
}

/// The order id of a create request (a form body, `metadata[order_id]=…`).
fn order_id(request: &RecordedRequest) -> Option<String> {
    let form = format!("http://form.invalid/?{}", String::from_utf8_lossy(&request.body));
    let url = reqwest::Url::parse(&form).ok()?;
    url.query_pairs()
        .find(|(name, _)| name == "metadata[order_id]")
        .map(|(_, value)| value.into_owned())
}

fn carries_key(request: &RecordedRequest, key: &str) -> bool {
    request.header("authorization") == Some(format!("Bearer {key}").as_str())
}

fn payment(order: &str, amount: i64) -> payments::PaymentIntent {
    payments::PaymentIntent {
        amount,
        currency: payments::PaymentIntentCurrency::Eur,
        customer: payments::Customer {
            email: format!("billing@{}.example.com", order.split('-').next().unwrap_or("app")),
            name: None,
            address: None,
        },
        capture: payments::PaymentIntentCapture::Automatic,
        order_id: order.into(),
        tags: None,
    }
}

/// What the run saw.
struct Observed {
    statuses: Vec<(Option<String>, CallStatus)>,
    listed: Vec<String>,
    revoked_kind: Option<FailureKind>,
}

async fn run(db: &std::path::Path, keyring: Keyring) -> anyhow::Result<Observed> {
    let key_id = keyring.current_key_id().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/webhooks/payments", listener.local_addr()?);
    let fake = FakeProvider::from_spec_file(format!("{}/payments.toml", common::SPECS))?
        // The provider's own check: a payment created with another
        // customer's key (or the application's) is refused.
        .when(
            "create_payment",
            |request| order_id(request).is_none_or(|order| !carries_key(request, expected_key(&order))),
            Outcome::reject(401).message("this key does not own the order"),
        )
        .webhooks_to(
            hook_url,
            WebhookSender::stripe(WEBHOOK_SECRET),
            Duration::from_millis(100),
        )
        .start()
        .await?;
    let payments: Arc<dyn Integration> = Arc::new(payments::Payments::new(payments::PaymentsConfig {
        base_url: fake.url(),
        token: Secret::new(DEFAULT_KEY),
        webhook_secret: Secret::new(WEBHOOK_SECRET),
    })?);
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration_arc(payments)
        .keyring(keyring)
        .concurrency(4)
        .build()
        .await?;
    let webhooks = rt.router(None)?;
    tokio::spawn(async move { axum::serve(listener, webhooks).await });

    // One connection per customer; their keys are sealed before the store.
    for (customer, key) in CUSTOMER_KEYS {
        rt.put_connection(NewConnection::new("Payments", customer, Credentials::bearer(key)))
            .await?;
    }
    let ids: Vec<CallId> = vec![
        rt.create(payment("acme-1", 1200).on_connection("acme")).await?,
        rt.create(payment("globex-1", 3400).on_connection("globex")).await?,
        rt.create(payment("default-1", 500)).await?,
    ];
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(30)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    common::print_calls(&calls);
    for call in &calls {
        let sender = call
            .connection
            .as_deref()
            .unwrap_or("the application (default connection)");
        println!("{} for {sender}: {}", call.params["order_id"], call.status);
        ensure!(
            call.status == CallStatus::Completed,
            "the payment of {:?} did not complete: {:?}",
            call.connection,
            call.error
        );
    }

    // Every request the provider saw carried the key of its own customer:
    // creates by their order id, status queries by the call they ask about.
    let requests = fake.requests();
    ensure!(
        requests.len() >= ids.len(),
        "the provider saw {} requests",
        requests.len()
    );
    for request in &requests {
        let order = match order_id(request) {
            Some(order) => order,
            None => {
                let external_id = request.path.rsplit('/').next().unwrap_or_default();
                let call = calls
                    .iter()
                    .find(|call| call.external_id.as_deref() == Some(external_id))
                    .ok_or_else(|| anyhow::anyhow!("a request for no call: {}", request.path))?;
                call.params["order_id"].as_str().unwrap_or_default().to_owned()
            }
        };
        ensure!(
            carries_key(request, expected_key(&order)),
            "{} {} for order {order} carried another customer's key",
            request.method,
            request.path
        );
    }

    let connections = rt.connections(None).await?;
    let mut listed = Vec::new();
    for connection in &connections {
        let line = format!(
            "{} of {}: credentials {:?} sealed under key {:?}",
            connection.id, connection.integration, connection.credential_names, connection.key_id
        );
        println!("{line}");
        ensure!(connection.credential_names == ["token"], "{line}");
        ensure!(connection.key_id.as_deref() == Some(key_id.as_str()), "{line}");
        let shown = format!("{connection:?}{line}");
        ensure!(
            CUSTOMER_KEYS.iter().all(|(_, key)| !shown.contains(key)),
            "a key is shown: {shown}"
        );
        listed.push(line);
    }

    // A payment for globex that no worker has sent yet; then globex leaves.
    let waiting = rt.create(payment("globex-2", 990).on_connection("globex")).await?;
    let revoked = rt.revoke_connection("Payments", "globex").await?;
    println!(
        "revoked globex: {} waiting call(s) failed; revoked at {:?}",
        revoked.calls_failed, revoked.connection.revoked_at
    );
    let waiting = rt
        .get(waiting)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the waiting call is gone"))?;
    common::print_calls(std::slice::from_ref(&waiting));
    ensure!(revoked.calls_failed == 1, "{} calls failed", revoked.calls_failed);
    ensure!(
        waiting.status == CallStatus::Failed && waiting.error_kind == Some(FailureKind::Revoked),
        "globex's waiting payment: {:?} {:?}",
        waiting.status,
        waiting.error_kind
    );
    ensure!(
        fake.requests().len() == requests.len(),
        "the revoked connection's payment was sent"
    );
    Ok(Observed {
        statuses: calls
            .iter()
            .map(|call| (call.connection.clone(), call.status))
            .collect(),
        listed,
        revoked_kind: waiting.error_kind,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keyring = if std::env::var_os(CREDENTIAL_KEY_ENV).is_some() {
        Keyring::from_env()?
    } else {
        println!(
            "note: {CREDENTIAL_KEY_ENV} is not set, so this run seals with a key made up for it; \
             production reads the key from {CREDENTIAL_KEY_ENV} (make one with `integration keys generate`)"
        );
        Keyring::from_vars(|var| (var == CREDENTIAL_KEY_ENV).then(|| Keyring::generate("example")))?
    };
    let observed = run(&common::scratch_db("connections"), keyring).await?;
    println!(
        "statuses by connection {:?}; {} connection(s) listed; globex's waiting payment failed with kind {:?}",
        observed.statuses,
        observed.listed.len(),
        observed.revoked_kind
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_customer_pays_with_its_own_key_and_a_revoked_one_stops() {
        let keyring = Keyring::from_vars(|var| (var == CREDENTIAL_KEY_ENV).then(|| Keyring::generate("t1"))).unwrap();
        let observed = run(&common::scratch_db("connections_test"), keyring).await.unwrap();
        assert_eq!(
            observed.statuses,
            [
                (Some("acme".to_owned()), CallStatus::Completed),
                (Some("globex".to_owned()), CallStatus::Completed),
                (None, CallStatus::Completed),
            ]
        );
        assert_eq!(observed.listed.len(), 2);
        assert!(
            observed.listed[0].starts_with("acme of Payments"),
            "{:?}",
            observed.listed
        );
        assert_eq!(observed.revoked_kind, Some(FailureKind::Revoked));
    }

    #[test]
    fn the_provider_expects_each_orders_own_key() {
        assert_eq!(expected_key("acme-7"), "sk_test_acme_51Hx");
        assert_eq!(expected_key("globex-1"), "sk_test_globex_77Qm");
        assert_eq!(expected_key("default-1"), DEFAULT_KEY);
    }
}
