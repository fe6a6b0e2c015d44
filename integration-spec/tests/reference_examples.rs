//! Checks every TOML example in `docs/spec-reference.md` (read through the
//! package's `spec-reference.md` link, so the check runs from the published
//! crate too).
//!
//! Convention (also described in the reference's last section):
//!
//! * A ```` ```toml ```` block whose first line is `# base` is the base spec
//!   fragments are checked against. There is exactly one; it must parse.
//! * A block containing a line `[integration]` is a complete spec and is
//!   parsed as it is.
//! * Any other block must start with a comment line naming how to embed it:
//!   - `# fragment: top-level`: whole tables, appended to the base spec;
//!   - `# fragment: entity`: field lines of one entity, appended to the base
//!     under `[entities.Example]`;
//!   - `# fragment: endpoint`: keys of one endpoint, appended to the base
//!     under `[endpoints.example]` (later table headers in the block are
//!     allowed and end the endpoint as usual in TOML).
//! * A block with a comment line `# error: TEXT` (among its leading comment
//!   lines) must FAIL to parse, and one of the rendered diagnostics must
//!   contain TEXT. Every other block must parse.
//!
//! The checker is a plain function so that its own tests below can show it
//! rejects broken examples.

use std::path::PathBuf;

/// One ```toml block of the reference.
#[derive(Debug, Clone)]
struct Block {
    /// 1-based line of the block's first content line in the markdown file.
    line: usize,
    text: String,
}

fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec-reference.md")
}

fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_end();
        match &mut current {
            None if trimmed == "```toml" => {
                current = Some(Block {
                    line: i + 2,
                    text: String::new(),
                })
            }
            None => {}
            Some(_) if trimmed == "```" => blocks.push(current.take().expect("open block")),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(current.is_none(), "unterminated ```toml block in the reference");
    blocks
}

/// The leading comment lines of a block (directives live there).
fn leading_comments(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
}

