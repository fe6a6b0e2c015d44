//! A consecutive-failure circuit breaker.
//!
//! Own code rather than a crate: `failsafe` has no notion of a number of half-open
//! probes nor of "how long until half-open" (which the engine needs to reschedule),
//! and the state machine below is small enough to verify by reading. Time is passed
//! in (`now`), so the unit tests are deterministic without sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::descriptor::CircuitBreakerPolicy;

/// The state of an integration's circuit breaker, for health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests are sent.
    Closed,
    /// Requests are refused without being sent until `until`, then the circuit half-opens.
    Open {
        /// When the circuit half-opens.
        until: std::time::Instant,
    },
    /// A few probe requests are let through: a success closes the circuit, a failure re-opens it.
    HalfOpen,
}

/// What an attempt tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The provider answered (2xx, or a 4xx: it is up, the request was wrong).
    Success,
    /// A 5xx, a timeout, a connection or transport failure.
    Failure,
    /// Nothing learnt about the provider (the attempt was abandoned, the token endpoint failed).
    Neutral,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { admitted: u32 },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Bumped on every change of phase: outcomes of attempts admitted in an
    /// earlier phase are ignored.
    generation: u64,
}

/// One breaker; shared through an `Arc` by every clone of the client.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    probes: u32,
    state: Mutex<State>,
}

/// Why the breaker refused an attempt: the time until it may admit one, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected(pub(crate) Option<Duration>);

