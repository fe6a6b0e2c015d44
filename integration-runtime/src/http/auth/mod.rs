//! How requests authenticate: the schemes ([`Auth`], [`OAuth2Config`]), the
//! headers each one adds, OAuth2 access tokens (`oauth2`) and scrubbing the
//! credentials out of everything the client reports or returns (`redact`).

mod oauth2;
mod redact;
mod shared;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

pub(super) use self::oauth2::TokenState;
use super::client::HttpClient;
use crate::connection::Credentials;
use crate::descriptor::PolicyDescriptor;
use crate::error::ClientError;
use crate::secret::Secret;

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic <base64(username:password)>`.
    Basic {
        /// The user name.
        username: Secret,
        /// The password.
        password: Secret,
    },
    /// An API key in a header.
    ApiKeyHeader {
        /// The header's name.
        name: &'static str,
        /// The key.
        key: Secret,
    },
    /// An API key in a query parameter.
    ApiKeyQuery {
        /// The parameter's name.
        name: &'static str,
        /// The key.
        key: Secret,
    },
    /// An OAuth2 access token obtained from a token endpoint, sent as a bearer token.
    OAuth2(OAuth2Config),
}

/// Where and how an OAuth2 access token is obtained.
///
/// With a `refresh_token` the client uses the refresh-token grant, otherwise the
/// client-credentials grant. The client authenticates with HTTP Basic when it has
/// a `client_secret`, and sends `client_id` in the form otherwise.
#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: Secret,
    /// The client secret (optional for public clients using a refresh token).
    pub client_secret: Option<Secret>,
    /// Scopes requested, sent space-separated as `scope` when not empty.
    pub scopes: Vec<String>,
    /// A refresh token: selects the refresh-token grant.
    pub refresh_token: Option<Secret>,
    /// The provider's authorization endpoint, for the authorization-code
    /// grant (spec: `oauth2_authorization_code`): each connection is
    /// authorized by its user through the connect flow, and the
    /// integration has no token of its own.
    pub authorization_url: Option<String>,
}

impl Auth {
    /// The credential names this scheme takes from a connection, and
    /// which of them it needs.
    fn connection_names(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Auth::None => (&[], &[]),
            Auth::Bearer(_) => (&["token"], &["token"]),
            Auth::Basic { .. } => (&["username", "password"], &["username", "password"]),
            Auth::ApiKeyHeader { .. } | Auth::ApiKeyQuery { .. } => (&["api_key"], &["api_key"]),
            // The customer's own client.
            Auth::OAuth2(config) if config.refresh_token.is_none() && config.authorization_url.is_none() => {
                (&["client_id", "client_secret"], &["client_id", "client_secret"])
            }
            // The application's client (unless the connection names
            // another) and the customer's grant.
            Auth::OAuth2(config) if config.authorization_url.is_none() => {
                (&["client_id", "client_secret", "refresh_token"], &["refresh_token"])
            }
            Auth::OAuth2(_) => (&["client_id", "client_secret", "refresh_token"], &[]),
        }
    }

    /// This scheme with a connection's `credentials` in place of the
    /// integration's: every credential the request carries is the
    /// connection's, except an OAuth2 client the connection does not
    /// replace (the application's own, registered with the provider).
    pub(crate) fn for_connection(&self, credentials: &Credentials) -> Result<Auth, String> {
        let (takes, needs) = self.connection_names();
        if let Some(unknown) = credentials.names().find(|name| !takes.contains(name)) {
            return Err(if takes.is_empty() {
                format!("the integration sends no credentials, so `{unknown}` cannot be used")
            } else {
                format!(
                    "`{unknown}` is not a credential of this integration (it takes: {})",
                    takes.join(", ")
                )
            });
        }
        let missing: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|name| credentials.get(name).is_none_or(|value| value.is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(format!("the connection lacks {}", missing.join(", ")));
        }
        let take = |name: &str| credentials.get(name).unwrap_or_else(|| Secret::new(""));
        Ok(match self {
            Auth::None => Auth::None,
            Auth::Bearer(_) => Auth::Bearer(take("token")),
            Auth::Basic { .. } => Auth::Basic {
                username: take("username"),
                password: take("password"),
            },
            Auth::ApiKeyHeader { name, .. } => Auth::ApiKeyHeader {
                name,
                key: take("api_key"),
            },
            Auth::ApiKeyQuery { name, .. } => Auth::ApiKeyQuery {
                name,
                key: take("api_key"),
            },
            Auth::OAuth2(config) => {
                let own_client = credentials.get("client_id");
                Auth::OAuth2(OAuth2Config {
                    client_secret: match &own_client {
                        Some(_) => credentials.get("client_secret"),
                        None => config.client_secret.clone(),
                    },
                    client_id: own_client.unwrap_or_else(|| config.client_id.clone()),
                    refresh_token: credentials.get("refresh_token"),
                    ..config.clone()
                })
            }
        })
    }
}

/// The configured credentials of `auth`, scrubbed from every message.
pub(super) fn configured_secrets(auth: &Auth) -> Vec<Secret> {
    match auth {
        Auth::None => vec![],
        Auth::Bearer(token) => vec![token.clone()],
        Auth::Basic { username, password } => {
            // The header's base64 form too: a provider may echo it.
            let header = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", username.expose(), password.expose()),
            );
            vec![username.clone(), password.clone(), Secret::new(header)]
        }
        Auth::ApiKeyHeader { key, .. } | Auth::ApiKeyQuery { key, .. } => vec![key.clone()],
        Auth::OAuth2(config) => [
            Some(&config.client_id),
            config.client_secret.as_ref(),
            config.refresh_token.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect(),
    }
}

/// A header value that is kept out of debug output.
fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl HttpClient {
    /// The headers that authenticate a request (none for a query-string API
    /// key, which is in the URL); with OAuth2, `used_token` is set to the token.
    pub(super) async fn credentials(
        &self,
        endpoint: &str,
        policy: &'static PolicyDescriptor,
        used_token: &mut Option<Secret>,
    ) -> Result<HeaderMap, ClientError> {
        let mut headers = HeaderMap::new();
        match &self.inner.auth {
            Auth::None | Auth::ApiKeyQuery { .. } => {}
            Auth::Bearer(token) => {
                headers.insert(AUTHORIZATION, self.bearer(endpoint, token)?);
            }
            Auth::Basic { username, password } => {
                let pair = format!("{}:{}", username.expose(), password.expose());
                let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair);
                let value = sensitive(&format!("Basic {encoded}")).ok_or_else(|| {
                    ClientError::config(endpoint, "the Basic credentials do not make a header".to_owned())
                })?;
                headers.insert(AUTHORIZATION, value);
            }
            Auth::ApiKeyHeader { name, key } => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ClientError::config(endpoint, format!("`{name}` is not a valid header name")))?;
                let value = sensitive(key.expose()).ok_or_else(|| {
                    ClientError::config(
                        endpoint,
                        "the API key contains characters not allowed in a header".to_owned(),
                    )
                })?;
                headers.insert(name, value);
            }
            Auth::OAuth2(config) if config.authorization_url.is_some() && self.inner.connection.is_none() => {
                return Err(ClientError::config(
                    endpoint,
                    format!(
                        "`{}` authorizes each connection through the connect flow: send the call with a connection",
                        self.inner.integration
                    ),
                ));
            }
            Auth::OAuth2(config) => {
                let token = self.access_token(endpoint, config, policy).await?;
                headers.insert(AUTHORIZATION, self.bearer(endpoint, &token)?);
                *used_token = Some(token);
            }
        }
        Ok(headers)
    }

    pub(super) fn bearer(&self, endpoint: &str, token: &Secret) -> Result<HeaderValue, ClientError> {
        sensitive(&format!("Bearer {}", token.expose())).ok_or_else(|| {
            ClientError::config(
                endpoint,
                "the bearer token contains characters not allowed in a header".to_owned(),
            )
        })
    }
}
