//! Compile-fail suite: every spec mistake must be a compile error that names
//! the spec file, line and column, the key path, what is wrong and how to fix
//! it (see `docs/spec-reference.md`).
//!
//! Each case is `tests/ui/NAME.rs`, usually with its spec in
//! `tests/ui/specs/NAME.toml` (a small valid spec plus the one mistake), and
//! the expected compiler output in `tests/ui/NAME.stderr`.
//!
//! After an intended change of the diagnostics, regenerate the expected
//! output and review every changed `.stderr` before accepting it:
//!
//! ```text
//! TRYBUILD=overwrite cargo test -p integration-tests --test compile_fail
//! ```

#[test]
fn spec_mistakes_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
