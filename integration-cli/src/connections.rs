//! `connections list | show | revoke | reseal`: the customers of the
//! integrations. Listing, showing and revoking go through a running
//! service's operations API (revoking fails the connection's calls through
//! the service's event pipeline); re-sealing works on the store directly,
//! with the keys of the environment, and needs no integration.

use clap::{Args, Subcommand};
use integration_runtime::connection::{reseal as reseal_store, Keyring};
use integration_runtime::Connection;
use serde_json::{json, Value};

use crate::calls::{block_on, open_store, table, OpsArgs, StoreArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionsCommand {
    /// List connections (revoked ones included): the names of their
    /// credentials and the key that sealed them, never a value.
    #[command(
        after_help = "Examples:\n  INTEGRATION_OPS_TOKEN=... integration connections list --ops-url http://127.0.0.1:8080/ops\n  INTEGRATION_OPS_TOKEN=... integration connections list --ops-url http://127.0.0.1:8080/ops --integration Payments --json"
    )]
    List(ListArgs),
    /// Show one connection.
    #[command(
        after_help = "Examples:\n  INTEGRATION_OPS_TOKEN=... integration connections show --ops-url http://127.0.0.1:8080/ops Payments acme"
    )]
    Show(ShowArgs),
    /// Revoke a connection: its tokens are deleted and every call of it that
    /// has not ended fails with kind `revoked`. Storing it again (from the
    /// application) makes it live again.
    #[command(
        after_help = "Examples:\n  INTEGRATION_OPS_TOKEN=... integration connections revoke --ops-url http://127.0.0.1:8080/ops Payments acme"
    )]
    Revoke(ShowArgs),
    /// Seal every stored credential and token again under the current key
    /// (INTEGRATION_CREDENTIAL_KEY), for a key rotation: the old key must be
    /// in INTEGRATION_CREDENTIAL_OLD_KEYS meanwhile.
    #[command(
        after_help = "Run it until it reports 0 (a token renewed meanwhile is already under the new key), then drop the old key.\n\nExamples:\n  INTEGRATION_CREDENTIAL_KEY=2027:... INTEGRATION_CREDENTIAL_OLD_KEYS=2026:... integration connections reseal --db integrations.db\n  integration connections reseal --db postgres://app@db/app --json"
    )]
    Reseal(StoreArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    ops: OpsArgs,
    /// Only the connections of this integration.
    #[arg(long)]
    integration: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    ops: OpsArgs,
    /// The integration's name, as in the spec (`[integration] name`).
    integration: String,
    /// The connection's id.
    id: String,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: ConnectionsCommand) -> std::process::ExitCode {
    let result = block_on(async {
        match command {
            ConnectionsCommand::List(args) => list(args).await,
            ConnectionsCommand::Show(args) => show(args).await,
            ConnectionsCommand::Revoke(args) => revoke(args).await,
            ConnectionsCommand::Reseal(args) => reseal(args).await,
        }
    });
    crate::exit_with(result)
}

/// The connection(s) in an answer of the operations API.
fn decode<T: serde::de::DeserializeOwned>(body: &str, member: &str) -> Result<T, String> {
    let answer: Value =
        serde_json::from_str(body).map_err(|e| format!("the operations API answered no JSON ({e}): {body}"))?;
    serde_json::from_value(answer[member].clone())
        .map_err(|e| format!("the operations API's answer has no `{member}` ({e}): {body}"))
}

fn status(connection: &Connection) -> String {
    match connection.revoked_at {
        Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M:%S")),
        None => "live".to_owned(),
    }
}

async fn list(args: ListArgs) -> Result<(), String> {
    let mut url = args.ops.url(&["connections"])?;
    if let Some(integration) = &args.integration {
        url.query_pairs_mut().append_pair("integration", integration);
    }
    let body = args.ops.send(reqwest::Client::new().get(url)).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let connections: Vec<Connection> = decode(&body, "connections")?;
    let rows: Vec<Vec<String>> = connections
        .iter()
        .map(|c| {
            vec![
                c.integration.clone(),
                c.id.clone(),
                c.credential_names.join(","),
                c.key_id.clone().unwrap_or_else(|| "-".into()),
                c.base_url.clone().unwrap_or_else(|| "-".into()),
                status(c),
                c.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "INTEGRATION",
                "ID",
                "CREDENTIALS",
                "KEY",
                "BASE URL",
                "STATUS",
                "UPDATED (UTC)"
            ],
            &rows
        )
    );
    println!("{} connection(s)", rows.len());
    Ok(())
}

/// The route of the connection `args` names, then `action` if any.
fn connection_url(args: &ShowArgs, action: Option<&str>) -> Result<reqwest::Url, String> {
    let mut segments = vec!["connections", args.integration.as_str(), args.id.as_str()];
    segments.extend(action);
    args.ops.url(&segments)
}

fn print_connection(c: &Connection) {
    println!(
        "connection  {}\nintegration {}\ncredentials {}\nkey         {}\nbase url    {}\nparams      {}\nstatus      {}\ncreated     {}\nupdated     {}",
        c.id,
        c.integration,
        c.credential_names.join(", "),
        c.key_id.as_deref().unwrap_or("-"),
        c.base_url.as_deref().unwrap_or("(the integration's)"),
        Value::Object(c.params.clone()),
        status(c),
        c.created_at,
        c.updated_at
    );
    if let Some(budget) = c.rate_budget {
        println!("rate budget {}/s, burst {}", budget.per_second, budget.burst);
    }
}

async fn show(args: ShowArgs) -> Result<(), String> {
    let url = connection_url(&args, None)?;
    let body = args.ops.send(reqwest::Client::new().get(url)).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    print_connection(&decode(&body, "connection")?);
    Ok(())
}

async fn revoke(args: ShowArgs) -> Result<(), String> {
    let url = connection_url(&args, Some("revoke"))?;
    let body = args.ops.send(reqwest::Client::new().post(url)).await?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let calls_failed: u64 = decode(&body, "calls_failed")?;
    println!(
        "revoked connection `{}` of `{}`; {calls_failed} call(s) of it failed with kind `revoked`",
        args.id, args.integration
    );
    Ok(())
}

async fn reseal(args: StoreArgs) -> Result<(), String> {
    // The key is checked before the store is touched; its error names the
    // variable (and never holds the key).
    let keyring = Keyring::from_env().map_err(|e| e.to_string())?;
    let store = open_store(&args.db).await?;
    let resealed = reseal_store(&*store, &keyring)
        .await
        .map_err(|e| format!("re-sealing stopped: {e}"))?;
    let key_id = keyring.current_key_id();
    if args.json {
        println!("{}", json!({ "resealed": resealed, "key_id": key_id }));
    } else {
        println!("re-sealed {resealed} value(s) under key `{key_id}`");
    }
    Ok(())
}
