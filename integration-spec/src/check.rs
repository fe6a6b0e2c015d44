//! Cross-cutting rules of the spec language, one small function each.
//!
//! Lowering reads each section on its own; the rules here relate sections to
//! each other (a mapping to its entity, an async endpoint to the polling or
//! webhook that finishes it). Each reports into the collector and never stops
//! the others from running, so one build shows every mistake.

use crate::case::{to_pascal, to_snake};
use crate::diagnostic::Collector;
use crate::ir::{
    Endpoint, Entity, Field, IdempotencyKey, Integration, Mapping, Method, Mode, Pagination, PathPart, Polling,
    RemoteStatus, Span, StatusMap, Type, Webhook,
};

/// Names of generated items must be valid identifiers in the expected case,
/// or the generated code would not compile (or would shadow std types).
pub(crate) fn pascal_case(cx: &mut Collector, name: &str, span: Span, key_path: &str, what: &str) {
    if name == "Self" {
        cx.error(span, key_path, format!("{what} `Self` is reserved in Rust"))
            .help("choose another name");
        return;
    }
    let ok =
        name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        cx.error(
            span,
            key_path,
            format!("{what} `{name}` must be PascalCase (letters and digits, starting upper-case)"),
        )
        .help(format!("rename it, e.g. `{}`", to_pascal(name)));
    }
}

/// Field and endpoint names become Rust functions and fields.
pub(crate) fn snake_case(cx: &mut Collector, name: &str, span: Span, key_path: &str, what: &str) {
    if matches!(name, "self" | "super" | "crate") {
        cx.error(span, key_path, format!("{what} `{name}` is reserved in Rust"))
            .help(format!(
                "rename it, e.g. `{name}_value`, and map it with a body or query key of the old name"
            ));
        return;
    }
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name != "_";
    if !ok {
        cx.error(
            span,
            key_path,
            format!("{what} `{name}` must be snake_case (lower-case letters, digits, `_`)"),
        )
        .help(format!("rename it, e.g. `{}`", to_snake(name)));
    }
}

/// Environment variable names are portable shell names.
pub(crate) fn env_var_name(cx: &mut Collector, name: &str, span: Span, key_path: &str) {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        cx.error(
            span,
            key_path,
            format!("`{name}` is not a portable environment variable name"),
        )
        .help("use upper-case letters, digits and `_`, e.g. `PROVIDER_API_TOKEN`");
    }
}

/// Header names are RFC 9110 tokens; anything else is refused by every HTTP stack.
pub(crate) fn header_name(cx: &mut Collector, name: &str, span: Span, key_path: &str) {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) {
        cx.error(span, key_path, format!("`{name}` is not a valid HTTP header name"))
            .help("header names are letters, digits and `-`, e.g. `X-Request-Id`");
    }
}

/// A status map that cannot reach both terminal states would leave calls
/// stuck in `processing` (or make failure impossible to report).
pub(crate) fn status_map_is_complete(cx: &mut Collector, status: &StatusMap, span: Span, key_path: &str) {
    for (needed, name) in [(RemoteStatus::Completed, "completed"), (RemoteStatus::Failed, "failed")] {
        if !status.map.iter().any(|(_, s)| *s == needed) {
            cx.error(
                span.clone(),
                key_path,
                format!("status map has no external state that means `{name}`"),
            )
            .help(format!(
                "map the provider's {name} state, e.g. `map = {{ done = \"completed\", error = \"failed\" }}`"
            ));
        }
    }
}

/// An endpoint's request entity as far as lowering knows it.
#[derive(Clone, Copy)]
pub(crate) enum Request<'e> {
    /// The endpoint has no `request`.
    Absent,
    /// `request` names an entity that does not exist (already reported):
    /// references to its fields cannot be checked and are not reported.
    Unresolved,
    /// The request entity.
    Entity(&'e Entity),
}

