//! Metrics: recorded through the [`metrics`](https://docs.rs/metrics) facade,
//! and served in the Prometheus text format by the runtime's own renderer.
//!
//! # Design
//!
//! Every event the engine and the webhook receiver count is recorded
//! **twice**: in the runtime's [`Metrics`] registry, which
//! `GET /metrics` renders, and through the `metrics` facade (`counter!`,
//! `histogram!`), which reaches whatever recorder the application installed
//! with `metrics::set_global_recorder` (Prometheus, StatsD, OpenTelemetry
//! exporters). The runtime never installs a global recorder itself: without
//! one the facade is a no-op, and an application that has one keeps it.
//! Install yours before building the runtime: [`RuntimeBuilder::build`](crate::RuntimeBuilder::build)
//! describes the metrics (help text, and seconds as the unit of the
//! histograms) to the recorder installed then.
//!
//! `/metrics` keeps its own small renderer rather than
//! `metrics-exporter-prometheus`: the runtime needs a fixed handful of
//! counter and histogram families with string labels, rendered in ~100
//! lines. The exporter, even with its default features off, would add 16
//! crates to a Linux build of this crate (itself, `metrics-util`, `evmap`,
//! `left-right`, `hashbag`, `quanta`, `raw-cpuid`, `crossbeam-epoch`,
//! `sketches-ddsketch`, `rand_xoshiro`, `foldhash`, and second copies of
//! `rand`, `rand_chacha`, `rand_core`, `getrandom` and `hashbrown`), where
//! the facade adds two (`metrics`, `rapidhash`; `Cargo.lock` also lists
//! `portable-atomic`, built for 32-bit targets only).
//!
//! Each series is an `Arc` of atomics, found once per record in a
//! mutex-guarded `BTreeMap` keyed by its label values (sorted, so the
//! output is stable).
//!
//! Two kinds of numbers are exported:
//!
//! - **Events counted in process** (reset on restart, as Prometheus
//!   counters are meant to be): calls created and finished, attempts and
//!   their latency (recorded by the engine through [`Metrics::call_created`],
//!   [`Metrics::call_finished`], [`Metrics::attempt`]), webhook deliveries
//!   accepted and rejected by reason, and their handling latency (recorded by
//!   the [webhook receiver](crate::webhook)).
//! - **State read at scrape time** from the store and the circuit breakers,
//!   so it is right across restarts and processes: calls per integration and
//!   status, the queue depth (pending calls), whether the store answers, and
//!   each circuit's state. These are only in `/metrics`: they are not events,
//!   so the facade does not see them.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `integration_calls_created_total` | counter | `integration` |
//! | `integration_calls_finished_total` | counter | `integration`, `status` (`completed`, `failed`), `kind` (a failure's [`FailureKind`](crate::FailureKind), empty for `completed`) |
//! | `integration_attempts_total` | counter | `integration`, `endpoint`, `outcome` |
//! | `integration_attempt_duration_seconds` | histogram | `integration`, `endpoint` |
//! | `integration_webhook_deliveries_total` | counter | `integration`, `result` (`accepted`, `rejected`), `reason` |
//! | `integration_webhook_duration_seconds` | histogram | `integration` |
//! | `integration_hook_dead_letters_total` | counter | `integration` |
//! | `integration_calls_pruned_total` | counter | `status` (`completed`, `failed`) |
//! | `integration_calls` | gauge | `integration`, `status` |
//! | `integration_queue_depth` | gauge | `integration` |
//! | `integration_store_up` | gauge | |
//! | `integration_circuit_state` | gauge | `circuit` (0 closed, 1 half open, 2 open) |
//!
//! Webhook `reason`s: accepted ones are `applied`, `ignored` (recorded, but
//! the status did not move) and `duplicate`; rejected ones are the
//! [`SignatureError::reason`](crate::webhook::signature::SignatureError::reason)s,
//! `body_too_large`, `malformed_json`, `unreadable_payload`,
//! `unknown_external_id` and `store_error`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "server")]
use axum::{http::header, response::IntoResponse, routing::get, Router};

use crate::integration::Integration;
use crate::lifecycle::CallStatus;
use crate::ops::CircuitSource;
use crate::policy::CircuitState;
use crate::store::Store;

/// A metric recorded in process: its name, and its help text.
struct Desc {
    name: &'static str,
    help: &'static str,
}

