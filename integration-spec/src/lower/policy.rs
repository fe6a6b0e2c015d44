//! The `[policy]` section and its per-endpoint overrides: timeouts, retry
//! (attempts, backoff, which failures), circuit breaker, rate limit,
//! concurrency, response size limit and redirects.

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
}
