//! Runtime for integrations generated from TOML specs.
//!
//! A spec describes an external API; [`integration!`] turns it into typed
//! code at compile time, and this crate runs it: it builds and sends the
//! requests, folds provider answers into the unified lifecycle
//! (`initialized -> processing -> completed | failed`) and keeps every call
//! durably.
//!
//! The spec language is documented in the
//! [spec reference](https://docs.rs/integration-spec/latest/integration_spec/spec_reference/).
//!
//! # Features
//!
//! `sqlite`, `postgres` and `server` are on by default; turn off what you
//! do not use with `default-features = false` and name the ones you keep.
//!
//! | feature | what it brings | what it builds |
//! | --- | --- | --- |
//! | `sqlite` | [`SqliteStore`], and [`SqliteStore::create_in_tx`] on its transactions (the outbox) | sqlx's SQLite driver (and SQLite itself, bundled) |
//! | `postgres` | [`PostgresStore`], and [`PostgresStore::create_in_tx`] on its transactions (the outbox) | sqlx's PostgreSQL driver |
//! | `server` | the [webhook receiver](webhook::WebhookReceiver), the [operations API](ops::OpsApi), the `/health` and `/metrics` routes, [`Runtime::router`], [`Runtime::serve`] and [`Runtime::serve_with`] | axum and hyper's server side |
//! | `testing` (off by default) | the store conformance suite: `store_conformance_tests!` and the `testing` module, for a store of your own to run the checks every store of this crate passes | nothing |
//!
//! Without any of them the crate still has the engine ([`Runtime`]), the
//! HTTP client that generated integrations send with, the in-memory
//! [`MemoryStore`], webhook [signature verification](webhook::signature),
//! [health checks](ops::Health::report) and the [metrics
//! text](MetricsExporter::render): a store of your own ([`Store`]) or a web
//! framework of your own can take the place of what is left out.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod call;
mod clock;
mod config;
mod conforms;
pub mod connection;
mod descriptor;
pub mod engine;
mod error;
mod failure;
mod form;
mod http;
mod integration;
mod json_path;
mod lifecycle;
mod metrics;
// Without `server`, the parts of `ops` and `webhook` that need no web
// framework (health checks, signature verification); not `cfg` on the
// modules, so that docs do not mark those parts as needing `server`.
#[cfg_attr(not(feature = "server"), path = "ops/without_server.rs")]
pub mod ops;
mod paginate;
mod policy;
mod record;
#[cfg(feature = "server")]
mod rejection;
mod reply;
mod request;
mod secret;
pub mod store;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod validate;
#[cfg_attr(not(feature = "server"), path = "webhook/without_server.rs")]
pub mod webhook;

/// What generated code uses (the contract is `docs/design/generated-code.md`); not a stable API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The reqwest the runtime sends with: build a client to hand to a generated
/// integration's `with_reqwest_client` with it, so its version matches.
pub use reqwest;

pub use call::{CallId, CallOptions, FromResult, IntoCall, OnConnection, RemoteStatus, Reply, TypedCall};
pub use clock::{Clock, TimeSource};
pub use connection::{Connection, Credentials, Keyring, NewConnection};
pub use descriptor::{
    CircuitBreakerPolicy, EndpointDescriptor, IdempotencyKeyPlacement, IntegrationDescriptor, Mode, PolicyDescriptor,
    PolicyScope, PollingDescriptor, RateLimitPolicy, RedirectPolicy, RequestFields, RetryOn, RetryPolicy,
    SignatureEncoding, SignatureScheme, WebhookDescriptor,
};
pub use engine::{
    lifecycle_event_key, provider_idempotency_key, stranded_calls, stranded_reason, CancelError, EngineError,
    HookResult, IntoStore, Retention, Runtime, RuntimeBuilder, SpecChangePolicy, SpecView, StatusChange, StrandedCall,
};
#[cfg(feature = "server")]
pub use engine::{ServeOptions, OPS_TOKEN_ENV};
pub use error::{ClientError, ConfigError, ValidationError};
pub use failure::{FailureKind, ParseFailureKindError};
pub use integration::{BoxFuture, Integration};
pub use lifecycle::{CallStatus, EventKind, ParseLifecycleError, Transition};
pub use metrics::{Metrics, MetricsExporter};
pub use paginate::Paginator;
pub use policy::CircuitState;
pub use record::{Call, CallRequest, CallResponse, Event};
pub use secret::Secret;
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
// What applications use; what only a store's implementation needs
// (`NewEvent`, `Created`, `NotificationOutcome`, `MAX_PAGE_SIZE`) stays under `store::`.
pub use store::{
    AppendOutcome, CallRecord, CallWithEvents, Cursor, EventPayload, EventRecord, EventSource, ListOrder, ListQuery,
    MemoryStore, NewCall, NotTerminal, Page, PruneRule, StatusCounts, Store, StoreError,
};
#[cfg(feature = "postgres")]
pub use store::{PostgresOptions, PostgresStore};

/// Generates the typed integration of a spec: `integration!("specs/x.toml")`.
///
/// The path is relative to the crate's `CARGO_MANIFEST_DIR`. Every mistake in
/// the spec is a compile error naming its file, line and column.
pub use integration_macros::integration;
/// Binds a struct of your own to an endpoint's request entity, checked against the spec.
pub use integration_macros::IntegrationRequest;
/// Binds a struct of your own to a result entity, checked against the spec.
pub use integration_macros::IntegrationResponse;

/// The names most applications need: `use integration_runtime::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "sqlite")]
    pub use crate::SqliteStore;
    pub use crate::{
        CallId, CallRecord, CallStatus, ClientError, EngineError, Integration, IntoCall, ListQuery, Runtime,
        StatusChange, Store, TypedCall,
    };
}
