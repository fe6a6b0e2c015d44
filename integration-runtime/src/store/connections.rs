//! What a store keeps of connections: one row per connection, the OAuth2
//! tokens of each, and the pending authorizations of the connect flow.
//!
//! Every secret arrives here already sealed (encrypted and authenticated by
//! the runtime's keyring, `connection::Keyring`): a store holds and returns
//! opaque text and never sees a credential. What is *not* sealed (the
//! connection's id, base URL, parameter overrides and rate budget, the
//! times) is what the operations API shows, so it is kept in plain columns.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{BoxFuture, StoreError};

/// One connection as stored: an integration's customer, with its sealed
/// credentials and the settings that are not secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRow {
    /// The integration's name.
    pub integration: String,
    /// The id the application chose, unique per integration.
    pub id: String,
    /// The credentials, sealed by the keyring (a JSON object before sealing).
    pub credentials: String,
    /// The provider's base URL for this connection; `None`: the integration's.
    pub base_url: Option<String>,
    /// Parameter overrides: a JSON object whose members replace the call's
    /// parameters of the same name (`{}` for none).
    pub params: Value,
    /// The connection's own rate budget: sustained requests per second.
    pub rate_per_second: Option<f64>,
    /// The connection's own rate budget: burst (with `rate_per_second`).
    pub rate_burst: Option<u32>,
    /// When the connection was first stored (kept by later puts).
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When the connection was revoked; `None`: it is live.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The OAuth2 tokens of one connection, and who is renewing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The integration's name.
    pub integration: String,
    /// The connection's id; the empty string for the integration's default
    /// connection (its credentials from the environment).
    pub connection: String,
    /// The sealed tokens (access token, its expiry, refresh token); `None`
    /// until a first token is saved.
    pub tokens: Option<String>,
    /// The process renewing the tokens, if any (possibly expired).
    pub lease_owner: Option<String>,
    /// When that lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the tokens were last saved.
    pub updated_at: DateTime<Utc>,
}

/// A pending OAuth2 authorization of the connect flow: created when the
/// user is sent to the provider, taken (once) when the provider sends the
/// user back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRow {
    /// The digest of the `state` parameter sent to the provider (the
    /// state itself is a bearer secret and is not stored).
    pub state_digest: String,
    /// The integration's name.
    pub integration: String,
    /// The connection the authorization creates.
    pub connection: String,
    /// The sealed PKCE code verifier.
    pub verifier: String,
    /// Where the user is sent when the flow ends.
    pub return_to: String,
    /// When the authorization stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Where a sealed value is stored, for re-sealing under a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SealedPlace {
    /// A connection's credentials.
    Credentials {
        /// The integration's name.
        integration: String,
        /// The connection's id.
        connection: String,
    },
    /// A connection's tokens.
    Tokens {
        /// The integration's name.
        integration: String,
        /// The connection's id (empty: the default connection).
        connection: String,
    },
    /// A pending authorization's code verifier.
    Verifier {
        /// The digest of the authorization's state.
        state_digest: String,
    },
}

/// A sealed value and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// Where it is.
    pub place: SealedPlace,
    /// The sealed text.
    pub sealed: String,
}

/// Storage of connections, their tokens and pending authorizations.
///
/// Part of every [`Store`](super::Store), checked by the same conformance
/// suite. Times come from the store's clock ([`Store::use_clock`](super::Store::use_clock)).
pub trait ConnectionStore: Send + Sync {
    /// Stores `row` (keyed by integration and id): a new connection, or
    /// new credentials and settings for an existing one, which is live
    /// again if it was revoked. A replaced connection keeps its
    /// `created_at`; `updated_at` is now. The connection's stored tokens
    /// are deleted when its credentials change, so that a new grant is
    /// never answered with the old one's token.
    fn put_connection(&self, row: ConnectionRow) -> BoxFuture<'_, Result<ConnectionRow, StoreError>>;

    /// The connection `id` of `integration`, revoked or not.
    fn connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>>;

    /// Every connection (of `integration`, when given), revoked ones
    /// included, ordered by integration then id.
    fn connections<'a>(&'a self, integration: Option<&'a str>)
        -> BoxFuture<'a, Result<Vec<ConnectionRow>, StoreError>>;

    /// Marks the connection revoked (now) and deletes its tokens. Returns
    /// the row as it is now; `None` when there is no such connection. A
    /// connection already revoked keeps its first revocation time.
    fn revoke_connection<'a>(
        &'a self,
        integration: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRow>, StoreError>>;

    /// The tokens row of a connection (empty id: the default connection).
    fn token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>>;

    /// Takes the lease on a connection's tokens for `owner`, for `lease`,
    /// creating the row (without tokens) if there is none. `true` when
    /// `owner` holds it now: it was free, expired or already `owner`'s.
    /// One process renews a connection's tokens at a time, whatever the
    /// number of processes: the others wait for the saved tokens.
    fn lease_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Saves `tokens` (sealed) and ends `owner`'s lease, only while `owner`
    /// holds it: `false` (nothing written) when the lease was lost, so a
    /// slow process never overwrites the tokens of the one that took over.
    fn save_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
        tokens: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Ends `owner`'s lease without saving (the renewal failed), so another
    /// process may try at once. No-op when `owner` does not hold it.
    fn release_token<'a>(
        &'a self,
        integration: &'a str,
        connection: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Stores a pending authorization. Also deletes the authorizations that
    /// expired, so abandoned flows do not pile up.
    fn put_authorization(&self, row: AuthorizationRow) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Takes the authorization of `state_digest`: returns it and deletes it
    /// in one step, so a state is used at most once even when two requests
    /// race with it. Expired ones are returned too (the caller tells the
    /// user it expired rather than that it is unknown).
    fn take_authorization<'a>(
        &'a self,
        state_digest: &'a str,
    ) -> BoxFuture<'a, Result<Option<AuthorizationRow>, StoreError>>;

    /// Every sealed value the store holds, for re-sealing under a new key.
    fn sealed_values(&self) -> BoxFuture<'_, Result<Vec<SealedValue>, StoreError>>;

    /// Replaces the sealed value at `value.place` by `resealed`, only if it
    /// still is `value.sealed` (compare and set): `false` when it changed
    /// meanwhile (a token renewal, say), and then the newer value is kept.
    fn replace_sealed<'a>(
        &'a self,
        value: &'a SealedValue,
        resealed: String,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}
