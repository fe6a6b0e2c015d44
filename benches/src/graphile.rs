//! Baseline C of the PostgreSQL figure: the same job on graphile_worker (the
//! Rust port of graphile-worker, a PostgreSQL job queue from the field), built
//! outside the workspace like the apalis peer and run as a subprocess.

use serde_json::Value;

use crate::common::workspace_root;
use crate::sync::CONCURRENCY;

/// Builds and runs `benches/graphile-peer`: `calls` jobs, one POST each to
/// `provider_url`, run by `processes` worker processes of concurrency
/// [`CONCURRENCY`], in a fresh schema that the peer drops when it finishes
/// (also when it fails).
/// Returns (jobs/s, a note); `Err(reason)` when the peer cannot run.
#[allow(dead_code)] // wired into postgres.rs at merge
pub(crate) async fn baseline_c(
    pg_url: &str,
    provider_url: &str,
    calls: u64,
    processes: usize,
    quick: bool,
) -> Result<(f64, String), String> {
    let root = workspace_root();
    let manifest = root.join("benches/graphile-peer/Cargo.toml");
    let target = root.join("target/graphile-peer");
    let binary = target.join("release/graphile-peer");
    if quick && !binary.exists() {
        return Err("quick mode: the graphile_worker peer is not built (run without --quick once)".into());
    }
    println!(
        "  (building the graphile_worker peer: cargo build --release --manifest-path benches/graphile-peer/Cargo.toml)"
    );
    let build = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .await
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !build.status.success() {
        let stderr = String::from_utf8_lossy(&build.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "graphile_worker peer did not build: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let schema = format!("graphile_peer_{}_{processes}", std::process::id());
    let output = tokio::process::Command::new(&binary)
        .arg(format!("{provider_url}/send"))
        .arg(calls.to_string())
        .arg(CONCURRENCY.to_string())
        .arg(pg_url)
        .arg(&schema)
        .arg(processes.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot run the graphile_worker peer: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            format!(
                "the graphile_worker peer printed no JSON: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let rate = json["calls_per_s"]
        .as_f64()
        .ok_or("no calls_per_s in the peer's JSON")?;
    if json["left_in_store"].as_i64() != Some(0) {
        return Err(format!("graphile_worker peer left jobs in PostgreSQL: {json}"));
    }
    Ok((
        rate,
        format!(
            "graphile_worker: {} jobs run, {} left in PostgreSQL",
            json["done"], json["left_in_store"]
        ),
    ))
}
