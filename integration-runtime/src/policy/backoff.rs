//! Backoff: how long to wait before a retry and before the next poll.
//! Pure functions over the spec's policies; the engine, the paginator and
//! their tests call them with their own clock and random numbers.

use std::time::Duration;

use crate::descriptor::{PollingDescriptor, RetryPolicy};

/// The delay before retry number `retry` (1 = the first retry): exponential
/// backoff with full jitter, `random(0 ..= min(max, initial * multiplier^(retry-1)))`,
/// but never shorter than the provider's `Retry-After`.
pub(crate) fn retry_delay(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    unit_random: f64,
) -> Duration {
    let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let multiplier = if policy.multiplier.is_finite() && policy.multiplier >= 1.0 {
        policy.multiplier
    } else {
        1.0
    };
    let ceiling = (policy.initial_backoff_ms as f64) * multiplier.powi(exponent);
    let cap = if policy.max_backoff_ms > 0 {
        policy.max_backoff_ms as f64
    } else {
        ceiling
    };
    let ceiling = if ceiling.is_finite() { ceiling.min(cap) } else { cap };
    let jittered = (ceiling * unit_random.clamp(0.0, 1.0)).max(0.0);
    let delay = Duration::from_millis(jittered as u64);
    match retry_after {
        Some(after) if after > delay => after,
        _ => delay,
    }
}

/// The delay before the next poll of a call that has existed for `elapsed`.
///
/// The spec's growth `interval * backoff^k` (capped at `max_interval_ms`),
/// expressed through elapsed time: after polls at `t_k`, `interval_k =
/// interval + (backoff - 1) * t_k`. It needs no per-call counter, so it is
/// the same after a restart.
pub(crate) fn poll_delay(polling: &PollingDescriptor, elapsed: Duration) -> Duration {
    let interval = polling.interval_ms as f64;
    let backoff = if polling.backoff.is_finite() && polling.backoff >= 1.0 {
        polling.backoff
    } else {
        1.0
    };
    let grown = interval + (backoff - 1.0) * elapsed.as_millis() as f64;
    let max = if polling.max_interval_ms > 0 {
        (polling.max_interval_ms as f64).max(interval)
    } else {
        f64::MAX
    };
    let delay = grown.clamp(interval, max);
    Duration::from_millis(if delay.is_finite() { delay as u64 } else { u64::MAX })
}

/// A uniformly distributed random number in `0.0 .. 1.0`, from the thread's
/// generator (seeded by the operating system). Not a UUID's bits: a v4
/// UUID's fixed version and variant bits would skew it.
pub(crate) fn unit_random() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::RetryOn;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 100,
        max_backoff_ms: 1_000,
        multiplier: 2.0,
        on: RetryOn::TRANSIENT,
    };

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(retry_delay(&POLICY, 1, None, 1.0), Duration::from_millis(100));
        assert_eq!(retry_delay(&POLICY, 2, None, 1.0), Duration::from_millis(200));
        assert_eq!(retry_delay(&POLICY, 3, None, 1.0), Duration::from_millis(400));
        assert_eq!(retry_delay(&POLICY, 10, None, 1.0), Duration::from_millis(1_000));
        assert_eq!(retry_delay(&POLICY, 3, None, 0.5), Duration::from_millis(200));
        assert_eq!(retry_delay(&POLICY, 3, None, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(&POLICY, u32::MAX, None, 1.0), Duration::from_millis(1_000));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let after = Some(Duration::from_secs(3));
        assert_eq!(retry_delay(&POLICY, 1, after, 1.0), Duration::from_secs(3));
        let short = Some(Duration::from_millis(10));
        assert_eq!(retry_delay(&POLICY, 1, short, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn random_numbers_are_units() {
        for _ in 0..100 {
            let x = unit_random();
            assert!((0.0..=1.0).contains(&x));
        }
    }

    #[test]
    fn unit_random_covers_the_whole_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|_| unit_random()).collect();
        let min = draws.iter().copied().fold(f64::INFINITY, f64::min);
        let max = draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(min < 0.05, "minimum {min}");
        assert!(max > 0.95, "maximum {max}");
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn jittered_delays_span_zero_to_the_ceiling() {
        // Retry 4: ceiling min(1 000, 100 * 2^3) = 800 ms.
        let delays: Vec<u128> = (0..10_000)
            .map(|_| retry_delay(&POLICY, 4, None, unit_random()).as_millis())
            .collect();
        let min = *delays.iter().min().expect("draws");
        let max = *delays.iter().max().expect("draws");
        assert!(min < 40, "shortest delay {min} ms");
        assert!((760..=800).contains(&max), "longest delay {max} ms");
    }

    #[test]
    fn poll_delay_grows_geometrically_and_is_capped() {
        let polling = PollingDescriptor {
            endpoint: "q",
            interval_ms: 100,
            backoff: 2.0,
            max_interval_ms: 1_000,
            give_up_after_s: 60,
        };
        assert_eq!(poll_delay(&polling, Duration::ZERO), Duration::from_millis(100));
        // Polls at 0, 100, 300, 700: intervals 100, 200, 400, 800.
        assert_eq!(
            poll_delay(&polling, Duration::from_millis(100)),
            Duration::from_millis(200)
        );
        assert_eq!(
            poll_delay(&polling, Duration::from_millis(300)),
            Duration::from_millis(400)
        );
        assert_eq!(
            poll_delay(&polling, Duration::from_millis(700)),
            Duration::from_millis(800)
        );
        assert_eq!(
            poll_delay(&polling, Duration::from_secs(60)),
            Duration::from_millis(1_000)
        );
        let flat = PollingDescriptor {
            backoff: 1.0,
            ..polling
        };
        assert_eq!(poll_delay(&flat, Duration::from_secs(60)), Duration::from_millis(100));
    }
}
