//! `keys generate`: a new credential key, as INTEGRATION_CREDENTIAL_KEY
//! holds it.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use integration_runtime::connection::{Keyring, KeyringError, CREDENTIAL_KEY_ENV};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print a new random key as `<key id>:<base64 of 32 bytes>`, the value
    /// of INTEGRATION_CREDENTIAL_KEY.
    #[command(
        after_help = "The key is printed on stdout only: keep it in your secret store, never in the repository.\n\nExamples:\n  integration keys generate\n  integration keys generate 2027"
    )]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The key's id (letters, digits, `-`, `_`; at most 32), stored with
    /// every value it seals; default: this month, e.g. `2026-12`.
    id: Option<String>,
}

pub(crate) fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Generate(args) => crate::exit_with(generate(args)),
    }
}

fn generate(args: GenerateArgs) -> Result<(), String> {
    let id = args
        .id
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m").to_string());
    let key = Keyring::generate(&id);
    // Read back as the runtime reads it, so a bad id is refused here and
    // not at the next deploy.
    match Keyring::from_vars(|var| (var == CREDENTIAL_KEY_ENV).then(|| key.clone())) {
        Ok(_) => {
            println!("{key}");
            Ok(())
        }
        Err(KeyringError::Invalid { problem, .. }) => Err(problem),
        Err(other) => Err(other.to_string()),
    }
}
