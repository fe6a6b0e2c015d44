//! Lowering: from the parsed TOML tree to the validated model.
//!
//! Each section has one function that reads its keys, reports what is wrong
//! with precise spans and carries on with a placeholder, so every mistake in
//! the spec is found in one pass. Rules that relate sections live in
//! [`crate::check`].
//!
//! This module holds the entry point and the order in which sections are
//! lowered (entities before endpoints, endpoints before polling); each
//! section's reading lives in the submodule named after it, and an
//! endpoint's parts in `request`, `reply` and `pagination`.

mod auth;
mod endpoints;
mod entities;
mod integration;
mod pagination;
mod policy;
mod polling;
mod reply;
mod request;
mod webhook;

use toml::de::{DeTable, DeValue};

use crate::check;
use crate::diagnostic::{Collector, Diagnostics};
use crate::ir::*;
use crate::read::{kind_of, Table};

const TOP_KEYS: &[&str] = &[
    "integration",
    "auth",
    "entities",
    "endpoints",
    "polling",
    "webhook",
    "policy",
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
    let mut spec = Lower { cx: &mut cx }.spec(root);
    spec.fingerprint = crate::fingerprint(source);
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
        let policy = match root.table(self.cx, "policy", "policy", policy::POLICY_KEYS) {
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
            .table(self.cx, "polling", "polling", polling::POLLING_KEYS)
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
            check::deadline_fits(self.cx, endpoint);
            check::cancel_endpoint_fits(self.cx, endpoint, &endpoints);
        }
        if let (Some(_), Some(webhook), Some(e)) = (&polling, &webhook, root.get("webhook")) {
            check::one_async_deadline(self.cx, webhook, e.key_span.into());
        }
        Spec {
            integration,
            auth,
            entities,
            endpoints,
            polling,
            webhook,
            policy,
            // Set by `parse`, which has the text.
            fingerprint: String::new(),
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

    /// A list of strings at `key`; an absent key is an empty list.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec whose last table is the `ping` endpoint: lines appended to it
    /// are keys of that endpoint.
    pub(super) const MINIMAL: &str = r#"
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

    /// Every diagnostic of `src`, rendered; empty when it parses.
    pub(super) fn errors(src: &str) -> Vec<String> {
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
