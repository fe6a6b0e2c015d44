//! The lifecycle every call follows, as a pure state machine.
//!
//! Events arrive in one unified sequence, `initialized -> processing ->
//! completed | failed`, and a call's [`CallStatus`] is the fold of its events
//! through [`CallStatus::apply`]. Events that arrive late, twice or out of
//! order are *ignored*, never applied backwards: the status only moves forward
//! and never leaves a terminal state.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a call is in its lifecycle.
///
/// ```
/// use integration_runtime::{CallStatus, EventKind};
///
/// let status = CallStatus::Pending
///     .apply(EventKind::Initialized)
///     .apply(EventKind::Completed)
///     .apply(EventKind::Processing); // late: ignored
/// assert_eq!(status, CallStatus::Completed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Created by business code; the provider has not acknowledged it yet.
    Pending,
    /// The provider knows the call (it has an external id) and works on it.
    Processing,
    /// Finished successfully; the response data is stored. Terminal.
    Completed,
    /// Finished unsuccessfully; the error is stored. Terminal.
    Failed,
}

/// The kind of a lifecycle event, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The provider accepted the call; carries the call id and the external id.
    Initialized,
    /// The provider reports work in progress.
    Processing,
    /// The provider reports success, with the result.
    Completed,
    /// The provider (or the runtime, on its behalf) reports failure.
    Failed,
}

/// What applying one event did to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status moved from the first value to the second.
    Moved(CallStatus, CallStatus),
    /// The event carried no news (a duplicate, a late or out-of-order event,
    /// or anything after a terminal state); the status is unchanged.
    Ignored(CallStatus),
}

impl Transition {
    /// The status after the event.
    pub fn status(self) -> CallStatus {
        match self {
            Transition::Moved(_, to) | Transition::Ignored(to) => to,
        }
    }

    /// Whether the event changed the status.
    pub fn is_moved(self) -> bool {
        matches!(self, Transition::Moved(..))
    }
}

impl CallStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [CallStatus; 4] = [
        CallStatus::Pending,
        CallStatus::Processing,
        CallStatus::Completed,
        CallStatus::Failed,
    ];

    /// Whether no further event can change this status.
    pub fn is_terminal(self) -> bool {
        matches!(self, CallStatus::Completed | CallStatus::Failed)
    }

    /// The status after `event`; see [`CallStatus::transition`] for whether it moved.
    #[must_use]
    pub fn apply(self, event: EventKind) -> CallStatus {
        self.transition(event).status()
    }

    /// Applies `event` and says whether the status moved.
    ///
    /// The rule: a status only moves forward along
    /// `pending -> processing -> completed | failed`. A terminal event may
    /// arrive without the ones before it (a sync API, a webhook that skipped
    /// `processing`); anything that would move backwards, or out of a
    /// terminal state, is ignored.
    pub fn transition(self, event: EventKind) -> Transition {
        let target = match event {
            EventKind::Initialized | EventKind::Processing => CallStatus::Processing,
            EventKind::Completed => CallStatus::Completed,
            EventKind::Failed => CallStatus::Failed,
        };
        if self.is_terminal() || target.rank() <= self.rank() {
            Transition::Ignored(self)
        } else {
            Transition::Moved(self, target)
        }
    }

    /// The status as stored and shown: `pending`, `processing`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Pending => "pending",
            CallStatus::Processing => "processing",
            CallStatus::Completed => "completed",
            CallStatus::Failed => "failed",
        }
    }

    fn rank(self) -> u8 {
        match self {
            CallStatus::Pending => 0,
            CallStatus::Processing => 1,
            CallStatus::Completed | CallStatus::Failed => 2,
        }
    }
}

impl EventKind {
    /// Every event kind, in lifecycle order.
    pub const ALL: [EventKind; 4] = [
        EventKind::Initialized,
        EventKind::Processing,
        EventKind::Completed,
        EventKind::Failed,
    ];

    /// The event kind as stored and shown: `initialized`, `processing`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Initialized => "initialized",
            EventKind::Processing => "processing",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a known status or event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct ParseLifecycleError {
    what: &'static str,
    value: String,
}

impl FromStr for CallStatus {
    type Err = ParseLifecycleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseLifecycleError {
                what: "call status",
                value: s.to_owned(),
            })
    }
}

impl FromStr for EventKind {
    type Err = ParseLifecycleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ParseLifecycleError {
                what: "event kind",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::CallStatus::*;
    use super::EventKind as E;
    use super::*;

    /// Every (status, event) pair and the status it must lead to.
    const TABLE: [(CallStatus, EventKind, CallStatus); 16] = [
        (Pending, E::Initialized, Processing),
        (Pending, E::Processing, Processing),
        (Pending, E::Completed, Completed),
        (Pending, E::Failed, Failed),
        (Processing, E::Initialized, Processing),
        (Processing, E::Processing, Processing),
        (Processing, E::Completed, Completed),
        (Processing, E::Failed, Failed),
        (Completed, E::Initialized, Completed),
        (Completed, E::Processing, Completed),
        (Completed, E::Completed, Completed),
        (Completed, E::Failed, Completed),
        (Failed, E::Initialized, Failed),
        (Failed, E::Processing, Failed),
        (Failed, E::Completed, Failed),
        (Failed, E::Failed, Failed),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        for (from, event, to) in TABLE {
            let transition = from.transition(event);
            assert_eq!(transition.status(), to, "{from} + {event}");
            assert_eq!(transition.is_moved(), from != to, "{from} + {event}");
        }
    }

    #[test]
    fn table_covers_every_pair() {
        for from in CallStatus::ALL {
            for event in EventKind::ALL {
                assert!(TABLE.iter().any(|(f, e, _)| *f == from && *e == event));
            }
        }
    }

    #[test]
    fn any_order_of_events_ends_in_the_first_terminal_state() {
        // All 4! orders of the four events: the fold must end in whichever
        // terminal event came first, and never return to an earlier state.
        let mut orders = vec![vec![]];
        for _ in 0..4 {
            orders = orders
                .into_iter()
                .flat_map(|order: Vec<EventKind>| {
                    EventKind::ALL
                        .into_iter()
                        .filter({
                            let order = order.clone();
                            move |e| !order.contains(e)
                        })
                        .map({
                            let order = order.clone();
                            move |e| {
                                let mut next = order.clone();
                                next.push(e);
                                next
                            }
                        })
                })
                .collect();
        }
        assert_eq!(orders.len(), 24);
        for order in orders {
            let mut status = Pending;
            for &event in &order {
                let next = status.apply(event);
                assert!(next.rank() >= status.rank(), "{order:?} moved backwards");
                status = next;
            }
            let first_terminal = order
                .iter()
                .find(|e| matches!(e, E::Completed | E::Failed))
                .map(|e| Pending.apply(*e));
            assert_eq!(Some(status), first_terminal, "{order:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for status in CallStatus::ALL {
            assert_eq!(status.as_str().parse::<CallStatus>(), Ok(status));
        }
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("done".parse::<CallStatus>().is_err());
    }
}
