//! Helpers shared by the examples (each example includes this module).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use integration_runtime::{CallId, CallRecord, Runtime};

/// The workspace's `specs/` folder.
pub(crate) const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs");

/// A fresh SQLite file path in a temporary folder of its own, which goes
/// away with it (unless [kept](ScratchDb::keep)).
pub(crate) fn scratch_db(example: &str) -> ScratchDb {
    let dir = std::env::temp_dir().join(format!("integration-example-{example}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    let file = dir.join(format!("{example}.db"));
    ScratchDb { dir: Some(dir), file }
}

/// The path of a scratch SQLite file; its folder is removed on drop, so
/// test runs leave nothing behind.
pub(crate) struct ScratchDb {
    /// `None` once kept.
    dir: Option<PathBuf>,
    file: PathBuf,
}

impl ScratchDb {
    /// The file's path, left in place for the user to look at.
    pub(crate) fn keep(mut self) -> PathBuf {
        self.dir = None;
        std::mem::take(&mut self.file)
    }
}

impl std::ops::Deref for ScratchDb {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.file
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits until every call is terminal; returns them in order.
pub(crate) async fn wait_terminal(rt: &Runtime, ids: &[CallId], timeout: Duration) -> anyhow::Result<Vec<CallRecord>> {
    let started = Instant::now();
    loop {
        let mut calls = Vec::with_capacity(ids.len());
        for id in ids {
            calls.push(
                rt.get(*id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("call {id} is not stored"))?,
            );
        }
        if calls.iter().all(CallRecord::is_terminal) {
            return Ok(calls);
        }
        anyhow::ensure!(started.elapsed() < timeout, "calls not terminal after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `router` on 127.0.0.1 (a free port); returns its base URL.
pub(crate) async fn serve(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// One line per call: status, external id, and result or error.
pub(crate) fn print_calls(calls: &[CallRecord]) {
    for call in calls {
        let outcome = call
            .response_data
            .as_ref()
            .map_or_else(|| call.error.clone().unwrap_or_default(), ToString::to_string);
        println!(
            "{}  {:<10} {:<24} {outcome}",
            call.id,
            call.status.as_str(),
            call.external_id.as_deref().unwrap_or("-")
        );
    }
}
