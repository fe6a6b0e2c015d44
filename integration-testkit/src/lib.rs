//! A test kit for spec-defined integrations.
//!
//! - [`FakeProvider`]: a fake of the provider a spec describes, on loopback,
//!   with scripted [`Outcome`]s per endpoint (success, failure, delays,
//!   HTTP errors with `Retry-After`), and every request recorded.
//! - Polling without real waiting: the fake counts polls, not seconds
//!   ([`FakeProviderBuilder::polls_until_done`]).
//!
//! Use it from your own tests the way `tests/` in this crate does.

mod json_write;
mod provider;
mod script;

pub use provider::{FakeProvider, FakeProviderBuilder, RecordedRequest};
pub use script::Outcome;

/// Why the test kit could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A file could not be read or a socket bound.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The spec has mistakes.
    #[error("{0}")]
    Spec(integration_spec::Diagnostics),
}
