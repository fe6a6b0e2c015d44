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