/// Every `{param}` in a path must be filled from somewhere; an optional field
/// cannot fill a path segment because the URL would have a hole.
pub(crate) fn path_param_source(
    cx: &mut Collector,
    param: &str,
    request: Request<'_>,
    span: Span,
    key_path: &str,
) -> Option<PathPart> {
    if param == "external_id" {
        return Some(PathPart::ExternalId);
    }
    let entity = match request {
        Request::Entity(entity) => entity,
        Request::Unresolved => return None,
        Request::Absent => {
            cx.error(span, key_path, format!("path parameter `{{{param}}}` has no source"))
            .help("path parameters come from the `request` entity's fields, or `{external_id}`; add `request = \"...\"` to this endpoint");
            return None;
        }
    };
    match entity.field(param) {
        Some(field) if field.recovered => Some(PathPart::Field(param.to_owned())),
        Some(field) if field.optional => {
            cx.error(
                span,
                key_path,
                format!(
                    "path parameter `{{{param}}}` comes from optional field `{}.{param}`",
                    entity.name
                ),
            )
            .help("a path segment cannot be left out; make the field required or move the value to `query`");
            None
        }
        Some(field) if !is_scalar(&field.ty) => {
            cx.error(
                span,
                key_path,
                format!(
                    "path parameter `{{{param}}}` comes from field `{}.{param}` of type {}",
                    entity.name,
                    field.ty.spec_name()
                ),
            )
            .help("path parameters must be strings, numbers, booleans, uuids, timestamps or enums");
            None
        }
        Some(_) => Some(PathPart::Field(param.to_owned())),
        None => {
            cx.error(
                span,
                key_path,
                format!(
                    "path parameter `{{{param}}}` has no source: entity `{}` has no field `{param}`",
                    entity.name
                ),
            )
            .expected_one_of(
                param,
                entity.fields.iter().map(|f| f.name.as_str()).chain(["external_id"]),
            );
            None
        }
    }
}

/// A mapping or template may only read fields of the request entity.
pub(crate) fn request_field<'e>(
    cx: &mut Collector,
    name: &str,
    request: Request<'e>,
    span: Span,
    key_path: &str,
) -> Option<&'e Field> {
    let entity = match request {
        Request::Entity(entity) => entity,
        Request::Unresolved => return None,
        Request::Absent => {
            cx.error(
                span,
                key_path,
                format!("`{{{name}}}` reads a request field, but this endpoint has no `request` entity"),
            )
            .help("add `request = \"EntityName\"` to the endpoint, or use a constant");
            return None;
        }
    };
    let field = entity.field(name);
    if field.is_none() {
        cx.error(
            span,
            key_path,
            format!("entity `{}` has no field `{name}`", entity.name),
        )
        .expected_one_of(name, entity.fields.iter().map(|f| f.name.as_str()));
    }
    field
}

/// Text interpolation and path segments need a single scalar value.
pub(crate) fn is_scalar(ty: &Type) -> bool {
    !matches!(ty, Type::List(_) | Type::Entity(_) | Type::Json)
}

/// Value maps translate each value of an enum (or bool) field; a value left
/// out would have no external spelling at run time.
pub(crate) fn value_map_covers_field(
    cx: &mut Collector,
    field: &Field,
    keys: &[(String, Span)],
    span: Span,
    key_path: &str,
) {
    if field.recovered {
        return;
    }
    let allowed: Vec<String> = match &field.ty {
        Type::Enum(values) => values.clone(),
        Type::Bool => vec!["true".into(), "false".into()],
        other => {
            cx.error(
                span,
                key_path,
                format!(
                    "value maps apply to enum and bool fields; `{}` is {}",
                    field.name,
                    other.spec_name()
                ),
            )
            .help("use `\"{field}\"` to send the value as it is");
            return;
        }
    };
    for (key, key_span) in keys {
        if !allowed.contains(key) {
            cx.error(
                key_span.clone(),
                key_path,
                format!("`{key}` is not a value of field `{}`", field.name),
            )
            .expected_one_of(key, allowed.iter().map(String::as_str));
        }
    }
    let missing: Vec<&str> = allowed
        .iter()
        .filter(|v| !keys.iter().any(|(k, _)| k == *v))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        cx.error(
            span,
            key_path,
            format!("value map of `{}` misses {}", field.name, quoted_list(&missing)),
        )
        .help("give every value an external spelling");
    }
}