fn directive<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    leading_comments(text).find_map(|c| {
        c.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn is_base(block: &Block) -> bool {
    block.text.lines().next().map(str::trim) == Some("# base")
}

fn is_complete(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "[integration]")
}

/// The spec source a block stands for.
fn assemble(block: &Block, base: &str) -> Result<String, String> {
    if is_complete(&block.text) {
        return Ok(block.text.clone());
    }
    let embedded = match directive(&block.text, "fragment") {
        Some("top-level") => block.text.clone(),
        Some("entity") => format!("[entities.Example]\n{}", block.text),
        Some("endpoint") => format!("[endpoints.example]\n{}", block.text),
        Some(other) => {
            return Err(format!(
                "unknown fragment kind `{other}` (expected top-level, entity or endpoint)"
            ))
        }
        None => return Err("neither a complete spec (no `[integration]`) nor marked `# fragment: ...`".to_owned()),
    };
    Ok(format!("{base}\n{embedded}"))
}

/// Checks one block; `Err` says what is wrong with the example.
fn check_block(block: &Block, base: &str) -> Result<(), String> {
    let source = assemble(block, base)?;
    let expected_error = directive(&block.text, "error");
    match (integration_spec::parse(&source, "doc.toml"), expected_error) {
        (Ok(_), None) => Ok(()),
        (Ok(_), Some(text)) => Err(format!("should fail with `{text}` but parses")),
        (Err(diagnostics), None) => {
            let all: Vec<String> = diagnostics.iter().map(|d| diagnostics.render(d)).collect();
            Err(format!(
                "should parse but fails:\n{}\n--- assembled spec ---\n{source}",
                all.join("\n")
            ))
        }
        (Err(diagnostics), Some(text)) => {
            let all: Vec<String> = diagnostics.iter().map(|d| diagnostics.render(d)).collect();
            if all.iter().any(|d| d.contains(text)) {
                Ok(())
            } else {
                Err(format!(
                    "fails, but no diagnostic contains `{text}`:\n{}",
                    all.join("\n")
                ))
            }
        }
    }
}

/// Checks every block; returns one message per failing block.
fn check_reference(markdown: &str) -> Vec<String> {
    let blocks = toml_blocks(markdown);
    let bases: Vec<&Block> = blocks.iter().filter(|b| is_base(b)).collect();
    let [base] = bases.as_slice() else {
        return vec![format!("expected exactly one `# base` block, found {}", bases.len())];
    };
    let mut failures = Vec::new();
    if let Err(e) = integration_spec::parse(&base.text, "base.toml") {
        failures.push(format!("line {}: the base spec does not parse:\n{e}", base.line));
    }
    for block in blocks.iter().filter(|b| !is_base(b)) {
        if let Err(message) = check_block(block, &base.text) {
            failures.push(format!("example at docs/spec-reference.md:{}: {message}", block.line));
        }
    }
    failures
}

fn reference() -> String {
    std::fs::read_to_string(reference_path()).expect("docs/spec-reference.md is readable")
}

#[test]
fn every_example_in_the_reference_is_valid() {
    let markdown = reference();
    let blocks = toml_blocks(&markdown);
    assert!(
        blocks.len() >= 60,
        "expected the reference to have many examples, found {}",
        blocks.len()
    );
    let failures = check_reference(&markdown);
    assert!(
        failures.is_empty(),
        "{} broken example(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every key of the spec language has at least one example that parses
/// (error examples do not count), written as `key =` in a TOML block.
#[test]
fn every_key_has_an_example() {
    const KEYS: &[&str] = &[
        // [integration]
        "name",
        "description",
        "base_url",
        "env",
        "default",
        "purpose",
        // [auth]
        "kind",
        "token",
        "username",
        "password",
        "key",
        "in",
        "token_url",
        "authorization_url",
        "client_id",
        "client_secret",
        "scopes",
        "refresh_token",
        // entity fields
        "type",
        "optional",
        "values",
        "items",
        "min_len",
        "max_len",
        "min",
        "max",
        "doc",
        // endpoints
        "method",
        "path",
        "request",
        "mode",
        "encoding",
        "query",
        "headers",
        "body",
        "external_id",
        "status",
        "result",
        "error",
        "idempotent",
        "idempotency_key",
        "policy",
        "map",
        "from",
        "entity",
        "root",
        "fields",
        "header",
        // list endpoints
        "paginate",
        "style",
        "cursor",
        "param",
        "limit_param",
        "limit",
        "start",
        "size_param",
        "size",
        // polling
        "endpoint",
        "interval_ms",
        "backoff",
        "max_interval_ms",
        "give_up_after_s",
        // webhook
        "verify",
        "max_body_bytes",
        "scheme",
        "secret",
        "tolerance_s",
        "prefix",
        // policy
        "timeout_ms",
        "connect_timeout_ms",
        "retry",
        "circuit_breaker",
        "rate_limit",
        "concurrency",
        "max_response_bytes",
        "redirects",
        "max_attempts",
        "initial_backoff_ms",
        "max_backoff_ms",
        "multiplier",
        "on",
        "failure_threshold",
        "open_for_ms",
        "half_open_probes",
        "per_second",
        "burst",
        "scope",
    ];
    const VALUES: &[&str] = &[
        // auth kinds, api key places
        "\"none\"",
        "\"bearer\"",
        "\"basic\"",
        "\"api_key\"",
        "\"oauth2_client_credentials\"",
        "\"oauth2_authorization_code\"",
        "\"oauth2_refresh_token\"",
        "\"header\"",
        "\"query\"",
        // field types
        "\"string\"",
        "\"int\"",
        "\"float\"",
        "\"bool\"",
        "\"timestamp\"",
        "\"uuid\"",
        "\"json\"",
        "\"enum\"",
        "\"list\"",
        // methods, modes, encodings
        "\"GET\"",
        "\"POST\"",
        "\"PUT\"",
        "\"PATCH\"",
        "\"DELETE\"",
        "\"sync\"",
        "\"async\"",
        "\"json\"",
        "\"form\"",
        "\"generated\"",
        // lifecycle states, schemes, encodings, retry classes
        "\"processing\"",
        "\"completed\"",
        "\"failed\"",
        "\"standard-webhooks\"",
        "\"stripe\"",
        "\"hmac-sha256\"",
        "\"hex\"",
        "\"base64\"",
        "\"5xx\"",
        "\"429\"",
        "\"timeout\"",
        "\"connect\"",
        "\"transport\"",
        "\"too_large\"",
        // redirect policies
        "\"same_origin\"",
        "\"any_origin\"",
        // policy scopes
        "\"integration\"",
        "\"connection\"",
        // pagination styles
        "\"cursor\"",
        "\"cursor_header\"",
        "\"offset\"",
        "\"page\"",
        "\"link\"",
    ];
    let markdown = reference();
    let valid: Vec<String> = toml_blocks(&markdown)
        .into_iter()
        .filter(|b| directive(&b.text, "error").is_none())
        .map(|b| {
            b.text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let has_key = |key: &str| {
        valid.iter().any(|text| {
            text.match_indices(key).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + key.len()..].trim_start();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') && after.starts_with('=')
            })
        })
    };
    let missing_keys: Vec<&str> = KEYS.iter().copied().filter(|k| !has_key(k)).collect();
    let missing_values: Vec<&str> = VALUES
        .iter()
        .copied()
        .filter(|v| !valid.iter().any(|t| t.contains(v)))
        .collect();
    assert!(
        missing_keys.is_empty() && missing_values.is_empty(),
        "no valid example uses keys {missing_keys:?} / values {missing_values:?}"
    );
}

// The checker itself must be able to fail.

const BASE_DOC: &str = "```toml\n# base\n[integration]\nname = \"Doc\"\nbase_url = \"https://api.example.com\"\n\n[endpoints.health]\nmethod = \"GET\"\npath = \"/health\"\n```\n";

#[test]
fn a_typo_in_an_example_is_caught() {
    let doc = format!("{BASE_DOC}\n```toml\n# fragment: top-level\n[policy]\ntimout_ms = 100\n```\n");
    let failures = check_reference(&doc);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("unknown key `timout_ms`"), "{}", failures[0]);
}

#[test]
fn an_error_example_that_parses_is_caught() {
    let doc = format!(
        "{BASE_DOC}\n```toml\n# fragment: top-level\n# error: must be at least 1\n[policy]\ntimeout_ms = 100\n```\n"
    );
    let failures = check_reference(&doc);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("but parses"), "{}", failures[0]);
}

