//! The `[auth]` section: which scheme (none, bearer, basic, API key, OAuth2
//! client credentials or refresh token) and the secrets it reads, each a
//! reference to an environment variable, never a value.

use toml::de::DeValue;

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{join, kind_of, Entry, Table};

impl Lower<'_> {
    fn secret(&mut self, e: Entry<'_, '_>) -> Option<SecretRef> {
        let key_path = e.key_path();
        if matches!(e.value.get_ref(), DeValue::String(_)) {
            self.cx
                .error(
                    e.span(),
                    key_path,
                    format!("`{}` is a secret and cannot be written in the spec", e.key),
                )
                .help("read it from the environment: `{ env = \"PROVIDER_TOKEN\", purpose = \"...\" }`");
            return None;
        }
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["env", "purpose"])?;
        let (var, span) = t.require_str(self.cx, "env", "add `env = \"VARIABLE_NAME\"`")?;
        check::env_var_name(self.cx, var, span, &join(&key_path, "env"));
        let purpose = t
            .str(self.cx, "purpose")
            .map_or_else(|| format!("the `{key_path}` secret"), |(p, _)| p.to_owned());
        Some(SecretRef {
            env: var.to_owned(),
            purpose,
        })
    }

    pub(super) fn required_secret(&mut self, t: Table<'_, '_>, key: &str) -> Option<SecretRef> {
        t.require(
            self.cx,
            key,
            &format!("add `{key} = {{ env = \"VARIABLE_NAME\", purpose = \"...\" }}`"),
        )
        .and_then(|e| self.secret(e))
    }

    pub(super) fn auth(&mut self, e: Entry<'_, '_>) -> Auth {
        let DeValue::Table(entries) = e.value.get_ref() else {
            self.cx.error(
                e.span(),
                "auth",
                format!("`auth` must be a table, found {}", kind_of(e.value.get_ref())),
            );
            return Auth::None;
        };
        let probe = Table {
            path: "auth",
            span: e.key_span,
            entries,
        };
        let kinds = [
            "none",
            "bearer",
            "basic",
            "api_key",
            "oauth2_client_credentials",
            "oauth2_refresh_token",
        ];
        let Some((kind, kind_span)) = probe.require_str(
            self.cx,
            "kind",
            "add `kind = \"bearer\"` (or none, basic, api_key, oauth2_client_credentials, oauth2_refresh_token)",
        ) else {
            return Auth::None;
        };
        let keys: &[&str] = match kind {
            "none" => &["kind"],
            "bearer" => &["kind", "token"],
            "basic" => &["kind", "username", "password"],
            "api_key" => &["kind", "key", "in", "name"],
            "oauth2_client_credentials" => &["kind", "token_url", "client_id", "client_secret", "scopes"],
            "oauth2_refresh_token" => &["kind", "token_url", "client_id", "client_secret", "refresh_token"],
            other => {
                self.cx
                    .error(kind_span, "auth.kind", format!("unknown auth kind `{other}`"))
                    .expected_one_of(other, kinds);
                return Auth::None;
            }
        };
        probe.reject_unknown(self.cx, keys);
        self.auth_kind(kind, probe).unwrap_or(Auth::None)
    }

    fn auth_kind(&mut self, kind: &str, t: Table<'_, '_>) -> Option<Auth> {
        match kind {
            "bearer" => self.required_secret(t, "token").map(|token| Auth::Bearer { token }),
            "basic" => {
                let username = self.required_secret(t, "username");
                let password = self.required_secret(t, "password");
                Some(Auth::Basic {
                    username: username?,
                    password: password?,
                })
            }
            "api_key" => {
                let key = self.required_secret(t, "key");
                let location = match t.require_str(self.cx, "in", "add `in = \"header\"` or `in = \"query\"`") {
                    Some(("header", _)) => Some(ApiKeyLocation::Header),
                    Some(("query", _)) => Some(ApiKeyLocation::Query),
                    Some((other, span)) => {
                        self.cx
                            .error(
                                span,
                                "auth.in",
                                format!("API keys go in `header` or `query`, not `{other}`"),
                            )
                            .expected_one_of(other, ["header", "query"]);
                        None
                    }
                    None => None,
                };
                let name = t.require_str(
                    self.cx,
                    "name",
                    "add `name = \"X-Api-Key\"` (the header or query parameter name)",
                );
                if let (Some(ApiKeyLocation::Header), Some((n, span))) = (location, &name) {
                    check::header_name(self.cx, n, span.clone(), "auth.name");
                }
                Some(Auth::ApiKey {
                    location: location?,
                    name: name?.0.to_owned(),
                    key: key?,
                })
            }
            "oauth2_client_credentials" => {
                let token_url = self.token_url(t);
                let client_id = self.required_secret(t, "client_id");
                let client_secret = self.required_secret(t, "client_secret");
                let scopes = self.string_list(t, "scopes");
                Some(Auth::OAuth2ClientCredentials {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    scopes,
                })
            }
            "oauth2_refresh_token" => {
                let token_url = self.token_url(t);
                let client_id = self.required_secret(t, "client_id");
                let client_secret = t.get("client_secret").and_then(|e| self.secret(e));
                let refresh_token = self.required_secret(t, "refresh_token");
                Some(Auth::OAuth2RefreshToken {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret,
                    refresh_token: refresh_token?,
                })
            }
            _ => Some(Auth::None),
        }
    }

    fn token_url(&mut self, t: Table<'_, '_>) -> Option<BaseUrl> {
        let e = t.require(self.cx, "token_url", "add `token_url = \"https://auth.example.com/oauth/token\"` or `{ env = \"AUTH_TOKEN_URL\", default = \"...\" }`")?;
        self.url_setting(e, "auth.token_url", "AUTH_TOKEN_URL")
    }
}
