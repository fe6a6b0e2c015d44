//! The main job: a complete, real scenario in one command, with no set-up.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It starts two fake providers on 127.0.0.1, built by the test kit from the
//! specs in `specs/`: a synchronous translation API and an asynchronous
//! text-to-speech API that announces finished tasks with signed webhooks
//! (Standard Webhooks) and can also be polled. Business code creates calls;
//! the runtime executes them, follows them to their end and stores every
//! event in an SQLite file. You see the batch move live, then a table of every
//! call's path through its lifecycle. What to look for:
//!
//! - translations finish at once (`initialized -> processing -> completed`,
//!   all recorded together); one is refused by the provider and fails
//!   without retries (HTTP 400 is not retryable);
//! - speech tasks are `processing` until their webhook arrives; one of them
//!   fails at the provider;
//! - afterwards the state is in `quickstart.db`; inspect it with
//!   `cargo run -p integration-cli -- calls list --db quickstart.db --integration VolcTts`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use integration_runtime::{CallId, CallStatus, Integration, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, RecordedRequest, WebhookSender};
use serde_json::json;

integration_runtime::integration!("../specs/translate.toml");
integration_runtime::integration!("../specs/volc_tts.toml");

const WEBHOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../specs");

/// One finished call, as the summary shows it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The call.
    pub id: CallId,
    /// `Translate` or `VolcTts`.
    pub integration: String,
    /// The final status.
    pub status: CallStatus,
    /// Event kinds in the order they were recorded.
    pub path: Vec<String>,
    /// The result or the error, shortened.
    pub outcome: String,
}

/// Runs the whole scenario against the SQLite file at `db`; returns a row per call.
pub async fn run(db: &Path, live: bool) -> anyhow::Result<Vec<Row>> {
    let store = SqliteStore::open(db)
        .await
        .with_context(|| format!("opening {}", db.display()))?;

    // The webhook receiver: the fake TTS provider posts signed deliveries here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let webhook_url = format!("http://{}/webhooks/volc-tts", listener.local_addr()?);

    // Each fake answers by the request's content: calls run concurrently.
    let text_is = |wanted: &'static str| {
        move |request: &RecordedRequest| request.json().is_some_and(|body| body["text"] == wanted)
    };
    let translate_fake = FakeProvider::from_spec_file(format!("{SPECS}/translate.toml"))?
        .when(
            "translate",
            text_is("Hallo, Welt"),
            Outcome::complete(json!({ "text": "Hello, world", "detected_lang": "de", "characters": 11 })),
        )
        .when(
            "translate",
            text_is("Danke"),
            Outcome::complete(json!({ "text": "Thank you", "detected_lang": "de", "characters": 5 })),
        )
        .when(
            "translate",
            text_is("nuqneH"),
            Outcome::reject(400).message("target language `tlh` is not supported"),
        )
        .when(
            "translate",
            text_is("Bonjour"),
            Outcome::complete(json!({ "text": "Good morning", "detected_lang": "fr", "characters": 7 })),
        )
        .start()
        .await?;
    let voice_is = |wanted: &'static str| {
        move |request: &RecordedRequest| request.json().is_some_and(|body| body["input"]["voice_type"] == wanted)
    };
    let tts_fake = FakeProvider::from_spec_file(format!("{SPECS}/volc_tts.toml"))?
        .when(
            "synthesize",
            voice_is("en_robot_9"),
            Outcome::fail("voice `en_robot_9` is not available"),
        )
        .when(
            "synthesize",
            voice_is("en_female_1"),
            Outcome::complete(json!({ "url": "https://cdn.example.com/ada.mp3", "duration_ms": 1830 })),
        )
        .when(
            "synthesize",
            voice_is("en_female_2"),
            Outcome::complete(json!({ "url": "https://cdn.example.com/grace.mp3", "duration_ms": 2410 })),
        )
        .when(
            "synthesize",
            voice_is("en_male_1"),
            Outcome::complete(json!({ "url": "https://cdn.example.com/linus.mp3", "duration_ms": 990 })),
        )
        .polls_until_done(3)
        .webhooks_to(
            webhook_url,
            WebhookSender::standard_webhooks(WEBHOOK_SECRET),
            Duration::from_millis(300),
        )
        .start()
        .await?;

    let translate = translate::Translate::new(translate::TranslateConfig {
        base_url: translate_fake.url(),
        api_key: Secret::new("demo-translate-key"),
    })?;
    let tts: Arc<dyn Integration> = Arc::new(volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: tts_fake.url(),
        token: Secret::new("demo-tts-token"),
        webhook_secret: Secret::new(WEBHOOK_SECRET),
    })?);

    let rt = Runtime::builder()
        .store(store)
        .integration(translate)
        .integration_arc(Arc::clone(&tts))
        .concurrency(8)
        .build()
        .await?;
    // Through the runtime: a webhook and a poll reporting the same end are one
    // event, and a webhook completion wakes the hooks like a worker's does.
    let receiver = rt
        .webhook_receiver()
        .integration_with_secrets(tts, &[Secret::new(WEBHOOK_SECRET)])?
        .router();
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });

    // Business code decides WHEN: it creates calls.
    let mut ids = Vec::new();
    for (text, target) in [
        ("Hallo, Welt", "en"),
        ("Danke", "en"),
        ("nuqneH", "tlh"),
        ("Bonjour", "en"),
    ] {
        let request = translate::Translation {
            text: text.into(),
            source_lang: None,
            target_lang: target.into(),
            formality: translate::TranslationFormality::Default,
            glossary_id: None,
        };
        ids.push(rt.create(request).await?);
    }
    for (text, voice) in [
        ("Thank you, Ada", "en_female_1"),
        ("Thank you, Grace", "en_female_2"),
        ("Beep", "en_robot_9"),
        ("Thank you, Linus", "en_male_1"),
    ] {
        let request = volc_tts::Synthesis {
            text: text.into(),
            voice: voice.into(),
            speed: None,
            format: volc_tts::SynthesisFormat::Mp3,
        };
        ids.push(rt.create(request).await?);
    }

    // The runtime decides HOW: workers, polling, webhooks.
    let worker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await })
    };
    let started = Instant::now();
    let mut shown = None;
    loop {
        let mut counts = [0usize; 4];
        for id in &ids {
            let status = rt.get(*id).await?.map_or(CallStatus::Pending, |c| c.status);
            counts[CallStatus::ALL.iter().position(|s| *s == status).unwrap_or(0)] += 1;
        }
        let done = counts[2] + counts[3];
        if live && shown != Some(counts) {
            show_progress(counts, ids.len(), started.elapsed());
            shown = Some(counts);
        }
        if done == ids.len() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "calls did not finish in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if live && std::io::stdout().is_terminal() {
        println!();
    }
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    server.abort();

    let mut rows = Vec::new();
    for id in ids {
        let found = rt.get_with_events(id).await?.context("a created call is stored")?;
        let call = found.call;
        let outcome = match (&call.response_data, &call.error) {
            (Some(data), _) => data.to_string(),
            (None, Some(error)) => format!("error: {error}"),
            (None, None) => String::new(),
        };
        rows.push(Row {
            id,
            integration: call.integration,
            status: call.status,
            path: found.events.iter().map(|e| e.kind.to_string()).collect(),
            outcome,
        });
    }
    Ok(rows)
}

