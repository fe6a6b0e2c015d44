//! `calls list | show | retry | refresh | cancel | prune`: stored calls, in an
//! SQLite file or a PostgreSQL database.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Subcommand};
use std::sync::Arc;

use integration_runtime::{
    CallId, CallRecord, CallStatus, Cursor, ListQuery, PostgresStore, Retention, SqliteStore, Store,
};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub(crate) enum CallsCommand {
    /// List calls of one integration, newest first.
    #[command(
        after_help = "Examples:\n  integration calls list --db integrations.db --integration VolcTts\n  integration calls list --db integrations.db --integration VolcTts --status failed --json\n  integration calls list --db integrations.db --integration VolcTts --connection acme"
    )]
    List(ListArgs),
    /// Show one call with its events.
    #[command(
        after_help = "Examples:\n  integration calls show --db integrations.db 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    )]
    Show(ShowArgs),
    /// Retry a failed call: creates a new call with the same parameters
    /// (idempotency key `retry-of:<id>`, so retrying twice creates one).
    #[command(
        after_help = "Examples:\n  integration calls retry --db integrations.db 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n  integration calls retry --db postgres://app@db/app 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --json"
    )]
    Retry(ShowArgs),
    /// Ask the provider about a call now, through a running service's
    /// operations API (only the service has the integration's code and secrets).
    #[command(
        after_help = "Examples:\n  INTEGRATION_OPS_TOKEN=... integration calls refresh --ops-url http://127.0.0.1:8080/ops 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    )]
    Refresh(RefreshArgs),
    /// Cancel a call, through a running service's operations API: a pending
    /// call fails at once (kind `cancelled`); a processing one is stopped
    /// through the spec's cancel endpoint.
    #[command(
        after_help = "Examples:\n  INTEGRATION_OPS_TOKEN=... integration calls cancel --ops-url http://127.0.0.1:8080/ops 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --reason \"order withdrawn\""
    )]
    Cancel(CancelArgs),
    /// Delete finished calls (with their events) older than an age; calls
    /// still running, and those whose hooks are not delivered yet, are kept.
    #[command(
        after_help = "Deletes in batches of --batch calls, 50 ms apart, so running workers are not held up.\n\nExamples:\n  integration calls prune --db integrations.db --older-than 30d\n  integration calls prune --db postgres://app@db/app --older-than 90d --status failed --json"
    )]
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    target: RefreshArgs,
    /// Why: kept in the call's error text.
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Delete calls that finished more than this long ago: `<N>d` (days),
    /// `<N>h`, `<N>m` or `<N>s`; `0d` deletes every finished call.
    #[arg(long, value_name = "AGE")]
    older_than: String,
    /// Only calls in this status, `completed` or `failed` (repeat for both;
    /// the default).
    #[arg(long = "status", value_name = "STATUS")]
    statuses: Vec<String>,
    /// Most calls deleted in one transaction.
    #[arg(long, default_value_t = 500)]
    batch: u32,
}

/// Where a running service's operations API is, and its token.
#[derive(Debug, Args)]
pub(crate) struct OpsArgs {
    /// Base URL of the service's operations API (e.g. `http://127.0.0.1:8080/ops`).
    #[arg(long)]
    ops_url: String,
    /// Bearer token of the operations API.
    #[arg(long, env = "INTEGRATION_OPS_TOKEN", hide_env_values = true)]
    ops_token: String,
}

impl OpsArgs {
    /// The URL of the route `segments` under the API's base, each segment
    /// percent-encoded (a connection id may hold `@` or `:`).
    pub(crate) fn url(&self, segments: &[&str]) -> Result<reqwest::Url, String> {
        let not_a_base = || format!("`{}` is not the base URL of an HTTP API", self.ops_url);
        let mut url = reqwest::Url::parse(&self.ops_url).map_err(|e| format!("{}: {e}", not_a_base()))?;
        url.path_segments_mut()
            .map_err(|()| not_a_base())?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends `request` (built from [`OpsArgs::url`]) with the token; the
    /// answer's body, or an error saying what the API answered.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, String> {
        let response = request
            .bearer_auth(&self.ops_token)
            .send()
            .await
            .map_err(|e| format!("cannot reach the operations API at {}: {e}", self.ops_url))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("the operations API answered {status}: {body}"));
        }
        Ok(body)
    }
}