/// A mapping default is sent in place of the field, so it must be a value
/// the field could have had.
pub(crate) fn constant_fits_field(
    cx: &mut Collector,
    constant: &crate::ir::Constant,
    field: &Field,
    span: Span,
    key_path: &str,
) {
    use crate::ir::Constant;
    if field.recovered {
        return;
    }
    let fits = match (&field.ty, constant) {
        (Type::String | Type::Timestamp | Type::Uuid, Constant::String(_)) => true,
        (Type::Enum(values), Constant::String(s)) => values.contains(s),
        (Type::Int, Constant::Int(_))
        | (Type::Float, Constant::Int(_) | Constant::Float(_))
        | (Type::Bool, Constant::Bool(_)) => true,
        (Type::Json, _) => true,
        _ => false,
    };
    if !fits {
        cx.error(
            span,
            key_path,
            format!(
                "default does not fit field `{}` of type {}",
                field.name,
                field.ty.spec_name()
            ),
        )
        .help("give a value of the field's type");
    }
}

/// GET and DELETE requests carry no body in practice (many servers and
/// proxies drop it), so a body mapping there is almost surely a mistake.
pub(crate) fn body_allowed(cx: &mut Collector, method: Method, span: Span, key_path: &str) {
    if matches!(method, Method::Get | Method::Delete) {
        cx.error(span, key_path, format!("{} requests have no body", method.as_str()))
            .help("send these values in `query` instead, or change `method`");
    }
}

/// Retrying a request that is not idempotent could charge a card twice; it is
/// only safe when the provider can recognise the retry by its key.
pub(crate) fn retry_needs_idempotency(cx: &mut Collector, endpoint: &Endpoint) {
    if endpoint.policy.retry.max_attempts > 1 && !endpoint.idempotent && endpoint.idempotency_key.is_none() {
        cx.error(endpoint.span.clone(), format!("endpoints.{}", endpoint.name), format!(
            "endpoint `{}` is retried (max_attempts = {}) but {} is not idempotent and sends no idempotency key",
            endpoint.name, endpoint.policy.retry.max_attempts, endpoint.method.as_str()
        ))
        .help("add `idempotency_key = { header = \"Idempotency-Key\" }`, mark it `idempotent = true`, or set `policy = { retry = { max_attempts = 1 } }` on the endpoint");
    }
}

/// An async call finishes later, so something must tell the runtime how it
/// ended (polling or a webhook), and later events find the call by external
/// id, so the provider's id must be read from the response.
pub(crate) fn async_endpoint_can_finish(
    cx: &mut Collector,
    endpoint: &Endpoint,
    has_polling: bool,
    has_webhook: bool,
    external_id_given: bool,
) {
    if endpoint.mode != Mode::Async || !endpoint.starts_calls() {
        return;
    }
    let key_path = format!("endpoints.{}", endpoint.name);
    if !has_polling && !has_webhook {
        cx.error(
            endpoint.span.clone(),
            key_path.clone(),
            format!(
                "async endpoint `{}` has no way to finish: the spec has neither `[polling]` nor `[webhook]`",
                endpoint.name
            ),
        )
        .help("add `[polling]` with a status-query endpoint, or `[webhook]`, or make the endpoint `mode = \"sync\"`");
    }
    if !external_id_given {
        cx.error(
            endpoint.span.clone(),
            key_path,
            format!("async endpoint `{}` has no way to get an external id", endpoint.name),
        )
        .help("add `external_id = \"$.path.to.task_id\"` pointing at the provider's id in the response");
    }
}

/// `give_up_after_s` bounds the calls an endpoint starts; on an endpoint
/// that starts none it would mean nothing.
pub(crate) fn deadline_fits(cx: &mut Collector, endpoint: &Endpoint) {
    if endpoint.give_up_after_s.is_some() && !endpoint.starts_calls() {
        cx.error(
            endpoint.span.clone(),
            format!("endpoints.{}.give_up_after_s", endpoint.name),
            format!(
                "endpoint `{}` starts no calls, so `give_up_after_s` has nothing to bound",
                endpoint.name
            ),
        )
        .help("set `give_up_after_s` on the endpoint that starts the calls (the one with `request`)");
    }
}

