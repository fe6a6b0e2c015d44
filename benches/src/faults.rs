//! The fault harness (issue 12): one hostile loopback provider per fault,
//! the real runtime on a real SQLite file, and one table row per fault with
//! what really happened. It reports; it does not assume: a bad finding is a
//! printed row, and only a failure of the harness itself is an error.
//!
//! ```sh
//! cargo run --release -p integration-bench -- faults
//! ```

mod hostile;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{Integration, Runtime, Secret, SqliteStore};
use serde_json::json;

use crate::common::{line, rss_kb, Figure, Result, Scratch};
use hostile::{Answer, Hostile, Received, Script};

integration_runtime::integration!("specs/faults_api.toml");
integration_runtime::integration!("specs/faults_bearer.toml");

/// The credentials the providers are given; none may reach another origin
/// or the store.
const API_KEY: &str = "fault-harness-api-key-0f9e8d7c";
const BEARER_TOKEN: &str = "fault-harness-bearer-token-1a2b3c4d";

/// The request's text, to recognise the body wherever it lands.
const TEXT: &str = "fault-harness-request-body";

/// How long a fault may take before the harness stops waiting for its call:
/// the spec allows 4 attempts of at most 2 s each, plus small backoffs.
const FAULT_DEADLINE: Duration = Duration::from_secs(25);

/// How often the harness looks at the call.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Size of the huge bodies: 50 MB.
const HUGE: usize = 50 * 1024 * 1024;

/// Which spec (and so which credential) a fault runs with.
#[derive(Debug, Clone, Copy)]
enum Auth {
    ApiKey,
    Bearer,
}

/// One fault: how the provider answers, and for a redirect, the second
/// origin it points to.
struct Fault {
    name: &'static str,
    auth: Auth,
    script: Script,
    target: Option<Hostile>,
}

/// What one fault came to.
struct Row {
    name: &'static str,
    requests: usize,
    elapsed: Duration,
    terminal: bool,
    status: String,
    class: &'static str,
    message: String,
    note: String,
    credentials_at_target: usize,
    credentials_in_store: usize,
}

pub(crate) async fn run() -> Result<Vec<Figure>> {
    println!(
        "\n== faults: one hostile loopback provider per fault; real Runtime on SQLite; \
         timeout 2 s, 4 attempts, default retry classes"
    );
    println!(
        "  {:<36} {:>4} {:>9}  {:<10} {:<10} {:>9}  message (the line below: details)",
        "fault", "reqs", "terminal", "status", "class", "peak RSS"
    );
    let scratch = Scratch::new("faults")?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let per_fault = reset_peak_rss();
    let mut peak = 0;
    for (i, fault) in faults().await?.into_iter().enumerate() {
        let row = run_fault(fault, &scratch.path(&format!("fault-{i}.db"))).await?;
        let (_, fault_peak) = rss_kb();
        peak = peak.max(fault_peak);
        print_row(&row, fault_peak);
        rows.push(row);
        reset_peak_rss();
    }
    let terminal = rows.iter().filter(|r| r.terminal).count();
    let leaked: usize = rows.iter().map(|r| r.credentials_at_target).sum();
    let stored: usize = rows.iter().map(|r| r.credentials_in_store).sum();
    let peak_mb = peak as f64 / 1024.0;
    line(
        "peak RSS of this process (VmHWM)",
        &format!("{peak_mb:.1} MB"),
        if per_fault {
            "harness + runtime; the peak RSS column is each fault's own"
        } else {
            "harness + runtime; the peak RSS column is the peak so far (VmHWM not resettable here)"
        },
    );
    println!(
        "faults: {} calls, all terminal: {}, credentials seen by redirect target: {leaked} ({:.1} s in all)",
        rows.len(),
        if terminal == rows.len() { "yes" } else { "no" },
        started.elapsed().as_secs_f64()
    );
    Ok(vec![
        Figure::new(
            "faults: calls terminal",
            format!("{terminal}/{}", rows.len()),
            "within 25 s each",
            "all",
            Some(terminal == rows.len()),
        ),
        Figure::new(
            "faults: credentials seen by redirect target",
            leaked.to_string(),
            "bearer token and API key",
            "0",
            Some(leaked == 0),
        ),
        Figure::new(
            "faults: credentials in the SQLite files",
            stored.to_string(),
            "database and WAL of every fault",
            "0",
            Some(stored == 0),
        ),
        Figure::new(
            "faults: peak RSS",
            format!("{peak_mb:.1} MB"),
            "with two 50 MB answers",
            "",
            None,
        ),
    ])
}

