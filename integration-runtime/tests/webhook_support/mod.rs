//! Shared by the webhook and ops suites: a SQLite store in a temp dir, a
//! router served on a loopback port, and a small Prometheus text parser.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use integration_runtime::store::NewEvent;
use integration_runtime::{CallId, NewCall, SqliteStore, Store};
use serde_json::Value;

/// A fresh directory, deleted on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("integration-runtime-hooks-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A SQLite store in a file of `dir`.
pub async fn sqlite_store(dir: &TempDir) -> (Arc<SqliteStore>, Arc<dyn Store>) {
    let store = Arc::new(SqliteStore::open(dir.0.join("app.db")).await.unwrap());
    let dyn_store: Arc<dyn Store> = store.clone();
    (store, dyn_store)
}

/// Serves `router` on 127.0.0.1 at a free port; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}

/// A call of `integration` that the provider acknowledged as `external_id`.
pub async fn initialized_call(
    store: &dyn Store,
    integration: &str,
    endpoint: &str,
    params: Value,
    external_id: &str,
) -> CallId {
    let created = store.create(NewCall::new(integration, endpoint, params)).await.unwrap();
    store
        .append_event(
            created.id,
            NewEvent::initialized(format!("init:{}", created.id), external_id),
        )
        .await
        .unwrap();
    created.id
}

/// An answer: status, headers and JSON body (`Null` when empty or not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (0.0.4), panicking on anything
/// malformed: `# HELP`/`# TYPE` lines, then `name{k="v",...} value` samples
/// whose family was declared by a `# TYPE` line.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("line {}: `{line}`", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{}", at()));
            assert!(valid_name(name), "bad metric name, {}", at());
            if keyword == "TYPE" {
                let kind = parts.next().unwrap_or_else(|| panic!("{}", at()));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type, {}",
                    at()
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice, {}",
                    at()
                );
            } else {
                assert_eq!(keyword, "HELP", "unknown comment, {}", at());
            }
            continue;
        }
        let (name_and_labels, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value, {}", at())),
        };
        let (name, labels) = match name_and_labels.split_once('{') {
            None => (name_and_labels, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels, {}", at()));
                (
                    name,
                    parse_labels(body).unwrap_or_else(|| panic!("bad labels, {}", at())),
                )
            }
        };
        assert!(valid_name(name), "bad sample name, {}", at());
        let family = ["_bucket", "_sum", "_count", ""]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|family| types.contains_key(*family))
            .unwrap_or_else(|| panic!("sample without TYPE, {}", at()));
        if types[family] == "histogram" && name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket without le, {}", at());
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        if !valid_name(key) {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some(labels)
}

/// The value of the sample `name` with exactly these labels (others allowed: no).
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn parser_reads_labels_and_rejects_garbage() {
    let samples = parse_prometheus(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"uote\",y=\"2\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n",
    );
    assert_eq!(metric(&samples, "a_total", &[("x", "q\"uote"), ("y", "2")]), Some(3.0));
    assert_eq!(metric(&samples, "h_count", &[]), Some(1.0));
    assert!(std::panic::catch_unwind(|| parse_prometheus("no_type 1\n")).is_err());
    assert!(std::panic::catch_unwind(|| parse_prometheus("# TYPE x gauge\nx{a=b} 1\n")).is_err());
}
