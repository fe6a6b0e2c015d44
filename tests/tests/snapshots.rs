//! Generated code for every spec under `specs/`, pretty-printed and compared
//! with the committed snapshot in `tests/snapshots/`. The snapshots are also
//! compiled as modules of this crate (`src/lib.rs`), so they must be valid.
//!
//! After an intended change: `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

use std::path::Path;

#[test]
fn generated_code_matches_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut specs: Vec<_> = std::fs::read_dir(root.join("specs"))
        .expect("specs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 3, "expected at least three specs, found {specs:?}");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for spec_path in &specs {
        let stem = spec_path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name");
        let source = std::fs::read_to_string(spec_path).expect("readable spec");
        let file = format!("specs/{stem}.toml");
        let spec = integration_spec::parse(&source, &file).unwrap_or_else(|d| panic!("{d}"));
        let generated = format!(
            "// @generated from {file} by integration-spec; do not edit.\n// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.\n\n{}",
            integration_spec::codegen::generate_pretty(&spec, &Default::default())
        );
        let snapshot_path = root.join("tests/snapshots").join(format!("{stem}.rs"));
        if update {
            std::fs::write(&snapshot_path, &generated).expect("writable snapshot");
            continue;
        }
        match std::fs::read_to_string(&snapshot_path) {
            Ok(existing) if existing == generated => {}
            Ok(_) => mismatches.push(format!("{} differs from the generated code", snapshot_path.display())),
            Err(_) => mismatches.push(format!("{} is missing", snapshot_path.display())),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\nrun with UPDATE_SNAPSHOTS=1 to accept the new output",
        mismatches.join("\n")
    );
}