fn script(answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Script {
    Arc::new(answer)
}

fn echo(id: &str) -> Answer {
    Answer::json(200, &json!({ "id": id, "echoed": TEXT }))
}

/// Every fault, in the order of the table.
async fn faults() -> Result<Vec<Fault>> {
    let fault = |name, script| Fault {
        name,
        auth: Auth::ApiKey,
        script,
        target: None,
    };
    let mut faults = vec![
        fault(
            "5xx burst (2x 503, then 200)",
            script(|i| {
                if i < 2 {
                    Answer::json(503, &json!({ "message": "overloaded" }))
                } else {
                    echo("burst-1")
                }
            }),
        ),
        fault(
            "429, Retry-After: 1 (seconds)",
            script(|i| {
                if i == 0 {
                    Answer::json(429, &json!({ "message": "slow down" })).with_header("Retry-After", "1")
                } else {
                    echo("after-seconds-1")
                }
            }),
        ),
        fault(
            "429, Retry-After: HTTP-date (+3 s)",
            script(|i| {
                if i == 0 {
                    Answer::json(429, &json!({ "message": "slow down" })).with_header("Retry-After", &http_date_in(3))
                } else {
                    echo("after-date-1")
                }
            }),
        ),
        fault("never answers", script(|_| Answer::Silence)),
        fault(
            "1 byte/s body",
            script(|_| Answer::Trickle {
                body: json!({ "id": "slow-1", "echoed": TEXT }).to_string().into_bytes(),
            }),
        ),
        fault(
            "reset mid-response (RST)",
            script(|_| Answer::Reset {
                declared: 200,
                sent: br#"{"id":"reset-1","ech"#.to_vec(),
            }),
        ),
        fault(
            "truncated body (CL 200, 20 sent)",
            script(|_| Answer::Truncated {
                declared: 200,
                sent: br#"{"id":"trunc-1","ec"#.to_vec(),
            }),
        ),
        fault(
            "50 MB body, Content-Length",
            script(|_| Answer::Huge {
                id: "huge-cl".into(),
                bytes: HUGE,
                chunked: false,
            }),
        ),
        fault(
            "50 MB body, chunked",
            script(|_| Answer::Huge {
                id: "huge-chunked".into(),
                bytes: HUGE,
                chunked: true,
            }),
        ),
        fault(
            "HTML body on a JSON endpoint",
            script(|_| Answer::Full {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body: b"<html><body><h1>Welcome to nginx!</h1></body></html>".to_vec(),
            }),
        ),
        fault(
            "sync reply without its external id",
            script(|_| Answer::json(200, &json!({ "echoed": TEXT }))),
        ),
    ];
    for (name, auth) in [
        ("307 to another origin (API key)", Auth::ApiKey),
        ("307 to another origin (bearer)", Auth::Bearer),
    ] {
        let target = Hostile::start(script(|_| echo("redirected-1"))).await?;
        let location = format!("{}/collect", target.url);
        faults.push(Fault {
            name,
            auth,
            script: script(move |_| Answer::json(307, &json!({})).with_header("Location", &location)),
            target: Some(target),
        });
    }
    Ok(faults)
}

/// An HTTP-date `seconds` from now.
fn http_date_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn integration(auth: Auth, base_url: String) -> Result<Arc<dyn Integration>> {
    Ok(match auth {
        Auth::ApiKey => Arc::new(faulty_api::FaultyApi::new(faulty_api::FaultyApiConfig {
            base_url,
            api_key: Secret::new(API_KEY),
        })?),
        Auth::Bearer => Arc::new(faulty_bearer::FaultyBearer::new(faulty_bearer::FaultyBearerConfig {
            base_url,
            token: Secret::new(BEARER_TOKEN),
        })?),
    })
}

/// Runs one call against the fault's provider until it is terminal or the
/// deadline passes, on a fresh runtime and SQLite file.
async fn run_fault(fault: Fault, db: &Path) -> Result<Row> {
    let provider = Hostile::start(fault.script.clone()).await?;
    let integration = integration(fault.auth, provider.url.clone())?;
    let name = integration.descriptor().name;
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration_arc(integration)
        .poll_idle(Duration::from_millis(50))
        .build()
        .await?;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let started = Instant::now();
    let id = rt.create_json(name, "send", json!({ "text": TEXT }), None).await?;
    let record = loop {
        let record = rt.get(id).await?.ok_or("the call vanished")?;
        if record.is_terminal() || started.elapsed() > FAULT_DEADLINE {
            break record;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    let elapsed = started.elapsed();
    rt.shutdown(Duration::from_secs(1)).await;
    worker.await??;

    let received = provider.received();
    let mut notes = Vec::new();
    if received.len() > 1 {
        let gaps: Vec<String> = received
            .windows(2)
            .map(|w| format!("{:.2}", (w[1].at - w[0].at).as_secs_f64()))
            .collect();
        notes.push(format!("gaps {} s", gaps.join("/")));
    }
    if let Some(data) = &record.response_data {
        notes.push(format!(
            "external_id {}, result {} bytes",
            record.external_id.as_deref().unwrap_or("-"),
            data.to_string().len()
        ));
    }
    let mut credentials_at_target = 0;
    if let Some(target) = &fault.target {
        let seen = target.received();
        credentials_at_target = seen.iter().map(credentials_in).sum();
        notes.push(describe_target(&seen, credentials_at_target));
    }
    notes.push(format!("db {:.1} MB", store_bytes(db) as f64 / 1e6));
    let credentials_in_store = secrets_in_store(db)?;
    if credentials_in_store > 0 {
        notes.push(format!("credentials in the SQLite files: {credentials_in_store}"));
    }
    let message = record.error.clone().unwrap_or_default();
    Ok(Row {
        name: fault.name,
        requests: received.len(),
        elapsed,
        terminal: record.is_terminal(),
        status: record.status.to_string(),
        class: if record.error.is_some() {
            class_of(&message)
        } else {
            "-"
        },
        message: prefix(message.strip_prefix("endpoint `send`: ").unwrap_or(&message), 240),
        note: notes.join("; "),
        credentials_at_target,
        credentials_in_store,
    })
}

/// How many credentials one request carried (anywhere: line, headers, body).
fn credentials_in(request: &Received) -> usize {
    [API_KEY, BEARER_TOKEN]
        .iter()
        .map(|secret| request.head.matches(secret).count() + request.body.matches(secret).count())
        .sum()
}

/// What the redirect target saw: requests, header names, the body.
fn describe_target(seen: &[Received], credentials: usize) -> String {
    let Some(first) = seen.first() else {
        return "target saw 0 requests; credentials seen: 0".to_owned();
    };
    let headers: Vec<&str> = first
        .head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    format!(
        "target saw {} request(s): `{}`, headers [{}], body {}; credentials seen: {credentials}",
        seen.len(),
        first.head.lines().next().unwrap_or(""),
        headers.join(", "),
        if first.body.contains(TEXT) {
            "WITH the request's text"
        } else {
            "without the request's text"
        },
    )
}

/// The failure class, read from the stored message (the record keeps text only).
fn class_of(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    let classes: [(&[&str], &str); 10] = [
        (&["redirect"], "redirect"),
        (&["too large", "larger than", "max_response_bytes"], "too_large"),
        (&["external id", "external_id"], "no_ext_id"),
        (&["timed out"], "timeout"),
        (&["could not connect"], "connect"),
        (&["http 429"], "429"),
        (&["http 5"], "5xx"),
        (&["http 3", "http 4"], "status"),
        (&["request failed", "transport", "connection", "reset"], "transport"),
        (&["could not read", "decode", "result"], "decode"),
    ];
    classes
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| lower.contains(n)))
        .map_or("other", |(_, class)| class)
}

fn prefix(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Bytes of the database file and its WAL.
fn store_bytes(db: &Path) -> u64 {
    wal_and_main(db)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn wal_and_main(db: &Path) -> [std::path::PathBuf; 2] {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [db.to_path_buf(), wal.into()]
}

/// How often a credential occurs in the database files, read in pieces (a
/// 50 MB store read whole would distort the peak RSS this harness reports).
fn secrets_in_store(db: &Path) -> Result<usize> {
    use std::io::Read;
    let longest = API_KEY.len().max(BEARER_TOKEN.len());
    let mut found = 0;
    for path in wal_and_main(db) {
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut window: Vec<u8> = Vec::new();
        let mut piece = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut piece)?;
            if n == 0 {
                break;
            }
            // Keep the tail of the previous piece, so a secret split across pieces is found.
            let keep = window.len().saturating_sub(longest - 1);
            window.drain(..keep);
            let seam = window.len();
            window.extend_from_slice(&piece[..n]);
            for secret in [API_KEY, BEARER_TOKEN] {
                found += window
                    .windows(secret.len())
                    .enumerate()
                    .filter(|(at, w)| at + secret.len() > seam && *w == secret.as_bytes())
                    .count();
            }
        }
    }
    Ok(found)
}

/// Resets this process's VmHWM to its current RSS (Linux `clear_refs`),
/// so each row shows the peak of its own fault; `false` when not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One row: the figures, then the message and the details on a line below.
fn print_row(row: &Row, peak: u64) {
    let status = if row.terminal {
        row.status.clone()
    } else {
        format!("{} (not terminal)", row.status)
    };
    let message = if row.message.is_empty() { "-" } else { &row.message };
    println!(
        "  {:<36} {:>4} {:>7.2} s  {:<10} {:<10} {:>6.1} MB  {message}",
        row.name,
        row.requests,
        row.elapsed.as_secs_f64(),
        status,
        row.class,
        peak as f64 / 1024.0,
    );
    println!("  {:<36} {}", "", row.note);
}
