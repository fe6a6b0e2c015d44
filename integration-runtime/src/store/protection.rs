//! Provider protection shared through the store: the values of
//! [`Store::lease_rate`](super::Store::lease_rate) and the GCRA arithmetic
//! every backend applies the same way.
//!
//! A shared rate limit is one GCRA whose *theoretical arrival time* (TAT)
//! lives in the store, one row per limiter. A process does not ask the
//! store for every request: it leases a *slice* of `cells` consecutive
//! requests at once, which moves the TAT `cells * interval` ahead in one
//! atomic write, and spends the slice locally. Cells a process leases and
//! never uses are lost: the provider can only see fewer requests than the
//! limit, never more.
//!
//! Times are kept as microseconds since the Unix epoch, read from the
//! writing process's clock (as every time of the store): processes on
//! several machines must keep their clocks in sync.

use std::time::Duration;

/// A request for a slice of a shared rate limit: `cells` consecutive
/// requests of a GCRA limiter that admits one request every `interval`,
/// running at most `tolerance` ahead of that pace (`interval * (burst - 1)`).
///
/// ```
/// use std::time::Duration;
/// use integration_runtime::store::RateRequest;
///
/// // Two requests of a 20/s limiter with a burst of 5, at most 1 s away.
/// let request = RateRequest::new(2, Duration::from_millis(50), Duration::from_millis(200))
///     .max_wait(Some(Duration::from_secs(1)));
/// assert_eq!(request.cells, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateRequest {
    /// How many requests to lease (at least 1).
    pub cells: u32,
    /// The time between two requests at the sustained rate.
    pub interval: Duration,
    /// How far requests may run ahead of the sustained rate.
    pub tolerance: Duration,
    /// When the first leased request would have to wait longer than this,
    /// nothing is leased (`None`: lease whatever the wait).
    pub max_wait: Option<Duration>,
}

impl RateRequest {
    /// `cells` requests (at least 1) of a limiter with this `interval` and
    /// `tolerance`, whatever the wait.
    pub fn new(cells: u32, interval: Duration, tolerance: Duration) -> Self {
        RateRequest {
            cells: cells.max(1),
            interval,
            tolerance,
            max_wait: None,
        }
    }

    /// Leases nothing when the first request would wait longer than `max_wait`.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Option<Duration>) -> Self {
        self.max_wait = max_wait;
        self
    }
}

/// What [`Store::lease_rate`](super::Store::lease_rate) granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateSlice {
    /// The requests leased: all that were asked for, or 0 when the first
    /// would have waited longer than the request's `max_wait`.
    pub cells: u32,
    /// How far the limiter's theoretical arrival time was ahead of the
    /// store's clock when the slice was asked for (zero for an idle limiter).
    pub ahead: Duration,
}

impl RateSlice {
    /// A slice of `cells` requests (0: refused) of a limiter whose
    /// theoretical arrival time was `ahead` of the store's clock: what a
    /// store of your own returns.
    pub fn new(cells: u32, ahead: Duration) -> Self {
        RateSlice { cells, ahead }
    }

    /// How long after the lease cell `index` (from 0) of the slice may be
    /// sent, for the limiter of `request`; for a refused slice (`cells ==
    /// 0`), `wait(0)` is the wait that was refused.
    pub fn wait(&self, index: u32, request: &RateRequest) -> Duration {
        (self.ahead + request.interval * index).saturating_sub(request.tolerance)
    }
}

