//! What a connection costs a call: the sync pipeline (SQLite, loopback
//! provider) with every call on the default connection, then with the
//! calls spread over 100 connections. The difference is what a worker does
//! per turn for a call of a connection: read the connection's row, and
//! build its client once per connection (opening its sealed credentials).

use std::time::Duration;

use integration_runtime::connection::{Keyring, CREDENTIAL_KEY_ENV};
use integration_runtime::{Credentials, IntoCall, NewConnection, Runtime, SqliteStore};

use crate::common::{bench_sync, line, message, Figure, Provider, Result, Scratch};
use crate::sync::{create_all, execute_all, CONCURRENCY};

/// Connections the calls are spread over.
const CONNECTIONS: u64 = 100;

pub(crate) async fn run(quick: bool) -> Result<Vec<Figure>> {
    let calls: u64 = if quick { 1_000 } else { 5_000 };
    println!(
        "\n== connections: {calls} sync calls on the default connection, then over {CONNECTIONS} connections (SQLite)"
    );
    let provider = Provider::start(false, Duration::ZERO).await?;
    let scratch = Scratch::new("connections")?;
    let default = execute(&provider.url, &scratch, "default.db", calls, false).await?;
    let connected = execute(&provider.url, &scratch, "connected.db", calls, true).await?;
    let ratio = connected / default;
    line("default connection", &format!("{default:.0} calls/s"), "baseline");
    line(
        &format!("over {CONNECTIONS} connections"),
        &format!("{connected:.0} calls/s"),
        &format!("{:.1} % of the default connection's rate", ratio * 100.0),
    );
    Ok(vec![Figure::new(
        "connections: sync calls over 100 connections",
        format!("{connected:.0} calls/s"),
        format!("{:.1} % of the same calls without ({default:.0}/s)", ratio * 100.0),
        "",
        None,
    )])
}

/// Creates `calls` calls (on connections when `connected`), then runs the
/// runtime until all are terminal. Returns executions/s.
async fn execute(url: &str, scratch: &Scratch, file: &str, calls: u64, connected: bool) -> Result<f64> {
    let key = Keyring::generate("bench");
    let keyring = Keyring::from_vars(move |var| (var == CREDENTIAL_KEY_ENV).then(|| key.clone()))?;
    let rt = Runtime::builder()
        .store(SqliteStore::open(scratch.path(file)).await?)
        .integration(bench_sync(url)?)
        .keyring(keyring)
        .concurrency(CONCURRENCY)
        .claim_batch(CONCURRENCY as u32)
        .build()
        .await?;
    if connected {
        for c in 0..CONNECTIONS {
            rt.put_connection(NewConnection::new("BenchSync", format!("c{c}"), Credentials::new()))
                .await?;
        }
        create_all(&rt, calls, |i| {
            message(i).on_connection(format!("c{}", i % CONNECTIONS))
        })
        .await?;
    } else {
        create_all(&rt, calls, message).await?;
    }
    execute_all(&rt, calls).await
}
