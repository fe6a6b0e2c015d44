//! Entry points of the proc macros, taking and returning token streams so
//! that they can be tested (and reused) outside a proc-macro crate.

pub use crate::expand::{Caller, DeriveKind};

use proc_macro2::TokenStream;

/// `integration!("path/to/spec.toml")`.
pub fn integration(input: TokenStream, caller: &Caller) -> TokenStream {
    crate::expand::integration(input, caller).unwrap_or_else(|errors| errors)
}

/// `#[derive(IntegrationRequest)]` and `#[derive(IntegrationResponse)]`.
pub fn derive(input: TokenStream, kind: DeriveKind, caller: &Caller) -> TokenStream {
    crate::expand::derive(input, kind, caller).unwrap_or_else(|errors| errors)
}
