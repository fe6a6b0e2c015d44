//! The baselines that are other job queues (apalis, graphile_worker): each
//! a crate outside the workspace (`benches/<name>/`, its own `Cargo.lock`,
//! so CI's workspace build never compiles it), built on first use and run
//! as a subprocess that prints one JSON line of results.

use serde_json::Value;

use crate::common::workspace_root;

/// Builds `benches/<name>` (release, into `target/<name>`), runs it with
/// `args`, and returns the last JSON line it printed. `Err(reason)` when it
/// cannot build or run, or, in quick mode, is not built yet.
pub(crate) async fn run(name: &str, quick: bool, args: &[String]) -> Result<Value, String> {
    let root = workspace_root();
    let manifest = root.join(format!("benches/{name}/Cargo.toml"));
    let target = root.join(format!("target/{name}"));
    let binary = target.join(format!("release/{name}"));
    if quick && !binary.exists() {
        return Err(format!(
            "quick mode: the {name} baseline is not built (run without --quick once)"
        ));
    }
    println!("  (building the {name} baseline: cargo build --release --manifest-path benches/{name}/Cargo.toml)");
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
            "{name} did not build: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    let output = tokio::process::Command::new(&binary)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            format!(
                "{name} printed no JSON: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
