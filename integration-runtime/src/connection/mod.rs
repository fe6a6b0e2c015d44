//! Connections: one spec, many customers.
//!
//! A *connection* is one customer of an integration: an id the application
//! chooses, the customer's credentials, and optionally a base URL,
//! parameter overrides and a rate budget of its own. A call names its
//! connection ([`NewCall::on_connection`](crate::NewCall::on_connection),
//! [`IntoCall::on_connection`](crate::IntoCall::on_connection)); the
//! runtime sends it with that connection's settings only. A call without
//! one uses the integration's default connection (its settings from the
//! environment), as before connections existed.
//!
//! Credentials and OAuth2 tokens are stored in the runtime's own store,
//! sealed by the [`Keyring`] (XChaCha20-Poly1305, a key from
//! [`CREDENTIAL_KEY_ENV`]); what is not secret (ids, base URL, overrides,
//! budget, times) is stored in plain columns and is what
//! [`Connection`] shows.

mod keyring;
mod model;
mod tokens;
mod vault;

pub use crate::http::{ConnectionContext, SharedTokens};
pub use keyring::{Keyring, KeyringError, CREDENTIAL_KEY_ENV, OLD_CREDENTIAL_KEYS_ENV};
pub(crate) use model::id_problem;
pub use model::{Connection, Credentials, NewConnection, RateBudget};
pub(crate) use tokens::{StoredTokens, TokenVault};
pub use vault::reseal;
pub(crate) use vault::{describe, SealError, Vault};
