//! Proc macros for spec-defined integrations.
//!
//! A thin shell: all parsing, checking and code generation live in
//! `integration-spec`, so the CLI and `build.rs` produce the same code and
//! the same diagnostics. Use these through `integration-runtime`, which
//! re-exports them with full documentation.

use integration_spec::macros::{self, Caller, DeriveKind};
use proc_macro::{Span, TokenStream};

fn caller() -> Caller {
    Caller {
        file: Span::call_site().local_file(),
    }
}

/// Generates the typed integration of a spec; see `integration_runtime::integration!`.
#[proc_macro]
pub fn integration(input: TokenStream) -> TokenStream {
    macros::integration(input.into(), &caller()).into()
}

/// Binds a struct to an endpoint's request entity; see `integration_runtime::IntegrationRequest`.
#[proc_macro_derive(IntegrationRequest, attributes(integration))]
pub fn derive_integration_request(input: TokenStream) -> TokenStream {
    macros::derive(input.into(), DeriveKind::Request, &caller()).into()
}

/// Binds a struct to a result entity; see `integration_runtime::IntegrationResponse`.
#[proc_macro_derive(IntegrationResponse, attributes(integration))]
pub fn derive_integration_response(input: TokenStream) -> TokenStream {
    macros::derive(input.into(), DeriveKind::Response, &caller()).into()
}
