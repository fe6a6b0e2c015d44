//! Baseline C of the PostgreSQL figure: the same job on graphile_worker (the
//! Rust port of graphile-worker, a PostgreSQL job queue from the field), built
//! outside the workspace like the apalis peer and run as a subprocess.

use crate::sync::CONCURRENCY;

/// Runs `benches/graphile-peer` (see [`crate::peer`]): `calls` jobs, one POST each to
/// `provider_url`, run by `processes` worker processes of concurrency
/// [`CONCURRENCY`], in a fresh schema that the peer drops when it finishes
/// (also when it fails).
/// Returns (jobs/s, a note); `Err(reason)` when the peer cannot run.
pub(crate) async fn baseline_c(
    pg_url: &str,
    provider_url: &str,
    calls: u64,
    processes: usize,
    quick: bool,
) -> Result<(f64, String), String> {
    let schema = format!("graphile_peer_{}_{processes}", std::process::id());
    let args = [
        format!("{provider_url}/send"),
        calls.to_string(),
        CONCURRENCY.to_string(),
        pg_url.to_owned(),
        schema,
        processes.to_string(),
    ];
    let json = crate::peer::run("graphile-peer", quick, &args).await?;
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
