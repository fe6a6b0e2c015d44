//! Scripted outcomes: what the fake provider does with each call.

use std::time::Duration;

use serde_json::Value;

/// What the fake provider does with one call.
///
/// ```
/// use integration_testkit::Outcome;
/// use serde_json::json;
///
/// let ok = Outcome::complete(json!({ "url": "https://cdn.example.com/a.mp3", "duration_ms": 900 }));
/// let throttled = Outcome::reject(429).retry_after(1);
/// let broken = Outcome::fail("voice not available").delay(std::time::Duration::from_millis(50));
/// # let _ = (ok, throttled, broken);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub(crate) kind: OutcomeKind,
    pub(crate) delay: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutcomeKind {
    /// Finish successfully; `None` makes up a result from the spec's entity.
    Complete(Option<Value>),
    /// Finish with this failure message.
    Fail(String),
    /// Refuse the starting request with an HTTP error.
    Reject {
        status: u16,
        retry_after: Option<u64>,
        message: String,
    },
}

impl Outcome {
    /// The call succeeds with this result: an object keyed by the result
    /// entity's field names (the fake places each at the spec's path).
    pub fn complete(result: Value) -> Self {
        Outcome {
            kind: OutcomeKind::Complete(Some(result)),
            delay: Duration::ZERO,
        }
    }

    /// The call succeeds with a result made up from the spec's entity
    /// (strings `"fake-<field>"`, numbers 1, the first enum value, ...).
    pub fn complete_with_made_up_result() -> Self {
        Outcome {
            kind: OutcomeKind::Complete(None),
            delay: Duration::ZERO,
        }
    }

    /// The call fails with `message` (as the provider's error message).
    pub fn fail(message: impl Into<String>) -> Self {
        Outcome {
            kind: OutcomeKind::Fail(message.into()),
            delay: Duration::ZERO,
        }
    }

    /// The starting request is refused with HTTP `status` (e.g. 500, 429, 400).
    pub fn reject(status: u16) -> Self {
        Outcome {
            kind: OutcomeKind::Reject {
                status,
                retry_after: None,
                message: format!("scripted HTTP {status}"),
            },
            delay: Duration::ZERO,
        }
    }

    /// Adds a `Retry-After` header (seconds) to a rejection.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        if let OutcomeKind::Reject { retry_after, .. } = &mut self.kind {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Sets the provider's error message of a rejection.
    pub fn message(mut self, text: impl Into<String>) -> Self {
        if let OutcomeKind::Reject { message, .. } = &mut self.kind {
            *message = text.into();
        }
        self
    }

    /// Delays the answer to the starting request.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The outcomes of one endpoint, in order; the last one repeats.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    outcomes: Vec<Outcome>,
    next: usize,
}

impl Script {
    pub(crate) fn new(outcomes: Vec<Outcome>) -> Self {
        Script { outcomes, next: 0 }
    }

    /// The next outcome; the last one repeats forever.
    pub(crate) fn next(&mut self) -> Outcome {
        let outcome = self.outcomes.get(self.next).or(self.outcomes.last()).cloned();
        self.next += 1;
        outcome.unwrap_or_else(Outcome::complete_with_made_up_result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_outcome_repeats() {
        let mut script = Script::new(vec![Outcome::reject(500), Outcome::fail("no")]);
        assert_eq!(script.next(), Outcome::reject(500));
        assert_eq!(script.next(), Outcome::fail("no"));
        assert_eq!(script.next(), Outcome::fail("no"));
        assert_eq!(Script::new(vec![]).next(), Outcome::complete_with_made_up_result());
    }

    #[test]
    fn retry_after_applies_to_rejections_only() {
        assert_eq!(Outcome::fail("x").retry_after(3), Outcome::fail("x"));
        let rejected = Outcome::reject(429).retry_after(3);
        assert!(matches!(
            rejected.kind,
            OutcomeKind::Reject {
                retry_after: Some(3),
                ..
            }
        ));
    }
}