#[derive(Debug, Args)]
pub(crate) struct RefreshArgs {
    #[command(flatten)]
    ops: OpsArgs,
    /// The call id.
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The store: an SQLite file (e.g. `integrations.db`) or a PostgreSQL URL
    /// (`postgres://user@host/db`). The tables are those of the connection's
    /// current schema (normally `public`); for another schema add
    /// `?options[search_path]=<schema>` (a `?schema=` parameter is ignored).
    #[arg(long)]
    pub(crate) db: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The integration's name, as in the spec (`[integration] name`).
    #[arg(long)]
    integration: String,
    /// Only calls in this status: pending, processing, completed, failed.
    #[arg(long)]
    status: Option<String>,
    /// Only calls sent with this connection (its id).
    #[arg(long)]
    connection: Option<String>,
    /// Page size (at most 1000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue after this cursor (printed at the end of a page).
    #[arg(long)]
    after: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The call id.
    id: String,
}

/// Runs `work` on a single-threaded async runtime.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(work)
}

pub(crate) fn run(command: CallsCommand) -> ExitCode {
    let result = block_on(async {
        match command {
            CallsCommand::List(args) => list(args).await,
            CallsCommand::Show(args) => show(args).await,
            CallsCommand::Retry(args) => retry(args).await,
            CallsCommand::Refresh(args) => refresh(args).await,
            CallsCommand::Cancel(args) => cancel(args).await,
            CallsCommand::Prune(args) => prune(args).await,
        }
    });
    crate::exit_with(result)
}

async fn open(store: &StoreArgs) -> Result<Arc<dyn Store>, String> {
    open_store(&store.db).await
}

/// The store `db` names: a PostgreSQL URL, or an existing SQLite file.
pub(crate) async fn open_store(db: &str) -> Result<Arc<dyn Store>, String> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let pg = PostgresStore::connect(db)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        return Ok(Arc::new(pg));
    }
    let path = std::path::Path::new(db);
    if !path.exists() {
        return Err(format!("{db} does not exist (the runtime creates it on first start)"));
    }
    let sqlite = SqliteStore::open(path)
        .await
        .map_err(|e| format!("cannot open {db}: {e}"))?;
    Ok(Arc::new(sqlite))
}

async fn list(args: ListArgs) -> Result<(), String> {
    let store = open(&args.store).await?;
    let mut query = ListQuery::new(&args.integration)
        .limit(args.limit)
        .order(integration_runtime::ListOrder::NewestFirst);
    if let Some(status) = &args.status {
        query = query.status(
            CallStatus::from_str(status).map_err(|e| format!("{e}; use pending, processing, completed or failed"))?,
        );
    }
    if let Some(connection) = &args.connection {
        query = query.connection(connection);
    }
    if let Some(after) = &args.after {
        query = query.after(
            Cursor::from_str(after).map_err(|_| format!("`{after}` is not a cursor printed by a previous page"))?,
        );
    }
    let page = store.list(&query).await.map_err(|e| e.to_string())?;
    if args.store.json {
        let calls: Vec<_> = page.calls.iter().map(call_json).collect();
        println!(
            "{}",
            json!({ "calls": calls, "next": page.next.map(|c| c.to_string()) })
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page
        .calls
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.endpoint.clone(),
                c.connection.clone().unwrap_or_else(|| "-".into()),
                c.status.to_string(),
                c.external_id.clone().unwrap_or_else(|| "-".into()),
                c.attempts.to_string(),
                c.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                c.error_kind.map_or_else(String::new, |kind| kind.to_string()),
                c.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "ENDPOINT",
                "CONNECTION",
                "STATUS",
                "EXTERNAL ID",
                "ATTEMPTS",
                "CREATED (UTC)",
                "KIND",
                "ERROR"
            ],
            &rows
        )
    );
    match page.next {
        Some(cursor) => println!("more: --after {cursor}"),
        None => println!("{} call(s)", rows.len()),
    }
    Ok(())
}

