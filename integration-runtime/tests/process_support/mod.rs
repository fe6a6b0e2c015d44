//! Shared by the suites that run worker processes or PostgreSQL schemas of
//! their own (`scale_postgres`, `shared_protection`, `store_postgres`).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

/// Ends this worker child process when its parent test is gone (it died
/// without killing its children), so no worker outlives a test run.
pub fn exit_when_orphaned() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(3);
        }
    });
}

/// `schema` quoted as a PostgreSQL identifier.
pub fn quote_schema(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// Drops `schema` and everything in it, on a connection of its own and a
/// runtime of its own on a thread of its own, so it also works from `Drop`
/// inside a test's runtime. Connecting is tried for 10 s (the server may be
/// coming back from a restart); a failure is printed, not raised, since it
/// only leaves a schema behind.
pub fn drop_schema(options: PgConnectOptions, schema: &str) {
    let quoted = quote_schema(schema);
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut tries = 0;
            let mut conn = loop {
                match PgConnection::connect_with(&options).await {
                    Ok(conn) => break conn,
                    Err(error) if tries >= 50 => return Err(error),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {quoted} CASCADE"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop test schema {schema}: {dropped:?}");
    }
}