const CALLS_CREATED: Desc = Desc {
    name: "integration_calls_created_total",
    help: "Calls created by business code.",
};
const CALLS_FINISHED: Desc = Desc {
    name: "integration_calls_finished_total",
    help: "Calls that reached a terminal status.",
};
const ATTEMPTS: Desc = Desc {
    name: "integration_attempts_total",
    help: "Requests sent to providers, by outcome.",
};
const ATTEMPT_SECONDS: Desc = Desc {
    name: "integration_attempt_duration_seconds",
    help: "Latency of requests to providers.",
};
const WEBHOOK_DELIVERIES: Desc = Desc {
    name: "integration_webhook_deliveries_total",
    help: "Webhook deliveries, accepted or rejected, by reason.",
};
const WEBHOOK_SECONDS: Desc = Desc {
    name: "integration_webhook_duration_seconds",
    help: "Time to verify, map and store a webhook delivery.",
};

const CALLS_PRUNED: Desc = Desc {
    name: "integration_calls_pruned_total",
    help: "Finished calls deleted, with their events, past their retention.",
};

const HOOK_DEAD_LETTERS: Desc = Desc {
    name: "integration_hook_dead_letters_total",
    help: "Terminal notifications given up: the call did not decode for its hook.",
};

/// Describes the in-process metrics to the `metrics` recorder installed now
/// (a recorder installed later gets the numbers without help texts).
pub(crate) fn describe() {
    for desc in [
        CALLS_CREATED,
        CALLS_FINISHED,
        ATTEMPTS,
        WEBHOOK_DELIVERIES,
        HOOK_DEAD_LETTERS,
        CALLS_PRUNED,
    ] {
        ::metrics::describe_counter!(desc.name, desc.help);
    }
    for desc in [ATTEMPT_SECONDS, WEBHOOK_SECONDS] {
        ::metrics::describe_histogram!(desc.name, ::metrics::Unit::Seconds, desc.help);
    }
}

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The runtime's metrics registry, rendered by `/metrics`. Cheap to clone:
/// clones share the series.
///
/// Each record also goes through the `metrics` facade, under the same name
/// and labels, to the global recorder the application installed (if any),
/// whichever registry the runtime was given. The runtime never installs a
/// global recorder itself.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Registry {
    calls_created: Family<Counter>,
    calls_finished: Family<Counter>,
    attempts: Family<Counter>,
    attempt_seconds: Family<Histogram>,
    webhook_deliveries: Family<Counter>,
    webhook_seconds: Family<Histogram>,
    hook_dead_letters: Family<Counter>,
    calls_pruned: Family<Counter>,
}