#[test]
fn an_error_example_with_another_message_is_caught() {
    let doc =
        format!("{BASE_DOC}\n```toml\n# fragment: top-level\n# error: something else\n[policy]\ntimeout_ms = 0\n```\n");
    let failures = check_reference(&doc);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("no diagnostic contains"), "{}", failures[0]);
}

#[test]
fn unmarked_and_unknown_fragments_are_caught() {
    let doc = format!(
        "{BASE_DOC}\n```toml\n[policy]\ntimeout_ms = 100\n```\n\n```toml\n# fragment: policy\ntimeout_ms = 100\n```\n"
    );
    let failures = check_reference(&doc);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("nor marked"), "{}", failures[0]);
    assert!(failures[1].contains("unknown fragment kind"), "{}", failures[1]);
}

#[test]
fn entity_and_endpoint_fragments_are_embedded() {
    let doc = format!(
        "{BASE_DOC}\n```toml\n# fragment: entity\ntext = \"string\"\n```\n\n```toml\n# fragment: endpoint\nmethod = \"GET\"\npath = \"/x/{{nope}}\"\n```\n"
    );
    let failures = check_reference(&doc);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("`{nope}` has no source"), "{}", failures[0]);
}

#[test]
fn a_missing_base_is_caught() {
    let failures = check_reference("```toml\n# fragment: top-level\n[policy]\n```\n");
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("exactly one `# base` block"), "{}", failures[0]);
}
