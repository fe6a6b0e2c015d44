//! The configuration, the typed client, and the glue the engine drives.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::endpoint::{self, reply_spec, result_type, spec_name, webhook_spec_name};
use super::Names;
use crate::ir::*;

pub(super) fn generate(spec: &Spec, names: &Names) -> TokenStream {
    let config = config(spec, names);
    let client = client(spec, names);
    let glue = glue(spec, names);
    quote!(#config #client #glue)
}

/// One secret of the config: its field name, variable and purpose.
struct SecretField<'a> {
    field: proc_macro2::Ident,
    secret: &'a SecretRef,
}

fn secrets(spec: &Spec) -> Vec<SecretField<'_>> {
    let required = |name: &str, secret| SecretField {
        field: format_ident!("{}", name),
        secret,
    };
    let mut out = match &spec.auth {
        Auth::None => vec![],
        Auth::Bearer { token } => vec![required("token", token)],
        Auth::Basic { username, password } => vec![required("username", username), required("password", password)],
        Auth::ApiKey { key, .. } => vec![required("api_key", key)],
        Auth::OAuth2ClientCredentials {
            client_id,
            client_secret,
            ..
        }
        | Auth::OAuth2AuthorizationCode {
            client_id,
            client_secret,
            ..
        } => {
            vec![
                required("client_id", client_id),
                required("client_secret", client_secret),
            ]
        }
        Auth::OAuth2RefreshToken {
            client_id,
            client_secret,
            refresh_token,
            ..
        } => {
            let mut v = vec![
                required("client_id", client_id),
                required("refresh_token", refresh_token),
            ];
            if let Some(secret) = client_secret {
                v.push(required("client_secret", secret));
            }
            v
        }
    };
    if let Some(webhook) = &spec.webhook {
        out.push(required("webhook_secret", &webhook.verify.secret));
    }
    out
}