async fn show(args: ShowArgs) -> Result<(), String> {
    let store = open(&args.store).await?;
    let id = CallId::from_str(&args.id).map_err(|_| format!("`{}` is not a call id (a UUID)", args.id))?;
    let Some(found) = store.get_with_events(id).await.map_err(|e| e.to_string())? else {
        return Err(format!("no call {id} in {}", args.store.db));
    };
    if args.store.json {
        let events: Vec<_> = found
            .events
            .iter()
            .map(|e| json!({ "kind": e.kind, "key": e.key, "applied": e.applied, "recorded_at": e.recorded_at, "payload": e.payload }))
            .collect();
        println!("{}", json!({ "call": call_json(&found.call), "events": events }));
        return Ok(());
    }
    let c = &found.call;
    println!("call        {}\nintegration {}\nendpoint    {}\nstatus      {}\nexternal id {}\nattempts    {}\ncreated     {}\ncompleted   {}",
        c.id, c.integration, c.endpoint, c.status, c.external_id.as_deref().unwrap_or("-"), c.attempts, c.created_at,
        c.completed_at.map_or_else(|| "-".to_owned(), |t| t.to_string()));
    if let Some(connection) = &c.connection {
        println!("connection  {connection}");
    }
    if let Some(error) = &c.error {
        println!("error       {error}");
    }
    if let Some(kind) = c.error_kind {
        println!("error kind  {kind}");
    }
    if let Some(deadline) = c.deadline_at {
        println!("deadline    {deadline}");
    }
    if let Some(error) = &c.notification_error {
        println!(
            "hooks       given up after {} deliveries: {error}",
            c.notification_attempts
        );
    }
    println!("params      {}", c.params);
    if let Some(data) = &c.response_data {
        println!("response    {data}");
    }
    let rows: Vec<Vec<String>> = found
        .events
        .iter()
        .map(|e| {
            vec![
                e.recorded_at.format("%H:%M:%S%.3f").to_string(),
                e.kind.to_string(),
                if e.applied { "yes".into() } else { "no (ignored)".into() },
                e.payload
                    .source
                    .map_or_else(|| "-".to_owned(), |source| source.to_string()),
                e.payload.delivery_id.clone().unwrap_or_else(|| "-".to_owned()),
                e.key.clone(),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        table(&["RECORDED", "EVENT", "APPLIED", "SOURCE", "DELIVERY", "KEY"], &rows)
    );
    Ok(())
}

fn call_json(c: &CallRecord) -> serde_json::Value {
    json!({
        "id": c.id, "integration": c.integration, "endpoint": c.endpoint, "connection": c.connection, "status": c.status,
        "external_id": c.external_id, "params": c.params, "response_data": c.response_data, "error": c.error,
        "error_kind": c.error_kind, "deadline_at": c.deadline_at, "spec_fingerprint": c.spec_fingerprint,
        "attempts": c.attempts, "created_at": c.created_at, "completed_at": c.completed_at,
        "notification_attempts": c.notification_attempts, "notification_error": c.notification_error,
    })
}

/// A plain text table with aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

async fn retry(args: ShowArgs) -> Result<(), String> {
    let store = open(&args.store).await?;
    let id = CallId::from_str(&args.id).map_err(|_| format!("`{}` is not a call id (a UUID)", args.id))?;
    let created = integration_runtime::ops::retry_failed(&*store, id)
        .await
        .map_err(|e| e.to_string())?;
    if args.store.json {
        println!(
            "{}",
            json!({ "call_id": created.id, "retry_of": id, "created": created.created })
        );
    } else if created.created {
        println!("created call {} to retry {id}; a running worker sends it", created.id);
    } else {
        println!("call {id} was already retried as {}", created.id);
    }
    Ok(())
}

async fn refresh(args: RefreshArgs) -> Result<(), String> {
    post_to_ops(&args, "refresh", None).await
}

async fn cancel(args: CancelArgs) -> Result<(), String> {
    post_to_ops(&args.target, "cancel", Some(json!({ "reason": args.reason }))).await
}

/// Posts to `/calls/{id}/{action}` of the operations API and prints its answer.
async fn post_to_ops(args: &RefreshArgs, action: &str, body: Option<serde_json::Value>) -> Result<(), String> {
    let id = CallId::from_str(&args.id).map_err(|_| format!("`{}` is not a call id (a UUID)", args.id))?;
    let url = args.ops.url(&["calls", &id.to_string(), action])?;
    let mut request = reqwest::Client::new().post(url);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    println!("{}", args.ops.send(request).await?);
    Ok(())
}

async fn prune(args: PruneArgs) -> Result<(), String> {
    // Bad input is reported before the store is touched.
    let age = parse_age(&args.older_than)?;
    let statuses = match args.statuses.is_empty() {
        true => vec![CallStatus::Completed, CallStatus::Failed],
        false => args
            .statuses
            .iter()
            .map(|status| parse_terminal(status))
            .collect::<Result<_, _>>()?,
    };
    let mut retention = Retention::new().batch(args.batch);
    for status in &statuses {
        retention = match status {
            CallStatus::Completed => retention.completed_after(age),
            _ => retention.failed_after(age),
        };
    }
    let store = open(&args.store).await?;
    let deleted = retention
        .prune(&*store)
        .await
        .map_err(|e| format!("pruning stopped: {e}"))?;
    let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    if args.store.json {
        println!(
            "{}",
            json!({ "deleted": deleted, "statuses": names, "older_than_s": age.as_secs() })
        );
    } else {
        println!(
            "deleted {deleted} call(s) ({}) finished more than {} ago",
            names.join(", "),
            args.older_than
        );
    }
    Ok(())
}

/// `<N>d`, `<N>h`, `<N>m` or `<N>s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let unit_seconds = |unit: char| match unit {
        'd' => Some(86_400),
        'h' => Some(3_600),
        'm' => Some(60),
        's' => Some(1),
        _ => None,
    };
    let wrong = || format!("`{text}` is not an age: use a whole number and a unit, as in 30d, 12h, 15m or 90s");
    let unit = text.chars().last().ok_or_else(wrong)?;
    let seconds = unit_seconds(unit).ok_or_else(wrong)?;
    let count: u64 = text[..text.len() - 1].parse().map_err(|_| wrong())?;
    count.checked_mul(seconds).map(Duration::from_secs).ok_or_else(wrong)
}

/// A status calls can be pruned in.
fn parse_terminal(text: &str) -> Result<CallStatus, String> {
    let status = CallStatus::from_str(text).map_err(|e| format!("{e}; use completed or failed"))?;
    if !status.is_terminal() {
        return Err(format!(
            "`{status}` calls are still running and are never pruned; use completed or failed"
        ));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_a_unit() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("0d"), Ok(Duration::ZERO));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        for bad in ["", "30", "d", "-1d", "1.5d", "3w", "99999999999999999d"] {
            let error = parse_age(bad).unwrap_err();
            assert!(error.contains("is not an age"), "{bad}: {error}");
        }
    }

    #[test]
    fn only_terminal_statuses_are_pruned() {
        assert_eq!(parse_terminal("failed"), Ok(CallStatus::Failed));
        assert!(parse_terminal("pending").unwrap_err().contains("never pruned"));
        assert!(parse_terminal("done").unwrap_err().contains("use completed or failed"));
    }
}