impl CircuitBreaker {
    /// A closed breaker. A threshold or probe count of 0 is taken as 1.
    pub(crate) fn new(policy: CircuitBreakerPolicy) -> Self {
        CircuitBreaker {
            threshold: policy.failure_threshold.max(1),
            open_for: Duration::from_millis(policy.open_for_ms),
            probes: policy.half_open_probes.max(1),
            state: Mutex::new(State {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an attempt would be admitted now, without taking a probe slot.
    pub(crate) fn check(&self, now: Instant) -> Result<(), Rejected> {
        match self.lock().phase {
            Phase::Open { until } if now < until => Err(Rejected(Some(until - now))),
            Phase::HalfOpen { admitted } if admitted >= self.probes => Err(Rejected(None)),
            _ => Ok(()),
        }
    }

    /// Admits an attempt (a probe when half open), or says how long until it could.
    pub(crate) fn acquire(self: &Arc<Self>, now: Instant) -> Result<BreakerPermit, Rejected> {
        let mut state = self.lock();
        if let Phase::Open { until } = state.phase {
            if now < until {
                return Err(Rejected(Some(until - now)));
            }
            state.phase = Phase::HalfOpen { admitted: 0 };
            state.generation += 1;
        }
        let probe = match &mut state.phase {
            Phase::Closed { .. } => false,
            Phase::HalfOpen { admitted } if *admitted < self.probes => {
                *admitted += 1;
                true
            }
            Phase::HalfOpen { .. } | Phase::Open { .. } => return Err(Rejected(None)),
        };
        Ok(BreakerPermit {
            breaker: Arc::clone(self),
            generation: state.generation,
            probe,
            done: false,
        })
    }

    /// Opens the circuit until `until` (another process opened it), unless it
    /// is open at least that long already. Attempts in flight no longer count.
    pub(crate) fn open_until(&self, until: Instant) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Open { until: mine } if mine >= until) {
            return;
        }
        state.phase = Phase::Open { until };
        state.generation += 1;
    }

    /// Records an attempt's outcome; returns how long the circuit stays open
    /// when this outcome opened it.
    fn record(&self, generation: u64, probe: bool, outcome: Outcome, now: Instant) -> Option<Duration> {
        let mut state = self.lock();
        if state.generation != generation {
            return None;
        }
        let next = match (state.phase, outcome) {
            (_, Outcome::Neutral) => {
                if let Phase::HalfOpen { admitted } = &mut state.phase {
                    if probe {
                        *admitted = admitted.saturating_sub(1);
                    }
                }
                return None;
            }
            (Phase::Closed { .. }, Outcome::Success) => Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures < self.threshold {
                    state.phase = Phase::Closed { failures };
                    return None;
                }
                Phase::Open {
                    until: now + self.open_for,
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Success) => Phase::Closed { failures: 0 },
            (Phase::HalfOpen { .. }, Outcome::Failure) => Phase::Open {
                until: now + self.open_for,
            },
            (Phase::Open { .. }, _) => return None,
        };
        let changed = !matches!((state.phase, next), (Phase::Closed { .. }, Phase::Closed { .. }));
        state.phase = next;
        if changed {
            state.generation += 1;
        }
        matches!(next, Phase::Open { .. }).then_some(self.open_for)
    }

    /// The state as of `now` (an open circuit whose time is up reads as half open).
    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.lock().phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open {
                until: until.into_std(),
            },
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// An admitted attempt. Dropped without [`finish`](BreakerPermit::finish) (the
/// request future was cancelled) it counts as neutral and frees its probe slot.
#[derive(Debug)]
pub(crate) struct BreakerPermit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl BreakerPermit {
    /// Tells the breaker how the attempt went; returns how long the circuit
    /// stays open when this outcome opened it.
    pub(crate) fn finish(mut self, outcome: Outcome, now: Instant) -> Option<Duration> {
        self.done = true;
        self.breaker.record(self.generation, self.probe, outcome, now)
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.done {
            // Neutral: never opens the circuit.
            self.breaker
                .record(self.generation, self.probe, Outcome::Neutral, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::PolicyScope;

    fn breaker(threshold: u32, open_for_ms: u64, probes: u32) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(CircuitBreakerPolicy {
            failure_threshold: threshold,
            open_for_ms,
            half_open_probes: probes,
            scope: PolicyScope::Integration,
        }))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn consecutive_failures_open_the_circuit() {
        let t0 = Instant::now();
        let cb = breaker(3, 1_000, 1);
        for _ in 0..2 {
            cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        }
        // A success in between resets the count.
        cb.acquire(t0).unwrap().finish(Outcome::Success, t0);
        for _ in 0..2 {
            cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        }
        assert_eq!(cb.state(t0), CircuitState::Closed);
        cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        assert_eq!(
            cb.state(t0),
            CircuitState::Open {
                until: (t0 + ms(1_000)).into_std()
            }
        );
        assert_eq!(cb.acquire(t0 + ms(400)).unwrap_err(), Rejected(Some(ms(600))));
        assert_eq!(cb.check(t0 + ms(999)), Err(Rejected(Some(ms(1)))));
    }

    #[test]
    fn half_open_admits_the_probes_and_a_success_closes() {
        let t0 = Instant::now();
        let cb = breaker(1, 100, 2);
        cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        let t1 = t0 + ms(100);
        assert_eq!(cb.state(t1), CircuitState::HalfOpen);
        let p1 = cb.acquire(t1).unwrap();
        let p2 = cb.acquire(t1).unwrap();
        assert_eq!(cb.acquire(t1).unwrap_err(), Rejected(None));
        assert!(cb.check(t1).is_err());
        p1.finish(Outcome::Success, t1);
        assert_eq!(cb.state(t1), CircuitState::Closed);
        // The other probe's late failure belongs to the old phase: ignored.
        p2.finish(Outcome::Failure, t1);
        assert_eq!(cb.state(t1), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let cb = breaker(1, 100, 1);
        cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        let t1 = t0 + ms(150);
        cb.acquire(t1).unwrap().finish(Outcome::Failure, t1);
        assert_eq!(
            cb.state(t1),
            CircuitState::Open {
                until: (t1 + ms(100)).into_std()
            }
        );
    }

    #[test]
    fn abandoned_probes_free_their_slot() {
        let t0 = Instant::now();
        let cb = breaker(1, 0, 1);
        cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        drop(cb.acquire(t0).unwrap());
        let probe = cb.acquire(t0).unwrap();
        probe.finish(Outcome::Neutral, t0);
        cb.acquire(t0).unwrap().finish(Outcome::Success, t0);
        assert_eq!(cb.state(t0), CircuitState::Closed);
    }

    #[test]
    fn outcomes_from_before_the_circuit_opened_are_ignored() {
        let t0 = Instant::now();
        let cb = breaker(1, 100, 1);
        let slow = cb.acquire(t0).unwrap();
        cb.acquire(t0).unwrap().finish(Outcome::Failure, t0);
        // A request admitted while closed succeeds after the circuit opened.
        slow.finish(Outcome::Success, t0 + ms(10));
        assert!(matches!(cb.state(t0 + ms(10)), CircuitState::Open { .. }));
    }

    #[test]
    fn the_failure_that_opens_the_circuit_says_for_how_long() {
        let t0 = Instant::now();
        let cb = breaker(2, 100, 1);
        assert_eq!(cb.acquire(t0).unwrap().finish(Outcome::Failure, t0), None);
        assert_eq!(cb.acquire(t0).unwrap().finish(Outcome::Failure, t0), Some(ms(100)));
        let t1 = t0 + ms(100);
        // A failed probe re-opens: said as well.
        assert_eq!(cb.acquire(t1).unwrap().finish(Outcome::Failure, t1), Some(ms(100)));
    }

    #[test]
    fn an_open_from_elsewhere_opens_this_breaker() {
        let t0 = Instant::now();
        let cb = breaker(5, 100, 1);
        let in_flight = cb.acquire(t0).unwrap();
        cb.open_until(t0 + ms(300));
        assert_eq!(cb.acquire(t0 + ms(10)).unwrap_err(), Rejected(Some(ms(290))));
        // An earlier end does not shorten it, and outcomes of before are ignored.
        cb.open_until(t0 + ms(100));
        assert_eq!(in_flight.finish(Outcome::Failure, t0 + ms(10)), None);
        assert_eq!(
            cb.state(t0 + ms(200)),
            CircuitState::Open {
                until: (t0 + ms(300)).into_std()
            }
        );
        // Then it half-opens, as after an open of its own.
        assert_eq!(cb.state(t0 + ms(300)), CircuitState::HalfOpen);
    }
}
