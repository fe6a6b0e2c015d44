//! The one clock the runtime and its stores read.
//!
//! Every time a call's life depends on (when it is due, when its lease and
//! its deadline end, when a retry or a poll comes, when it is old enough to
//! prune) is read from a [`Clock`]. In production it is the system clock.
//! A test gives the runtime another one ([`RuntimeBuilder::clock`](crate::RuntimeBuilder::clock),
//! which hands it to the store too), such as the test kit's `TestClock`,
//! and advances it: a call then goes through retries, a deadline and a
//! retention pass in milliseconds of wall time.
//!
//! What stays in real time: request timeouts and the provider protection
//! (rate limits, circuit breakers), which are about a real provider; the
//! worker's `poll_idle` safety net; and waits on a failing store.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::integration::BoxFuture;

/// Where time comes from: implement it for a clock of your own, or use the
/// test kit's `TestClock`.
pub trait TimeSource: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once [`now`](TimeSource::now) has reached `at` (at once when
    /// it has). A source that is advanced by hand resolves it when advanced
    /// that far.
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// The system clock, with Tokio's timers.
#[derive(Debug, Clone, Copy)]
struct SystemTime;

impl TimeSource for SystemTime {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// The clock a runtime reads: the system clock unless a test gives another.
/// Cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn TimeSource>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime))
    }

    /// A clock reading `source`.
    pub fn new(source: impl TimeSource) -> Clock {
        Clock(Arc::new(source))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    /// Resolves once the clock has reached `at`.
    pub fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        self.0.sleep_until(at)
    }

    /// Resolves once `wait` has passed on this clock.
    pub fn sleep(&self, wait: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.after(wait))
    }

    /// The time `wait` from now (the latest time there is, past the end).
    pub fn after(&self, wait: Duration) -> DateTime<Utc> {
        let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        self.now().checked_add_signed(wait).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// A store's clock: set once by the runtime that uses the store
/// ([`Store::use_clock`](crate::Store::use_clock)), read by every write.
#[derive(Clone, Default)]
pub(crate) struct SharedClock(Arc<RwLock<Clock>>);

impl SharedClock {
    /// The current time, to the millisecond (what stores keep).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        crate::store::truncate(self.read().now())
    }

    pub(crate) fn set(&self, clock: Clock) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = clock;
    }

    fn read(&self) -> Clock {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.read().fmt(f)
    }
}
