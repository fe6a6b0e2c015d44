//! The `integration` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration_runtime::{NewCall, NewEvent, SqliteStore, Store};
use serde_json::json;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_integration")).args(args).current_dir(workspace()).output().expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("integration-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_accepts_the_specs_folder() {
    let out = run(&["check", "specs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok: specs/volc_tts.toml (VolcTts"), "{stdout}");
    assert!(stdout.contains("checked 4 spec(s): 4 valid, 0 with errors"), "{stdout}");
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
    assert!(stderr.contains(&format!("{file}:6:10: unknown HTTP method `GETT`")), "{stderr}");
    assert!(stderr.contains("help: did you mean `GET`?"), "{stderr}");
    assert!(stderr.contains(&format!("{file}:7:17: path parameter `{{id}}` has no source")), "{stderr}");
    assert!(text(&out.stdout).contains("checked 2 spec(s): 1 valid, 1 with errors"));
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
    for command in [&["check", "--help"][..], &["expand", "--help"], &["calls", "list", "--help"], &["calls", "show", "--help"]] {
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
    let done = store.create(NewCall::new("VolcTts", "synthesize", json!({ "text": "hi" }))).await.unwrap().id;
    store.append_event(done, NewEvent::initialized("init", "task-1")).await.unwrap();
    store.append_event(done, NewEvent::completed("done", json!({ "url": "u", "duration_ms": 1 }))).await.unwrap();
    let failed = store.create(NewCall::new("VolcTts", "synthesize", json!({ "text": "ho" }))).await.unwrap().id;
    store.append_event(failed, NewEvent::initialized("init", "task-2")).await.unwrap();
    store.append_event(failed, NewEvent::failed("fail", "voice not available")).await.unwrap();
    drop(store);
    let db = db.to_str().unwrap();

    let out = run(&["calls", "list", "--db", db, "--integration", "VolcTts"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&done.to_string()) && table.contains("completed") && table.contains("task-1"), "{table}");
    assert!(table.contains("voice not available"), "{table}");
    assert!(table.contains("2 call(s)"), "{table}");

    let out = run(&["calls", "list", "--db", db, "--integration", "VolcTts", "--status", "failed", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["calls"].as_array().unwrap().len(), 1);
    assert_eq!(listed["calls"][0]["id"], json!(failed.to_string()));
    assert_eq!(listed["calls"][0]["error"], json!("voice not available"));

    let out = run(&["calls", "show", "--db", db, &done.to_string(), "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["call"]["status"], json!("completed"));
    let kinds: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["initialized", "completed"]);

    let out = run(&["calls", "show", "--db", db, &done.to_string()]);
    assert!(text(&out.stdout).contains("status      completed"), "{}", text(&out.stdout));

    let out = run(&["calls", "list", "--db", db, "--integration", "VolcTts", "--status", "done"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("use pending, processing, completed or failed"));
    let out = run(&["calls", "show", "--db", dir.join("missing.db").to_str().unwrap(), &done.to_string()]);
    assert!(text(&out.stderr).contains("does not exist"));
}