struct Family<M> {
    series: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M> Default for Family<M> {
    fn default() -> Self {
        Family {
            series: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<M: Default> Family<M> {
    fn get(&self, labels: &[&str]) -> Arc<M> {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(series.entry(key).or_default())
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Arc<M>)> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .map(|(labels, metric)| (labels.clone(), Arc::clone(metric)))
            .collect()
    }
}

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn inc(&self) {
        self.add(1);
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Histogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Counts a call created by business code.
    pub fn call_created(&self, integration: &str) {
        self.inner.calls_created.get(&[integration]).inc();
        ::metrics::counter!(CALLS_CREATED.name, "integration" => integration.to_owned()).increment(1);
    }

    /// Counts a call that reached a terminal `status`, failed with `kind`
    /// (`None` for a completion, or a failure of no known kind).
    pub fn call_finished(&self, integration: &str, status: CallStatus, kind: Option<crate::FailureKind>) {
        let kind = kind.map_or("", crate::FailureKind::as_str);
        self.inner
            .calls_finished
            .get(&[integration, status.as_str(), kind])
            .inc();
        ::metrics::counter!(
            CALLS_FINISHED.name,
            "integration" => integration.to_owned(),
            "status" => status.as_str(),
            "kind" => kind,
        )
        .increment(1);
    }

    /// Counts one request to a provider and records how long it took.
    /// `outcome` is a short word: `ok`, `error`, `timeout`, ...
    pub fn attempt(&self, integration: &str, endpoint: &str, outcome: &str, latency: Duration) {
        self.inner.attempts.get(&[integration, endpoint, outcome]).inc();
        self.inner
            .attempt_seconds
            .get(&[integration, endpoint])
            .observe(latency);
        ::metrics::counter!(
            ATTEMPTS.name,
            "integration" => integration.to_owned(),
            "endpoint" => endpoint.to_owned(),
            "outcome" => outcome.to_owned(),
        )
        .increment(1);
        ::metrics::histogram!(
            ATTEMPT_SECONDS.name,
            "integration" => integration.to_owned(),
            "endpoint" => endpoint.to_owned(),
        )
        .record(latency.as_secs_f64());
    }

    /// Counts a webhook delivery (`accepted` or not, with its reason) and its
    /// handling time.
    // Only the receiver (feature `server`) records deliveries.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn webhook_delivery(&self, integration: &str, accepted: bool, reason: &str, latency: Duration) {
        let result = if accepted { "accepted" } else { "rejected" };
        self.inner.webhook_deliveries.get(&[integration, result, reason]).inc();
        self.inner.webhook_seconds.get(&[integration]).observe(latency);
        ::metrics::counter!(
            WEBHOOK_DELIVERIES.name,
            "integration" => integration.to_owned(),
            "result" => result,
            "reason" => reason.to_owned(),
        )
        .increment(1);
        ::metrics::histogram!(WEBHOOK_SECONDS.name, "integration" => integration.to_owned())
            .record(latency.as_secs_f64());
    }

    /// Counts a terminal notification of `integration` given up (dead-lettered).
    pub(crate) fn hook_dead_lettered(&self, integration: &str) {
        self.inner.hook_dead_letters.get(&[integration]).inc();
        ::metrics::counter!(HOOK_DEAD_LETTERS.name, "integration" => integration.to_owned()).increment(1);
    }

    /// Counts `n` calls in terminal `status` deleted past their retention.
    pub(crate) fn calls_pruned(&self, status: CallStatus, n: u64) {
        if n == 0 {
            return;
        }
        self.inner.calls_pruned.get(&[status.as_str()]).add(n);
        ::metrics::counter!(CALLS_PRUNED.name, "status" => status.as_str()).increment(n);
    }

    /// An exporter of these metrics plus the state of `store` (and, once
    /// added, of integrations and circuit breakers).
    pub fn exporter(&self, store: Arc<dyn Store>) -> MetricsExporter {
        MetricsExporter {
            metrics: self.clone(),
            store,
            integrations: Vec::new(),
            circuits: None,
        }
    }

    /// Writes the in-process counters and histograms.
    fn render_registry(&self, out: &mut String) {
        let r = &*self.inner;
        counters(out, &CALLS_CREATED, &["integration"], &r.calls_created);
        counters(
            out,
            &CALLS_FINISHED,
            &["integration", "status", "kind"],
            &r.calls_finished,
        );
        counters(out, &ATTEMPTS, &["integration", "endpoint", "outcome"], &r.attempts);
        histograms(out, &ATTEMPT_SECONDS, &["integration", "endpoint"], &r.attempt_seconds);
        counters(
            out,
            &WEBHOOK_DELIVERIES,
            &["integration", "result", "reason"],
            &r.webhook_deliveries,
        );
        histograms(out, &WEBHOOK_SECONDS, &["integration"], &r.webhook_seconds);
        counters(out, &HOOK_DEAD_LETTERS, &["integration"], &r.hook_dead_letters);
        counters(out, &CALLS_PRUNED, &["status"], &r.calls_pruned);
    }
}

/// Serves `GET /metrics`: the registry plus state read from the store and
/// the circuit breakers at scrape time.
#[derive(Clone)]
pub struct MetricsExporter {
    metrics: Metrics,
    store: Arc<dyn Store>,
    integrations: Vec<String>,
    circuits: Option<Arc<dyn CircuitSource>>,
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExporter")
            .field("integrations", &self.integrations)
            .finish_non_exhaustive()
    }
}

impl MetricsExporter {
    /// Also exports the call counts and queue depth of `integration`.
    #[must_use]
    pub fn integration(mut self, integration: &dyn Integration) -> Self {
        let name = integration.descriptor().name.to_owned();
        if !self.integrations.contains(&name) {
            self.integrations.push(name);
        }
        self
    }

    /// Also exports the state of every circuit breaker `source` reports.
    #[must_use]
    pub fn circuits(mut self, source: Arc<dyn CircuitSource>) -> Self {
        self.circuits = Some(source);
        self
    }

