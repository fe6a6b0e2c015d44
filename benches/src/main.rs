//! Benchmarks and reliability evidence for the runtime (issue 9).
//!
//! ```sh
//! cargo run --release -p integration-bench -- all            # every figure (< 10 min on 2 cores)
//! cargo run --release -p integration-bench -- all --quick    # the same, small (seconds; for CI)
//! cargo run --release -p integration-bench -- sync|connections|postgres|shared-rate|webhook|latency|rss|macro|crash
//! cargo run --release -p integration-bench -- faults         # hostile providers, one row per fault (~30 s)
//! cargo run --release -p integration-bench -- prune [--quick] # deleting 10^6 old calls under load (not in `all`: minutes)
//! ```
//!
//! Every figure is printed with its ratio to a baseline measured in the same
//! run and the durability settings it was measured with; `BENCHMARKS.md`
//! records the numbers and how to reproduce them.

mod common;
mod connections;
mod crash;
mod faults;
mod graphile;
mod latency;
mod macro_time;
mod peer;
mod pg_cost;
mod postgres;
mod prune;
mod punctuality;
mod rss;
mod shared_rate;
mod sync;
mod webhook;
mod worker;

use clap::{Parser, Subcommand};

use common::{line, Figure, Result};

integration_runtime::integration!("specs/bench_sync.toml");
integration_runtime::integration!("specs/bench_hook.toml");
integration_runtime::integration!("specs/bench_limited.toml");

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "integration-bench",
    about = "Benchmarks and reliability evidence for integration-runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by the figures.
#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// Small sizes: every figure in seconds (what CI can run).
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every figure, then the crash harness (SQLite, and PostgreSQL when INTEGRATION_TEST_DATABASE_URL is set); exits non-zero when it fails.
    All(Common),
    /// Sync-call pipeline vs a raw reqwest loop (A) and apalis + SQLite (B).
    Sync(Common),
    /// Sync calls spread over 100 connections vs the same calls on the default connection.
    Connections(Common),
    /// PostgreSQL store, 1, 2 and 4 worker processes and their cost per call (needs INTEGRATION_TEST_DATABASE_URL).
    Postgres(Common),
    /// A rate-limited provider behind 4 PostgreSQL worker processes: the limit per process vs shared through the store.
    SharedRate(Common),
    /// Webhook ingest through the runtime's receiver vs a bare axum handler.
    Webhook(Common),
    /// create -> `initialized` latency on an idle runtime.
    Latency(Common),
    /// Calls over time: how late an idle runtime's polls come against the spec's schedule (SQLite, and PostgreSQL when INTEGRATION_TEST_DATABASE_URL is set).
    Punctuality(Common),
    /// Worker RSS with 10^4, 10^5, 10^6 pending calls.
    Rss(Common),
    /// Sync calls while 10^6 finished calls are pruned, vs not pruning; file size before and after (not in `all`).
    Prune(Common),
    /// Macro expansion time for a generated 50-endpoint spec.
    Macro(MacroArgs),
    /// SIGKILL crash harness: kills worker children at random moments (SQLite, or PostgreSQL with --postgres); exits non-zero on any loss.
    Crash(CrashArgs),
    /// Fault harness: one hostile provider per fault; prints what happened (exits non-zero only on harness errors).
    Faults,
    /// (internal) A worker process, as the crash, RSS and PostgreSQL figures start it.
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

/// Options of `macro`.
#[derive(Debug, Clone, clap::Args)]
struct MacroArgs {
    #[command(flatten)]
    common: Common,
    /// Also time a real `cargo build` of a tiny crate using `integration!` on the spec.
    #[arg(long)]
    cargo: bool,
}

/// Options of `crash`.
#[derive(Debug, Clone, clap::Args)]
struct CrashArgs {
    #[command(flatten)]
    common: Common,
    /// How many SIGKILLs (default 100; 10 with --quick).
    #[arg(long)]
    kills: Option<u32>,
    /// How many calls (default 10000; 500 with --quick).
    #[arg(long)]
    calls: Option<u32>,
    /// Seed of the kill moments (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Four worker processes on PostgreSQL (INTEGRATION_TEST_DATABASE_URL) instead of one on SQLite.
    #[arg(long)]
    postgres: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` when a reliability check failed.
async fn run(command: Command) -> Result<bool> {
    let mut figures: Vec<Figure> = Vec::new();
    let ok = match command {
        Command::Worker(args) => {
            worker::run(args).await?;
            return Ok(true);
        }
        Command::All(common) => {
            common::print_machine(common.quick);
            figures.extend(sync::run(common.quick).await?);
            figures.extend(connections::run(common.quick).await?);
            figures.extend(postgres::run(common.quick).await?);
            figures.extend(shared_rate::run(common.quick).await?);
            figures.extend(webhook::run(common.quick).await?);
            figures.extend(latency::run(common.quick).await?);
            figures.extend(punctuality::run(common.quick).await?);
            figures.extend(rss::run(common.quick).await?);
            figures.extend(macro_time::run(common.quick, !common.quick).await?);
            let (crash_figures, ok) = crash::run(common.quick, None, None, None, None).await?;
            figures.extend(crash_figures);
            let postgres_ok = match std::env::var("INTEGRATION_TEST_DATABASE_URL") {
                Ok(url) => {
                    let (crash_figures, ok) = crash::run(common.quick, None, None, None, Some(&url)).await?;
                    figures.extend(crash_figures);
                    ok
                }
                Err(_) => {
                    line(
                        "crash harness on PostgreSQL",
                        "skipped",
                        "INTEGRATION_TEST_DATABASE_URL is unset",
                    );
                    true
                }
            };
            ok && postgres_ok
        }
        Command::Sync(c) => extend(&mut figures, sync::run(c.quick).await?),
        Command::Connections(c) => extend(&mut figures, connections::run(c.quick).await?),
        Command::Postgres(c) => extend(&mut figures, postgres::run(c.quick).await?),
        Command::SharedRate(c) => extend(&mut figures, shared_rate::run(c.quick).await?),
        Command::Webhook(c) => extend(&mut figures, webhook::run(c.quick).await?),
        Command::Latency(c) => extend(&mut figures, latency::run(c.quick).await?),
        Command::Punctuality(c) => extend(&mut figures, punctuality::run(c.quick).await?),
        Command::Rss(c) => extend(&mut figures, rss::run(c.quick).await?),
        Command::Prune(c) => extend(&mut figures, prune::run(c.quick).await?),
        Command::Macro(m) => extend(&mut figures, macro_time::run(m.common.quick, m.cargo).await?),
        Command::Faults => extend(&mut figures, faults::run().await?),
        Command::Crash(c) => {
            let url = match c.postgres {
                true => Some(
                    std::env::var("INTEGRATION_TEST_DATABASE_URL")
                        .map_err(|_| "crash --postgres needs INTEGRATION_TEST_DATABASE_URL")?,
                ),
                false => None,
            };
            let (crash_figures, ok) = crash::run(c.common.quick, c.kills, c.calls, c.seed, url.as_deref()).await?;
            figures.extend(crash_figures);
            ok
        }
    };
    common::print_summary(&figures);
    Ok(ok)
}

fn extend(figures: &mut Vec<Figure>, more: Vec<Figure>) -> bool {
    figures.extend(more);
    true
}
