//! The `[polling]` section: which endpoint to poll for an async call's
//! status, how often, with what backoff, and when to give up.

use super::Lower;
use crate::check;
use crate::ir::*;
use crate::read::Table;

pub(super) const POLLING_KEYS: &[&str] = &[
    "endpoint",
    "interval_ms",
    "backoff",
    "max_interval_ms",
    "give_up_after_s",
];

impl Lower<'_> {
    pub(super) fn polling(&mut self, t: Table<'_, '_>, endpoints: &[Endpoint]) -> Option<Polling> {
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
}
