//! The configuration, the typed client, and the glue the engine drives.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{constant_value, ident, json_path, Names};
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
        quote!(#[doc = #doc] pub #field: ::integration_runtime::Secret,)
    });
    let reads = secrets.iter().map(|s| {
        let field = &s.field;
        let (env, purpose) = (&s.secret.env, &s.secret.purpose);
        quote!(let #field = env.secret(#env, #purpose);)
    });
    let field_names = secrets.iter().map(|s| &s.field);
    let base_url = url_setting(&spec.integration.base_url, &format!("base URL of {integration_name}"));
    let token_url = match &spec.auth {
        Auth::OAuth2ClientCredentials { token_url, .. } | Auth::OAuth2RefreshToken { token_url, .. } => Some(
            url_setting(token_url, &format!("OAuth2 token URL of {integration_name}")),
        ),
        _ => None,
    };
    let token_url_field = token_url.as_ref().map(|_| {
        quote!(/// Where OAuth2 tokens are requested.
        pub token_url: ::std::string::String,)
    });
    let token_url_read = token_url.as_ref().map(|read| quote!(let token_url = #read;));
    let token_url_init = token_url.as_ref().map(|_| quote!(token_url,));
    let doc = format!(" Settings of the `{integration_name}` integration. Secrets are redacted in `Debug` output.");
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        pub struct #config {
            /// Where requests go.
            pub base_url: ::std::string::String,
            #token_url_field
            #(#fields)*
        }

        impl #config {
            /// Reads every setting from the environment, and reports every
            /// missing variable (with what it is for) in one error.
            pub fn from_env() -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
                let mut env = __rt::EnvReader::new(#integration_name);
                let base_url = #base_url;
                #token_url_read
                #(#reads)*
                env.finish()?;
                ::std::result::Result::Ok(#config { base_url, #token_url_init #(#field_names),* })
            }
        }
    }
}

