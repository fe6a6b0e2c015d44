//! Parser, validator, model and code generator for integration specs.
//!
//! One library serves the `integration!` macro, the derives, a CLI and
//! `build.rs` alike:
//!
//! ```
//! let source = r#"
//! [integration]
//! name = "Echo"
//! base_url = "https://echo.example.com"
//!
//! [entities.Ping]
//! text = "string"
//!
//! [endpoints.ping]
//! method = "POST"
//! path = "/ping"
//! request = "Ping"
//! body = { text = "{text}" }
//! "#;
//! let spec = integration_spec::parse(source, "echo.toml").unwrap();
//! assert_eq!(spec.integration.name, "Echo");
//! ```
//!
//! The spec language is documented in [`spec_reference`]; a spec with
//! mistakes gives [`Diagnostics`], each rendered with its place in the file
//! (see [`Diagnostics::render`]).

mod case;
mod check;
mod diagnostic;
pub mod ir;
mod jsonpath;
mod lower;
mod read;

/// The spec reference: every key, type and rule of the spec language, with
/// examples (the same text as `docs/spec-reference.md` in the repository).
// Not a doctest: its Rust snippets are fragments of a user's crate.
#[cfg_attr(not(doctest), doc = include_str!("../spec-reference.md"))]
pub mod spec_reference {}

pub use diagnostic::{Colour, Diagnostic, Diagnostics, Label};
pub use jsonpath::PathError;
pub use lower::parse;
pub mod codegen;
mod expand;
pub mod macros;
pub use expand::{Caller, DeriveKind};

/// The fingerprint of a spec's text: `fnv1a64:` and 16 hex digits.
///
/// Every call records the fingerprint of the spec it was created under, so
/// a runtime (and `integration check --db`) can tell which stored calls were
/// created under another version of the spec and check whether the current
/// one can still finish them. Any change of the text, comments included,
/// changes it: it only says *which* calls to check, never what changed.
/// FNV-1a is not a cryptographic hash; nothing here needs one.
///
/// ```
/// let a = integration_spec::fingerprint("[integration]\nname = \"A\"\n");
/// assert_eq!(a.len(), "fnv1a64:".len() + 16);
/// assert_ne!(a, integration_spec::fingerprint("[integration]\nname = \"B\"\n"));
/// ```
pub fn fingerprint(source: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = source
        .bytes()
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME));
    format!("fnv1a64:{hash:016x}")
}
