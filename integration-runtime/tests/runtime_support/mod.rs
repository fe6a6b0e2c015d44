//! Shared by the suites that run a whole runtime: starting and stopping its
//! workers, and a PostgreSQL store in a schema of its own.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use integration_runtime::Runtime;

/// How long a runtime may take to stop.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// Runs `rt`'s workers in a task of their own.
pub fn spawn_run(rt: &Runtime) -> tokio::task::JoinHandle<()> {
    let rt = rt.clone();
    tokio::spawn(async move { rt.run().await.unwrap() })
}

/// Shuts `rt` down (2 s of grace) and waits for its `run`, failing after 20 s.
pub async fn stop(rt: &Runtime, run: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(STOP_LIMIT, rt.shutdown(Duration::from_secs(2)))
        .await
        .expect("shutdown in time");
    tokio::time::timeout(STOP_LIMIT, run).await.expect("run ends").unwrap();
}

/// A store in a fresh schema named `{prefix}_{uuid}` on the server of
/// `INTEGRATION_TEST_DATABASE_URL`, and the schema's name; `None`, after
/// saying so, when that is not set.
#[cfg(feature = "postgres")]
pub async fn postgres_store(prefix: &str) -> Option<(integration_runtime::PostgresStore, String)> {
    let Some(url) = std::env::var("INTEGRATION_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
        return None;
    };
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let connect: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let store = integration_runtime::PostgresStore::connect_with(
        connect,
        integration_runtime::PostgresOptions::default().schema(schema.clone()),
    )
    .await
    .unwrap();
    Some((store, schema))
}
