//! Retention: which finished calls [`Store::prune`](super::Store::prune)
//! may delete, and the choice of the oldest ones, shared by every backend.

use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

use super::truncate;
use crate::lifecycle::CallStatus;

/// Which calls [`Store::prune`](super::Store::prune) deletes: calls that
/// reached one of `statuses` before `completed_before`.
///
/// Only terminal statuses (`completed`, `failed`) can be named, so a rule
/// never reaches a call that is still running. Whatever the rule, a store
/// keeps a call whose terminal notification (its hooks) is still pending.
///
/// ```
/// use chrono::{Duration, Utc};
/// use integration_runtime::{CallStatus, PruneRule};
///
/// let month_ago = Utc::now() - Duration::days(30);
/// let rule = PruneRule::new([CallStatus::Completed], month_ago).unwrap();
/// assert_eq!(rule.statuses(), [CallStatus::Completed]);
/// assert!(PruneRule::new([CallStatus::Pending], month_ago).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRule {
    statuses: Vec<CallStatus>,
    completed_before: DateTime<Utc>,
}

impl PruneRule {
    /// Calls in any of `statuses` (each terminal; repeats are ignored) that
    /// reached it strictly before `completed_before` (kept to the
    /// millisecond, as stored times are). No status: a rule that matches
    /// nothing.
    pub fn new(
        statuses: impl IntoIterator<Item = CallStatus>,
        completed_before: DateTime<Utc>,
    ) -> Result<Self, NotTerminal> {
        let mut kept = Vec::new();
        for status in statuses {
            if !status.is_terminal() {
                return Err(NotTerminal(status));
            }
            if !kept.contains(&status) {
                kept.push(status);
            }
        }
        Ok(PruneRule {
            statuses: kept,
            completed_before: truncate(completed_before),
        })
    }

    /// The statuses the rule matches, each terminal, without repeats.
    pub fn statuses(&self) -> &[CallStatus] {
        &self.statuses
    }

    /// Calls that reached their status at or after this time are kept.
    pub fn completed_before(&self) -> DateTime<Utc> {
        self.completed_before
    }

    /// Whether the rule matches a call in `status` that reached it at
    /// `completed_at` (the notification is the store's to check).
    pub(crate) fn matches(&self, status: CallStatus, completed_at: Option<DateTime<Utc>>) -> bool {
        self.statuses.contains(&status) && completed_at.is_some_and(|at| at < self.completed_before)
    }
}

/// A [`PruneRule`] named a status that is not terminal: calls still
/// running are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only finished calls (completed, failed) can be pruned, not `{0}` ones")]
pub struct NotTerminal(pub CallStatus);

/// The `limit` candidates with the smallest keys (a call's `completed_at`
/// and creation sequence), smallest first, in memory bounded by `limit`
/// whatever the number of candidates.
pub(crate) fn oldest<K: Ord, T>(candidates: impl IntoIterator<Item = (K, T)>, limit: usize) -> Vec<T> {
    if limit == 0 {
        return Vec::new();
    }
    let mut kept: BinaryHeap<Keyed<K, T>> = BinaryHeap::with_capacity(limit + 1);
    for (key, value) in candidates {
        kept.push(Keyed(key, value));
        if kept.len() > limit {
            // Drops the largest key: the newest call seen so far.
            kept.pop();
        }
    }
    kept.into_sorted_vec()
        .into_iter()
        .map(|Keyed(_, value)| value)
        .collect()
}

/// A value ordered by its key only.
struct Keyed<K, T>(K, T);

impl<K: Ord, T> PartialEq for Keyed<K, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: Ord, T> Eq for Keyed<K, T> {}

impl<K: Ord, T> PartialOrd for Keyed<K, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord, T> Ord for Keyed<K, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_keeps_the_smallest_keys_in_order() {
        let candidates = [(5, 'e'), (1, 'a'), (4, 'd'), (2, 'b'), (3, 'c')];
        assert_eq!(oldest(candidates, 3), vec!['a', 'b', 'c']);
        assert_eq!(oldest(candidates, 10).len(), 5);
        assert!(oldest(candidates, 0).is_empty());
    }

    #[test]
    fn rules_take_terminal_statuses_only() {
        let now = Utc::now();
        let rule = PruneRule::new([CallStatus::Failed, CallStatus::Failed], now).unwrap();
        assert_eq!(rule.statuses(), [CallStatus::Failed]);
        assert_eq!(
            PruneRule::new([CallStatus::Completed, CallStatus::Processing], now),
            Err(NotTerminal(CallStatus::Processing))
        );
        let earlier = now - chrono::Duration::milliseconds(1);
        assert!(rule.matches(CallStatus::Failed, Some(earlier)));
        assert!(!rule.matches(CallStatus::Failed, Some(rule.completed_before())));
        assert!(!rule.matches(CallStatus::Completed, Some(earlier)));
        assert!(!rule.matches(CallStatus::Failed, None));
    }
}
