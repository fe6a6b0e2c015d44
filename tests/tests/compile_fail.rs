//! Compile-fail suite: every spec mistake must be a compile error that names
//! the spec file, line and column, the key path, what is wrong and how to fix
//! it (see `docs/spec-reference.md`).
//!
//! Each case is `ui/NAME.rs` in this crate (`tests/ui/` from the workspace
//! root). Most invoke `integration!("./specs/NAME.toml")`, a small valid spec
//! plus one mistake (`./` resolves against the invoking file, since trybuild
//! compiles the cases in another directory); derive cases bind a struct to a
//! spec instead. `ui/NAME.stderr` is the expected compiler output.
//!
//! After an intended change of the diagnostics, regenerate the expected output
//! and read every changed `.stderr` before accepting it:
//!
//! ```text
//! TRYBUILD=overwrite cargo test -p integration-tests --test compile_fail
//! ```

#[test]
fn spec_mistakes_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
