//! A payment API: form-encoded bodies with Stripe-style `a[b]=c` nesting, an
//! idempotency key on every create, and Stripe-style signed webhooks that
//! finish the payments.
//!
//! ```sh
//! cargo run --example payments
//! ```
//!
//! Look for: the provider receives `customer[address][city]=...` form fields
//! and an `Idempotency-Key` derived from the call id; when the first attempt
//! hits a 503, the retry carries the SAME key, so the provider cannot charge
//! twice; payments finish when the signed `payment_intent.succeeded` webhook
//! arrives.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use integration_runtime::{CallStatus, Integration, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, WebhookSender};

integration_runtime::integration!("../specs/payments.toml");

const SECRET: &str = "whsec_payments_demo_secret";

/// What the provider saw and how the calls ended.
struct Observed {
    statuses: Vec<CallStatus>,
    /// The idempotency key of every create request, in arrival order.
    keys: Vec<String>,
    first_body: String,
}

async fn run(db: &std::path::Path) -> anyhow::Result<Observed> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/webhooks/payments", listener.local_addr()?);
    let fake = FakeProvider::from_spec_file(format!("{}/payments.toml", common::SPECS))?
        // The first request fails with a 503; every later one is accepted.
        .outcomes(
            "create_payment",
            [
                Outcome::reject(503).message("try again"),
                Outcome::complete_with_made_up_result(),
            ],
        )
        .polls_until_done(1000)
        .webhooks_to(hook_url, WebhookSender::stripe(SECRET), Duration::from_millis(100))
        .start()
        .await?;
    let payments: Arc<dyn Integration> = Arc::new(payments::Payments::new(payments::PaymentsConfig {
        base_url: fake.url(),
        token: Secret::new("sk_test_demo"),
        webhook_secret: Secret::new(SECRET),
    })?);
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration_arc(Arc::clone(&payments))
        .concurrency(1)
        .build()
        .await?;
    let receiver = rt
        .webhook_receiver()
        .integration_with_secrets(payments, &[Secret::new(SECRET)])?
        .router();
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut ids = Vec::new();
    for (order, amount, city) in [("A-1001", 1999, "London"), ("A-1002", 4500, "Leeds")] {
        let intent = payments::PaymentIntent {
            amount,
            currency: payments::PaymentIntentCurrency::Gbp,
            customer: payments::Customer {
                email: "ada@example.com".into(),
                name: Some("Ada Lovelace".into()),
                address: Some(payments::Address {
                    line1: "12 St James's Sq".into(),
                    city: city.into(),
                    postal_code: "SW1Y 4JH".into(),
                    country: "GB".into(),
                }),
            },
            capture: payments::PaymentIntentCapture::Automatic,
            order_id: order.into(),
            tags: Some(vec!["web".into()]),
        };
        ids.push(rt.create(intent).await?);
    }
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(30)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    common::print_calls(&calls);
    let creates = fake.requests_to("create_payment");
    Ok(Observed {
        statuses: calls.iter().map(|c| c.status).collect(),
        keys: creates
            .iter()
            .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
            .collect(),
        first_body: String::from_utf8_lossy(&creates[0].body).into_owned(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let observed = run(&common::scratch_db("payments")).await?;
    println!("final statuses {:?}", observed.statuses);
    println!("create requests carried idempotency keys {:?}", observed.keys);
    println!("first form body: {}", observed.first_body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payments_complete_and_the_retry_reuses_the_idempotency_key() {
        let observed = run(&common::scratch_db("payments_test")).await.unwrap();
        assert_eq!(observed.statuses, vec![CallStatus::Completed; 2]);
        // Three creates: the 503, its retry, the second payment.
        assert_eq!(observed.keys.len(), 3, "{:?}", observed.keys);
        // The refused request's key comes back with its retry; the other
        // payment has a key of its own.
        let retried = observed.keys.iter().filter(|k| **k == observed.keys[0]).count();
        assert_eq!(retried, 2, "{:?}", observed.keys);
        let distinct: std::collections::HashSet<_> = observed.keys.iter().collect();
        assert_eq!(distinct.len(), 2, "{:?}", observed.keys);
        assert!(
            observed.first_body.contains("customer%5Baddress%5D%5Bcity%5D="),
            "{}",
            observed.first_body
        );
        assert!(
            observed.first_body.contains("metadata%5Btags%5D%5B0%5D=web"),
            "{}",
            observed.first_body
        );
    }
}