/// With `[polling]`, polled calls end at `[polling] give_up_after_s`; a
/// second deadline in `[webhook]` would contradict it.
pub(crate) fn one_async_deadline(cx: &mut Collector, webhook: &Webhook, span: Span) {
    if webhook.give_up_after_s.is_some() {
        cx.error(
            span,
            "webhook.give_up_after_s",
            "the spec has `[polling]`, whose `give_up_after_s` is the deadline of async calls",
        )
        .help("set the deadline in `[polling]` (or on the endpoint), and remove it from `[webhook]`");
    }
}

/// `cancel` names the endpoint that asks the provider to stop a call: one
/// that exists, addresses the call by `{external_id}` and starts nothing,
/// on an endpoint whose calls run long enough to be stopped (async).
pub(crate) fn cancel_endpoint_fits(cx: &mut Collector, endpoint: &Endpoint, endpoints: &[Endpoint]) {
    let Some((name, span)) = &endpoint.cancel else {
        return;
    };
    let key_path = format!("endpoints.{}.cancel", endpoint.name);
    if !(endpoint.starts_calls() && endpoint.mode == Mode::Async) {
        cx.error(
            span.clone(),
            key_path.clone(),
            format!(
                "`cancel` is for async endpoints that start calls; `{}` is not one",
                endpoint.name
            ),
        )
        .help("a sync call ends with its answer: there is nothing left to cancel");
        return;
    }
    let Some(target) = endpoints.iter().find(|e| &e.name == name) else {
        cx.error(span.clone(), key_path, format!("unknown endpoint `{name}`"))
            .expected_one_of(name, endpoints.iter().map(|e| e.name.as_str()));
        return;
    };
    CANCEL.addresses_one_call(cx, target, span, &key_path);
}

/// What an endpoint named to address one call by its external id (the
/// polling endpoint, a cancel endpoint) must be, and how its mistakes read.
struct ByExternalId {
    /// `polling`, `cancel`.
    role: &'static str,
    /// Help when the path lacks `{external_id}`.
    path_help: &'static str,
    /// Help when it has a request entity.
    request_help: &'static str,
}

const POLLING: ByExternalId = ByExternalId {
    role: "polling",
    path_help: "status queries address one call, e.g. `path = \"/tasks/{external_id}\"`",
    request_help: "a status query is built from the external id alone; remove `request`",
};

const CANCEL: ByExternalId = ByExternalId {
    role: "cancel",
    path_help: "a cancel request addresses one call, e.g. `path = \"/tasks/{external_id}/cancel\"`",
    request_help: "a cancel request is built from the external id alone; remove `request`",
};

impl ByExternalId {
    /// `target` takes `{external_id}` in its path and has no request: the
    /// call's external id is all it is built from.
    fn addresses_one_call(&self, cx: &mut Collector, target: &Endpoint, span: &Span, key_path: &str) {
        let (role, name) = (self.role, &target.name);
        if !target.path.contains(&PathPart::ExternalId) {
            cx.error(
                span.clone(),
                key_path,
                format!("{role} endpoint `{name}` does not use `{{external_id}}` in its path"),
            )
            .help(self.path_help);
        }
        if target.request.is_some() {
            cx.error(
                span.clone(),
                key_path,
                format!("{role} endpoint `{name}` has a `request` entity"),
            )
            .help(self.request_help);
        }
    }
}

/// An async call is followed by its external id (polls address it, webhooks
/// name it), so a reply without one cannot be followed: a generated id
/// would match nothing.
pub(crate) fn optional_id_is_sync(cx: &mut Collector, span: Span, key_path: &str) {
    cx.error(span, key_path, "an async endpoint's external id cannot be optional")
        .help("an async call is followed by the provider's id; remove `optional = true`");
}

