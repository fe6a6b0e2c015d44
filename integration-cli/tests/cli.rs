//! The `integration` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration_runtime::store::NewEvent;
use integration_runtime::{CallId, NewCall, SqliteStore, Store};
use serde_json::json;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_integration"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh folder of the test's own, removed when the test is done with it.
fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("integration-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a `--json` run printed.
fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A pending `VolcTts` call that synthesizes `text`.
async fn create_call(store: &dyn Store, text: &str) -> CallId {
    store
        .create(NewCall::new("VolcTts", "synthesize", json!({ "text": text })))
        .await
        .unwrap()
        .id
}

/// A `VolcTts` call for `text` that was initialized with the provider's
/// `task` id (event key `init`) and then ended with `terminal`.
async fn finished_call(store: &dyn Store, text: &str, task: &str, terminal: NewEvent) -> CallId {
    let id = create_call(store, text).await;
    store
        .append_event(id, NewEvent::initialized("init", task))
        .await
        .unwrap();
    store.append_event(id, terminal).await.unwrap();
    id
}

#[test]
fn check_accepts_the_specs_folder() {
    let out = run(&["check", "specs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok: specs/volc_tts.toml (VolcTts"), "{stdout}");
    assert!(stdout.contains("ok: specs/crm.toml (Crm"), "{stdout}");
    assert!(stdout.contains("checked 5 spec(s): 5 valid, 0 with errors"), "{stdout}");
}

#[test]
fn check_reports_every_mistake_with_its_position_and_fails() {
    let dir = scratch("broken");
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "[integration]\nname = \"Broken\"\nbase_url = \"https://x.example.com\"\n\n[endpoints.get]\nmethod = \"GETT\"\npath = \"/things/{id}\"\n",
    )
    .unwrap();
    std::fs::copy(workspace().join("specs/translate.toml"), dir.join("good.toml")).unwrap();
    let out = run(&["check", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let file = broken.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:6:10: unknown HTTP method `GETT`")),
        "{stderr}"
    );
    assert!(stderr.contains("help: did you mean `GET`?"), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:7:17: path parameter `{{id}}` has no source")),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("checked 2 spec(s): 1 valid, 1 with errors"));
}

/// A spec with one mistake, written to a scratch folder (which goes with
/// the first of the pair).
fn broken_spec(name: &str) -> (Scratch, PathBuf) {
    let dir = scratch(name);
    let file = dir.join("broken.toml");
    std::fs::write(
        &file,
        "[integration]\nname = \"Broken\"\nbase_url = \"https://x.example.com\"\n\n[endpoints.get]\nmethod = \"GETT\"\npath = \"/things\"\n",
    )
    .unwrap();
    (dir, file)
}

/// `integration check file` run on a pseudo-terminal by `script`, with
/// `NO_COLOR` set to `no_color` or removed; what the terminal showed.
/// `None` when `script` (util-linux) is not installed.
fn check_on_a_terminal(file: &Path, no_color: Option<&str>) -> Option<String> {
    let command = format!("'{}' check '{}'", env!("CARGO_BIN_EXE_integration"), file.display());
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).current_dir(workspace());
    match no_color {
        Some(value) => script.env("NO_COLOR", value),
        None => script.env_remove("NO_COLOR"),
    };
    match script.output() {
        Ok(out) => Some(text(&out.stdout)),
        Err(e) => {
            eprintln!("skipped: cannot run `script` for a pseudo-terminal: {e}");
            None
        }
    }
}

#[test]
fn check_colours_diagnostics_on_a_terminal_unless_no_color_is_set() {
    let (_dir, file) = broken_spec("tty");
    let Some(coloured) = check_on_a_terminal(&file, None) else {
        return;
    };
    assert!(coloured.contains("unknown HTTP method `GETT`"), "{coloured}");
    assert!(coloured.contains("\u{1b}["), "no ANSI colour on a terminal: {coloured}");
    let plain = check_on_a_terminal(&file, Some("1")).unwrap();
    assert!(plain.contains("unknown HTTP method `GETT`"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "colour despite NO_COLOR: {plain}");
}

#[test]
fn check_prints_plain_diagnostics_into_a_pipe() {
    let (_dir, file) = broken_spec("pipe");
    let out = run(&["check", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown HTTP method `GETT`"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour into a pipe: {stderr}");
}

#[test]
fn check_of_a_missing_file_exits_2() {
    let out = run(&["check", "specs/nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read specs/nope.toml"));
}

#[test]
fn expand_prints_the_code_the_snapshots_compile() {
    let out = run(&["expand", "specs/volc_tts.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snapshot = std::fs::read_to_string(workspace().join("tests/snapshots/volc_tts.rs")).unwrap();
    // The snapshot is the same output behind a two-line header; the
    // integration-tests crate compiles it.
    let body = snapshot.splitn(4, '\n').nth(3).unwrap();
    assert_eq!(text(&out.stdout), body);
}

#[test]
fn help_shows_examples_for_every_command() {
    for command in [
        &["check", "--help"][..],
        &["expand", "--help"],
        &["calls", "list", "--help"],
        &["calls", "show", "--help"],
        &["calls", "retry", "--help"],
        &["calls", "refresh", "--help"],
        &["calls", "prune", "--help"],
        &["calls", "cancel", "--help"],
        &["connections", "list", "--help"],
        &["connections", "show", "--help"],
        &["connections", "revoke", "--help"],
        &["connections", "reseal", "--help"],
        &["keys", "generate", "--help"],
    ] {
        let out = run(command);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("Examples:"), "{command:?}");
    }
}

#[tokio::test]
async fn calls_list_and_show_read_a_store_filled_by_the_runtime() {
    let dir = scratch("calls");
    let db = dir.join("integrations.db");
    let store = SqliteStore::open(&db).await.unwrap();
    // As the runtime records a webhook's news: with its source and delivery id.
    let mut completed = NewEvent::completed("terminal", json!({ "url": "u", "duration_ms": 1 }));
    completed.payload.source = Some(integration_runtime::EventSource::Webhook);
    completed.payload.delivery_id = Some("msg_77".into());
    let done = finished_call(&store, "hi", "task-1", completed).await;
    let failed = finished_call(&store, "ho", "task-2", NewEvent::failed("fail", "voice not available")).await;
    drop(store);
    let db = db.to_str().unwrap();

    let out = run(&["calls", "list", "--db", db, "--integration", "VolcTts"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&done.to_string()) && table.contains("completed") && table.contains("task-1"),
        "{table}"
    );
    assert!(table.contains("voice not available"), "{table}");
    assert!(table.contains("2 call(s)"), "{table}");

    let out = run(&[
        "calls",
        "list",
        "--db",
        db,
        "--integration",
        "VolcTts",
        "--status",
        "failed",
        "--json",
    ]);
    let listed = stdout_json(&out);
    assert_eq!(listed["calls"].as_array().unwrap().len(), 1);
    assert_eq!(listed["calls"][0]["id"], json!(failed.to_string()));
    assert_eq!(listed["calls"][0]["error"], json!("voice not available"));

    let out = run(&["calls", "show", "--db", db, &done.to_string(), "--json"]);
    let shown = stdout_json(&out);
    assert_eq!(shown["call"]["status"], json!("completed"));
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["initialized", "completed"]);
    assert_eq!(shown["events"][1]["payload"]["source"], json!("webhook"));
    assert_eq!(shown["events"][1]["payload"]["delivery_id"], json!("msg_77"));

    let out = run(&["calls", "show", "--db", db, &done.to_string()]);
    let shown = text(&out.stdout);
    assert!(shown.contains("status      completed"), "{shown}");
    let completed_row = shown
        .lines()
        .find(|line| line.ends_with("terminal"))
        .unwrap_or_default();
    assert!(
        completed_row.contains("webhook") && completed_row.contains("msg_77"),
        "the event's source and delivery id are shown: {shown}"
    );

    let out = run(&[
        "calls",
        "list",
        "--db",
        db,
        "--integration",
        "VolcTts",
        "--status",
        "done",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("use pending, processing, completed or failed"));
    let out = run(&[
        "calls",
        "show",
        "--db",
        dir.join("missing.db").to_str().unwrap(),
        &done.to_string(),
    ]);
    assert!(!out.status.success(), "a missing store file is an error");
    assert!(text(&out.stderr).contains("does not exist"));
}

#[tokio::test]
async fn calls_retry_creates_one_new_call_for_a_failed_one_and_refuses_others() {
    let dir = scratch("retry");
    let db = dir.join("integrations.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let failed = finished_call(&store, "hi", "task-1", NewEvent::failed("fail", "boom")).await;
    let pending = create_call(&store, "ho").await;
    let db = db.to_str().unwrap();

    let out = run(&["calls", "retry", "--db", db, &failed.to_string(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = stdout_json(&out);
    assert_eq!(first["created"], json!(true));
    let out = run(&["calls", "retry", "--db", db, &failed.to_string(), "--json"]);
    let again = stdout_json(&out);
    assert_eq!(
        (again["created"].clone(), again["call_id"].clone()),
        (json!(false), first["call_id"].clone())
    );
    let retried = store
        .get(first["call_id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (retried.params, retried.status),
        (json!({ "text": "hi" }), integration_runtime::CallStatus::Pending)
    );

    let out = run(&["calls", "retry", "--db", db, &pending.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("only failed calls can be retried"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn calls_prune_deletes_finished_calls_past_the_age_and_refuses_bad_input() {
    let dir = scratch("prune");
    let db = dir.join("integrations.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let done = finished_call(&store, "hi", "task-1", NewEvent::completed("t", json!({ "url": "u" }))).await;
    let failed = finished_call(&store, "ho", "task-2", NewEvent::failed("fail", "boom")).await;
    let pending = create_call(&store, "later").await;
    let db = db.to_str().unwrap();
    let prune = |extra: &[&str]| {
        let mut args = vec!["calls", "prune", "--db", db, "--json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        stdout_json(&out)["deleted"].as_u64().unwrap()
    };

    assert_eq!(prune(&["--older-than", "0d"]), 0, "hooks not delivered yet");
    for id in [done, failed] {
        store
            .finish_notification(id, integration_runtime::store::NotificationOutcome::Delivered)
            .await
            .unwrap();
    }
    assert_eq!(prune(&["--older-than", "1d"]), 0, "nothing finished a day ago");
    assert_eq!(prune(&["--older-than", "0d", "--status", "completed"]), 1);
    assert!(store.get(done).await.unwrap().is_none());
    assert!(
        store.get(failed).await.unwrap().is_some(),
        "failed calls were not asked for"
    );
    let out = run(&["calls", "prune", "--db", db, "--older-than", "0s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deleted 1 call(s) (completed, failed)"),
        "{}",
        text(&out.stdout)
    );
    assert!(store.get(failed).await.unwrap().is_none());
    assert!(
        store.get(pending).await.unwrap().is_some(),
        "a pending call is never pruned"
    );

    for (args, expected) in [
        (&["--older-than", "30x"][..], "`30x` is not an age"),
        (&["--older-than", "30"], "`30` is not an age"),
        (&["--older-than", "1d", "--status", "pending"], "never pruned"),
        (&["--older-than", "1d", "--status", "done"], "use completed or failed"),
    ] {
        let mut all = vec!["calls", "prune", "--db", db];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(expected), "{args:?}: {}", text(&out.stderr));
    }
    assert!(store.get(pending).await.unwrap().is_some(), "bad input deletes nothing");
}

integration_runtime::integration!("../specs/volc_tts.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_refresh_goes_through_the_operations_api() {
    use std::sync::Arc;
    let dir = scratch("refresh");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("integrations.db")).await.unwrap());
    let fake = integration_testkit::FakeProvider::from_spec_file(workspace().join("specs/volc_tts.toml"))
        .unwrap()
        .start()
        .await
        .unwrap();
    let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: integration_runtime::Secret::new("t"),
        webhook_secret: integration_runtime::Secret::new("whsec_dW51c2Vk"),
    })
    .unwrap();
    // A task the fake knows, and a call that waits for it.
    let started = tts
        .client()
        .synthesize(
            &volc_tts::Synthesis {
                text: "hi".into(),
                voice: "v".into(),
                speed: None,
                format: volc_tts::SynthesisFormat::Mp3,
            },
            &integration_runtime::CallOptions::default(),
        )
        .await
        .unwrap();
    let external_id = started.external_id.unwrap();
    let id = create_call(&*store, "hi").await;
    store
        .append_event(id, NewEvent::initialized("initialized", external_id.as_str()))
        .await
        .unwrap();
    let ops = integration_runtime::ops::OpsApi::new(Arc::clone(&store))
        .integration(Arc::new(tts))
        .token(Some(integration_runtime::Secret::new("ops-token")))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, ops).await });

    let cli = |token: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_integration"))
                .args(["calls", "refresh", "--ops-url", &url, &id.to_string()])
                .env("INTEGRATION_OPS_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let denied = cli("wrong").await.unwrap();
    assert_eq!(denied.status.code(), Some(1));
    assert!(text(&denied.stderr).contains("401"), "{}", text(&denied.stderr));
    let out = cli("ops-token").await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().status,
        integration_runtime::CallStatus::Completed
    );
}

#[tokio::test]
async fn check_with_a_store_names_the_calls_a_spec_change_would_strand() {
    let dir = scratch("stranded");
    let db = dir.join("calls.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let source = std::fs::read_to_string(workspace().join("specs/volc_tts.toml")).unwrap();
    let current = integration_spec::fingerprint(&source);
    let old = |call: NewCall| call.spec_fingerprint("fnv1a64:0000000000000000");
    let hello = json!({ "text": "hello" });
    let gone = store
        .create(old(NewCall::new("VolcTts", "synthesize_v1", hello.clone())))
        .await
        .unwrap()
        .id;
    let undecodable = store
        .create(old(NewCall::new("VolcTts", "synthesize", json!({ "txt": "hello" }))))
        .await
        .unwrap()
        .id;
    // Fine under the current spec, or created under it, or finished: not stranded.
    store
        .create(old(NewCall::new("VolcTts", "synthesize", hello.clone())))
        .await
        .unwrap();
    store
        .create(NewCall::new("VolcTts", "synthesize", json!({})).spec_fingerprint(current))
        .await
        .unwrap();
    finished_call(&store, "", "task-9", NewEvent::failed("fail", "no")).await;
    drop(store);

    let out = run(&["check", "specs/volc_tts.toml", "--db", db.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let stranded: Vec<&str> = stdout.lines().filter(|l| l.starts_with("stranded:")).collect();
    assert_eq!(stranded.len(), 2, "{stdout}");
    assert!(
        stranded
            .iter()
            .any(|l| l.contains(&gone.to_string()) && l.contains("endpoint `synthesize_v1` is no longer in the spec")),
        "{stdout}"
    );
    assert!(
        stranded
            .iter()
            .any(|l| l.contains(&undecodable.to_string()) && l.contains("field `text` is required and missing")),
        "{stdout}"
    );
    assert!(stdout.contains("2 stored call(s) could not be finished"), "{stdout}");

    let clean = scratch("not-stranded");
    let empty = clean.join("calls.db");
    drop(SqliteStore::open(&empty).await.unwrap());
    let out = run(&["check", "specs/volc_tts.toml", "--db", empty.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("no stored call would be stranded"));
    let missing = run(&["check", "specs/volc_tts.toml", "--db", "/nonexistent/calls.db"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("does not exist"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cancel_goes_through_the_operations_api() {
    use std::sync::Arc;
    let dir = scratch("cancel");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("integrations.db")).await.unwrap());
    let id = create_call(&*store, "never").await;
    let ops = integration_runtime::ops::OpsApi::new(Arc::clone(&store))
        .token(Some(integration_runtime::Secret::new("ops-token")))
        .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, ops).await });
    let cancel = || {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_integration"))
                .args([
                    "calls",
                    "cancel",
                    "--ops-url",
                    &url,
                    &id.to_string(),
                    "--reason",
                    "order withdrawn",
                ])
                .env("INTEGRATION_OPS_TOKEN", "ops-token")
                .output()
                .unwrap()
        })
    };
    let out = cancel().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let call = store.get(id).await.unwrap().unwrap();
    assert_eq!(call.error_kind, Some(integration_runtime::FailureKind::Cancelled));
    assert_eq!(call.error.as_deref(), Some("cancelled: order withdrawn"));
    let again = cancel().await.unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already_terminal"),
        "{}",
        text(&again.stderr)
    );
}

/// A keyring of the current key `current` and the retired ones `old`, as
/// the variables hold them.
fn keyring(current: &str, old: &[&str]) -> integration_runtime::Keyring {
    use integration_runtime::connection::{CREDENTIAL_KEY_ENV, OLD_CREDENTIAL_KEYS_ENV};
    let (current, old) = (current.to_owned(), old.join(","));
    integration_runtime::Keyring::from_vars(move |var| match var {
        CREDENTIAL_KEY_ENV => Some(current.clone()),
        OLD_CREDENTIAL_KEYS_ENV => Some(old.clone()),
        _ => None,
    })
    .unwrap()
}

/// A runtime over the SQLite file `db` with `VolcTts` (its provider never
/// reached: the runtime does not run) and the credential keys `keys`.
async fn keyed_runtime(db: &Path, keys: integration_runtime::Keyring) -> integration_runtime::Runtime {
    let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: "http://127.0.0.1:9".into(),
        token: integration_runtime::Secret::new("app-token"),
        webhook_secret: integration_runtime::Secret::new("whsec_dW51c2Vk"),
    })
    .unwrap();
    integration_runtime::Runtime::builder()
        .store(SqliteStore::open(db).await.unwrap())
        .integration(tts)
        .keyring(keys)
        .build()
        .await
        .unwrap()
}

async fn put_bearer(rt: &integration_runtime::Runtime, id: &str, token: &str) {
    let connection =
        integration_runtime::NewConnection::new("VolcTts", id, integration_runtime::Credentials::bearer(token));
    rt.put_connection(connection).await.unwrap();
}

#[test]
fn keys_generate_prints_a_key_the_runtime_reads() {
    let out = run(&["keys", "generate", "k9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert_eq!(keyring(printed.trim(), &[]).current_key_id(), "k9");
    let other = text(&run(&["keys", "generate", "k9"]).stdout);
    assert_ne!(printed, other, "every key is new");

    let out = run(&["keys", "generate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    assert_eq!(keyring(text(&out.stdout).trim(), &[]).current_key_id(), this_month);

    let bad = run(&["keys", "generate", "no spaces"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("may only hold letters"),
        "{}",
        text(&bad.stderr)
    );
    assert!(bad.stdout.is_empty(), "no key printed for a bad id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_listed_shown_and_revoked_through_the_operations_api() {
    let dir = scratch("connections");
    let db = dir.join("integrations.db");
    let rt = keyed_runtime(&db, keyring(&integration_runtime::Keyring::generate("k1"), &[])).await;
    put_bearer(&rt, "acme", "acme-secret-1").await;
    put_bearer(&rt, "globex", "globex-secret-2").await;
    let synthesis = |text: &str| volc_tts::Synthesis {
        text: text.into(),
        voice: "v".into(),
        speed: None,
        format: volc_tts::SynthesisFormat::Mp3,
    };
    use integration_runtime::IntoCall;
    // Not running: the calls stay pending.
    let acme_call = rt.create(synthesis("a").on_connection("acme")).await.unwrap();
    let globex_call = rt.create(synthesis("g").on_connection("globex")).await.unwrap();
    rt.create(synthesis("d")).await.unwrap();
    let router = rt.router(Some(integration_runtime::Secret::new("ops-token"))).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_url = format!("http://{}/ops", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let cli = |args: &[&str]| {
        let mut all: Vec<String> = vec!["connections".into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.extend(["--ops-url".to_owned(), ops_url.clone()]);
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_integration"))
                .args(&all)
                .env("INTEGRATION_OPS_TOKEN", "ops-token")
                .output()
                .unwrap();
            for secret in ["acme-secret-1", "globex-secret-2", "app-token"] {
                let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
                assert!(!printed.contains(secret), "{all:?} printed a secret: {printed}");
            }
            out
        })
    };

    let out = cli(&["list"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let acme_row: Vec<&str> = listed
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&"acme"))
        .unwrap_or_default();
    assert_eq!(
        acme_row[..6],
        ["VolcTts", "acme", "token", "k1", "-", "live"],
        "{listed}"
    );
    assert!(listed.contains("2 connection(s)"), "{listed}");
    let out = cli(&["list", "--integration", "VolcTts", "--json"]).await.unwrap();
    let listed = stdout_json(&out);
    let ids: Vec<&str> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);
    assert_eq!(listed["connections"][1]["credential_names"], json!(["token"]));
    let none = stdout_json(&cli(&["list", "--integration", "Other", "--json"]).await.unwrap());
    assert_eq!(none, json!({ "connections": [] }));

    let out = cli(&["show", "VolcTts", "globex"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("connection  globex") && shown.contains("key         k1"),
        "{shown}"
    );
    let shown = stdout_json(&cli(&["show", "VolcTts", "globex", "--json"]).await.unwrap());
    assert_eq!(shown["connection"]["key_id"], json!("k1"));

    let out = cli(&["revoke", "VolcTts", "acme"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("revoked connection `acme` of `VolcTts`; 1 call(s)"),
        "{}",
        text(&out.stdout)
    );
    let call = rt.get(acme_call).await.unwrap().unwrap();
    assert_eq!(call.error_kind, Some(integration_runtime::FailureKind::Revoked));
    assert_eq!(
        rt.get(globex_call).await.unwrap().unwrap().status,
        integration_runtime::CallStatus::Pending
    );
    let shown = text(&cli(&["show", "VolcTts", "acme"]).await.unwrap().stdout);
    assert!(shown.contains("status      revoked"), "{shown}");

    let unknown = cli(&["show", "VolcTts", "nobody"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("404"), "{}", text(&unknown.stderr));
    let unknown = cli(&["revoke", "VolcTts", "nobody"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));

    // The calls of one connection, from the store.
    let db = db.to_str().unwrap();
    let out = run(&[
        "calls",
        "list",
        "--db",
        db,
        "--integration",
        "VolcTts",
        "--connection",
        "globex",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = stdout_json(&out);
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1, "{calls}");
    assert_eq!(calls["calls"][0]["id"], json!(globex_call.to_string()));
    assert_eq!(calls["calls"][0]["connection"], json!("globex"));
    let all = stdout_json(&run(&[
        "calls",
        "list",
        "--db",
        db,
        "--integration",
        "VolcTts",
        "--json",
    ]));
    assert_eq!(all["calls"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn connections_reseal_moves_stored_credentials_to_the_new_key() {
    let dir = scratch("reseal");
    let db = dir.join("integrations.db");
    let old_key = integration_runtime::Keyring::generate("k1");
    let new_key = integration_runtime::Keyring::generate("k2");
    let rt = keyed_runtime(&db, keyring(&old_key, &[])).await;
    put_bearer(&rt, "acme", "acme-secret-1").await;
    drop(rt);
    let reseal = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_integration"));
        command
            .args(["connections", "reseal", "--db", db.to_str().unwrap(), "--json"])
            .env_remove("INTEGRATION_CREDENTIAL_KEY")
            .env_remove("INTEGRATION_CREDENTIAL_OLD_KEYS");
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output().unwrap()
    };

    let missing = reseal(&[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("INTEGRATION_CREDENTIAL_KEY is not set"),
        "{}",
        text(&missing.stderr)
    );
    let invalid = reseal(&[("INTEGRATION_CREDENTIAL_KEY", "k2:not-base64!")]);
    assert_eq!(invalid.status.code(), Some(1));
    let said = text(&invalid.stderr);
    assert!(said.contains("INTEGRATION_CREDENTIAL_KEY is not a valid key"), "{said}");
    // Without the old key the value cannot be opened: refused, nothing lost.
    let without_old = reseal(&[("INTEGRATION_CREDENTIAL_KEY", &new_key)]);
    assert_eq!(without_old.status.code(), Some(1));
    assert!(
        text(&without_old.stderr).contains("`k1`"),
        "{}",
        text(&without_old.stderr)
    );

    let rotation = [
        ("INTEGRATION_CREDENTIAL_KEY", new_key.as_str()),
        ("INTEGRATION_CREDENTIAL_OLD_KEYS", old_key.as_str()),
    ];
    let out = reseal(&rotation);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stdout_json(&out), json!({ "resealed": 1, "key_id": "k2" }));
    assert_eq!(stdout_json(&reseal(&rotation))["resealed"], json!(0), "all moved");

    // Only the new key now: the runtime starts and opens the connection.
    let rt = keyed_runtime(&db, keyring(&new_key, &[])).await;
    let acme = rt.connection("VolcTts", "acme").await.unwrap().unwrap();
    assert_eq!(acme.key_id.as_deref(), Some("k2"));
    assert_eq!(acme.credential_names, ["token"]);
}
