//! The `[auth]` section: which scheme (none, bearer, basic, API key, OAuth2
//! client credentials, authorization code or refresh token) and the secrets
//! it reads, each a reference to an environment variable, never a value.

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
            "oauth2_authorization_code",
            "oauth2_refresh_token",
        ];
        let Some((kind, kind_span)) = probe.require_str(
            self.cx,
            "kind",
            "add `kind = \"bearer\"` (or none, basic, api_key, oauth2_client_credentials, oauth2_authorization_code, oauth2_refresh_token)",
        ) else {
            return Auth::None;
        };
        let keys: &[&str] = match kind {
            "none" => &["kind"],
            "bearer" => &["kind", "token"],
            "basic" => &["kind", "username", "password"],
            "api_key" => &["kind", "key", "in", "name"],
            "oauth2_client_credentials" => &["kind", "token_url", "client_id", "client_secret", "scopes"],
            "oauth2_authorization_code" => &[
                "kind",
                "authorization_url",
                "token_url",
                "client_id",
                "client_secret",
                "scopes",
            ],
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
            "oauth2_authorization_code" => {
                let authorization_url = self.authorization_url(t);
                let token_url = self.token_url(t);
                let client_id = self.required_secret(t, "client_id");
                let client_secret = self.required_secret(t, "client_secret");
                let scopes = self.string_list(t, "scopes");
                Some(Auth::OAuth2AuthorizationCode {
                    authorization_url: authorization_url?,
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

    fn authorization_url(&mut self, t: Table<'_, '_>) -> Option<BaseUrl> {
        let e = t.require(self.cx, "authorization_url", "add `authorization_url = \"https://auth.example.com/oauth/authorize\"` or `{ env = \"AUTH_AUTHORIZATION_URL\", default = \"...\" }`")?;
        self.url_setting(e, "auth.authorization_url", "AUTH_AUTHORIZATION_URL")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::ir::{Auth, BaseUrl};
    use crate::parse;

    fn with_auth(auth: &str) -> String {
        format!("{MINIMAL}\n[auth]\nkind = \"oauth2_authorization_code\"\n{auth}")
    }

    const CLIENT: &str = "client_id = { env = \"CRM_CLIENT_ID\" }\nclient_secret = { env = \"CRM_CLIENT_SECRET\" }\n";

    #[test]
    fn authorization_code_reads_both_urls_the_client_and_scopes() {
        let src = with_auth(&format!(
            "authorization_url = \"https://crm.example.com/oauth/authorize\"\ntoken_url = {{ env = \"CRM_TOKEN_URL\", default = \"https://crm.example.com/oauth/token\" }}\nscopes = [\"contacts\"]\n{CLIENT}"
        ));
        let spec = parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let Auth::OAuth2AuthorizationCode {
            authorization_url,
            token_url,
            client_id,
            client_secret,
            scopes,
        } = &spec.auth
        else {
            panic!("{:?}", spec.auth)
        };
        assert!(matches!(authorization_url, BaseUrl::Literal(u) if u == "https://crm.example.com/oauth/authorize"));
        assert!(matches!(token_url, BaseUrl::Env { var, default: Some(_), .. } if var == "CRM_TOKEN_URL"));
        assert_eq!(
            (client_id.env.as_str(), client_secret.env.as_str()),
            ("CRM_CLIENT_ID", "CRM_CLIENT_SECRET")
        );
        assert_eq!(scopes, &["contacts"]);
    }

    #[test]
    fn authorization_code_mistakes_are_all_reported() {
        let errs = errors(&with_auth(
            "token_url = \"https://crm.example.com/oauth/token\"\nclient_id = { env = \"CRM_CLIENT_ID\" }\nclient_secret = \"hunter2\"\nrefresh_token = { env = \"T\" }\n",
        ));
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs.iter().any(|e| e.contains("unknown key `refresh_token` in `auth`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("t.toml:15:2: missing key `authorization_url` in `auth`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("`client_secret` is a secret and cannot be written in the spec")),
            "{errs:#?}"
        );
        let errs = errors(&with_auth(&format!(
            "authorization_url = \"crm.example.com/authorize\"\ntoken_url = {{ env = \"CRM_TOKEN_URL\" }}\n{CLIENT}"
        )));
        assert!(
            errs.len() == 1 && errs[0].contains("t.toml:17:21: `crm.example.com/authorize` is not an http(s) URL"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_misspelt_authorization_code_kind_is_suggested() {
        let errs = errors(&format!("{MINIMAL}\n[auth]\nkind = \"oauth2_authorisation_code\"\n"));
        assert!(
            errs.len() == 1 && errs[0].contains("did you mean `oauth2_authorization_code`?"),
            "{errs:#?}"
        );
    }
}
