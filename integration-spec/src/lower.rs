//! Lowering: from the parsed TOML tree to the validated model.
//!
//! Each section has one function that reads its keys, reports what is wrong
//! with precise spans and carries on with a placeholder, so every mistake in
//! the spec is found in one pass. Rules that relate sections live in
//! [`crate::check`].

use toml::de::{DeTable, DeValue};

use crate::check;
use crate::diagnostic::{Collector, Diagnostics};
use crate::ir::*;
use crate::jsonpath::JsonPath;
use crate::read::{constant, join, kind_of, string, Entry, Table};

const TOP_KEYS: &[&str] = &[
    "integration",
    "auth",
    "entities",
    "endpoints",
    "polling",
    "webhook",
    "policy",
];
const INTEGRATION_KEYS: &[&str] = &["name", "description", "base_url"];
const FIELD_KEYS: &[&str] = &[
    "type", "optional", "default", "values", "items", "min_len", "max_len", "min", "max", "doc",
];
const ENDPOINT_KEYS: &[&str] = &[
    "method",
    "path",
    "request",
    "mode",
    "encoding",
    "query",
    "headers",
    "body",
    "external_id",
    "status",
    "result",
    "error",
    "idempotent",
    "idempotency_key",
    "policy",
    "items",
    "paginate",
];
const PAGINATE_KEYS: &[&str] = &[
    "style",
    "cursor",
    "header",
    "param",
    "limit_param",
    "limit",
    "start",
    "size_param",
    "size",
];
const PAGINATION_STYLES: &[&str] = &["cursor", "cursor_header", "offset", "page", "link"];
const POLICY_KEYS: &[&str] = &[
    "timeout_ms",
    "connect_timeout_ms",
    "retry",
    "circuit_breaker",
    "rate_limit",
    "concurrency",
    "max_response_bytes",
    "redirects",
];
const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "initial_backoff_ms",
    "max_backoff_ms",
    "multiplier",
    "on",
];
const RETRY_CLASSES: &[&str] = &["5xx", "429", "timeout", "connect", "transport", "too_large"];
const REDIRECT_POLICIES: &[&str] = &["none", "same_origin", "any_origin"];
const BUILTIN_TYPES: &[&str] = &[
    "string",
    "int",
    "float",
    "bool",
    "timestamp",
    "uuid",
    "json",
    "enum",
    "list",
];

/// Parses and validates a spec. `file` names it in diagnostics.
pub fn parse(source: &str, file: &str) -> Result<Spec, Diagnostics> {
    let mut cx = Collector::default();
    let (document, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        // A broken document would only produce confusing follow-up errors.
        for error in errors {
            cx.error(
                error.span().unwrap_or(0..0),
                "",
                format!("invalid TOML: {}", error.message().trim()),
            )
            .help("fix the TOML syntax (https://toml.io)");
        }
        return Err(cx.into_diagnostics(file, source));
    }
    let root = Table {
        path: "",
        span: (0..0).into(),
        entries: document.get_ref(),
    };
    root.reject_unknown(&mut cx, TOP_KEYS);
    let spec = Lower { cx: &mut cx }.spec(root);
    if cx.has_errors() {
        Err(cx.into_diagnostics(file, source))
    } else {
        Ok(spec)
    }
}

struct Lower<'c> {
    cx: &'c mut Collector,
}