/// An async start reply that can say `completed` must say what the call's
/// result is, or the call would end `completed` without it. Lowering derives
/// it from the polling or webhook result when the reply is the same object;
/// this reports the rest.
pub(crate) fn start_reply_needs_result(cx: &mut Collector, endpoint: &Endpoint, entity: &str) {
    let Some(status) = &endpoint.status else { return };
    let done = status
        .map
        .iter()
        .find(|(_, s)| *s == RemoteStatus::Completed)
        .map_or("completed", |(external, _)| external.as_str());
    cx.error(
        endpoint.span.clone(),
        format!("endpoints.{}.result", endpoint.name),
        format!(
            "async endpoint `{}` can end its call in its first reply (status `{done}`) but reads no `{entity}` result from it",
            endpoint.name
        ),
    )
    .help(format!(
        "add `result = {{ entity = \"{entity}\", fields = {{ ... }} }}` read from this reply; its status is not at the path the polling endpoint or webhook reads it from, so their `result` cannot be reused. If this reply never ends the call, remove its `status`"
    ));
}

/// A call's response data has one type: a start endpoint's own result must
/// be the entity the polling endpoint or webhook extracts.
pub(crate) fn start_result_is_the_calls(cx: &mut Collector, endpoint: &Endpoint, own: &str, call: &str) {
    if own != call {
        cx.error(
            endpoint.span.clone(),
            format!("endpoints.{}.result", endpoint.name),
            format!(
                "async endpoint `{}` reads a `{own}` result but its calls end with `{call}`",
                endpoint.name
            ),
        )
        .help(format!(
            "read the call's result here too: `result = {{ entity = \"{call}\", ... }}`"
        ));
    }
}

/// A call's response data has one type: when both the polling endpoint and
/// the webhook extract a result, they must extract the same entity.
pub(crate) fn async_results_agree(
    cx: &mut Collector,
    polling: Option<&Polling>,
    endpoints: &[Endpoint],
    webhook: Option<&Webhook>,
    span: Span,
) {
    let polled = polling
        .and_then(|p| endpoints.iter().find(|e| e.name == p.endpoint))
        .and_then(|e| e.result.as_ref());
    let pushed = webhook.and_then(|w| w.result.as_ref());
    if let (Some(polled), Some(pushed)) = (polled, pushed) {
        if polled.entity != pushed.entity {
            cx.error(
                span,
                "webhook.result",
                format!(
                    "the webhook's result is `{}` but the polling endpoint's is `{}`",
                    pushed.entity, polled.entity
                ),
            )
            .help("a call has one response type; extract the same entity in both places");
        }
    }
}

/// The polling endpoint is asked about one call by its external id and must
/// say what state it is in.
pub(crate) fn polling_endpoint_fits(cx: &mut Collector, polling: &Polling, endpoint: Option<&Endpoint>, span: Span) {
    let Some(endpoint) = endpoint else { return };
    POLLING.addresses_one_call(cx, endpoint, &span, "polling.endpoint");
    if endpoint.status.is_none() {
        cx.error(
            span.clone(),
            "polling.endpoint",
            format!("polling endpoint `{}` has no `status`", polling.endpoint),
        )
        .help("add `status = { path = \"$.state\", map = { ... } }` to the endpoint");
    }
}

/// `min <= max` for every pair of bounds.
pub(crate) fn bounds_ordered<T: PartialOrd + std::fmt::Display>(
    cx: &mut Collector,
    min: Option<T>,
    max: Option<T>,
    span: Span,
    key_path: &str,
    what: &str,
) {
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            cx.error(
                span,
                key_path,
                format!("{what}: minimum {min} is larger than maximum {max}"),
            )
            .help("swap the two bounds");
        }
    }
}

