//! A test kit for spec-defined integrations.
//!
//! - [`FakeProvider`]: a fake of the provider a spec describes, on loopback,
//!   with scripted [`Outcome`]s per endpoint (success, failure, delays,
//!   HTTP errors with `Retry-After`), and every request recorded.
//! - [`WebhookSender`]: signed deliveries for every verification scheme
//!   (Standard Webhooks, Stripe, generic HMAC), and the fake provider can
//!   send them itself when its tasks finish
//!   ([`FakeProviderBuilder::webhooks_to`]).
//! - Polling without real waiting: the fake counts polls, not seconds
//!   ([`FakeProviderBuilder::polls_until_done`]).
//! - Virtual time: [`TestClock`], given to the runtime, runs a call through
//!   retries, polls, its deadline and its pruning as fast as the test
//!   advances it.
//!
//! [`FakeProvider`] shows a test's setup in a few lines; the tests shipped
//! with this crate (its `tests/` folder) drive a generated client against
//! the fake end to end.

mod clock;
mod json_write;
mod provider;
mod script;
mod webhook;

pub use clock::TestClock;
pub use provider::{FakeProvider, FakeProviderBuilder, RecordedRequest};
pub use script::Outcome;
pub use webhook::{SignedDelivery, WebhookSender};

/// Why the test kit could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A file could not be read or a socket bound.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The spec has mistakes.
    #[error("{0}")]
    Spec(integration_spec::Diagnostics),
    /// A webhook could not be signed or delivered.
    #[error("{0}")]
    Webhook(String),
}