/// Reads a URL setting: a literal, or an environment variable with or without a default.
fn url_setting(url: &BaseUrl, default_purpose: &str) -> TokenStream {
    match url {
        BaseUrl::Literal(url) => quote!(::std::string::String::from(#url)),
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
        Auth::OAuth2ClientCredentials { scopes, .. } => quote! {
            __rt::Auth::OAuth2(__rt::OAuth2Config {
                token_url: config.token_url.clone(),
                client_id: config.client_id.clone(),
                client_secret: ::std::option::Option::Some(config.client_secret.clone()),
                scopes: ::std::vec![#(::std::string::String::from(#scopes)),*],
                refresh_token: ::std::option::Option::None,
            })
        },
        Auth::OAuth2RefreshToken { client_secret, .. } => {
            let secret = if client_secret.is_some() {
                quote!(::std::option::Option::Some(config.client_secret.clone()))
            } else {
                quote!(::std::option::Option::None)
            };
            quote! {
                __rt::Auth::OAuth2(__rt::OAuth2Config {
                    token_url: config.token_url.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: #secret,
                    scopes: ::std::vec::Vec::new(),
                    refresh_token: ::std::option::Option::Some(config.refresh_token.clone()),
                })
            }
        }
    }
}

fn client(spec: &Spec, names: &Names) -> TokenStream {
    let Names { client, config, .. } = names;
    let auth = auth_expr(spec);
    let methods = spec.endpoints.iter().enumerate().map(|(i, e)| endpoint_method(i, e));
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
            pub fn new(config: &#config) -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
                let http = __rt::HttpClient::for_integration(&__DESCRIPTOR, &config.base_url, #auth)?;
                ::std::result::Result::Ok(#client { http })
            }

            /// This client, sending through `client` (proxies, root certificates,
            /// default headers) with the spec's policies on top. Build it with
            /// `redirect(reqwest::redirect::Policy::none())`: the spec's redirect
            /// rules hold only for redirects the runtime sees. Its own connect
            /// timeout applies instead of the spec's.
            #[must_use]
            pub fn with_reqwest_client(self, client: ::integration_runtime::reqwest::Client) -> Self {
                #client { http: self.http.with_reqwest_client(client) }
            }

            #(#methods)*
        }
    }
}

fn endpoint_method(index: usize, e: &Endpoint) -> TokenStream {
    let method_name = ident(&e.name);
    let name = &e.name;
    let http_method = e.method.as_str();
    let result_ty = match &e.result {
        Some(r) => {
            let entity = format_ident!("{}", r.entity);
            quote!(#entity)
        }
        None => quote!(()),
    };
    let mut doc = format!(" `{http_method} {}`", e.path_text);
    if e.mode == Mode::Async {
        doc.push_str(" (async: the call finishes later)");
    }
    doc.push('.');
    let (params, validate) = match (&e.request, e.path.contains(&PathPart::ExternalId)) {
        (Some(entity), _) if e.list.is_some() => {
            let entity = format_ident!("{}", entity);
            (
                quote!(request: &#entity),
                quote! {
                    if let ::std::result::Result::Err(e) = request.validate() {
                        return ::integration_runtime::Paginator::failed(__rt::invalid_request(#name, e));
                    }
                },
            )
        }
        (Some(entity), _) => {
            let entity = format_ident!("{}", entity);
            (
                quote!(request: &#entity, options: &::integration_runtime::CallOptions),
                quote!(request.validate().map_err(|e| __rt::invalid_request(#name, e))?;),
            )
        }
        (None, true) => (quote!(external_id: &str), quote!()),
        (None, false) => (quote!(), quote!()),
    };
    let path_parts = e.path.iter().map(|part| match part {
        PathPart::Literal(text) => quote!(path.literal(#text);),
        PathPart::ExternalId => quote!(path.param(&__rt::serde_json::Value::from(external_id));),
        PathPart::Field(field) => {
            let f = ident(field);
            quote!(path.param(&__rt::to_value(&request.#f));)
        }
    });
    let query = e.query.iter().map(|m| {
        let key = &m.target[0];
        let value = mapping_value(&m.value);
        quote!(query.push((#key, #value));)
    });
    let headers = e.headers.iter().map(|m| {
        let key = &m.target[0];
        let value = mapping_value(&m.value);
        quote! {
            let value = #value;
            if !value.is_null() {
                headers.push((#key, __rt::display_value(&value)));
            }
        }
    });
    let body_sets = e.body.iter().map(|m| {
        let target = &m.target;
        let value = mapping_value(&m.value);
        quote! {
            let value = #value;
            if !value.is_null() {
                body.set(&[#(#target),*], value);
            }
        }
    });
    let idempotency = match &e.idempotency_key {
        Some(IdempotencyKey::Header(header)) => quote! {
            if let ::std::option::Option::Some(key) = &options.idempotency_key {
                headers.push((#header, key.clone()));
            }
        },
        Some(IdempotencyKey::Body(path)) => quote! {
            if let ::std::option::Option::Some(key) = &options.idempotency_key {
                body.set(&[#(#path),*], __rt::serde_json::Value::from(key.as_str()));
            }
        },
        None if e.starts_calls() => quote!(let _ = options;),
        None => quote!(),
    };
    let has_body = !e.body.is_empty() || matches!(e.idempotency_key, Some(IdempotencyKey::Body(_)));
    let encoding = match e.encoding {
        Encoding::Json => quote!(__rt::BodyEncoding::Json),
        Encoding::Form => quote!(__rt::BodyEncoding::Form),
    };
    let body_expr = if has_body {
        quote!(::std::option::Option::Some((#encoding, body.into_value())))
    } else {
        quote!(::std::option::Option::None)
    };
    let body_decl = if has_body {
        quote!(let mut body = __rt::JsonBody::new();)
    } else {
        quote!()
    };
    // Path, query, headers and body: the same for a single request and for
    // the first page of a list.
    let build_request = quote! {
        #validate
        let mut path = __rt::PathBuilder::new();
        #(#path_parts)*
        // Generated code lands in users' crates: no lint of theirs may fire on it.
        #[allow(unused_mut, clippy::vec_init_then_push)]
        let mut query: ::std::vec::Vec<(&'static str, __rt::serde_json::Value)> = ::std::vec::Vec::new();
        #(#query)*
        #[allow(unused_mut, clippy::vec_init_then_push)]
        let mut headers: ::std::vec::Vec<(&'static str, ::std::string::String)> = ::std::vec::Vec::new();
        #(#headers)*
        #body_decl
        #(#body_sets)*
    };
    let error_path = match &e.error {
        Some(p) => {
            let p = json_path(p);
            quote!(::std::option::Option::Some(#p))
        }
        None => quote!(::std::option::Option::None),
    };
    let http_request = quote! {
        __rt::HttpRequest {
            endpoint: #name,
            method: #http_method,
            path: path.finish(),
            query,
            headers,
            body: #body_expr,
            error_path: #error_path,
            policy: &__DESCRIPTOR.endpoints[#index].policy,
        }
    };
    if let Some(list) = &e.list {
        let item = format_ident!("{}", list.items.entity);
        let items_path = json_path(&list.items.path);
        let items_text = &list.items.path.text;
        let pagination = pagination(&list.paginate);
        let doc = format!(
            " `{http_method} {}`: the `{}` items at `{items_text}` of every page ({} pagination).",
            e.path_text,
            list.items.entity,
            list.paginate.style()
        );
        return quote! {
            #[doc = #doc]
            ///
            /// Nothing is sent until the first item is asked for; each further page is
            /// fetched when the previous one's items are consumed, and retried under the
            /// endpoint's retry policy. Iterate with `next_item().await`, `collect_all().await`,
            /// or as a `Stream`.
            pub fn #method_name(&self, #params) -> ::integration_runtime::Paginator<#item> {
                #build_request
                ::integration_runtime::Paginator::new(
                    self.http.clone(),
                    #http_request,
                    #pagination,
                    __rt::ItemsPath { path: #items_path, text: #items_text },
                )
            }
        };
    }
    let reply = reply_expr(
        name,
        &e.external_id,
        e.status.as_ref(),
        e.result.as_ref(),
        e.error.as_ref(),
        quote!(response.status),
    );
    quote! {
        #[doc = #doc]
        pub async fn #method_name(&self, #params) -> ::std::result::Result<::integration_runtime::Reply<#result_ty>, ::integration_runtime::ClientError> {
            #build_request
            #idempotency
            let response = self.http.send(#http_request).await?;
            let body = &response.body;
            ::std::result::Result::Ok(#reply)
        }
    }
}

/// The runtime's description of a pagination style.
fn pagination(p: &Pagination) -> TokenStream {
    match p {
        Pagination::Cursor { cursor, param } => {
            let cursor = json_path(cursor);
            quote!(__rt::Pagination::Cursor { cursor: #cursor, param: #param })
        }
        Pagination::CursorHeader { header, param } => {
            quote!(__rt::Pagination::CursorHeader { header: #header, param: #param })
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => quote!(__rt::Pagination::Offset { param: #param, limit_param: #limit_param, limit: #limit }),
        Pagination::Page {
            param,
            start,
            size_param,
            size,
        } => {
            quote!(__rt::Pagination::Page { param: #param, start: #start, size_param: #size_param, size: #size })
        }
        Pagination::Link => quote!(__rt::Pagination::Link),
    }
}

/// Builds a `Reply` from `body` with the spec's paths.
fn reply_expr(
    endpoint: &str,
    external_id: &ExternalId,
    status: Option<&StatusMap>,
    result: Option<&ResultSpec>,
    error: Option<&JsonPath>,
    http_status: TokenStream,
) -> TokenStream {
    let has_status = status.is_some();
    let external_id = match external_id {
        ExternalId::Path(path) => {
            let p = json_path(path);
            let text = &path.text;
            let require = quote!(::std::option::Option::Some(__rt::require_id(#endpoint, body, #p, #text)?));
            // A reply that says the call failed may carry no id: its error
            // message is what the call must end with.
            if has_status {
                quote! {
                    match status {
                        ::std::option::Option::Some(::integration_runtime::RemoteStatus::Failed) => __rt::extract_id(body, #p),
                        _ => #require,
                    }
                }
            } else {
                require
            }
        }
        ExternalId::OptionalPath(path) => {
            let p = json_path(path);
            quote!(__rt::extract_id(body, #p))
        }
        ExternalId::Generated => quote!(::std::option::Option::None),
    };
    let status = match status {
        Some(s) => {
            let p = json_path(&s.path);
            let text = &s.path.text;
            let entries = s.map.iter().map(|(external, status)| {
                let status = match status {
                    RemoteStatus::Processing => quote!(::integration_runtime::RemoteStatus::Processing),
                    RemoteStatus::Completed => quote!(::integration_runtime::RemoteStatus::Completed),
                    RemoteStatus::Failed => quote!(::integration_runtime::RemoteStatus::Failed),
                };
                quote!((#external, #status))
            });
            quote!(::std::option::Option::Some(__rt::map_status(#endpoint, body, #p, #text, &[#(#entries),*])?))
        }
        None => quote!(::std::option::Option::None),
    };
    let result = match result {
        Some(r) => {
            let fields = r.fields.iter().map(|(field, path)| {
                let p = json_path(path);
                let text = &path.text;
                quote!(__rt::FieldPath { field: #field, path: #p, text: #text })
            });
            let extract = quote!(__rt::extract(#endpoint, body, &[#(#fields),*]));
            // A result is only expected once the provider says the call completed.
            if has_status {
                quote! {
                    match status {
                        ::std::option::Option::Some(::integration_runtime::RemoteStatus::Completed) => ::std::option::Option::Some(#extract?),
                        _ => ::std::option::Option::None,
                    }
                }
            } else {
                quote!(::std::option::Option::Some(#extract?))
            }
        }
        None => quote!(::std::option::Option::None),
    };
    let error = match error {
        Some(p) => {
            let p = json_path(p);
            quote!(__rt::extract_message(body, #p))
        }
        None => quote!(::std::option::Option::None),
    };
    quote! {{
        let status = #status;
        let external_id = #external_id;
        let result = #result;
        ::integration_runtime::Reply {
            http_status: #http_status,
            external_id,
            status,
            result,
            error: #error,
        }
    }}
}

/// The JSON value of one mapping, `Null` when an optional field is absent.
fn mapping_value(value: &MappingValue) -> TokenStream {
    let read = |name: &str| {
        let f = ident(name);
        quote!(__rt::to_value(&request.#f))
    };
    match value {
        MappingValue::Field(name) => read(name),
        MappingValue::Constant(c) => constant_value(c),
        MappingValue::Template(parts) => {
            let fields: Vec<&String> = parts
                .iter()
                .filter_map(|p| match p {
                    TemplatePart::Field(f) => Some(f),
                    TemplatePart::Literal(_) => None,
                })
                .collect();
            let reads = fields.iter().map(|f| read(f));
            let mut format = String::new();
            for part in parts {
                match part {
                    TemplatePart::Literal(text) => format.push_str(&text.replace('{', "{{").replace('}', "}}")),
                    TemplatePart::Field(_) => format.push_str("{}"),
                }
            }
            let indices = (0..fields.len()).map(syn::Index::from);
            quote! {{
                let values = [#(#reads),*];
                if values.iter().any(|v| v.is_null()) {
                    __rt::serde_json::Value::Null
                } else {
                    __rt::serde_json::Value::String(::std::format!(#format, #(__rt::display_value(&values[#indices])),*))
                }
            }}
        }
        MappingValue::ValueMap { field, map } => {
            let source = read(field);
            let arms = map.iter().map(|(from, to)| {
                let to = constant_value(to);
                quote!(#from => #to,)
            });
            quote! {{
                let value = #source;
                if value.is_null() {
                    __rt::serde_json::Value::Null
                } else {
                    match __rt::display_value(&value).as_str() {
                        #(#arms)*
                        _ => __rt::serde_json::Value::Null,
                    }
                }
            }}
        }
        MappingValue::WithDefault { field, default } => {
            let source = read(field);
            let default = constant_value(default);
            quote! {{
                let value = #source;
                if value.is_null() { #default } else { value }
            }}
        }
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
    let call_endpoints: Vec<&Endpoint> = spec.call_endpoints().collect();
    let validate_arms = call_endpoints.iter().map(|e| {
        let name = &e.name;
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        quote! {
            #name => {
                let request: #entity = __rt::serde_json::from_value(params.clone())
                    .map_err(|e| __rt::invalid_params(#name, &e))?;
                request.validate().map_err(|e| __rt::invalid_request(#name, e))
            }
        }
    });
    let start_arms = call_endpoints.iter().map(|e| {
        let name = &e.name;
        let method = ident(&e.name);
        let entity = format_ident!("{}", e.request.as_deref().unwrap_or_default());
        quote! {
            #name => {
                let request: #entity = __rt::serde_json::from_value(params.clone())
                    .map_err(|e| __rt::invalid_params(#name, &e))?;
                ::std::result::Result::Ok(self.client.#method(&request, options).await?.into_json())
            }
        }
    });
    let poll = match &spec.polling {
        Some(polling) => {
            let method = ident(&polling.endpoint);
            quote! {
                ::std::option::Option::Some(::std::boxed::Box::pin(async move {
                    ::std::result::Result::Ok(self.client.#method(external_id).await?.into_json())
                }))
            }
        }
        None => quote!({
            let _ = external_id;
            ::std::option::Option::None
        }),
    };
    let webhook = match &spec.webhook {
        Some(w) => {
            let reply = reply_expr(
                "webhook",
                // The receiver refuses a delivery without an id itself (422).
                &ExternalId::OptionalPath(w.external_id.clone()),
                Some(&w.status),
                w.result.as_ref(),
                w.error.as_ref(),
                quote!(200),
            );
            let result_ty = w.result.as_ref().map_or_else(
                || quote!(()),
                |r| {
                    let e = format_ident!("{}", r.entity);
                    quote!(#e)
                },
            );
            quote! {
                let read = || -> ::std::result::Result<::integration_runtime::Reply<#result_ty>, ::integration_runtime::ClientError> {
                    let body = payload;
                    ::std::result::Result::Ok(#reply)
                };
                ::std::option::Option::Some(read().map(::integration_runtime::Reply::into_json))
            }
        }
        None => quote!({
            let _ = payload;
            ::std::option::Option::None
        }),
    };
    let webhook_secret = spec.webhook.as_ref().map(|_| {
        quote! {
            fn webhook_secret(&self) -> ::std::option::Option<::integration_runtime::Secret> {
                ::std::option::Option::Some(self.config.webhook_secret.clone())
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
            pub fn new(config: #config) -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
                let client = #client::new(&config)?;
                ::std::result::Result::Ok(#integration { config, client })
            }

            /// The integration configured from the environment; every missing
            /// variable is reported at once, with what it is for.
            pub fn from_env() -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
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
            pub fn with_reqwest_client(mut self, client: ::integration_runtime::reqwest::Client) -> Self {
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
            pub fn descriptor() -> &'static ::integration_runtime::IntegrationDescriptor {
                &__DESCRIPTOR
            }
        }

        impl ::integration_runtime::Integration for #integration {
            fn descriptor(&self) -> &'static ::integration_runtime::IntegrationDescriptor {
                &__DESCRIPTOR
            }

            fn validate(&self, endpoint: &str, params: &__rt::serde_json::Value) -> ::std::result::Result<(), ::integration_runtime::ClientError> {
                match endpoint {
                    #(#validate_arms)*
                    _ => ::std::result::Result::Err(__rt::unknown_endpoint(#integration_name, endpoint)),
                }
            }

            fn start<'a>(
                &'a self,
                endpoint: &'a str,
                params: &'a __rt::serde_json::Value,
                options: &'a ::integration_runtime::CallOptions,
            ) -> ::integration_runtime::BoxFuture<'a, ::std::result::Result<::integration_runtime::Reply<__rt::serde_json::Value>, ::integration_runtime::ClientError>> {
                ::std::boxed::Box::pin(async move {
                    let _ = (params, options);
                    match endpoint {
                        #(#start_arms)*
                        _ => ::std::result::Result::Err(__rt::unknown_endpoint(#integration_name, endpoint)),
                    }
                })
            }

            fn poll<'a>(
                &'a self,
                external_id: &'a str,
            ) -> ::std::option::Option<::integration_runtime::BoxFuture<'a, ::std::result::Result<::integration_runtime::Reply<__rt::serde_json::Value>, ::integration_runtime::ClientError>>> {
                #poll
            }

            fn read_webhook(
                &self,
                payload: &__rt::serde_json::Value,
            ) -> ::std::option::Option<::std::result::Result<::integration_runtime::Reply<__rt::serde_json::Value>, ::integration_runtime::ClientError>> {
                #webhook
            }

            fn circuit_states(&self) -> ::std::vec::Vec<(::std::string::String, ::integration_runtime::CircuitState)> {
                self.client.http.circuit_states()
            }

            #webhook_secret
        }
    }
}