/// One progress line: redrawn in place on a terminal, a new line otherwise.
fn show_progress(counts: [usize; 4], total: usize, elapsed: Duration) {
    let done = counts[2] + counts[3];
    let line = format!(
        "[{:<16}] {done}/{total} done  pending {}  processing {}  completed {}  failed {}  ({:.1}s)",
        "#".repeat(done * 16 / total.max(1)),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        elapsed.as_secs_f64()
    );
    let mut out = std::io::stdout();
    if out.is_terminal() {
        let _ = write!(out, "\r{line}");
        let _ = out.flush();
    } else {
        let _ = writeln!(out, "{line}");
    }
}

fn print_table(rows: &[Row]) {
    println!("\n{:<10} {:<10} {:<42} RESULT", "CALL", "STATUS", "LIFECYCLE");
    for row in rows {
        let mut outcome = row.outcome.clone();
        if outcome.chars().count() > 70 {
            outcome = outcome.chars().take(67).collect::<String>() + "...";
        }
        let id = row.id.to_string();
        let call = format!("{}:{}", &row.integration[..2], &id[..6]);
        println!(
            "{call:<10} {:<10} {:<42} {outcome}",
            row.status.as_str(),
            row.path.join(" -> ")
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = PathBuf::from(std::env::var("QUICKSTART_DB").unwrap_or_else(|_| "quickstart.db".into()));
    for suffix in ["", "-wal", "-shm"] {
        let old = PathBuf::from(format!("{}{suffix}", db.display()));
        if old.exists() {
            std::fs::remove_file(&old).with_context(|| format!("replacing the previous run's {}", old.display()))?;
        }
    }
    println!(
        "Creating 4 translations (sync) and 4 speech tasks (async, webhook + polling); state in {}",
        db.display()
    );
    let rows = run(&db, true).await?;
    print_table(&rows);
    let failed = rows.iter().filter(|r| r.status == CallStatus::Failed).count();
    println!(
        "\n{} calls: {} completed, {failed} failed.",
        rows.len(),
        rows.len() - failed
    );
    println!(
        "Inspect the file: cargo run -p integration-cli -- calls list --db {} --integration VolcTts",
        db.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scenario_ends_with_every_call_terminal_in_the_sqlite_file() {
        let dir = std::env::temp_dir().join(format!("quickstart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("quickstart.db");
        let rows = run(&db, false).await.unwrap();
        assert_eq!(rows.len(), 8);

        // Read the file again, as a user would afterwards.
        let store = SqliteStore::open(&db).await.unwrap();
        use CallStatus::{Completed, Failed};
        let mut statuses = Vec::new();
        for row in &rows {
            let call = integration_runtime::Store::get(&store, row.id).await.unwrap().unwrap();
            assert_eq!(call.status, row.status);
            statuses.push((row.integration.as_str(), call.status));
            let terminal = row.path.iter().filter(|k| *k == "completed" || *k == "failed").count();
            assert_eq!(terminal, 1, "exactly one terminal event: {:?}", row.path);
            if row.integration == "Translate" {
                // A sync answer brings all three events at once; a refusal
                // still gets `initialized` before `failed`.
                let expected: &[&str] = if call.status == Completed {
                    &["initialized", "processing", "completed"]
                } else {
                    &["initialized", "failed"]
                };
                assert_eq!(row.path, expected);
            }
            assert_eq!(
                row.path.first().map(String::as_str),
                Some("initialized"),
                "{:?}",
                row.path
            );
        }
        assert_eq!(
            statuses,
            [
                ("Translate", Completed),
                ("Translate", Completed),
                ("Translate", Failed),
                ("Translate", Completed),
                ("VolcTts", Completed),
                ("VolcTts", Completed),
                ("VolcTts", Failed),
                ("VolcTts", Completed),
            ]
        );
        assert!(rows[2].outcome.contains("not supported"), "{}", rows[2].outcome);
        assert!(rows[6].outcome.contains("en_robot_9"), "{}", rows[6].outcome);
        std::fs::remove_dir_all(&dir).ok();
    }
}