/// `duration` in microseconds, saturating.
pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The current time in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The bound values of the atomic lease every SQL store runs, in
/// microseconds: with `tat` the stored TAT (the row is created at `now`),
/// `start = max(tat, now)`; when `start - tolerance - now <= max_wait` the
/// TAT becomes `start + advance` and is returned, else nothing changes.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct LeaseBinds {
    pub(crate) now: i64,
    pub(crate) advance: i64,
    pub(crate) tolerance: i64,
    pub(crate) max_wait: i64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl LeaseBinds {
    pub(crate) fn new(request: &RateRequest) -> Self {
        LeaseBinds {
            now: now_micros(),
            advance: micros(request.interval * request.cells.max(1)),
            tolerance: micros(request.tolerance),
            max_wait: request.max_wait.map_or(i64::MAX, micros),
        }
    }

    /// The slice of a lease that stored `tat` (`None`: refused, and the
    /// stored TAT is `refused_at`, if any).
    pub(crate) fn slice(&self, request: &RateRequest, tat: Option<i64>, refused_at: Option<i64>) -> RateSlice {
        match tat {
            Some(tat) => slice_at(request.cells.max(1), tat - self.advance, self.now),
            None => slice_at(0, refused_at.unwrap_or(self.now), self.now),
        }
    }
}

/// One lease as the memory store runs it: the new TAT to store (`None`:
/// refused, nothing changes) and the slice. The SQL stores run the same
/// rule as one statement (see `LeaseBinds`).
pub(crate) fn lease(stored: Option<i64>, now: i64, request: &RateRequest) -> (Option<i64>, RateSlice) {
    let start = stored.map_or(now, |tat| tat.max(now));
    let wait = start.saturating_sub(micros(request.tolerance)).saturating_sub(now);
    if request.max_wait.is_some_and(|max| wait > micros(max)) {
        return (None, slice_at(0, start, now));
    }
    let advance = micros(request.interval * request.cells.max(1));
    (
        Some(start.saturating_add(advance)),
        slice_at(request.cells.max(1), start, now),
    )
}

/// A slice of `cells` whose first cell's TAT is `start`.
fn slice_at(cells: u32, start: i64, now: i64) -> RateSlice {
    let ahead = u64::try_from(start.max(now) - now).unwrap_or(0);
    RateSlice::new(cells, Duration::from_micros(ahead))
}

/// How long a circuit opened until `open_until` (microseconds) stays open
/// as of `now`; `None` when it is not open.
pub(crate) fn open_for(open_until: Option<i64>, now: i64) -> Option<Duration> {
    let left = open_until? - now;
    (left > 0).then(|| Duration::from_micros(u64::try_from(left).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_lease_moves_the_arrival_time_by_its_cells() {
        let request = RateRequest::new(3, ms(100), ms(100));
        let now = 1_000_000;
        let (tat, slice) = lease(None, now, &request);
        assert_eq!(tat, Some(now + 300_000));
        assert_eq!(slice.ahead, Duration::ZERO);
        // The tolerance lets the first two go at once, then the pace.
        assert_eq!(
            (0..3).map(|i| slice.wait(i, &request)).collect::<Vec<_>>(),
            [ms(0), ms(0), ms(100)]
        );
        let (tat, slice) = lease(tat, now, &request);
        assert_eq!(tat, Some(now + 600_000));
        assert_eq!(slice.ahead, ms(300));
        assert_eq!(slice.wait(0, &request), ms(200));
    }

    #[test]
    fn an_idle_limiter_starts_from_now() {
        let request = RateRequest::new(1, ms(100), Duration::ZERO);
        let (tat, slice) = lease(Some(5), 1_000_000, &request);
        assert_eq!(tat, Some(1_100_000));
        assert_eq!(slice.ahead, Duration::ZERO);
    }

    #[test]
    fn a_wait_beyond_the_bound_leases_nothing() {
        let request = RateRequest::new(1, ms(100), Duration::ZERO).max_wait(Some(ms(150)));
        let now = 0;
        let (tat, _) = lease(Some(now + 200_000), now, &request);
        assert_eq!(tat, None);
        let (_, slice) = lease(Some(now + 200_000), now, &request);
        assert_eq!(slice.cells, 0);
        assert_eq!(slice.wait(0, &request), ms(200));
        assert_eq!(lease(Some(now + 150_000), now, &request).0, Some(now + 250_000));
    }

    #[test]
    fn an_open_circuit_counts_down() {
        assert_eq!(open_for(Some(1_500), 1_000), Some(Duration::from_micros(500)));
        assert_eq!(open_for(Some(1_000), 1_000), None);
        assert_eq!(open_for(None, 1_000), None);
    }
}
