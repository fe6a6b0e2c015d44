//! What a connection is, as the application gives it and as it is shown.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::descriptor::{PolicyScope, RateLimitPolicy};
use crate::secret::Secret;
use crate::store::ConnectionRow;

/// A connection's credentials, by name. Which names an integration takes
/// depends on its spec's `[auth]` kind:
///
/// | auth kind | names |
/// | --- | --- |
/// | `bearer` | `token` |
/// | `basic` | `username`, `password` |
/// | `api_key` | `api_key` |
/// | `oauth2_client_credentials` | `client_id`, `client_secret` (the customer's own client) |
/// | `oauth2_refresh_token` | `refresh_token`; `client_id`, `client_secret` to use another client than the integration's |
/// | `oauth2_authorization_code` | none needed (the connect flow stores the tokens); `client_id`, `client_secret` as above |
///
/// `Debug` shows the names only.
#[derive(Clone, Default, PartialEq)]
pub struct Credentials(BTreeMap<String, String>);

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    /// No credentials.
    pub fn new() -> Self {
        Credentials::default()
    }

    /// A bearer token (`bearer` auth).
    pub fn bearer(token: impl Into<String>) -> Self {
        Credentials::new().with("token", token)
    }

    /// A user name and password (`basic` auth).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::new().with("username", username).with("password", password)
    }

    /// An API key (`api_key` auth).
    pub fn api_key(key: impl Into<String>) -> Self {
        Credentials::new().with("api_key", key)
    }

    /// These credentials, with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// The credential `name`, if set.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.0.get(name).map(|value| Secret::new(value.clone()))
    }

    /// The names that are set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a map of strings serializes")
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Option<Credentials> {
        serde_json::from_slice(bytes).ok().map(Credentials)
    }
}

/// A connection's own rate budget: it replaces, for the connection's
/// calls, the rate limits its spec scopes per connection (see
/// [`PolicyScope::Connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateBudget {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

impl RateBudget {
    /// The budget stored on `row`, if it has one.
    pub(crate) fn of_row(row: &ConnectionRow) -> Option<RateBudget> {
        row.rate_per_second.map(|per_second| RateBudget {
            per_second,
            burst: row.rate_burst.unwrap_or(1),
        })
    }

    pub(crate) fn policy(self) -> RateLimitPolicy {
        RateLimitPolicy {
            per_second: self.per_second,
            burst: self.burst,
            scope: PolicyScope::Connection,
        }
    }
}

/// A connection to store ([`Runtime::put_connection`](crate::Runtime::put_connection)).
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The integration's name.
    pub integration: String,
    /// The id the application chose: 1 to 128 characters, letters, digits,
    /// `-`, `_`, `.`, `@` or `:`.
    pub id: String,
    /// The customer's credentials.
    pub credentials: Credentials,
    /// The provider's base URL for this customer; `None`: the integration's.
    pub base_url: Option<String>,
    /// Parameters that replace the call's parameters of the same name.
    pub params: Map<String, Value>,
    /// A rate budget of the connection's own.
    pub rate_budget: Option<RateBudget>,
}

impl NewConnection {
    /// The connection `id` of `integration`, with `credentials`.
    pub fn new(integration: impl Into<String>, id: impl Into<String>, credentials: Credentials) -> Self {
        NewConnection {
            integration: integration.into(),
            id: id.into(),
            credentials,
            base_url: None,
            params: Map::new(),
            rate_budget: None,
        }
    }

    /// Sends this connection's calls to `url` instead of the integration's base URL.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Sets the parameter `name` of every call of the connection to `value`.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Gives the connection a rate budget of its own.
    #[must_use]
    pub fn rate_budget(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_budget = Some(RateBudget { per_second, burst });
        self
    }
}

/// A stored connection, as shown to applications and operators: never a
/// credential, only the names of those it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// The integration's name.
    pub integration: String,
    /// The connection's id.
    pub id: String,
    /// The names of its credentials (see [`Credentials`]); empty when they
    /// could not be opened (see `key_id`).
    pub credential_names: Vec<String>,
    /// The id of the key its credentials are sealed under.
    pub key_id: Option<String>,
    /// Its base URL, when not the integration's.
    pub base_url: Option<String>,
    /// Its parameter overrides.
    pub params: Map<String, Value>,
    /// Its own rate budget.
    pub rate_budget: Option<RateBudget>,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was revoked; `None`: live.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Connection {
    /// Whether the connection was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub(crate) fn from_row(row: &ConnectionRow, credentials: Option<&Credentials>) -> Connection {
        Connection {
            integration: row.integration.clone(),
            id: row.id.clone(),
            credential_names: credentials
                .map(|c| c.names().map(str::to_owned).collect())
                .unwrap_or_default(),
            key_id: crate::connection::Keyring::key_id_of(&row.credentials).map(str::to_owned),
            base_url: row.base_url.clone(),
            params: row.params.as_object().cloned().unwrap_or_default(),
            rate_budget: RateBudget::of_row(row),
            created_at: row.created_at,
            updated_at: row.updated_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Whether `id` may name a connection; the problem otherwise.
pub(crate) fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 128 {
        return Some("a connection id has 1 to 128 characters".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':');
    if let Some(bad) = id.chars().find(|c| !allowed(*c)) {
        return Some(format!(
            "a connection id may only hold letters, digits, `-`, `_`, `.`, `@` and `:`, not `{}`",
            bad.escape_debug()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_show_their_names_only() {
        let credentials = Credentials::basic("acme", "hunter2");
        assert_eq!(format!("{credentials:?}"), r#"{"password", "username"}"#);
        assert_eq!(credentials.get("password").unwrap().expose(), "hunter2");
        let back = Credentials::from_json(&credentials.to_json()).unwrap();
        assert_eq!(back, credentials);
    }

    #[test]
    fn connection_ids_are_checked() {
        assert_eq!(id_problem("acme-eu_1.prod@x:y"), None);
        assert!(id_problem("").is_some());
        assert!(id_problem(&"a".repeat(129)).is_some());
        assert!(id_problem("a/b").unwrap().contains("`/`"));
    }
}