/// An entity that contains itself (directly or through other entities, not
/// through a list) would have infinite size.
pub(crate) fn no_infinite_entities(cx: &mut Collector, entities: &[Entity]) {
    for entity in entities {
        let mut stack = vec![entity.name.as_str()];
        let mut seen = Vec::new();
        while let Some(name) = stack.pop() {
            let Some(current) = entities.iter().find(|e| e.name == name) else {
                continue;
            };
            for field in &current.fields {
                if let Type::Entity(inner) = &field.ty {
                    if inner == &entity.name {
                        cx.error(
                            entity.span.clone(),
                            format!("entities.{}", entity.name),
                            format!(
                                "entity `{}` contains itself through `{}.{}`",
                                entity.name, current.name, field.name
                            ),
                        )
                        .help("recursive data must go through a list (`type = \"list\", items = \"...\"`)");
                        stack.clear();
                        break;
                    }
                    if !seen.contains(&inner.as_str()) {
                        seen.push(inner.as_str());
                        stack.push(inner.as_str());
                    }
                }
            }
        }
    }
}

/// Generated type names must not collide: the integration's own types, the
/// entities, and the enum types generated for enum fields (`EntityField`).
/// Each collision also points at the other side of it.
pub(crate) fn generated_names_are_free(cx: &mut Collector, integration: &Integration, entities: &[Entity]) {
    integration_types_are_free(cx, integration, entities);
    // Generated enum type, the field that generates it, and where that field is.
    let mut enum_types: Vec<(String, String, Span)> = Vec::new();
    for entity in entities {
        for field in &entity.fields {
            let is_enum = matches!(&field.ty, Type::Enum(_))
                || matches!(&field.ty, Type::List(item) if matches!(item.as_ref(), Type::Enum(_)));
            if !is_enum {
                continue;
            }
            let generated = format!("{}{}", entity.name, to_pascal(&field.name));
            let field_path = format!("{}.{}", entity.name, field.name);
            if let Some((_, other, other_span)) = enum_types.iter().find(|(name, ..)| *name == generated) {
                cx.error(
                    field.span.clone(),
                    format!("entities.{field_path}"),
                    format!("enum fields `{other}` and `{field_path}` both generate type `{generated}`"),
                )
                .also(other_span.clone(), format!("`{other}` generates `{generated}` first"))
                .help("rename one of the fields");
            }
            enum_types.push((generated.clone(), field_path, field.span.clone()));
            if let Some(other) = entities.iter().find(|e| e.name == generated) {
                cx.error(
                    field.span.clone(),
                    format!("entities.{}.{}", entity.name, field.name),
                    format!(
                        "enum field `{}.{}` generates type `{generated}`, which is also an entity",
                        entity.name, field.name
                    ),
                )
                .also(other.span.clone(), format!("entity `{generated}` is defined here"))
                .help("rename the field or the entity");
            }
        }
    }
}

/// The integration's generated types must not collide with entity types.
fn integration_types_are_free(cx: &mut Collector, integration: &Integration, entities: &[Entity]) {
    let name = &integration.name;
    let generated = ["", "Call", "Event", "Status", "Client", "Config", "Request", "Response"]
        .map(|suffix| format!("{name}{suffix}"));
    for entity in entities {
        if generated.contains(&entity.name) {
            let d = cx.error(
                entity.span.clone(),
                format!("entities.{}", entity.name),
                format!("entity name `{}` collides with a generated type", entity.name),
            );
            // A missing name was reported already and has no place to point at.
            if !integration.name_span.is_empty() {
                d.also(
                    integration.name_span.clone(),
                    format!("the integration `{name}` generates `{}`", entity.name),
                );
            }
            d.help(format!(
                "the integration `{name}` generates {}; rename the entity",
                generated.join(", ")
            ));
        }
    }
}

/// An idempotency key in the body needs a body.
pub(crate) fn idempotency_key_fits(cx: &mut Collector, endpoint: &Endpoint) {
    if let Some(IdempotencyKey::Body(_)) = &endpoint.idempotency_key {
        if matches!(endpoint.method, Method::Get | Method::Delete) {
            cx.error(
                endpoint.span.clone(),
                format!("endpoints.{}.idempotency_key", endpoint.name),
                format!(
                    "{} requests have no body for the idempotency key",
                    endpoint.method.as_str()
                ),
            )
            .help("use `idempotency_key = { header = \"Idempotency-Key\" }`");
        }
    }
}

