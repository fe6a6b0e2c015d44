//! `check` and `expand`: the same parser and generator the macros use.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use integration_spec::{Colour, Diagnostics};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Spec files, or folders searched for `*.toml` files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also tell which unfinished calls stored here (an SQLite file or a
    /// PostgreSQL URL) these specs could no longer finish: the calls a
    /// deploy of them would strand.
    #[arg(long)]
    db: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExpandArgs {
    /// The spec file.
    spec: PathBuf,
}

/// Every `*.toml` file below `path` (or `path` itself), sorted.
fn spec_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|e| e == "toml") {
                spec_files(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

pub(crate) fn check(args: &CheckArgs) -> ExitCode {
    let mut files = Vec::new();
    for path in &args.paths {
        if let Err(e) = spec_files(path, &mut files) {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if files.is_empty() {
        eprintln!("error: no spec files (*.toml) found in the given paths");
        return ExitCode::from(2);
    }
    let (mut valid, mut invalid, mut unreadable) = (0, 0, 0);
    let mut parsed = Vec::new();
    for file in &files {
        let name = file.display().to_string();
        match std::fs::read_to_string(file) {
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                unreadable += 1;
            }
            Ok(source) => match integration_spec::parse(&source, &name) {
                Ok(spec) => {
                    println!(
                        "ok: {name} ({}: {} endpoints, {} entities)",
                        spec.integration.name,
                        spec.endpoints.len(),
                        spec.entities.len()
                    );
                    parsed.push(spec);
                    valid += 1;
                }
                Err(diagnostics) => {
                    eprintln!("{}\n", report(&diagnostics));
                    invalid += 1;
                }
            },
        }
    }
    println!(
        "checked {} spec(s): {valid} valid, {invalid} with errors, {unreadable} unreadable",
        files.len()
    );
    if unreadable > 0 {
        return ExitCode::from(2);
    } else if invalid > 0 {
        return ExitCode::from(1);
    }
    match &args.db {
        Some(db) => check_stored(db, &parsed),
        None => ExitCode::SUCCESS,
    }
}

/// Prints the stored calls `specs` would strand: exit status 1 when any, 2
/// when the store cannot be read.
fn check_stored(db: &str, specs: &[integration_spec::ir::Spec]) -> ExitCode {
    let found = crate::calls::block_on(async {
        let store = crate::calls::open_store(db).await?;
        let mut stranded = Vec::new();
        for spec in specs {
            let calls = integration_runtime::stranded_calls(&*store, &crate::stranded::ParsedSpec(spec))
                .await
                .map_err(|e| format!("cannot read the stored calls of {}: {e}", spec.integration.name))?;
            stranded.extend(calls);
        }
        Ok::<_, String>(stranded)
    });
    match found {
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Ok(stranded) if stranded.is_empty() => {
            println!("no stored call would be stranded by these specs");
            ExitCode::SUCCESS
        }
        Ok(stranded) => {
            for call in &stranded {
                println!(
                    "stranded: {} call {} ({}, endpoint `{}`): {}",
                    call.integration, call.call_id, call.status, call.endpoint, call.reason
                );
            }
            println!(
                "{} stored call(s) could not be finished under these specs; a runtime started with them fails \
                 them with the kind `spec_changed` (or only reports them: `RuntimeBuilder::on_spec_change`)",
                stranded.len()
            );
            ExitCode::from(1)
        }
    }
}

pub(crate) fn expand(args: &ExpandArgs) -> ExitCode {
    let name = args.spec.display().to_string();
    let source = match std::fs::read_to_string(&args.spec) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(2);
        }
    };
    match integration_spec::parse(&source, &name) {
        Ok(spec) => {
            print!(
                "{}",
                integration_spec::codegen::generate_pretty(&spec, &Default::default())
            );
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprintln!("{}", report(&diagnostics));
            ExitCode::from(1)
        }
    }
}

/// Diagnostics for stderr: coloured for a person at a terminal, plain for
/// pipes, files and anyone who set `NO_COLOR`.
fn report(diagnostics: &Diagnostics) -> String {
    diagnostics.report(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
}

/// <https://no-color.org>: a `NO_COLOR` that is set and not empty turns colour off.
fn colour(terminal: bool, no_color: Option<OsString>) -> Colour {
    if terminal && no_color.is_none_or(|v| v.is_empty()) {
        Colour::Ansi
    } else {
        Colour::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_a_non_empty_no_color() {
        assert_eq!(colour(true, None), Colour::Ansi);
        assert_eq!(colour(true, Some("".into())), Colour::Ansi);
        assert_eq!(colour(true, Some("1".into())), Colour::Plain);
        assert_eq!(colour(false, None), Colour::Plain);
    }
}
