//! Bad values are refused when a call is created, not when it is sent:
//! through every way in (`create`, `create_with_key`, `create_json`,
//! `new_call`, which builds the outbox's calls), the error is a `ValidationError` naming the field, and
//! nothing is stored. A real SQLite file; nothing is sent anywhere.

#![cfg(feature = "sqlite")]

use std::path::PathBuf;

use integration_runtime::{EngineError, Runtime, SqliteStore};
use serde_json::{json, Value};

integration_runtime::integration!("tests/specs/engine_items.toml");

use engine_items::{EngineItems, EngineItemsConfig, Item};

/// A fresh directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("create-validation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

struct Fixture {
    rt: Runtime,
    _dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.0.join("calls.db")).await.unwrap();
    let integration = EngineItems::new(EngineItemsConfig {
        base_url: "http://127.0.0.1:9".into(),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(store)
        .integration(integration)
        .build()
        .await
        .unwrap();
    Fixture { rt, _dir: dir }
}

fn item(id: &str, tenant: &str) -> Item {
    Item {
        id: id.into(),
        tenant: tenant.into(),
        trace: None,
        label: None,
    }
}

/// The error is a refusal whose `ValidationError` names `field`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, EngineError>, field: &str, what: &str) {
    let error = result.expect_err(what);
    assert!(error.is_invalid(), "{what}: {error}");
    let violations = error
        .client_error()
        .and_then(|e| e.validation())
        .unwrap_or_else(|| panic!("{what}: no validation error in {error}"))
        .violations();
    assert!(
        violations.iter().any(|(name, _)| name == field),
        "{what}: `{field}` not named in {violations:?}"
    );
}

/// Creates `params` through every entry, expecting each to refuse it
/// naming `field`; then checks that nothing was stored. The typed entries
/// take `params` read as an [`Item`], when it stays the same value.
async fn refused_everywhere(fx: &Fixture, params: Value, field: &str) {
    let what = format!("{params}");
    let typed = serde_json::from_value::<Item>(params.clone())
        .ok()
        .filter(|item| same_fields(item, &params));
    if let Some(typed) = typed {
        assert_refused(fx.rt.create(typed.clone()).await, field, &what);
        assert_refused(fx.rt.create_with_key(typed.clone(), "k1").await, field, &what);
        assert_refused(fx.rt.new_call(typed), field, &what);
    }
    let json = fx.rt.create_json("EngineItems", "save", params.clone(), None).await;
    assert_refused(json, field, &what);
    let keyed = fx
        .rt
        .create_json("EngineItems", "save", params, Some("k2".into()))
        .await;
    assert_refused(keyed, field, &what);
    assert_eq!(
        fx.rt.count_by_status(None).await.unwrap().total(),
        0,
        "{what}: nothing stored"
    );
}

/// Whether `item` holds exactly `params` (an absent optional field is `null`).
fn same_fields(item: &Item, params: &Value) -> bool {
    let Value::Object(mut written) = serde_json::to_value(item).unwrap() else {
        return false;
    };
    written.retain(|_, value| !value.is_null());
    Value::Object(written) == *params
}

#[tokio::test]
async fn an_empty_path_parameter_is_refused_at_create() {
    let fx = fixture().await;
    refused_everywhere(&fx, json!({"id": "", "tenant": "t"}), "id").await;
}

#[tokio::test]
async fn path_values_that_change_the_path_are_refused_at_create() {
    let fx = fixture().await;
    for id in [".", ".."] {
        refused_everywhere(&fx, json!({"id": id, "tenant": "t"}), "id").await;
    }
}

#[tokio::test]
async fn control_characters_in_header_values_are_refused_at_create() {
    let fx = fixture().await;
    for bad in ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b", "a\u{7f}b"] {
        refused_everywhere(&fx, json!({"id": "i1", "tenant": bad}), "tenant").await;
        // An interpolated header value, too.
        refused_everywhere(&fx, json!({"id": "i1", "tenant": "t", "trace": bad}), "trace").await;
    }
}

#[tokio::test]
async fn unknown_fields_are_refused_at_create() {
    let fx = fixture().await;
    refused_everywhere(&fx, json!({"id": "i1", "tenant": "t", "colour": "red"}), "colour").await;
}

#[tokio::test]
async fn non_object_params_are_refused_at_create() {
    let fx = fixture().await;
    for params in [json!(null), json!("i1"), json!(["i1", "t"]), json!(7)] {
        refused_everywhere(&fx, params, "params").await;
    }
}

#[tokio::test]
async fn odd_but_valid_values_are_stored() {
    let fx = fixture().await;
    // Encoded as one path segment; tabs and non-ASCII are valid in headers.
    let mut valid = item("a/b ..c", "t\tü");
    valid.trace = Some("x y".into());
    valid.label = Some("line\nbreak in the body".into());
    fx.rt.create(valid).await.unwrap();
    fx.rt
        .create_json("EngineItems", "save", json!({"id": "...", "tenant": "t"}), None)
        .await
        .unwrap();
    assert_eq!(fx.rt.count_by_status(None).await.unwrap().total(), 2);
}
