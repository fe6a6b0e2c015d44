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
//! The spec language is documented in `docs/spec-reference.md`.

mod check;
mod diagnostic;
pub mod ir;
mod jsonpath;
mod lower;
mod read;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use jsonpath::PathError;
pub use lower::parse;
pub mod codegen;
mod expand;
pub mod macros;
pub use expand::{Caller, DeriveKind};