fn config(spec: &Spec, names: &Names) -> TokenStream {
    let Names { config, .. } = names;
    let integration_name = &spec.integration.name;
    let secrets = secrets(spec);
    let fields = secrets.iter().map(|s| {
        let field = &s.field;
        let doc = format!(" {} (from `{}`).", s.secret.purpose, s.secret.env);
        quote!(#[doc = #doc] pub #field: __rt::Secret,)
    });
    let reads = secrets.iter().map(|s| {
        let field = &s.field;
        let (env, purpose) = (&s.secret.env, &s.secret.purpose);
        quote!(let #field = env.secret(#env, #purpose);)
    });
    let field_names = secrets.iter().map(|s| &s.field);
    let base_url = url_setting(&spec.integration.base_url, &format!("base URL of {integration_name}"));
    let token_url = match &spec.auth {
        Auth::OAuth2ClientCredentials { token_url, .. }
        | Auth::OAuth2AuthorizationCode { token_url, .. }
        | Auth::OAuth2RefreshToken { token_url, .. } => Some(url_setting(
            token_url,
            &format!("OAuth2 token URL of {integration_name}"),
        )),
        _ => None,
    };
    let token_url_field = token_url.as_ref().map(|_| {
        quote!(/// Where OAuth2 tokens are requested.
        pub token_url: __rt::String,)
    });
    let token_url_read = token_url.as_ref().map(|read| quote!(let token_url = #read;));
    let token_url_init = token_url.as_ref().map(|_| quote!(token_url,));
    let authorization_url = match &spec.auth {
        Auth::OAuth2AuthorizationCode { authorization_url, .. } => Some(url_setting(
            authorization_url,
            &format!("OAuth2 authorization URL of {integration_name}"),
        )),
        _ => None,
    };
    let authorization_url_field = authorization_url.as_ref().map(|_| {
        quote!(/// Where each connection's user is sent to authorize the integration.
        pub authorization_url: __rt::String,)
    });
    let authorization_url_read = authorization_url
        .as_ref()
        .map(|read| quote!(let authorization_url = #read;));
    let authorization_url_init = authorization_url.as_ref().map(|_| quote!(authorization_url,));
    let doc = format!(" Settings of the `{integration_name}` integration. Secrets are redacted in `Debug` output.");
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        pub struct #config {
            /// Where requests go.
            pub base_url: __rt::String,
            #token_url_field
            #authorization_url_field
            #(#fields)*
        }

        impl #config {
            /// Reads every setting from the environment, and reports every
            /// missing variable (with what it is for) in one error.
            pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
                let mut env = __rt::EnvReader::new(#integration_name);
                let base_url = #base_url;
                #token_url_read
                #authorization_url_read
                #(#reads)*
                env.finish()?;
                __rt::Ok(#config { base_url, #token_url_init #authorization_url_init #(#field_names),* })
            }
        }
    }
}

/// Reads a URL setting: a literal, or an environment variable with or without a default.
fn url_setting(url: &BaseUrl, default_purpose: &str) -> TokenStream {
    match url {
        BaseUrl::Literal(url) => quote!(__rt::String::from(#url)),
        BaseUrl::Env {
            var,
            default: Some(default),
            ..
        } => quote!(env.value_or(#var, #default)),
        BaseUrl::Env {
            var,
            default: None,
            purpose,
        } => {
            let purpose = purpose.clone().unwrap_or_else(|| default_purpose.to_owned());
            quote!(env.value(#var, #purpose))
        }
    }
}

fn auth_expr(spec: &Spec) -> TokenStream {
    match &spec.auth {
        Auth::None => quote!(__rt::Auth::None),
        Auth::Bearer { .. } => quote!(__rt::Auth::Bearer(config.token.clone())),
        Auth::Basic { .. } => quote!(__rt::Auth::Basic {
            username: config.username.clone(),
            password: config.password.clone()
        }),
        Auth::ApiKey {
            location: ApiKeyLocation::Header,
            name,
            ..
        } => quote!(__rt::Auth::ApiKeyHeader { name: #name, key: config.api_key.clone() }),
        Auth::ApiKey {
            location: ApiKeyLocation::Query,
            name,
            ..
        } => quote!(__rt::Auth::ApiKeyQuery { name: #name, key: config.api_key.clone() }),
        Auth::OAuth2ClientCredentials { scopes, .. } | Auth::OAuth2AuthorizationCode { scopes, .. } => {
            // Only the authorization-code kind sends users somewhere to
            // authorize a connection.
            let authorization_url = if matches!(spec.auth, Auth::OAuth2AuthorizationCode { .. }) {
                quote!(__rt::Some(config.authorization_url.clone()))
            } else {
                quote!(__rt::None)
            };
            quote! {
                __rt::Auth::OAuth2(__rt::OAuth2Config {
                    token_url: config.token_url.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: __rt::Some(config.client_secret.clone()),
                    scopes: ::std::vec![#(__rt::String::from(#scopes)),*],
                    refresh_token: __rt::None,
                    authorization_url: #authorization_url,
                })
            }
        }
        Auth::OAuth2RefreshToken { client_secret, .. } => {
            let secret = if client_secret.is_some() {
                quote!(__rt::Some(config.client_secret.clone()))
            } else {
                quote!(__rt::None)
            };
            quote! {
                __rt::Auth::OAuth2(__rt::OAuth2Config {
                    token_url: config.token_url.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: #secret,
                    scopes: __rt::Vec::new(),
                    refresh_token: __rt::Some(config.refresh_token.clone()),
                    authorization_url: __rt::None,
                })
            }
        }
    }
}

fn client(spec: &Spec, names: &Names) -> TokenStream {
    let Names {
        client,
        config,
        integration,
        ..
    } = names;
    let auth = auth_expr(spec);
    let see = format!(" [`{integration}::with_reqwest_client`]: the spec's policies apply on top.");
    let (methods, statics): (Vec<_>, Vec<_>) = spec
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| endpoint::method(i, e))
        .unzip();
    let doc = format!(
        " A typed HTTP client of `{}`: one method per endpoint.",
        spec.integration.name
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        pub struct #client {
            http: __rt::HttpClient,
        }

        impl #client {
            /// A client for the given settings.
            pub fn new(config: &#config) -> __rt::Result<Self, __rt::ConfigError> {
                let http = __rt::HttpClient::for_integration(&__DESCRIPTOR, &config.base_url, #auth)?;
                __rt::Ok(#client { http })
            }

            /// This client, sending through `client`; see
            #[doc = #see]
            #[must_use]
            pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
                #client { http: self.http.with_reqwest_client(client) }
            }

            #(#methods)*
        }

        #(#statics)*
    }
}

fn glue(spec: &Spec, names: &Names) -> TokenStream {
    let Names {
        integration,
        client,
        config,
        ..
    } = names;
    let integration_name = &spec.integration.name;
    let spec_of = |name: &str| spec.endpoint(name);
    let calls = spec.call_endpoints().map(|e| {
        let name = &e.name;
        let spec = spec_name(name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        let result_ty = result_type(e.result.as_ref());
        let glue = quote!(__rt::CallGlue::new::<#entity, #result_ty>(&#spec));
        match e.cancel.as_ref().and_then(|(cancel, _)| spec_of(cancel)) {
            Some(cancel) => {
                let cancel_spec = spec_name(&cancel.name);
                let cancel_ty = result_type(cancel.result.as_ref());
                quote!(#glue.cancelled_by(__rt::PollGlue::new::<#cancel_ty>(&#cancel_spec)))
            }
            None => glue,
        }
    });
    let poll = match spec.polling.as_ref().and_then(|p| spec.endpoint(&p.endpoint)) {
        Some(endpoint) => {
            let spec = spec_name(&endpoint.name);
            let result_ty = result_type(endpoint.result.as_ref());
            quote!(__rt::Some(__rt::PollGlue::new::<#result_ty>(&#spec)))
        }
        None => quote!(__rt::None),
    };
    let (webhook, webhook_spec) = match &spec.webhook {
        Some(w) => {
            let reply = reply_spec(
                "webhook",
                // The receiver refuses a delivery without an id itself (422).
                &ExternalId::OptionalPath(w.external_id.clone()),
                Some(&w.status),
                w.result.as_ref(),
                w.error.as_ref(),
            );
            let name = webhook_spec_name();
            let result_ty = result_type(w.result.as_ref());
            (
                quote!(__rt::Some(__rt::WebhookGlue::new::<#result_ty>(&#name))),
                quote! {
                    static #name: __rt::ReplySpec = #reply;
                },
            )
        }
        None => (quote!(__rt::None), quote!()),
    };
    let webhook_secret = spec.webhook.as_ref().map(|_| {
        quote! {
            fn webhook_secret(&self) -> __rt::Option<__rt::Secret> {
                __rt::Some(self.config.webhook_secret.clone())
            }
        }
    });
    let doc = format!(" The `{integration_name}` integration, ready to register with the runtime.");
    let usage = format!(" `{integration}::from_env()?.with_reqwest_client(client)`");
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        pub struct #integration {
            config: #config,
            client: #client,
        }

        impl #integration {
            /// The integration with the given settings.
            pub fn new(config: #config) -> __rt::Result<Self, __rt::ConfigError> {
                let client = #client::new(&config)?;
                __rt::Ok(#integration { config, client })
            }

            /// The integration configured from the environment; every missing
            /// variable is reported at once, with what it is for.
            pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
                Self::new(#config::from_env()?)
            }

            /// The integration, sending through `client`, a `reqwest::Client` you
            /// configured (proxies, root certificates, default headers); the spec's
            /// timeouts, size limits, auth and redirect rules still apply on top.
            /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
            /// that follows redirects itself bypasses the spec's redirect rules (the
            /// request then fails, but has been sent on). Its own connect timeout
            /// applies instead of the spec's.
            ///
            #[doc = #usage]
            #[must_use]
            pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
                self.client = self.client.with_reqwest_client(client);
                self
            }

            /// The typed client, for direct calls.
            pub fn client(&self) -> &#client {
                &self.client
            }

            /// The settings.
            pub fn config(&self) -> &#config {
                &self.config
            }

            /// Static facts about the integration: endpoints, policies, polling, webhook.
            pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
                &__DESCRIPTOR
            }
        }

        // A constant, not a static: its functions are compiled into the
        // user's crate only when the integration is used as one, not for a
        // crate that only uses the client.
        impl __rt::Generated for #integration {
            const GLUE: &'static __rt::Glue = &__rt::Glue {
                descriptor: &__DESCRIPTOR,
                calls: &[#(#calls),*],
                poll: #poll,
                webhook: #webhook,
            };

            fn http(&self) -> &__rt::HttpClient {
                &self.client.http
            }

            #webhook_secret
        }

        #webhook_spec
    }
}
