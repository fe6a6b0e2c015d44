//! The `[endpoints]` section: one endpoint's method, path, mode, encoding,
//! request mapping, reply reading, idempotency and policy override. The
//! pieces each key lowers to live in their own modules: [`super::request`],
//! [`super::reply`], [`super::pagination`], [`super::policy`].

use toml::de::DeValue;

use super::policy::POLICY_KEYS;
use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{join, string, Entry, Table};

pub(super) const ENDPOINT_KEYS: &[&str] = &[
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
    "give_up_after_s",
    "cancel",
];

impl Lower<'_> {
    pub(super) fn endpoints(
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
        let give_up_after_s = t.positive(self.cx, "give_up_after_s");
        let cancel = t.str(self.cx, "cancel").map(|(name, span)| (name.to_owned(), span));
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
            give_up_after_s,
            cancel,
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
}
