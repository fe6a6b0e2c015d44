//! The parser never panics, whatever it is given, and every diagnostic it
//! reports points inside the source. Inputs: every spec under `specs/`,
//! truncated at every character, with each line removed, and with each line
//! duplicated.

use std::path::Path;

fn check(source: &str) {
    if let Err(diagnostics) = integration_spec::parse(source, "mutant.toml") {
        assert!(!diagnostics.is_empty());
        for d in diagnostics.iter() {
            assert!(
                d.span.start <= source.len() && d.span.end <= source.len(),
                "span {:?} outside the source",
                d.span
            );
            for label in &d.secondary {
                assert!(label.span.end <= source.len(), "label {label:?} outside the source");
            }
            let rendered = diagnostics.render(d);
            assert!(rendered.starts_with("mutant.toml:"), "{rendered}");
        }
    }
}

fn specs() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let mut sources: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    sources.sort();
    assert!(sources.len() >= 3);
    sources
}

#[test]
fn valid_specs_parse() {
    for source in specs() {
        integration_spec::parse(&source, "spec.toml").unwrap_or_else(|d| panic!("{d}"));
    }
}

#[test]
fn truncated_specs_never_panic() {
    for source in specs() {
        for (i, _) in source.char_indices() {
            check(&source[..i]);
        }
    }
}

#[test]
fn specs_missing_or_repeating_a_line_never_panic() {
    for source in specs() {
        let lines: Vec<&str> = source.lines().collect();
        for i in 0..lines.len() {
            let mut without = lines.clone();
            without.remove(i);
            check(&without.join("\n"));
            let mut doubled = lines.clone();
            doubled.insert(i, lines[i]);
            check(&doubled.join("\n"));
        }
    }
}

#[test]
fn removing_a_required_line_is_reported() {
    let source = specs().into_iter().find(|s| s.contains("name = \"VolcTts\"")).unwrap();
    let without_name: String = source
        .lines()
        .filter(|l| !l.starts_with("name = "))
        .collect::<Vec<_>>()
        .join("\n");
    let errors = integration_spec::parse(&without_name, "x.toml").unwrap_err();
    assert!(
        errors.iter().any(|d| d.message.contains("missing key `name`")),
        "{errors}"
    );
}
