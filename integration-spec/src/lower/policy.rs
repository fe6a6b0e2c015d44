//! The `[policy]` section and its per-endpoint overrides: timeouts, retry
//! (attempts, backoff, which failures), circuit breaker, rate limit,
//! concurrency, response size limit and redirects. Rate limits and circuit
//! breakers have a `scope`: one for the integration, or one per connection.

use toml::de::DeValue;

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::{join, Table};

pub(super) const POLICY_KEYS: &[&str] = &[
    "timeout_ms",
    "connect_timeout_ms",
    "retry",
    "circuit_breaker",
    "rate_limit",
    "concurrency",
    "max_response_bytes",
    "redirects",
];
pub(super) const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "initial_backoff_ms",
    "max_backoff_ms",
    "multiplier",
    "on",
];
pub(super) const RETRY_CLASSES: &[&str] = &["5xx", "429", "timeout", "connect", "transport", "too_large"];
pub(super) const REDIRECT_POLICIES: &[&str] = &["none", "same_origin", "any_origin"];
pub(super) const SCOPES: &[&str] = &["integration", "connection"];

impl Lower<'_> {
    pub(super) fn policy(&mut self, t: Table<'_, '_>, mut policy: Policy) -> Policy {
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
            &["failure_threshold", "open_for_ms", "half_open_probes", "scope"],
        ) {
            let base = policy.circuit_breaker.take().unwrap_or(CircuitBreaker {
                failure_threshold: 5,
                open_for_ms: 30_000,
                half_open_probes: 1,
                scope: Scope::Integration,
            });
            policy.circuit_breaker = Some(CircuitBreaker {
                failure_threshold: c
                    .positive(self.cx, "failure_threshold")
                    .map_or(base.failure_threshold, |v| v.min(u64::from(u32::MAX)) as u32),
                open_for_ms: c.positive(self.cx, "open_for_ms").unwrap_or(base.open_for_ms),
                half_open_probes: c
                    .positive(self.cx, "half_open_probes")
                    .map_or(base.half_open_probes, |v| v.min(u64::from(u32::MAX)) as u32),
                scope: self.scope(c, &cb_path).unwrap_or(base.scope),
            });
        }
        let rl_path = join(path, "rate_limit");
        if let Some(r) = t.table(self.cx, "rate_limit", &rl_path, &["per_second", "burst", "scope"]) {
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
            // An endpoint's rate limit inherits the integration's burst and
            // scope unless it sets its own.
            let (inherited_burst, inherited_scope) = policy
                .rate_limit
                .as_ref()
                .map_or((1, Scope::Integration), |r| (r.burst, r.scope));
            let burst = r
                .positive(self.cx, "burst")
                .map_or(inherited_burst, |v| v.min(u64::from(u32::MAX)) as u32);
            policy.rate_limit = Some(RateLimit {
                per_second: per_second.unwrap_or(1.0),
                burst,
                scope: self.scope(r, &rl_path).unwrap_or(inherited_scope),
            });
        }
        policy
    }

    /// `scope` of a rate limit or circuit breaker table at `path`; `None`
    /// when absent or wrong (reported).
    fn scope(&mut self, t: Table<'_, '_>, path: &str) -> Option<Scope> {
        match t.str(self.cx, "scope")? {
            ("integration", _) => Some(Scope::Integration),
            ("connection", _) => Some(Scope::Connection),
            (other, span) => {
                self.cx
                    .error(span, join(path, "scope"), format!("unknown scope `{other}`"))
                    .expected_one_of(other, SCOPES.iter().copied());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, MINIMAL};
    use crate::ir::Scope;
    use crate::parse;

    #[test]
    fn scope_defaults_to_integration_and_endpoint_overrides_inherit_it() {
        let spec = parse(
            &format!("{MINIMAL}\n[policy]\nrate_limit = {{ per_second = 5 }}\ncircuit_breaker = {{}}\n"),
            "t.toml",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(spec.policy.rate_limit.unwrap().scope, Scope::Integration);
        assert_eq!(spec.policy.circuit_breaker.unwrap().scope, Scope::Integration);

        let integration_level = "\n[policy]\nrate_limit = { per_second = 5, burst = 5, scope = \"connection\" }\ncircuit_breaker = { failure_threshold = 3, scope = \"connection\" }\n";
        let spec = parse(&format!("{MINIMAL}{integration_level}"), "t.toml").unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(spec.policy.rate_limit.as_ref().unwrap().scope, Scope::Connection);
        assert_eq!(spec.policy.circuit_breaker.as_ref().unwrap().scope, Scope::Connection);
        assert_eq!(
            spec.endpoints[0].policy, spec.policy,
            "no override: the integration's policy"
        );

        let inherits = "policy = { rate_limit = { per_second = 1 }, circuit_breaker = { open_for_ms = 5000 } }\n";
        let spec =
            parse(&format!("{MINIMAL}{inherits}{integration_level}"), "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let ping = &spec.endpoints[0].policy;
        let rate_limit = ping.rate_limit.as_ref().unwrap();
        assert_eq!((rate_limit.per_second, rate_limit.burst), (1.0, 5));
        assert_eq!(rate_limit.scope, Scope::Connection, "inherited like `burst`");
        assert_eq!(ping.circuit_breaker.as_ref().unwrap().scope, Scope::Connection);

        let own = "policy = { rate_limit = { per_second = 1, scope = \"integration\" }, circuit_breaker = { scope = \"integration\" } }\n";
        let spec = parse(&format!("{MINIMAL}{own}{integration_level}"), "t.toml").unwrap_or_else(|d| panic!("{d}"));
        let ping = &spec.endpoints[0].policy;
        assert_eq!(ping.rate_limit.as_ref().unwrap().scope, Scope::Integration);
        let breaker = ping.circuit_breaker.as_ref().unwrap();
        assert_eq!((breaker.scope, breaker.failure_threshold), (Scope::Integration, 3));
    }

    #[test]
    fn wrong_scopes_are_all_reported_where_written_with_the_two_values() {
        let src = format!(
            "{MINIMAL}policy = {{ circuit_breaker = {{ scope = \"tenant\" }} }}\n\n[policy]\nrate_limit = {{ per_second = 5, scope = \"conection\" }}\n"
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].contains("t.toml:14:40: unknown scope `tenant`")
                && errs[0].contains("expected one of `integration`, `connection`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].contains("t.toml:17:40: unknown scope `conection`")
                && errs[1].contains("did you mean `connection`?"),
            "{}",
            errs[1]
        );
        let errs = errors(&format!(
            "{MINIMAL}\n[policy]\nrate_limit = {{ per_second = 5, scope = 1 }}\n"
        ));
        assert!(
            errs.len() == 1 && errs[0].contains("t.toml:16:40: `scope` must be a string"),
            "{errs:#?}"
        );
    }
}