impl Lower<'_> {
    fn spec(&mut self, root: Table<'_, '_>) -> Spec {
        let integration = self.integration(root);
        let auth = root.get("auth").map_or(Auth::None, |e| self.auth(e));
        let entities = self.entities(root);
        check::no_infinite_entities(self.cx, &entities);
        check::generated_names_are_free(self.cx, &integration, &entities);
        let policy = match root.table(self.cx, "policy", "policy", POLICY_KEYS) {
            Some(t) => self.policy(t, Policy::default()),
            None => Policy::default(),
        };
        let api_key_query = match &auth {
            Auth::ApiKey {
                location: ApiKeyLocation::Query,
                name,
                ..
            } => Some(name.as_str()),
            _ => None,
        };
        let (mut endpoints, external_ids_given) = self.endpoints(root, &entities, &policy, api_key_query);
        let polling = root
            .table(
                self.cx,
                "polling",
                "polling",
                &[
                    "endpoint",
                    "interval_ms",
                    "backoff",
                    "max_interval_ms",
                    "give_up_after_s",
                ],
            )
            .and_then(|t| self.polling(t, &endpoints));
        let webhook = root.get("webhook").and_then(|e| self.webhook(e, &entities));
        if let Some(e) = root.get("webhook") {
            check::async_results_agree(
                self.cx,
                polling.as_ref(),
                &endpoints,
                webhook.as_ref(),
                e.key_span.into(),
            );
        }
        self.start_results(&mut endpoints, polling.as_ref(), webhook.as_ref());
        for (endpoint, given) in endpoints.iter().zip(external_ids_given) {
            // Presence, not validity: a broken `[webhook]` was reported already.
            check::async_endpoint_can_finish(
                self.cx,
                endpoint,
                root.get("polling").is_some(),
                root.get("webhook").is_some(),
                given,
            );
            check::retry_needs_idempotency(self.cx, endpoint);
            check::idempotency_key_fits(self.cx, endpoint);
        }
        Spec {
            integration,
            auth,
            entities,
            endpoints,
            polling,
            webhook,
            policy,
        }
    }

    /// An async start reply can end the call (every status map has a
    /// `completed` state), so it must yield the call's result or the result
    /// is lost. A start endpoint with `status` but no `result` reads it as the
    /// polling endpoint (or, failing that, the webhook) does when its status
    /// is at the same JSON path: the replies are then the same object. When
    /// it is not, the reply's shape is unknown and `result` is required.
    fn start_results(&mut self, endpoints: &mut [Endpoint], polling: Option<&Polling>, webhook: Option<&Webhook>) {
        let polled = polling
            .and_then(|p| endpoints.iter().find(|e| e.name == p.endpoint))
            .and_then(|e| Some((e.status.as_ref()?.path.clone(), e.result.clone()?)));
        let pushed = webhook.and_then(|w| Some((w.status.path.clone(), w.result.clone()?)));
        let Some(entity) = polled.as_ref().or(pushed.as_ref()).map(|(_, r)| r.entity.clone()) else {
            // No result anywhere: the call ends without data by design.
            return;
        };
        for endpoint in endpoints
            .iter_mut()
            .filter(|e| e.mode == Mode::Async && e.starts_calls())
        {
            let Some(status) = &endpoint.status else { continue };
            if let Some(own) = &endpoint.result {
                check::start_result_is_the_calls(self.cx, endpoint, &own.entity, &entity);
                continue;
            }
            let same_reply = [&polled, &pushed]
                .into_iter()
                .flatten()
                .find(|(path, _)| path.segments == status.path.segments);
            match same_reply {
                Some((_, result)) => endpoint.result = Some(result.clone()),
                None => check::start_reply_needs_result(self.cx, endpoint, &entity),
            }
        }
    }

    fn integration(&mut self, root: Table<'_, '_>) -> Integration {
        let placeholder = Integration {
            name: "Integration".into(),
            name_span: 0..0,
            description: None,
            base_url: BaseUrl::Literal(String::new()),
        };
        let Some(entry) = root.require(self.cx, "integration", "add `[integration]` with `name` and `base_url`") else {
            return placeholder;
        };
        let Some(t) = Table::new(
            self.cx,
            "integration",
            entry.key_span.into(),
            entry.value,
            INTEGRATION_KEYS,
        ) else {
            return placeholder;
        };
        let (name, name_span) = match t.require_str(
            self.cx,
            "name",
            "add `name = \"MyApi\"`; generated types are named after it",
        ) {
            Some((name, span)) => {
                check::pascal_case(self.cx, name, span.clone(), "integration.name", "integration name");
                (name.to_owned(), span)
            }
            None => (placeholder.name, placeholder.name_span),
        };
        let description = t.str(self.cx, "description").map(|(d, _)| d.to_owned());
        let base_url = t
            .require(self.cx, "base_url", "add `base_url = \"https://api.example.com\"` or `base_url = { env = \"API_BASE_URL\", default = \"https://...\" }`")
            .and_then(|e| self.url_setting(e, "integration.base_url", "API_BASE_URL"))
            .unwrap_or(placeholder.base_url);
        Integration {
            name,
            name_span,
            description,
            base_url,
        }
    }

    /// A URL setting: a literal, or `{ env, default, purpose }`.
    fn url_setting(&mut self, e: Entry<'_, '_>, key_path: &str, example_var: &str) -> Option<BaseUrl> {
        if let DeValue::String(url) = e.value.get_ref() {
            self.url(url, e.span(), key_path);
            return Some(BaseUrl::Literal(url.to_string()));
        }
        let t = Table::new(
            self.cx,
            key_path,
            e.key_span.into(),
            e.value,
            &["env", "default", "purpose"],
        )?;
        let (var, span) = t.require_str(self.cx, "env", &format!("add `env = \"{example_var}\"`"))?;
        check::env_var_name(self.cx, var, span, &join(key_path, "env"));
        let default = t.str(self.cx, "default").map(|(url, span)| {
            self.url(url, span, &join(key_path, "default"));
            url.to_owned()
        });
        let purpose = t.str(self.cx, "purpose").map(|(p, _)| p.to_owned());
        Some(BaseUrl::Env {
            var: var.to_owned(),
            default,
            purpose,
        })
    }

    fn url(&mut self, url: &str, span: Span, key_path: &str) {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
            self.cx
                .error(span, key_path, format!("`{url}` is not an http(s) URL"))
                .help("write the full URL, e.g. `https://api.example.com`");
        }
    }

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

    fn required_secret(&mut self, t: Table<'_, '_>, key: &str) -> Option<SecretRef> {
        t.require(
            self.cx,
            key,
            &format!("add `{key} = {{ env = \"VARIABLE_NAME\", purpose = \"...\" }}`"),
        )
        .and_then(|e| self.secret(e))
    }

    fn auth(&mut self, e: Entry<'_, '_>) -> Auth {
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

    fn string_list(&mut self, t: Table<'_, '_>, key: &str) -> Vec<String> {
        let Some(e) = t.get(key) else { return Vec::new() };
        let DeValue::Array(items) = e.value.get_ref() else {
            self.cx.error(
                e.span(),
                e.key_path(),
                format!(
                    "`{key}` must be a list of strings, found {}",
                    kind_of(e.value.get_ref())
                ),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                other => {
                    self.cx.error(
                        item.span(),
                        e.key_path(),
                        format!("`{key}` items must be strings, found {}", kind_of(other)),
                    );
                    None
                }
            })
            .collect()
    }

    fn entities(&mut self, root: Table<'_, '_>) -> Vec<Entity> {
        let Some(e) = root.get("entities") else {
            return Vec::new();
        };
        let DeValue::Table(all) = e.value.get_ref() else {
            self.cx.error(
                e.span(),
                "entities",
                "`entities` must be a table of entities, e.g. `[entities.Order]`",
            );
            return Vec::new();
        };
        let names: Vec<String> = all.iter().map(|(k, _)| k.get_ref().to_string()).collect();
        let mut entities = Vec::new();
        for (key, value) in all.iter() {
            let name = key.get_ref().as_ref();
            let path = join("entities", name);
            check::pascal_case(self.cx, name, key.span(), &path, "entity name");
            let Some(t) = Table::open(self.cx, &path, key.span(), value) else {
                continue;
            };
            let fields = t.entries().filter_map(|f| self.field(f, &names)).collect();
            entities.push(Entity {
                name: name.to_owned(),
                span: key.span(),
                fields,
            });
        }
        entities
    }

    fn field(&mut self, e: Entry<'_, '_>, entity_names: &[String]) -> Option<Field> {
        let key_path = e.key_path();
        let errors_before = self.cx.len();
        check::snake_case(self.cx, e.key, e.key_span.into(), &key_path, "field name");
        // A badly named field is kept under the name the error suggests, so
        // mappings written with that name do not report it again.
        let name = if self.cx.len() > errors_before {
            check::to_snake(e.key)
        } else {
            e.key.to_owned()
        };
        let mut field = Field {
            name,
            span: e.key_span.into(),
            ty: Type::Json,
            optional: false,
            default: None,
            doc: None,
            len: Bounds::default(),
            int_range: Bounds::default(),
            float_range: Bounds::default(),
            recovered: self.cx.len() > errors_before,
        };
        // From here on, a declaration error keeps the field as `json` and
        // marks it recovered: its other uses are then not reported again.
        let recover = |mut field: Field| {
            field.ty = Type::Json;
            field.recovered = true;
            Some(field)
        };
        if let DeValue::String(shorthand) = e.value.get_ref() {
            if matches!(shorthand.as_ref(), "enum" | "list") {
                let needs = if shorthand == "enum" {
                    "values = [\"a\", \"b\"]"
                } else {
                    "items = \"string\""
                };
                self.cx
                    .error(e.span(), key_path, format!("`{shorthand}` needs more than a type name"))
                    .help(format!("write `{} = {{ type = \"{shorthand}\", {needs} }}`", e.key));
                return recover(field);
            }
            return match self.type_name(shorthand, e.span(), &key_path, entity_names) {
                Some(ty) => {
                    field.ty = ty;
                    Some(field)
                }
                None => recover(field),
            };
        }
        let Some(t) = Table::new(self.cx, &key_path, e.key_span.into(), e.value, FIELD_KEYS) else {
            return recover(field);
        };
        let Some(ty) = self.field_type(t, &key_path, entity_names) else {
            return recover(field);
        };
        field.ty = ty;
        for (key, applies) in [
            ("values", matches!(field.ty, Type::Enum(_))),
            ("items", matches!(field.ty, Type::List(_))),
        ] {
            if let Some(extra) = t.get(key).filter(|_| !applies) {
                self.cx
                    .error(
                        extra.key_span.into(),
                        extra.key_path(),
                        format!("`{key}` does not apply to type {}", field.ty.spec_name()),
                    )
                    .help(format!("remove `{key}`"));
            }
        }
        field.optional = t.bool(self.cx, "optional").unwrap_or(false);
        field.doc = t.str(self.cx, "doc").map(|(d, _)| d.to_owned());
        self.constraints(t, &mut field, &key_path);
        if let Some(d) = t.get("default") {
            field.default = self.default_value(d, &field);
            if field.optional {
                self.cx
                    .error(
                        d.key_span.into(),
                        d.key_path(),
                        format!("field `{}` has a default and is optional", field.name),
                    )
                    .help("a field with a default is never absent; remove `optional = true`");
            }
        }
        Some(field)
    }

    fn field_type(&mut self, t: Table<'_, '_>, key_path: &str, entity_names: &[String]) -> Option<Type> {
        let (ty_name, ty_span) = t.require_str(
            self.cx,
            "type",
            "add `type = \"string\"` (or int, float, bool, timestamp, uuid, json, enum, list, or an entity name)",
        )?;
        Some(match ty_name {
            "enum" => Type::Enum(self.enum_values(t)?),
            "list" => {
                let (item, item_span) =
                    t.require_str(self.cx, "items", "add `items = \"string\"` (the type of each item)")?;
                if matches!(item, "list" | "enum") {
                    self.cx
                        .error(
                            item_span,
                            join(key_path, "items"),
                            format!("list items cannot be `{item}` directly"),
                        )
                        .help("declare an entity for the item and use its name");
                    return None;
                }
                Type::List(Box::new(self.type_name(
                    item,
                    item_span,
                    &join(key_path, "items"),
                    entity_names,
                )?))
            }
            other => self.type_name(other, ty_span, &join(key_path, "type"), entity_names)?,
        })
    }

    fn type_name(&mut self, name: &str, span: Span, key_path: &str, entity_names: &[String]) -> Option<Type> {
        Some(match name {
            "string" => Type::String,
            "int" => Type::Int,
            "float" => Type::Float,
            "bool" => Type::Bool,
            "timestamp" => Type::Timestamp,
            "uuid" => Type::Uuid,
            "json" => Type::Json,
            entity if entity_names.iter().any(|n| n == entity) => Type::Entity(entity.to_owned()),
            unknown => {
                self.cx
                    .error(span, key_path, format!("unknown type `{unknown}`"))
                    .expected_one_of(
                        unknown,
                        BUILTIN_TYPES
                            .iter()
                            .copied()
                            .chain(entity_names.iter().map(String::as_str)),
                    );
                return None;
            }
        })
    }

    fn enum_values(&mut self, t: Table<'_, '_>) -> Option<Vec<String>> {
        let e = t.require(self.cx, "values", "add `values = [\"first\", \"second\"]`")?;
        let values = self.string_list(t, "values");
        if values.is_empty() {
            self.cx
                .error(e.span(), e.key_path(), "an enum needs at least one value")
                .help("list the allowed values");
            return None;
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                self.cx
                    .error(e.span(), e.key_path(), format!("enum value `{v}` is listed twice"))
                    .help("remove the duplicate");
            }
            if let Some(other) = values[..i]
                .iter()
                .find(|o| *o != v && check::to_pascal(o) == check::to_pascal(v))
            {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!(
                            "enum values `{other}` and `{v}` both become the Rust variant `{}`",
                            check::to_pascal(v)
                        ),
                    )
                    .help("enum values must differ in more than punctuation and case");
            }
            if check::to_pascal(v) == "Self" {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("enum value `{v}` would name the variant `Self`, which Rust reserves"),
                    )
                    .help("enum values must not spell `self` in any case");
            }
            if check::to_pascal(v).is_empty() || check::to_pascal(v).starts_with(|c: char| c.is_ascii_digit()) {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("enum value `{v}` cannot name a Rust variant"),
                    )
                    .help("enum values must contain a letter before any digit");
            }
        }
        Some(values)
    }

    fn constraints(&mut self, t: Table<'_, '_>, field: &mut Field, key_path: &str) {
        let is_len = matches!(field.ty, Type::String | Type::List(_));
        for key in ["min_len", "max_len"] {
            if let Some(e) = t.get(key) {
                if !is_len {
                    self.cx
                        .error(
                            e.key_span.into(),
                            e.key_path(),
                            format!(
                                "`{key}` applies to string and list fields, not {}",
                                field.ty.spec_name()
                            ),
                        )
                        .help(if matches!(field.ty, Type::Int | Type::Float) {
                            "use `min` / `max` for numbers"
                        } else {
                            "remove it"
                        });
                }
            }
        }
        field.len = Bounds {
            min: t.u64(self.cx, "min_len"),
            max: t.u64(self.cx, "max_len"),
        };
        check::bounds_ordered(
            self.cx,
            field.len.min,
            field.len.max,
            field.span.clone(),
            key_path,
            "length",
        );
        match field.ty {
            Type::Int => {
                let read = |this: &mut Self, key| {
                    let e = t.get(key)?;
                    match constant(e.value.get_ref()) {
                        Some(Constant::Int(i)) => Some(i),
                        _ => {
                            this.cx.error(
                                e.span(),
                                e.key_path(),
                                format!("`{key}` of an int field must be an integer"),
                            );
                            None
                        }
                    }
                };
                field.int_range = Bounds {
                    min: read(self, "min"),
                    max: read(self, "max"),
                };
                check::bounds_ordered(
                    self.cx,
                    field.int_range.min,
                    field.int_range.max,
                    field.span.clone(),
                    key_path,
                    "range",
                );
            }
            Type::Float => {
                field.float_range = Bounds {
                    min: t.number(self.cx, "min"),
                    max: t.number(self.cx, "max"),
                };
                check::bounds_ordered(
                    self.cx,
                    field.float_range.min,
                    field.float_range.max,
                    field.span.clone(),
                    key_path,
                    "range",
                );
            }
            _ => {
                for key in ["min", "max"] {
                    if let Some(e) = t.get(key) {
                        self.cx
                            .error(
                                e.key_span.into(),
                                e.key_path(),
                                format!("`{key}` applies to int and float fields, not {}", field.ty.spec_name()),
                            )
                            .help(if is_len {
                                "use `min_len` / `max_len` for lengths"
                            } else {
                                "remove it"
                            });
                    }
                }
            }
        }
    }

    fn default_value(&mut self, e: Entry<'_, '_>, field: &Field) -> Option<Constant> {
        let value = constant(e.value.get_ref());
        let fits = match (&field.ty, &value) {
            (Type::String, Some(Constant::String(_)))
            | (Type::Int, Some(Constant::Int(_)))
            | (Type::Bool, Some(Constant::Bool(_))) => true,
            (Type::Float, Some(Constant::Float(_))) => true,
            (Type::Float, Some(Constant::Int(i))) => return Some(Constant::Float(*i as f64)),
            (Type::Enum(values), Some(Constant::String(s))) => {
                if !values.contains(s) {
                    self.cx
                        .error(
                            e.span(),
                            e.key_path(),
                            format!("default `{s}` is not one of the enum's values"),
                        )
                        .expected_one_of(s, values.iter().map(String::as_str));
                    return None;
                }
                true
            }
            (Type::String | Type::Int | Type::Float | Type::Bool | Type::Enum(_), _) => false,
            (other, _) => {
                self.cx
                    .error(
                        e.span(),
                        e.key_path(),
                        format!("fields of type {} cannot have a default", other.spec_name()),
                    )
                    .help("defaults are supported for string, int, float, bool and enum fields; use `optional = true`");
                return None;
            }
        };
        if !fits {
            self.cx
                .error(
                    e.span(),
                    e.key_path(),
                    format!(
                        "default of `{}` must be {}, found {}",
                        field.name,
                        field.ty.spec_name(),
                        kind_of(e.value.get_ref())
                    ),
                )
                .help("write a value of the field's type");
            return None;
        }
        value
    }

    fn endpoints(
        &mut self,
        root: Table<'_, '_>,
        entities: &[Entity],
        integration_policy: &Policy,
        api_key_query: Option<&str>,
    ) -> (Vec<Endpoint>, Vec<bool>) {
        let Some(e) = root.require(
            self.cx,
            "endpoints",
            "add at least one endpoint, e.g. `[endpoints.create]` with `method` and `path`",
        ) else {
            return (Vec::new(), Vec::new());
        };
        let DeValue::Table(all) = e.value.get_ref() else {
            self.cx.error(
                e.span(),
                "endpoints",
                "`endpoints` must be a table of endpoints, e.g. `[endpoints.create]`",
            );
            return (Vec::new(), Vec::new());
        };
        let mut endpoints = Vec::new();
        let mut external_ids_given = Vec::new();
        for (key, value) in all.iter() {
            let name = key.get_ref().as_ref();
            let path = join("endpoints", name);
            check::snake_case(self.cx, name, key.span(), &path, "endpoint name");
            let Some(t) = Table::new(self.cx, &path, key.span(), value, ENDPOINT_KEYS) else {
                continue;
            };
            if let Some((endpoint, given)) =
                self.endpoint(name, key.span(), t, entities, integration_policy, api_key_query)
            {
                endpoints.push(endpoint);
                external_ids_given.push(given);
            }
        }
        (endpoints, external_ids_given)
    }

    fn endpoint(
        &mut self,
        name: &str,
        span: Span,
        t: Table<'_, '_>,
        entities: &[Entity],
        integration_policy: &Policy,
        api_key_query: Option<&str>,
    ) -> Option<(Endpoint, bool)> {
        let path = t.path;
        let method = match t.require_str(
            self.cx,
            "method",
            "add `method = \"POST\"` (or GET, PUT, PATCH, DELETE)",
        ) {
            Some((m, span)) => match m.to_ascii_uppercase().as_str() {
                "GET" => Some(Method::Get),
                "POST" => Some(Method::Post),
                "PUT" => Some(Method::Put),
                "PATCH" => Some(Method::Patch),
                "DELETE" => Some(Method::Delete),
                _ => {
                    self.cx
                        .error(span, join(path, "method"), format!("unknown HTTP method `{m}`"))
                        .expected_one_of(&m.to_ascii_uppercase(), ["GET", "POST", "PUT", "PATCH", "DELETE"]);
                    None
                }
            },
            None => None,
        };
        let request = match t.get("request") {
            None => check::Request::Absent,
            Some(e) => match string(self.cx, e) {
                None => check::Request::Unresolved,
                Some((r, span)) => match entities.iter().find(|e| e.name == r) {
                    Some(entity) => check::Request::Entity(entity),
                    None => {
                        self.cx
                            .error(span, join(path, "request"), format!("unknown entity `{r}`"))
                            .expected_one_of(r, entities.iter().map(|e| e.name.as_str()));
                        check::Request::Unresolved
                    }
                },
            },
        };
        let has_request = !matches!(request, check::Request::Absent);
        let mode = match t.str(self.cx, "mode") {
            None | Some(("sync", _)) => Mode::Sync,
            Some(("async", _)) => Mode::Async,
            Some((other, span)) => {
                self.cx
                    .error(span, join(path, "mode"), format!("unknown mode `{other}`"))
                    .expected_one_of(other, ["sync", "async"]);
                Mode::Sync
            }
        };
        // On a list endpoint, `mode = "async"` is reported by the list rules.
        if let (Mode::Async, false, Some(e), None) = (mode, has_request, t.get("mode"), t.get("paginate")) {
            self.cx
                .error(
                    e.span(),
                    join(path, "mode"),
                    "`mode = \"async\"` applies to endpoints that start calls",
                )
                .help("add `request = \"...\"`, or remove `mode` from this status-query endpoint");
        }
        let encoding = match t.str(self.cx, "encoding") {
            None | Some(("json", _)) => Encoding::Json,
            Some(("form", _)) => Encoding::Form,
            Some((other, span)) => {
                self.cx
                    .error(span, join(path, "encoding"), format!("unknown body encoding `{other}`"))
                    .expected_one_of(other, ["json", "form"]);
                Encoding::Json
            }
        };
        let (path_parts, path_text) = match t.require_str(self.cx, "path", "add `path = \"/v1/resource\"`") {
            Some((p, span)) => (self.path_template(p, span, &join(path, "path"), request), p.to_owned()),
            None => (Vec::new(), String::new()),
        };
        let query = self.mappings(t, "query", request, false);
        let headers = self.mappings(t, "headers", request, true);
        let body = self.mappings(t, "body", request, false);
        if let (Some(method), Some(e)) = (method, t.get("body")) {
            check::body_allowed(self.cx, method, e.key_span.into(), &e.key_path());
        }
        let external_id_entry = t.get("external_id");
        let external_id = external_id_entry.map_or(ExternalId::Generated, |e| self.external_id(e, mode));
        // An invalid path was reported already; it still counts as given.
        let external_id_given = match external_id_entry {
            Some(e) => e.value.get_ref().as_str() != Some("generated"),
            None => mode == Mode::Sync,
        };
        let status = t.get("status").and_then(|e| self.status_map(e));
        let result = t.get("result").and_then(|e| self.result(e, entities));
        let error = t
            .str(self.cx, "error")
            .and_then(|(text, span)| self.json_path(text, span, &join(path, "error")));
        let method = method.unwrap_or(Method::Get);
        let idempotent = t
            .bool(self.cx, "idempotent")
            .unwrap_or(matches!(method, Method::Get | Method::Put | Method::Delete));
        let idempotency_key = t.get("idempotency_key").and_then(|e| self.idempotency_key(e));
        let policy_path = join(path, "policy");
        let policy = match t.table(self.cx, "policy", &policy_path, POLICY_KEYS) {
            Some(p) => self.policy(p, integration_policy.clone()),
            None => integration_policy.clone(),
        };
        let list = self.list(name, t, entities, &query, api_key_query);
        // A list endpoint finishes nothing later; `mode = "async"` was reported.
        let mode = if list.is_some() { Mode::Sync } else { mode };
        let endpoint = Endpoint {
            name: name.to_owned(),
            span,
            method,
            path: path_parts,
            path_text,
            request: match request {
                check::Request::Entity(entity) => Some(entity.name.clone()),
                // Keep the endpoint a call endpoint so no follow-up rule misfires.
                check::Request::Unresolved => Some(String::new()),
                check::Request::Absent => None,
            },
            mode,
            encoding,
            query,
            headers,
            body,
            external_id,
            status,
            result,
            error,
            idempotent,
            idempotency_key,
            policy,
            list,
        };
        Some((endpoint, external_id_given))
    }

    /// `external_id`: `"generated"`, a JSON path, or `{ path, optional }`.
    /// A broken value was reported; it lowers to `Generated`.
    fn external_id(&mut self, e: Entry<'_, '_>, mode: Mode) -> ExternalId {
        if !matches!(e.value.get_ref(), DeValue::Table(_)) {
            return match string(self.cx, e) {
                Some(("generated", _)) | None => ExternalId::Generated,
                Some((text, span)) => self
                    .json_path(text, span, &e.key_path())
                    .map_or(ExternalId::Generated, ExternalId::Path),
            };
        }
        let key_path = e.key_path();
        let Some(t) = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["path", "optional"]) else {
            return ExternalId::Generated;
        };
        let path = t
            .require_str(self.cx, "path", "add `path = \"$.id\"` (where the provider's id is)")
            .and_then(|(text, span)| self.json_path(text, span, &join(&key_path, "path")));
        let optional = t.bool(self.cx, "optional").unwrap_or(false);
        if let (true, Mode::Async, Some(o)) = (optional, mode, t.get("optional")) {
            check::optional_id_is_sync(self.cx, o.span(), &o.key_path());
        }
        match path {
            Some(path) if optional => ExternalId::OptionalPath(path),
            Some(path) => ExternalId::Path(path),
            None => ExternalId::Generated,
        }
    }

    /// `items` and `paginate`: what makes an endpoint a list endpoint. A broken
    /// `paginate` still makes one (with placeholders), so rules about call
    /// endpoints do not misfire on it.
    fn list(
        &mut self,
        name: &str,
        t: Table<'_, '_>,
        entities: &[Entity],
        query: &[Mapping],
        api_key_query: Option<&str>,
    ) -> Option<List> {
        let items = t.get("items");
        let Some(paginate) = t.get("paginate") else {
            if let Some(items) = items {
                check::items_need_paginate(self.cx, name, items.key_span.into(), &items.key_path());
            }
            return None;
        };
        for key in ["mode", "result", "status", "external_id", "idempotency_key"] {
            let Some(e) = t.get(key) else { continue };
            if key == "mode" && e.value.get_ref().as_str() != Some("async") {
                continue;
            }
            check::list_endpoint_excludes(self.cx, name, key, e.key_span.into(), &e.key_path());
        }
        if items.is_none() {
            check::paginate_needs_items(self.cx, name, paginate.key_span.into(), t.path);
        }
        let items = items.and_then(|e| self.items(e, entities));
        let pagination = self.pagination(paginate);
        if let Some(p) = &pagination {
            check::pagination_params_are_free(
                self.cx,
                p,
                query,
                api_key_query,
                paginate.key_span.into(),
                &paginate.key_path(),
            );
        }
        Some(List {
            items: items.unwrap_or_else(|| Items {
                path: JsonPath::root(),
                entity: String::new(),
            }),
            paginate: pagination.unwrap_or(Pagination::Link),
        })
    }

    fn items(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<Items> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["path", "entity"])?;
        let entity = t.require_str(
            self.cx,
            "entity",
            "add `entity = \"EntityName\"` (the type of each item)",
        );
        let path = match t.str(self.cx, "path") {
            Some((text, span)) => self.json_path(text, span, &join(&key_path, "path")),
            None => Some(JsonPath::root()),
        };
        let (name, span) = entity?;
        if !entities.iter().any(|e| e.name == name) {
            self.cx
                .error(span, join(&key_path, "entity"), format!("unknown entity `{name}`"))
                .expected_one_of(name, entities.iter().map(|e| e.name.as_str()));
            return None;
        }
        Some(Items {
            path: path?,
            entity: name.to_owned(),
        })
    }

    fn pagination(&mut self, e: Entry<'_, '_>) -> Option<Pagination> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, PAGINATE_KEYS)?;
        let (style, style_span) = t.require_str(
            self.cx,
            "style",
            "add `style = \"cursor\"` (or cursor_header, offset, page, link)",
        )?;
        let style_keys: &[&str] = match style {
            "cursor" => &["cursor", "param"],
            "cursor_header" => &["header", "param"],
            "offset" => &["param", "limit_param", "limit"],
            "page" => &["param", "start", "size_param", "size"],
            "link" => &[],
            other => {
                self.cx
                    .error(
                        style_span,
                        join(&key_path, "style"),
                        format!("unknown pagination style `{other}`"),
                    )
                    .expected_one_of(other, PAGINATION_STYLES.iter().copied());
                return None;
            }
        };
        for entry in t
            .entries()
            .filter(|x| x.key != "style" && PAGINATE_KEYS.contains(&x.key))
        {
            check::pagination_key_fits_style(
                self.cx,
                style,
                style_keys,
                entry.key,
                entry.key_span.into(),
                &entry.key_path(),
            );
        }
        let query_param = |this: &mut Self, key: &str, example: &str| -> Option<String> {
            let (name, span) = t.require_str(
                this.cx,
                key,
                &format!("add `{key} = \"{example}\"` (a query parameter of the `{style}` style)"),
            )?;
            if name.is_empty() {
                this.cx
                    .error(span, join(&key_path, key), format!("`{key}` must not be empty"))
                    .help(format!("e.g. `{key} = \"{example}\"`"));
                return None;
            }
            Some(name.to_owned())
        };
        let size = |this: &mut Self, key: &str| -> Option<u64> {
            t.require(this.cx, key, &format!("add `{key} = 100` (items per page)"))?;
            t.positive(this.cx, key)
        };
        Some(match style {
            "cursor" => {
                let cursor = t
                    .require_str(
                        self.cx,
                        "cursor",
                        "add `cursor = \"$.next_cursor\"` (where the next page's cursor is in the body)",
                    )
                    .and_then(|(text, span)| self.json_path(text, span, &join(&key_path, "cursor")));
                let param = query_param(self, "param", "cursor");
                Pagination::Cursor {
                    cursor: cursor?,
                    param: param?,
                }
            }
            "cursor_header" => {
                let header = t.require_str(
                    self.cx,
                    "header",
                    "add `header = \"X-Next-Cursor\"` (the response header with the next page's cursor)",
                );
                if let Some((h, span)) = &header {
                    check::header_name(self.cx, h, span.clone(), &join(&key_path, "header"));
                }
                let param = query_param(self, "param", "cursor");
                Pagination::CursorHeader {
                    header: header?.0.to_owned(),
                    param: param?,
                }
            }
            "offset" => {
                let param = query_param(self, "param", "offset");
                let limit_param = query_param(self, "limit_param", "limit");
                let limit = size(self, "limit");
                Pagination::Offset {
                    param: param?,
                    limit_param: limit_param?,
                    limit: limit?,
                }
            }
            "page" => {
                let param = query_param(self, "param", "page");
                let start = t.u64(self.cx, "start").unwrap_or(1);
                let size_param = query_param(self, "size_param", "per_page");
                let size = size(self, "size");
                Pagination::Page {
                    param: param?,
                    start,
                    size_param: size_param?,
                    size: size?,
                }
            }
            _ => Pagination::Link,
        })
    }

    fn path_template(&mut self, text: &str, span: Span, key_path: &str, request: check::Request<'_>) -> Vec<PathPart> {
        if !text.starts_with('/') {
            self.cx
                .error(span.clone(), key_path, format!("path `{text}` must start with `/`"))
                .help(format!("write `/{text}`"));
        }
        if let Some(bad) = text.find(['?', '#']) {
            self.cx
                .error(span.clone(), key_path, format!("path contains `{}`", &text[bad..=bad]))
                .help("put query parameters in `query = { name = \"{field}\" }`");
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(PathPart::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                self.cx
                    .error(span.clone(), key_path, "unclosed `{` in path")
                    .help("path parameters look like `{name}`");
                return parts;
            };
            let param = &rest[open + 1..open + close];
            // Point at `{param}` itself: the string's span starts at its opening quote.
            let at = span.start + 1 + (text.len() - rest.len()) + open;
            let param_span = if at + close < span.end {
                at..at + close + 1
            } else {
                span.clone()
            };
            if let Some(part) = check::path_param_source(self.cx, param, request, param_span, key_path) {
                if part == PathPart::ExternalId && !matches!(request, check::Request::Absent) {
                    self.cx.error(span.clone(), key_path, "`{external_id}` is not known yet when a call starts")
                        .help("use `{external_id}` in status-query endpoints (without `request`); starting endpoints fill their path from request fields");
                }
                parts.push(part);
            }
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(PathPart::Literal(rest.to_owned()));
        }
        parts
    }

    fn mappings(&mut self, t: Table<'_, '_>, key: &str, request: check::Request<'_>, is_headers: bool) -> Vec<Mapping> {
        let Some(e) = t.get(key) else { return Vec::new() };
        let key_path = e.key_path();
        let Some(table) = Table::open(self.cx, &key_path, e.key_span.into(), e.value) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in table.entries() {
            let entry_path = entry.key_path();
            if is_headers {
                check::header_name(self.cx, entry.key, entry.key_span.into(), &entry_path);
            }
            let target: Vec<String> = if key == "body" {
                entry.key.split('.').map(str::to_owned).collect()
            } else {
                vec![entry.key.to_owned()]
            };
            if target.iter().any(String::is_empty) {
                self.cx
                    .error(
                        entry.key_span.into(),
                        entry_path.clone(),
                        format!("`{}` has an empty segment", entry.key),
                    )
                    .help("body keys are dotted paths like `input.text`");
                continue;
            }
            if let Some(value) = self.mapping_value(entry, request) {
                out.push(Mapping { target, value });
            }
        }
        out
    }

    fn mapping_value(&mut self, e: Entry<'_, '_>, request: check::Request<'_>) -> Option<MappingValue> {
        let key_path = e.key_path();
        match e.value.get_ref() {
            DeValue::String(text) => self.template(text, e.span(), &key_path, request),
            DeValue::Table(_) => {
                let t = Table::new(
                    self.cx,
                    &key_path,
                    e.key_span.into(),
                    e.value,
                    &["from", "map", "default"],
                )?;
                let (from, from_span) = t.require_str(
                    self.cx,
                    "from",
                    "add `from = \"field_name\"` (the request field to read)",
                )?;
                let field = check::request_field(self.cx, from, request, from_span, &join(&key_path, "from"))?;
                match (t.get("map"), t.get("default")) {
                    (Some(m), None) => {
                        let map_path = m.key_path();
                        let mt = Table::open(self.cx, &map_path, m.key_span.into(), m.value)?;
                        let mut keys = Vec::new();
                        let mut map = Vec::new();
                        for item in mt.entries() {
                            keys.push((item.key.to_owned(), Span::from(item.key_span)));
                            match constant(item.value.get_ref()) {
                                Some(c) => map.push((item.key.to_owned(), c)),
                                None => {
                                    self.cx.error(
                                        item.span(),
                                        item.key_path(),
                                        "value map targets must be strings, numbers or booleans",
                                    );
                                }
                            }
                        }
                        check::value_map_covers_field(self.cx, field, &keys, m.key_span.into(), &map_path);
                        Some(MappingValue::ValueMap {
                            field: from.to_owned(),
                            map,
                        })
                    }
                    (None, Some(d)) => {
                        let Some(default) = constant(d.value.get_ref()) else {
                            self.cx.error(
                                d.span(),
                                d.key_path(),
                                "a mapping default must be a string, number or boolean",
                            );
                            return None;
                        };
                        check::constant_fits_field(self.cx, &default, field, d.span(), &d.key_path());
                        Some(MappingValue::WithDefault {
                            field: from.to_owned(),
                            default,
                        })
                    }
                    _ => {
                        self.cx
                            .error(
                                e.span(),
                                key_path,
                                "a mapping table needs exactly one of `map` or `default`",
                            )
                            .help(
                                "`{ from = \"kind\", map = { a = \"A\" } }` or `{ from = \"speed\", default = 1.0 }`",
                            );
                        None
                    }
                }
            }
            other => match constant(other) {
                Some(c) => Some(MappingValue::Constant(c)),
                None => {
                    self.cx
                        .error(
                            e.span(),
                            key_path,
                            format!(
                                "a mapping value must be a string, number, boolean or table, found {}",
                                kind_of(other)
                            ),
                        )
                        .help("write `\"{field}\"`, a constant, or `{ from = \"field\", map = { ... } }`");
                    None
                }
            },
        }
    }

    fn template(
        &mut self,
        text: &str,
        span: Span,
        key_path: &str,
        request: check::Request<'_>,
    ) -> Option<MappingValue> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        let mut ok = true;
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let Some(close) = text[i..].find('}') else {
                        self.cx
                            .error(span.clone(), key_path, "unclosed `{` in mapping")
                            .help("write `{field}`, or `{{` for a literal brace");
                        return None;
                    };
                    let name = &text[i + 1..i + close];
                    while chars.peek().is_some_and(|(j, _)| *j <= i + close) {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                    }
                    match check::request_field(self.cx, name, request, span.clone(), key_path) {
                        Some(field) => parts.push(TemplatePart::Field(field.name.clone())),
                        None => ok = false,
                    }
                }
                '}' => {
                    self.cx
                        .error(span.clone(), key_path, "unmatched `}` in mapping")
                        .help("write `}}` for a literal brace");
                    return None;
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        if !ok {
            return None;
        }
        match parts.as_slice() {
            [TemplatePart::Field(name)] => Some(MappingValue::Field(name.clone())),
            [] => Some(MappingValue::Constant(Constant::String(String::new()))),
            [TemplatePart::Literal(text)] => Some(MappingValue::Constant(Constant::String(text.clone()))),
            _ => {
                let check::Request::Entity(entity) = request else {
                    return Some(MappingValue::Template(parts));
                };
                for part in &parts {
                    if let TemplatePart::Field(name) = part {
                        if let Some(field) = entity.field(name).filter(|f| !f.recovered && !check::is_scalar(&f.ty)) {
                            self.cx
                                .error(
                                    span.clone(),
                                    key_path,
                                    format!(
                                        "`{{{name}}}` is {} and cannot be interpolated into text",
                                        field.ty.spec_name()
                                    ),
                                )
                                .help(format!("map it on its own: `\"{{{name}}}\"`"));
                        }
                    }
                }
                Some(MappingValue::Template(parts))
            }
        }
    }

    fn json_path(&mut self, text: &str, span: Span, key_path: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(path) => Some(path),
            Err(err) => {
                // Point inside the string: skip the opening quote.
                let at = (span.start + 1 + err.offset)
                    .min(span.end.saturating_sub(1))
                    .max(span.start);
                self.cx
                    .error(
                        at..at + 1,
                        key_path,
                        format!("invalid JSON path `{text}`: {}", err.message),
                    )
                    .help(err.help);
                None
            }
        }
    }

    fn status_map(&mut self, e: Entry<'_, '_>) -> Option<StatusMap> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["path", "map"])?;
        let path = t
            .require_str(
                self.cx,
                "path",
                "add `path = \"$.state\"` (where the provider's state is)",
            )
            .and_then(|(text, span)| self.json_path(text, span, &join(&key_path, "path")));
        let m = t.require(
            self.cx,
            "map",
            "add `map = { running = \"processing\", done = \"completed\", error = \"failed\" }`",
        )?;
        let map_path = m.key_path();
        let mt = Table::open(self.cx, &map_path, m.key_span.into(), m.value)?;
        let mut map = Vec::new();
        let mut invalid = false;
        for item in mt.entries() {
            let status = match string(self.cx, item) {
                Some(("processing", _)) => RemoteStatus::Processing,
                Some(("completed", _)) => RemoteStatus::Completed,
                Some(("failed", _)) => RemoteStatus::Failed,
                Some((other, span)) => {
                    self.cx
                        .error(span, item.key_path(), format!("`{other}` is not a lifecycle state"))
                        .expected_one_of(other, ["processing", "completed", "failed"]);
                    invalid = true;
                    continue;
                }
                None => {
                    invalid = true;
                    continue;
                }
            };
            map.push((item.key.to_owned(), status));
        }
        // A broken path was reported already; keep the map so rules that
        // need one (polling) do not report it missing.
        let status = StatusMap {
            path: path.unwrap_or_else(JsonPath::root),
            map,
        };
        if !invalid {
            check::status_map_is_complete(self.cx, &status, m.key_span.into(), &map_path);
        }
        Some(status)
    }

    fn result(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<ResultSpec> {
        let key_path = e.key_path();
        let t = Table::new(
            self.cx,
            &key_path,
            e.key_span.into(),
            e.value,
            &["entity", "root", "fields"],
        )?;
        let (name, span) = t.require_str(self.cx, "entity", "add `entity = \"EntityName\"` (the result's type)")?;
        let Some(entity) = entities.iter().find(|e| e.name == name) else {
            self.cx
                .error(span, join(&key_path, "entity"), format!("unknown entity `{name}`"))
                .expected_one_of(name, entities.iter().map(|e| e.name.as_str()));
            return None;
        };
        let root = match t.str(self.cx, "root") {
            Some((text, span)) => self.json_path(text, span, &join(&key_path, "root"))?,
            None => JsonPath::root(),
        };
        let mut explicit = Vec::new();
        if let Some(fields) = t.open_table(self.cx, "fields", &join(&key_path, "fields")) {
            for f in fields.entries() {
                if entity.field(f.key).is_none() {
                    self.cx
                        .error(
                            f.key_span.into(),
                            f.key_path(),
                            format!("entity `{name}` has no field `{}`", f.key),
                        )
                        .expected_one_of(f.key, entity.fields.iter().map(|x| x.name.as_str()));
                    continue;
                }
                if let Some((text, span)) = string(self.cx, f) {
                    if let Some(path) = self.json_path(text, span, &f.key_path()) {
                        explicit.push((f.key.to_owned(), path));
                    }
                }
            }
        }
        let fields = entity
            .fields
            .iter()
            .map(|field| {
                let path = explicit
                    .iter()
                    .find(|(n, _)| *n == field.name)
                    .map_or_else(|| root.child(&field.name), |(_, p)| p.clone());
                (field.name.clone(), path)
            })
            .collect();
        Some(ResultSpec {
            entity: name.to_owned(),
            fields,
        })
    }

    fn idempotency_key(&mut self, e: Entry<'_, '_>) -> Option<IdempotencyKey> {
        let key_path = e.key_path();
        let t = Table::new(self.cx, &key_path, e.key_span.into(), e.value, &["header", "body"])?;
        match (t.str(self.cx, "header"), t.str(self.cx, "body")) {
            (Some((header, span)), None) => {
                check::header_name(self.cx, header, span, &join(&key_path, "header"));
                Some(IdempotencyKey::Header(header.to_owned()))
            }
            (None, Some((body, span))) => {
                let segments: Vec<String> = body.split('.').map(str::to_owned).collect();
                if segments.iter().any(String::is_empty) {
                    self.cx
                        .error(span, join(&key_path, "body"), format!("`{body}` has an empty segment"))
                        .help("body paths are dotted, like `meta.idempotency_key`");
                    return None;
                }
                Some(IdempotencyKey::Body(segments))
            }
            _ => {
                self.cx
                    .error(
                        e.span(),
                        key_path,
                        "`idempotency_key` needs exactly one of `header` or `body`",
                    )
                    .help("e.g. `idempotency_key = { header = \"Idempotency-Key\" }`");
                None
            }
        }
    }

    fn policy(&mut self, t: Table<'_, '_>, mut policy: Policy) -> Policy {
        let path = t.path;
        if let Some(v) = t.positive(self.cx, "timeout_ms") {
            policy.timeout_ms = v;
        }
        if let Some(v) = t.positive(self.cx, "connect_timeout_ms") {
            policy.connect_timeout_ms = v;
        }
        if let Some(v) = t.positive(self.cx, "concurrency") {
            policy.concurrency = Some(v.min(u64::from(u32::MAX)) as u32);
        }
        if let Some(v) = t.positive(self.cx, "max_response_bytes") {
            policy.max_response_bytes = v;
        }
        match t.str(self.cx, "redirects") {
            None => {}
            Some(("none", _)) => policy.redirects = Redirects::None,
            Some(("same_origin", _)) => policy.redirects = Redirects::SameOrigin,
            Some(("any_origin", _)) => policy.redirects = Redirects::AnyOrigin,
            Some((other, span)) => {
                self.cx
                    .error(
                        span,
                        join(path, "redirects"),
                        format!("unknown redirect policy `{other}`"),
                    )
                    .expected_one_of(other, REDIRECT_POLICIES.iter().copied());
            }
        }
        let retry_path = join(path, "retry");
        if let Some(r) = t.table(self.cx, "retry", &retry_path, RETRY_KEYS) {
            let retry = &mut policy.retry;
            if let Some(v) = r.positive(self.cx, "max_attempts") {
                retry.max_attempts = v.min(u64::from(u32::MAX)) as u32;
            }
            if let Some(v) = r.u64(self.cx, "initial_backoff_ms") {
                retry.initial_backoff_ms = v;
            }
            if let Some(v) = r.u64(self.cx, "max_backoff_ms") {
                retry.max_backoff_ms = v;
            }
            if let Some(v) = r.number(self.cx, "multiplier") {
                if v < 1.0 {
                    let at = r.get("multiplier").map_or_else(|| r.span.into(), |e| e.span());
                    self.cx
                        .error(at, join(&retry_path, "multiplier"), "`multiplier` must be at least 1.0")
                        .help("backoff grows by this factor per attempt");
                }
                retry.multiplier = v;
            }
            check::bounds_ordered(
                self.cx,
                Some(retry.initial_backoff_ms),
                Some(retry.max_backoff_ms),
                r.span.into(),
                &retry_path,
                "backoff",
            );
            if let Some(on) = r.get("on") {
                let classes = self.string_list(r, "on");
                if let DeValue::Array(items) = on.value.get_ref() {
                    for item in items.iter() {
                        if let DeValue::String(class) = item.get_ref() {
                            if !RETRY_CLASSES.contains(&class.as_ref()) {
                                self.cx
                                    .error(item.span(), on.key_path(), format!("unknown retry class `{class}`"))
                                    .expected_one_of(class, RETRY_CLASSES.iter().copied());
                            }
                        }
                    }
                }
                let has = |c: &str| classes.iter().any(|x| x == c);
                retry.on_server_errors = has("5xx");
                retry.on_too_many_requests = has("429");
                retry.on_timeouts = has("timeout");
                retry.on_connect_errors = has("connect");
                retry.on_transport_errors = has("transport");
                retry.on_too_large = has("too_large");
            }
        }
        let cb_path = join(path, "circuit_breaker");
        if let Some(c) = t.table(
            self.cx,
            "circuit_breaker",
            &cb_path,
            &["failure_threshold", "open_for_ms", "half_open_probes"],
        ) {
            let base = policy.circuit_breaker.take().unwrap_or(CircuitBreaker {
                failure_threshold: 5,
                open_for_ms: 30_000,
                half_open_probes: 1,
            });
            policy.circuit_breaker = Some(CircuitBreaker {
                failure_threshold: c
                    .positive(self.cx, "failure_threshold")
                    .map_or(base.failure_threshold, |v| v.min(u64::from(u32::MAX)) as u32),
                open_for_ms: c.positive(self.cx, "open_for_ms").unwrap_or(base.open_for_ms),
                half_open_probes: c
                    .positive(self.cx, "half_open_probes")
                    .map_or(base.half_open_probes, |v| v.min(u64::from(u32::MAX)) as u32),
            });
        }
        let rl_path = join(path, "rate_limit");
        if let Some(r) = t.table(self.cx, "rate_limit", &rl_path, &["per_second", "burst"]) {
            let per_second = r.number(self.cx, "per_second");
            if per_second.is_some_and(|v| v <= 0.0) {
                self.cx
                    .error(
                        r.span.into(),
                        join(&rl_path, "per_second"),
                        "`per_second` must be positive",
                    )
                    .help("e.g. `per_second = 10` or `0.5` for one call every two seconds");
            }
            if r.get("per_second").is_none() {
                self.cx
                    .error(r.span.into(), rl_path.clone(), "missing key `per_second` in rate limit")
                    .help("add `per_second = 10`");
            }
            // An endpoint's rate limit inherits the integration's burst unless it sets its own.
            let inherited_burst = policy.rate_limit.as_ref().map_or(1, |r| r.burst);
            let burst = r
                .positive(self.cx, "burst")
                .map_or(inherited_burst, |v| v.min(u64::from(u32::MAX)) as u32);
            policy.rate_limit = Some(RateLimit {
                per_second: per_second.unwrap_or(1.0),
                burst,
            });
        }
        policy
    }

    fn polling(&mut self, t: Table<'_, '_>, endpoints: &[Endpoint]) -> Option<Polling> {
        let (name, span) = t.require_str(
            self.cx,
            "endpoint",
            "add `endpoint = \"get_status\"` (the status-query endpoint)",
        )?;
        let endpoint = endpoints.iter().find(|e| e.name == name);
        if endpoint.is_none() {
            self.cx
                .error(span.clone(), "polling.endpoint", format!("unknown endpoint `{name}`"))
                .expected_one_of(name, endpoints.iter().map(|e| e.name.as_str()));
        }
        let polling = Polling {
            endpoint: name.to_owned(),
            interval_ms: t.positive(self.cx, "interval_ms").unwrap_or(1_000),
            backoff: t.number(self.cx, "backoff").unwrap_or(1.5),
            max_interval_ms: t.positive(self.cx, "max_interval_ms").unwrap_or(30_000),
            give_up_after_s: t.positive(self.cx, "give_up_after_s").unwrap_or(3_600),
        };
        if polling.backoff < 1.0 {
            let at = t.get("backoff").map_or_else(|| t.span.into(), |e| e.span());
            self.cx
                .error(at, "polling.backoff", "`backoff` must be at least 1.0")
                .help("the delay grows by this factor after each poll");
        }
        check::bounds_ordered(
            self.cx,
            Some(polling.interval_ms),
            Some(polling.max_interval_ms),
            t.span.into(),
            "polling",
            "interval",
        );
        check::polling_endpoint_fits(self.cx, &polling, endpoint, span);
        Some(polling)
    }

    fn webhook(&mut self, e: Entry<'_, '_>, entities: &[Entity]) -> Option<Webhook> {
        let t = Table::new(
            self.cx,
            "webhook",
            e.key_span.into(),
            e.value,
            &[
                "path",
                "verify",
                "external_id",
                "status",
                "result",
                "error",
                "max_body_bytes",
            ],
        )?;
        let path = t
            .require_str(self.cx, "path", "add `path = \"/webhooks/provider\"`")
            .map(|(p, span)| {
                if !p.starts_with('/') {
                    self.cx
                        .error(span, "webhook.path", format!("webhook path `{p}` must start with `/`"))
                        .help(format!("write `/{p}`"));
                }
                p.to_owned()
            });
        let verify = t
            .require(self.cx, "verify", "webhooks must be verified: add `verify = { scheme = \"standard-webhooks\", secret = { env = \"WEBHOOK_SECRET\" } }`")
            .and_then(|v| self.verify(v));
        let external_id = t
            .require_str(
                self.cx,
                "external_id",
                "add `external_id = \"$.path.to.id\"`: without it a delivery cannot be matched to its call",
            )
            .and_then(|(text, span)| self.json_path(text, span, "webhook.external_id"));
        let status = t
            .require(
                self.cx,
                "status",
                "add `status = { path = \"$.state\", map = { ... } }`",
            )
            .and_then(|s| self.status_map(s));
        let result = t.get("result").and_then(|r| self.result(r, entities));
        let error = t
            .str(self.cx, "error")
            .and_then(|(text, span)| self.json_path(text, span, "webhook.error"));
        let max_body_bytes = t.positive(self.cx, "max_body_bytes").unwrap_or(1 << 20);
        Some(Webhook {
            path: path?,
            verify: verify?,
            external_id: external_id?,
            status: status?,
            result,
            error,
            max_body_bytes,
        })
    }

    fn verify(&mut self, e: Entry<'_, '_>) -> Option<Verify> {
        let t = Table::new(
            self.cx,
            "webhook.verify",
            e.key_span.into(),
            e.value,
            &["scheme", "secret", "tolerance_s", "header", "encoding", "prefix"],
        )?;
        let schemes = ["standard-webhooks", "stripe", "hmac-sha256"];
        let (scheme_name, span) = t.require_str(
            self.cx,
            "scheme",
            "add `scheme = \"standard-webhooks\"` (or stripe, hmac-sha256)",
        )?;
        let scheme = match scheme_name {
            "standard-webhooks" => SignatureScheme::StandardWebhooks,
            "stripe" => SignatureScheme::Stripe,
            "hmac-sha256" => {
                let header = t.require_str(
                    self.cx,
                    "header",
                    "add `header = \"X-Hub-Signature-256\"` (where the signature is)",
                );
                if let Some((h, span)) = &header {
                    check::header_name(self.cx, h, span.clone(), "webhook.verify.header");
                }
                let encoding = match t.str(self.cx, "encoding") {
                    None | Some(("hex", _)) => SignatureEncoding::Hex,
                    Some(("base64", _)) => SignatureEncoding::Base64,
                    Some((other, span)) => {
                        self.cx
                            .error(
                                span,
                                "webhook.verify.encoding",
                                format!("unknown signature encoding `{other}`"),
                            )
                            .expected_one_of(other, ["hex", "base64"]);
                        SignatureEncoding::Hex
                    }
                };
                let prefix = t.str(self.cx, "prefix").map_or_else(String::new, |(p, _)| p.to_owned());
                SignatureScheme::HmacSha256 {
                    header: header?.0.to_owned(),
                    encoding,
                    prefix,
                }
            }
            other => {
                self.cx
                    .error(
                        span,
                        "webhook.verify.scheme",
                        format!("unknown signature scheme `{other}`"),
                    )
                    .expected_one_of(other, schemes);
                return None;
            }
        };
        if scheme_name != "hmac-sha256" {
            for key in ["header", "encoding", "prefix"] {
                if let Some(extra) = t.get(key) {
                    self.cx
                        .error(
                            extra.key_span.into(),
                            extra.key_path(),
                            format!("`{key}` applies to the `hmac-sha256` scheme only"),
                        )
                        .help(format!("`{scheme_name}` fixes its own headers; remove `{key}`"));
                }
            }
        }
        if let (SignatureScheme::HmacSha256 { .. }, Some(extra)) = (&scheme, t.get("tolerance_s")) {
            self.cx
                .error(
                    extra.key_span.into(),
                    extra.key_path(),
                    "`tolerance_s` applies to timestamped schemes; `hmac-sha256` signs no timestamp",
                )
                .help("remove `tolerance_s`");
        }
        let secret = self.required_secret(t, "secret")?;
        let tolerance_s = t.positive(self.cx, "tolerance_s").unwrap_or(300);
        Some(Verify {
            scheme,
            secret,
            tolerance_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[integration]
name = "Echo"
base_url = "https://echo.example.com"

[entities.Ping]
text = "string"

[endpoints.ping]
method = "POST"
path = "/ping"
request = "Ping"
body = { text = "{text}" }
"#;

    fn errors(src: &str) -> Vec<String> {
        match parse(src, "t.toml") {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|x| d.render(x)).collect(),
        }
    }

    #[test]
    fn minimal_spec_parses() {
        let spec = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(spec.integration.name, "Echo");
        assert_eq!(spec.endpoints[0].body[0].target, vec!["text"]);
        assert!(matches!(spec.endpoints[0].external_id, ExternalId::Generated));
        assert_eq!(spec.policy.retry.max_attempts, 1);
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let src = MINIMAL.replace("method = \"POST\"", "method = \"POST\"\nmehtod = 1");
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("unknown key `mehtod` in `endpoints.ping`"),
            "{}",
            errs[0]
        );
        assert!(errs[0].contains("did you mean `method`?"), "{}", errs[0]);
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let src = MINIMAL
            .replace("text = \"string\"", "text = \"strng\"")
            .replace("path = \"/ping\"", "path = \"/ping/{id}\"")
            .replace("body = { text = \"{text}\" }", "body = { text = \"{txt}\" }");
        let errs = errors(&src);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains("t.toml:7:8: unknown type `strng`"), "{}", errs[0]);
        assert!(
            errs[1].contains("t.toml:11:15: path parameter `{id}` has no source"),
            "{}",
            errs[1]
        );
        assert!(
            errs[1].contains("|               ^^^^"),
            "points at `{{id}}`: {}",
            errs[1]
        );
        assert!(errs[2].contains("no field `txt`"), "{}", errs[2]);
    }

    #[test]
    fn list_endpoints_start_no_calls() {
        let src = format!(
            "{MINIMAL}\n[entities.Filter]\nq = \"string\"\n\n[endpoints.list_pings]\nmethod = \"GET\"\npath = \"/pings\"\nrequest = \"Filter\"\nquery = {{ q = \"{{q}}\" }}\nitems = {{ path = \"$.data\", entity = \"Ping\" }}\npaginate = {{ style = \"offset\", param = \"offset\", limit_param = \"limit\", limit = 50 }}\n"
        );
        let spec = parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let list = spec.endpoint("list_pings").unwrap();
        assert!(!list.starts_calls());
        assert_eq!(
            spec.call_endpoints().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["ping"]
        );
        let l = list.list.as_ref().unwrap();
        assert_eq!(l.items.entity, "Ping");
        assert_eq!(l.items.path.text, "$.data");
        assert_eq!(
            l.paginate,
            Pagination::Offset {
                param: "offset".into(),
                limit_param: "limit".into(),
                limit: 50
            }
        );
    }

    #[test]
    fn pagination_mistakes_are_all_reported() {
        let list = |paginate: &str| {
            format!("{MINIMAL}\n[endpoints.list_pings]\nmethod = \"GET\"\npath = \"/pings\"\nitems = {{ entity = \"Ping\" }}\npaginate = {paginate}\n")
        };
        let errs = errors(&list("{ style = \"pages\" }"));
        assert!(
            errs.len() == 1
                && errs[0].contains("unknown pagination style `pages`")
                && errs[0].contains("did you mean `page`?"),
            "{errs:#?}"
        );
        let errs = errors(&list("{ style = \"cursor_header\", header = \"X Next\", limit = 3 }"));
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("`limit` does not apply to the `cursor_header` pagination style")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("`X Next` is not a valid HTTP header name")),
            "{errs:#?}"
        );
        assert!(errs.iter().any(|e| e.contains("missing key `param`")), "{errs:#?}");
        let errs = errors(&list(
            "{ style = \"page\", param = \"page\", size_param = \"n\", size = 10, start = 0 }",
        ));
        assert!(errs.is_empty(), "start = 0 is allowed: {errs:#?}");
    }

    #[test]
    fn response_limit_and_redirects_have_defaults_and_endpoint_overrides() {
        let spec = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(spec.policy.max_response_bytes, 10_485_760);
        assert_eq!(spec.policy.redirects, Redirects::SameOrigin);
        assert_eq!(spec.endpoints[0].policy, spec.policy);
        let src = format!(
            "{MINIMAL}policy = {{ redirects = \"any_origin\" }}\n\n[policy]\nmax_response_bytes = 1000000\nredirects = \"none\"\n"
        );
        let spec = parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(spec.policy.max_response_bytes, 1_000_000);
        assert_eq!(spec.policy.redirects, Redirects::None);
        let ping = &spec.endpoints[0].policy;
        assert_eq!(ping.redirects, Redirects::AnyOrigin);
        assert_eq!(ping.max_response_bytes, 1_000_000, "inherited from `[policy]`");
        let src = format!("{MINIMAL}policy = {{ max_response_bytes = 4096 }}\n");
        let spec = parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(spec.endpoints[0].policy.max_response_bytes, 4096);
        assert_eq!(spec.endpoints[0].policy.redirects, Redirects::SameOrigin);
    }

    #[test]
    fn bad_response_limits_and_redirect_policies_are_reported_where_written() {
        let policy = |keys: &str| format!("{MINIMAL}\n[policy]\n{keys}\n");
        let errs = errors(&policy("redirects = \"same-origin\""));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].contains("t.toml:16:13: unknown redirect policy `same-origin`"),
            "{}",
            errs[0]
        );
        assert!(errs[0].contains("did you mean `same_origin`?"), "{}", errs[0]);
        let errs = errors(&policy("redirects = \"follow\""));
        assert!(
            errs.len() == 1 && errs[0].contains("expected one of `none`, `same_origin`, `any_origin`"),
            "{errs:#?}"
        );
        let errs = errors(&policy("redirects = true"));
        assert!(errs.len() == 1 && errs[0].contains("t.toml:16:13:"), "{errs:#?}");
        let errs = errors(&policy("max_response_bytes = 0"));
        assert!(
            errs.len() == 1 && errs[0].contains("`max_response_bytes` must be at least 1"),
            "{errs:#?}"
        );
        let errs = errors(&policy("max_response_bytes = \"10MB\""));
        assert!(errs.len() == 1 && errs[0].contains("t.toml:16:22:"), "{errs:#?}");
        let errs = errors(&policy("max_respons_bytes = 10"));
        assert!(
            errs.len() == 1 && errs[0].contains("did you mean `max_response_bytes`?"),
            "{errs:#?}"
        );
    }

    #[test]
    fn retry_classes_transport_is_on_by_default_and_too_large_is_not() {
        let retry = |on: &str| {
            let src = format!("{MINIMAL}idempotent = true\n\n[policy]\nretry = {{ max_attempts = 2{on} }}\n");
            parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}")).policy.retry
        };
        let default = retry("");
        assert!(default.on_transport_errors && !default.on_too_large, "{default:?}");
        let only_5xx = retry(", on = [\"5xx\"]");
        assert!(only_5xx.on_server_errors && !only_5xx.on_transport_errors && !only_5xx.on_too_large);
        let new_classes = retry(", on = [\"transport\", \"too_large\"]");
        assert!(new_classes.on_transport_errors && new_classes.on_too_large);
        assert!(!new_classes.on_server_errors && !new_classes.on_too_many_requests);
        assert!(!new_classes.on_timeouts && !new_classes.on_connect_errors);
        let errs = errors(&format!("{MINIMAL}\n[policy]\nretry = {{ on = [\"reset\"] }}\n"));
        assert!(
            errs.len() == 1
                && errs[0].contains("expected one of `5xx`, `429`, `timeout`, `connect`, `transport`, `too_large`"),
            "{errs:#?}"
        );
    }

    /// An async `submit` whose reply has its status at `start_status`, polled
    /// through `job`, whose reply has it at `$.state` and a result.
    fn instant_job(start_status: &str, start_extra: &str) -> String {
        format!(
            r#"
[integration]
name = "Jobs"
base_url = "https://jobs.example.com"

[entities.Job]
text = "string"

[entities.Output]
url = "string"

[endpoints.submit]
method = "POST"
path = "/jobs"
request = "Job"
mode = "async"
body = {{ text = "{{text}}" }}
external_id = "$.id"
status = {{ path = "{start_status}", map = {{ running = "processing", done = "completed", error = "failed" }} }}
{start_extra}

[endpoints.job]
method = "GET"
path = "/jobs/{{external_id}}"
status = {{ path = "$.state", map = {{ running = "processing", done = "completed", error = "failed" }} }}
result = {{ entity = "Output", root = "$.output" }}

[polling]
endpoint = "job"
"#
        )
    }

    #[test]
    fn an_async_start_reply_with_the_polled_shape_reads_the_polled_result() {
        let spec = parse(&instant_job("$.state", ""), "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let result = spec.endpoint("submit").unwrap().result.as_ref().expect("derived");
        assert_eq!(result.entity, "Output");
        assert_eq!(result.fields[0].1.text, "$.output.url");
    }

    #[test]
    fn an_async_start_reply_of_another_shape_must_declare_its_result() {
        let errs = errors(&instant_job("$.job.state", ""));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].contains("t.toml:12:12: async endpoint `submit` can end its call in its first reply (status `done`) but reads no `Output` result from it"),
            "{}",
            errs[0]
        );
        let own = "result = { entity = \"Output\", fields = { url = \"$.job.url\" } }";
        let spec = parse(&instant_job("$.job.state", own), "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let result = spec.endpoint("submit").unwrap().result.as_ref().unwrap();
        assert_eq!(result.fields[0].1.text, "$.job.url");
        let errs = errors(&instant_job("$.state", "result = { entity = \"Job\" }"));
        assert!(
            errs.len() == 1 && errs[0].contains("reads a `Job` result but its calls end with `Output`"),
            "{errs:#?}"
        );
    }

    #[test]
    fn an_external_id_may_be_optional_on_sync_endpoints_only() {
        let src = MINIMAL.replace(
            "request = \"Ping\"",
            "request = \"Ping\"\nexternal_id = { path = \"$.id\", optional = true }",
        );
        let spec = parse(&src, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        assert!(matches!(&spec.endpoints[0].external_id, ExternalId::OptionalPath(p) if p.text == "$.id"));
        let strict = MINIMAL.replace(
            "request = \"Ping\"",
            "request = \"Ping\"\nexternal_id = { path = \"$.id\" }",
        );
        let spec = parse(&strict, "t.toml").unwrap_or_else(|d| panic!("{d}"));
        assert!(matches!(&spec.endpoints[0].external_id, ExternalId::Path(_)));
        let errs = errors(
            &instant_job("$.state", "external_id = { path = \"$.id\", optional = true }")
                .replace("external_id = \"$.id\"\n", ""),
        );
        assert!(
            errs.len() == 1 && errs[0].contains("an async endpoint's external id cannot be optional"),
            "{errs:#?}"
        );
        let errs = errors(&MINIMAL.replace(
            "request = \"Ping\"",
            "request = \"Ping\"\nexternal_id = { pth = \"$.id\" }",
        ));
        assert!(errs.iter().any(|e| e.contains("did you mean `path`?")), "{errs:#?}");
    }

    #[test]
    fn toml_syntax_errors_have_positions() {
        let errs = errors("[integration\nname = 1");
        assert!(!errs.is_empty());
        assert!(errs[0].starts_with("t.toml:1:"), "{}", errs[0]);
        assert!(errs[0].contains("invalid TOML"), "{}", errs[0]);
    }
}
