//! Creating a call inside your own database transaction (the transactional
//! outbox): the business record and its call commit together, or neither.
//!
//! ```sh
//! cargo run --example outbox
//! ```
//!
//! Look for: the order that was rolled back left no call behind; the
//! committed order's call was executed by the worker.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use integration_runtime::{CallStatus, ListQuery, Runtime, Secret, SqliteStore};
use integration_testkit::FakeProvider;

integration_runtime::integration!("../specs/translate.toml");

fn translation(text: &str) -> translate::Translation {
    translate::Translation {
        text: text.into(),
        source_lang: None,
        target_lang: "en".into(),
        formality: translate::TranslationFormality::Default,
        glossary_id: None,
    }
}

/// Returns (orders stored, calls stored, status of the committed order's call).
async fn run(db: &std::path::Path) -> anyhow::Result<(i64, usize, CallStatus)> {
    let fake = FakeProvider::from_spec_file(format!("{}/translate.toml", common::SPECS))?
        .start()
        .await?;
    // Kept in an `Arc` of its own: the outbox is the store's own method.
    let store = Arc::new(SqliteStore::open(db).await?);
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let translate = translate::Translate::new(translate::TranslateConfig {
        base_url: fake.url(),
        api_key: Secret::new("k"),
    })?;
    let rt = Runtime::builder()
        .store(store.clone())
        .integration(translate)
        .build()
        .await?;

    // Committed: the order and its call.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, note) VALUES (1, 'Vielen Dank')")
        .execute(&mut *tx)
        .await?;
    // `new_call` validates the request against the spec, as `create` does.
    let committed = store
        .create_in_tx(&mut tx, rt.new_call(translation("Vielen Dank"))?)
        .await?
        .id;
    tx.commit().await?;

    // Rolled back: neither.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, note) VALUES (2, 'Auf Wiedersehen')")
        .execute(&mut *tx)
        .await?;
    store
        .create_in_tx(&mut tx, rt.new_call(translation("Auf Wiedersehen"))?)
        .await?;
    tx.rollback().await?;

    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &[committed], Duration::from_secs(20)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;

    let (orders,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&pool).await?;
    let stored = rt.store().list(&ListQuery::new("Translate")).await?.calls.len();
    Ok((orders, stored, calls[0].status))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (orders, calls, status) = run(&common::scratch_db("outbox")).await?;
    println!("{orders} order(s) and {calls} call(s) stored; the committed order's call is {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rolled_back_orders_leave_no_call_and_committed_ones_run() {
        let (orders, calls, status) = run(&common::scratch_db("outbox_test")).await.unwrap();
        assert_eq!((orders, calls), (1, 1));
        assert_eq!(status, CallStatus::Completed);
    }
}