    /// The whole exposition, in the Prometheus text format (version 0.0.4).
    pub async fn render(&self) -> String {
        let mut out = String::new();
        self.metrics.render_registry(&mut out);

        let mut store_up = true;
        let mut counts = Vec::new();
        for name in &self.integrations {
            match self.store.count_by_status(Some(name)).await {
                Ok(c) => counts.push((name.as_str(), c)),
                Err(_) => store_up = false,
            }
        }
        if self.integrations.is_empty() {
            store_up = self.store.count_by_status(None).await.is_ok();
        }
        header_lines(&mut out, "integration_calls", "Calls in the store, by status.", "gauge");
        for (name, c) in &counts {
            for status in CallStatus::ALL {
                sample(
                    &mut out,
                    "integration_calls",
                    &[("integration", name), ("status", status.as_str())],
                    c.get(status) as f64,
                );
            }
        }
        header_lines(
            &mut out,
            "integration_queue_depth",
            "Calls waiting to be sent (pending).",
            "gauge",
        );
        for (name, c) in &counts {
            sample(
                &mut out,
                "integration_queue_depth",
                &[("integration", name)],
                c.pending as f64,
            );
        }
        header_lines(
            &mut out,
            "integration_store_up",
            "Whether the store answered the scrape's queries (1) or not (0).",
            "gauge",
        );
        sample(&mut out, "integration_store_up", &[], if store_up { 1.0 } else { 0.0 });
        header_lines(
            &mut out,
            "integration_circuit_state",
            "Circuit breaker state: 0 closed, 1 half open, 2 open.",
            "gauge",
        );
        if let Some(source) = &self.circuits {
            for report in source.circuits() {
                let value = match report.state {
                    CircuitState::Closed => 0.0,
                    CircuitState::HalfOpen => 1.0,
                    CircuitState::Open { .. } => 2.0,
                };
                sample(
                    &mut out,
                    "integration_circuit_state",
                    &[("circuit", &report.name)],
                    value,
                );
            }
        }
        out
    }

    /// A router serving `GET /metrics`.
    #[cfg(feature = "server")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn router(self) -> Router {
        let exporter = Arc::new(self);
        Router::new().route(
            "/metrics",
            get(move || {
                let exporter = Arc::clone(&exporter);
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        exporter.render().await,
                    )
                        .into_response()
                }
            }),
        )
    }
}

fn header_lines(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn counters(out: &mut String, desc: &Desc, keys: &[&str], family: &Family<Counter>) {
    let name = desc.name;
    header_lines(out, name, desc.help, "counter");
    for (values, counter) in family.snapshot() {
        let labels: Vec<(&str, &str)> = keys.iter().copied().zip(values.iter().map(String::as_str)).collect();
        sample(out, name, &labels, counter.0.load(Ordering::Relaxed) as f64);
    }
}

fn histograms(out: &mut String, desc: &Desc, keys: &[&str], family: &Family<Histogram>) {
    let name = desc.name;
    header_lines(out, name, desc.help, "histogram");
    for (values, histogram) in family.snapshot() {
        let labels: Vec<(&str, &str)> = keys.iter().copied().zip(values.iter().map(String::as_str)).collect();
        let mut cumulative = 0u64;
        let bucket_name = format!("{name}_bucket");
        for (i, bucket) in histogram.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| number(*b));
            let mut with_le = labels.clone();
            with_le.push(("le", &bound));
            sample(out, &bucket_name, &with_le, cumulative as f64);
        }
        let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        sample(out, &format!("{name}_sum"), &labels, sum);
        let count = histogram.count.load(Ordering::Relaxed) as f64;
        sample(out, &format!("{name}_count"), &labels, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let metrics = Metrics::new();
        metrics.call_created("A");
        metrics.call_created("A");
        metrics.call_finished("A", CallStatus::Failed, Some(crate::FailureKind::Timeout));
        metrics.attempt("A", "go", "ok", Duration::from_millis(20));
        metrics.attempt("A", "go", "ok", Duration::from_secs(60));
        metrics.webhook_delivery("A\"b", false, "signature_mismatch", Duration::ZERO);
        metrics.calls_pruned(CallStatus::Completed, 500);
        metrics.calls_pruned(CallStatus::Completed, 3);
        let mut out = String::new();
        metrics.render_registry(&mut out);
        assert!(
            out.contains("integration_calls_created_total{integration=\"A\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("integration_calls_finished_total{integration=\"A\",status=\"failed\",kind=\"timeout\"} 1\n")
        );
        assert!(
            out.contains(
                "integration_attempt_duration_seconds_bucket{integration=\"A\",endpoint=\"go\",le=\"0.025\"} 1\n"
            ),
            "{out}"
        );
        assert!(out.contains(
            "integration_attempt_duration_seconds_bucket{integration=\"A\",endpoint=\"go\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            out.contains("integration_attempt_duration_seconds_sum{integration=\"A\",endpoint=\"go\"} 60.02\n"),
            "{out}"
        );
        assert!(out.contains("integration=\"A\\\"b\",result=\"rejected\""), "{out}");
        assert!(out.contains("# TYPE integration_attempts_total counter\n"));
        assert!(
            out.contains("integration_calls_pruned_total{status=\"completed\"} 503\n"),
            "{out}"
        );
    }
}