/// A list endpoint reads pages and starts no call, so the keys that describe
/// a call (how it finishes, its state, id, result, idempotency key) have
/// nothing to apply to.
pub(crate) fn list_endpoint_excludes(cx: &mut Collector, endpoint: &str, key: &str, span: Span, key_path: &str) {
    let (what, help) = match key {
        "mode" => (
            "`mode = \"async\"`",
            "a listing is read page by page while you iterate; remove `mode`",
        ),
        "result" => (
            "`result`",
            "each page's items are typed by `items = { path = \"$.data\", entity = \"...\" }`; remove `result`",
        ),
        "status" => ("`status`", "a listing has no lifecycle state to track; remove `status`"),
        "external_id" => (
            "`external_id`",
            "a listing creates nothing to be identified later; remove `external_id`",
        ),
        "idempotency_key" => (
            "`idempotency_key`",
            "a listing is read-only and starts no call; remove it (a POST search can be marked `idempotent = true`)",
        ),
        _ => ("this key", "remove it"),
    };
    cx.error(
        span,
        key_path,
        format!("{what} does not apply to list endpoint `{endpoint}` (it has `paginate`)"),
    )
    .help(help);
}

/// `items` types the pages of a list endpoint; without `paginate` there are
/// no pages to read them from.
pub(crate) fn items_need_paginate(cx: &mut Collector, endpoint: &str, span: Span, key_path: &str) {
    cx.error(span, key_path, format!("`items` applies to list endpoints, but `{endpoint}` has no `paginate`"))
        .help("add `paginate = { style = \"cursor\", cursor = \"$.next\", param = \"cursor\" }` (or another style), or use `result` for a single answer");
}

/// A list endpoint's pages must say where their items are and what they are.
pub(crate) fn paginate_needs_items(cx: &mut Collector, endpoint: &str, span: Span, key_path: &str) {
    cx.error(
        span,
        key_path,
        format!("list endpoint `{endpoint}` has `paginate` but no `items`"),
    )
    .help("add `items = { path = \"$.data\", entity = \"EntityName\" }` (the array of items on each page)");
}

/// Each pagination style reads its own keys; a key of another style (say
/// `limit` with cursors) would silently do nothing.
pub(crate) fn pagination_key_fits_style(
    cx: &mut Collector,
    style: &str,
    style_keys: &[&str],
    key: &str,
    span: Span,
    key_path: &str,
) {
    if style_keys.contains(&key) {
        return;
    }
    let takes = if style_keys.is_empty() {
        "no other keys".to_owned()
    } else {
        quoted_list(style_keys)
    };
    cx.error(
        span,
        key_path,
        format!("`{key}` does not apply to the `{style}` pagination style"),
    )
    .help(format!("the `{style}` style takes {takes}; remove `{key}`"));
}

/// The paginator sets its query parameters on every page; the same name in
/// the endpoint's `query`, as the API key's parameter, or twice in the
/// pagination itself would send two conflicting values.
pub(crate) fn pagination_params_are_free(
    cx: &mut Collector,
    pagination: &Pagination,
    query: &[Mapping],
    api_key_query: Option<&str>,
    span: Span,
    key_path: &str,
) {
    let params = pagination.query_params();
    for (i, param) in params.iter().enumerate() {
        if params[..i].contains(param) {
            cx.error(
                span.clone(),
                key_path,
                format!("pagination uses query parameter `{param}` twice"),
            )
            .help("the page position and the page size need different parameters");
        }
        if query.iter().any(|m| m.target.first().is_some_and(|t| t == param)) {
            cx.error(
                span.clone(),
                key_path,
                format!("query parameter `{param}` is set by the pagination and by `query`"),
            )
            .help(format!(
                "remove `{param}` from `query`; the paginator sets it on every page"
            ));
        }
        if api_key_query == Some(*param) {
            cx.error(
                span.clone(),
                key_path,
                format!("query parameter `{param}` is set by the pagination and carries the API key"),
            )
            .help("name the pagination parameter as the provider documents it; it cannot be the API key's");
        }
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}
