//! `integration`: check and expand specs, look at stored calls, manage
//! connections and credential keys.
//!
//! Run `integration --help` (or `cargo run -p integration-cli -- --help`).

mod calls;
mod connections;
mod keys;
mod specs;
mod stranded;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Check and expand integration specs, inspect stored calls, manage connections.
#[derive(Debug, Parser)]
#[command(name = "integration", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate specs and print every problem with its place in the file.
    #[command(
        after_help = "Examples:\n  integration check specs/\n  integration check specs/volc_tts.toml specs/payments.toml\n  integration check specs/ --db integrations.db\n\nExit status: 0 when every spec is valid (and, with --db, strands no stored call), 1 when any has errors (or would strand stored calls), 2 when a file or the store cannot be read."
    )]
    Check(specs::CheckArgs),
    /// Print the Rust code generated for a spec, formatted.
    #[command(
        after_help = "Examples:\n  integration expand specs/volc_tts.toml\n  integration expand specs/translate.toml > translate_generated.rs"
    )]
    Expand(specs::ExpandArgs),
    /// Inspect stored calls.
    #[command(subcommand)]
    Calls(calls::CallsCommand),
    /// List, show and revoke connections (an integration's customers);
    /// re-seal their credentials under a new key.
    #[command(subcommand)]
    Connections(connections::ConnectionsCommand),
    /// Make credential keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => specs::check(&args),
        Command::Expand(args) => specs::expand(&args),
        Command::Calls(command) => calls::run(command),
        Command::Connections(command) => connections::run(command),
        Command::Keys(command) => keys::run(command),
    }
}

/// Exit status 0, or 1 with the error on stderr.
fn exit_with(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
