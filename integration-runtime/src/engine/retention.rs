//! Retention: how long finished calls are kept, and the background task
//! that deletes the older ones in small batches.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::runtime::Inner;
use crate::lifecycle::CallStatus;
use crate::metrics::Metrics;
use crate::store::{PruneRule, Store, StoreError};

/// How long finished calls are kept before the runtime deletes them, with
/// their events ([`RuntimeBuilder::retention`](crate::RuntimeBuilder::retention),
/// [`Runtime::prune`](crate::Runtime::prune)).
///
/// Each terminal status has its own age, counted from the moment the call
/// reached it (`completed_at`); a status without one is kept forever. The
/// default, [`Retention::new`], keeps every call forever: nothing is
/// deleted unless asked for. Calls still running, and finished calls whose
/// hooks are not delivered yet, are never deleted, whatever their age.
///
/// Deleting is done in batches of [`batch`](Retention::batch) calls (one
/// store transaction each), [`pause`](Retention::pause) apart, so workers
/// never wait long for the store; the background task looks for old calls
/// every [`every`](Retention::every).
///
/// ```
/// use std::time::Duration;
/// use integration_runtime::Retention;
///
/// const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// // Completed calls go after 30 days, failed ones after 90.
/// let retention = Retention::new().completed_after(30 * DAY).failed_after(90 * DAY);
/// assert!(!retention.keeps_everything());
/// assert!(Retention::new().keeps_everything());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    completed: Option<Duration>,
    failed: Option<Duration>,
    batch: u32,
    pause: Duration,
    every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new()
    }
}

impl Retention {
    /// Keeps every call forever; add an age per status to delete some.
    /// Batches of 500 calls, 50 ms apart, looked for every minute.
    pub fn new() -> Self {
        Retention {
            completed: None,
            failed: None,
            batch: 500,
            pause: Duration::from_millis(50),
            every: Duration::from_secs(60),
        }
    }

    /// Deletes `completed` calls that completed more than `age` ago.
    #[must_use]
    pub fn completed_after(mut self, age: Duration) -> Self {
        self.completed = Some(age);
        self
    }

    /// Deletes `failed` calls that failed more than `age` ago.
    #[must_use]
    pub fn failed_after(mut self, age: Duration) -> Self {
        self.failed = Some(age);
        self
    }

    /// Most calls deleted in one store transaction (default 500, at least
    /// 1): bounds how long one batch holds the store's write lock.
    #[must_use]
    pub fn batch(mut self, calls: u32) -> Self {
        self.batch = calls.max(1);
        self
    }

    /// How long to wait between two batches (default 50 ms), so that
    /// workers' writes get the store in between.
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// How often the background task looks for calls to delete (default 1
    /// minute); a look that finds a backlog deletes it all, batch by batch.
    #[must_use]
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// Deletes, now, the finished calls of `store` this retention lets go,
    /// batch by batch as the runtime does, and returns how many: for tools
    /// that hold a store but no runtime (the CLI's `calls prune`). A
    /// runtime's own pass is [`Runtime::prune`](crate::Runtime::prune),
    /// which also counts them in its metrics.
    pub async fn prune(&self, store: &dyn Store) -> Result<u64, StoreError> {
        prune_all(store, &Metrics::new(), self, Utc::now(), &|| false).await
    }

    /// Whether no status has an age: every call is kept forever.
    pub fn keeps_everything(&self) -> bool {
        self.completed.is_none() && self.failed.is_none()
    }

    /// One rule per status with an age, with its cutoff as of `now`. An age
    /// reaching before the first representable time deletes nothing.
    fn rules(&self, now: DateTime<Utc>) -> Vec<PruneRule> {
        [
            (CallStatus::Completed, self.completed),
            (CallStatus::Failed, self.failed),
        ]
        .into_iter()
        .filter_map(|(status, age)| {
            let age = chrono::Duration::from_std(age?).ok()?;
            let cutoff = now.checked_sub_signed(age)?;
            PruneRule::new([status], cutoff).ok()
        })
        .collect()
    }
}

/// Deletes everything `retention` lets go as of `now`: for each status,
/// batches until one comes back short, `retention.pause` apart. Counts
/// what it deleted in `metrics`; stops early (between batches) once
/// `stopping` says so. Returns how many calls it deleted.
async fn prune_all(
    store: &dyn Store,
    metrics: &Metrics,
    retention: &Retention,
    now: DateTime<Utc>,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<u64, StoreError> {
    let mut total = 0;
    for rule in retention.rules(now) {
        loop {
            if stopping() {
                return Ok(total);
            }
            let deleted = store.prune(&rule, retention.batch).await?;
            total += deleted;
            for status in rule.statuses() {
                metrics.calls_pruned(*status, deleted);
            }
            if deleted < u64::from(retention.batch) {
                break;
            }
            tokio::time::sleep(retention.pause).await;
        }
    }
    Ok(total)
}

/// [`Runtime::prune`](crate::Runtime::prune): one pass, to the end.
pub(crate) async fn prune_once(inner: &Inner, retention: &Retention) -> Result<u64, StoreError> {
    let now = inner.settings.clock.now();
    prune_all(&*inner.store, &inner.metrics, retention, now, &|| false).await
}

/// The background task [`Runtime::run`](crate::Runtime::run) starts when
/// the runtime has a retention: a pass at once, then one every
/// `retention.every`, until shutdown. A failed pass is logged and tried
/// again at the next.
pub(crate) async fn run(inner: Arc<Inner>, retention: Retention) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let stopping = || shutdown.borrow().is_some();
        if stopping() {
            return;
        }
        let now = inner.settings.clock.now();
        match prune_all(&*inner.store, &inner.metrics, &retention, now, &stopping).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned finished calls past their retention"),
            Err(error) => tracing::warn!(%error, "pruning finished calls failed; trying again later"),
        }
        tokio::select! {
            // The runtime's clock: a test clock advanced past `every` runs the next pass.
            () = inner.settings.clock.sleep(retention.every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_with_an_age_gets_its_own_cutoff() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let rules = Retention::new().failed_after(day).rules(now);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].statuses(), [CallStatus::Failed]);
        let expected = crate::store::truncate(now - chrono::Duration::days(1));
        assert_eq!(rules[0].completed_before(), expected);

        let both = Retention::new().completed_after(day).failed_after(2 * day).rules(now);
        assert_eq!(both.len(), 2);
        assert!(both[0].completed_before() > both[1].completed_before());
        assert!(Retention::new().rules(now).is_empty(), "keeps everything by default");
        let forever = Retention::new().completed_after(Duration::MAX).rules(now);
        assert!(forever.is_empty(), "an age beyond any time deletes nothing");
    }
}
