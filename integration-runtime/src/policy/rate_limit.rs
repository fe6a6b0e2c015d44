//! A GCRA (generic cell rate algorithm) rate limiter that hands out reservations.
//!
//! Own code rather than `governor`: governor's default features pull in dashmap,
//! quanta, rand, futures-timer and parking_lot, its keyed limiters share one quota
//! for every key (we need a different quota per endpoint), and it has no bounded
//! wait. A reservation-based GCRA is a few lines, keeps callers in FIFO order
//! without polling, and runs on tokio's clock (so paused-time tests work).

use std::time::Duration;

use tokio::time::Instant;

use crate::descriptor::RateLimitPolicy;

/// The slowest rate honoured; slower ones are taken as this (one request in ~11 days).
const MIN_PER_SECOND: f64 = 1e-6;

/// The interval and the tolerance of a GCRA for `policy`, or `None` when
/// the rate is not a positive number (no limit). A burst of 0 is taken as 1.
pub(crate) fn spacing(policy: RateLimitPolicy) -> Option<(Duration, Duration)> {
    if !(policy.per_second.is_finite() && policy.per_second > 0.0) {
        return None;
    }
    let interval = Duration::from_secs_f64(1.0 / policy.per_second.max(MIN_PER_SECOND));
    Some((interval, interval * policy.burst.max(1).saturating_sub(1)))
}

/// One limiter: `burst` requests at once, then one every `1 / per_second` seconds.
#[derive(Debug)]
pub(crate) struct Gcra {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of the sustained rate requests may run (`interval * (burst - 1)`).
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Option<Instant>,
}

impl Gcra {
    /// A limiter for `policy`, or `None` when the rate is not a positive number
    /// (no limit). A burst of 0 is taken as 1.
    pub(crate) fn new(policy: RateLimitPolicy) -> Option<Self> {
        let (interval, tolerance) = spacing(policy)?;
        Some(Gcra {
            interval,
            tolerance,
            tat: None,
        })
    }

    /// Reserves the next slot and returns how long to wait for it (zero: go now).
    ///
    /// When the wait would exceed `max_wait`, nothing is reserved and the needed
    /// wait is returned as the error.
    pub(crate) fn reserve(&mut self, now: Instant, max_wait: Option<Duration>) -> Result<Duration, Duration> {
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let wait = (tat - now).saturating_sub(self.tolerance);
        if max_wait.is_some_and(|max| wait > max) {
            return Err(wait);
        }
        self.tat = Some(tat + self.interval);
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::PolicyScope;

    fn limiter(per_second: f64, burst: u32) -> Gcra {
        Gcra::new(RateLimitPolicy {
            per_second,
            burst,
            scope: PolicyScope::Integration,
        })
        .unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_goes_at_once_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut gcra = limiter(10.0, 3);
        let waits: Vec<Duration> = (0..6).map(|_| gcra.reserve(t0, None).unwrap()).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100), ms(200), ms(300)]);
    }

    #[test]
    fn idle_time_refills_up_to_the_burst_only() {
        let t0 = Instant::now();
        let mut gcra = limiter(10.0, 2);
        gcra.reserve(t0, None).unwrap();
        gcra.reserve(t0, None).unwrap();
        let later = t0 + Duration::from_secs(60);
        assert_eq!(gcra.reserve(later, None), Ok(ms(0)));
        assert_eq!(gcra.reserve(later, None), Ok(ms(0)));
        assert_eq!(gcra.reserve(later, None), Ok(ms(100)));
    }

    #[test]
    fn the_rate_holds_over_many_requests() {
        let t0 = Instant::now();
        let mut gcra = limiter(20.0, 1);
        let last = (0..41).map(|_| gcra.reserve(t0, None).unwrap()).last();
        assert_eq!(last, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_wait_beyond_the_bound_reserves_nothing() {
        let t0 = Instant::now();
        let mut gcra = limiter(2.0, 1);
        assert_eq!(gcra.reserve(t0, Some(ms(100))), Ok(ms(0)));
        assert_eq!(gcra.reserve(t0, Some(ms(100))), Err(ms(500)));
        assert_eq!(gcra.reserve(t0 + ms(450), Some(ms(100))), Ok(ms(50)));
    }

    #[test]
    fn non_positive_rates_mean_no_limit() {
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Gcra::new(RateLimitPolicy {
                per_second,
                burst: 1,
                scope: PolicyScope::Integration,
            })
            .is_none());
        }
        assert!(Gcra::new(RateLimitPolicy {
            per_second: 1e-300,
            burst: 0,
            scope: PolicyScope::Integration,
        })
        .is_some());
    }
}
