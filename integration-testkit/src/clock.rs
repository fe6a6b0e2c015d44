//! A clock the test moves: virtual time for the runtime and its store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_runtime::{BoxFuture, Clock, TimeSource};
use tokio::sync::watch;

/// A clock that stands still until the test advances it.
///
/// Give it to the runtime with
/// [`RuntimeBuilder::clock`](integration_runtime::RuntimeBuilder::clock)
/// (the runtime hands it to its store), then [`advance`](TestClock::advance)
/// it: retries, polls, deadlines, hook retries and retention then come as
/// fast as the test moves the clock, not in wall time. Request timeouts and
/// the provider protection stay in real time (see [`Clock`]).
///
/// It does not use Tokio's timers, so it works the same whether or not the
/// test pauses Tokio's time (`#[tokio::test(start_paused = true)]`). Advance
/// it while no request is in flight: a lease taken before a long jump may
/// end during it, and the call is then run again (with the same
/// idempotency key), as after a crash.
///
/// A call whose start fails twice (retried with backoff) and whose task
/// then never finishes, polled until its deadline (`volc_tts` gives up
/// after 600 s): ten virtual minutes in a fraction of a second.
///
/// ```
/// # integration_runtime::integration!("../specs/volc_tts.toml");
/// use std::time::Duration;
/// use integration_runtime::{FailureKind, MemoryStore, Runtime, Secret};
/// use integration_testkit::{FakeProvider, Outcome, TestClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fake = FakeProvider::from_spec_file("../specs/volc_tts.toml").unwrap()
///     .outcomes("synthesize", [Outcome::reject(503), Outcome::reject(503), Outcome::complete_with_made_up_result()])
///     .polls_until_done(u32::MAX)
///     .start().await.unwrap();
/// let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
///     base_url: fake.url(),
///     token: Secret::new("t"),
///     webhook_secret: Secret::new("whsec_dW51c2Vk"),
/// }).unwrap();
/// let clock = TestClock::new();
/// let rt = Runtime::builder()
///     .store(MemoryStore::new())
///     .integration(tts)
///     .clock(clock.clock())
///     .poll_idle(Duration::from_millis(2))
///     .build().await.unwrap();
/// let worker = { let rt = rt.clone(); tokio::spawn(async move { rt.run().await }) };
///
/// let request = volc_tts::Synthesis {
///     text: "hello".into(), voice: "v".into(), speed: None, format: volc_tts::SynthesisFormat::Mp3,
/// };
/// let id = rt.create(request).await.unwrap();
/// let call = clock.run_until(&rt, id, Duration::from_secs(5), |call| call.is_terminal()).await;
/// assert_eq!(call.error_kind, Some(FailureKind::Timeout));
/// assert_eq!(fake.requests_to("synthesize").len(), 3, "two failures, then accepted");
/// assert!(fake.requests_to("query").len() > 10, "polled until the deadline");
/// assert!(clock.elapsed() >= Duration::from_secs(600));
///
/// rt.shutdown(Duration::from_secs(1)).await;
/// worker.await.unwrap().unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct TestClock(Arc<Shared>);

struct Shared {
    start: DateTime<Utc>,
    now: watch::Sender<DateTime<Utc>>,
}

impl TestClock {
    /// A clock standing at the current system time (to the millisecond).
    pub fn new() -> Self {
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        Self::starting_at(now)
    }

    /// A clock standing at `at`.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        TestClock(Arc::new(Shared {
            start: at,
            now: watch::Sender::new(at),
        }))
    }

    /// The [`Clock`] to give the runtime.
    pub fn clock(&self) -> Clock {
        Clock::new(self.clone())
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.now.borrow()
    }

    /// How far the clock was advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        (self.now() - self.0.start).to_std().unwrap_or_default()
    }

    /// Moves the clock `by` forward, waking whatever slept until then.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.0.now.send_modify(|now| {
            *now = now.checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC);
        });
    }

    /// Advances the clock `step` at a time, letting the runtime work
    /// between steps (real milliseconds), until call `id` satisfies `done`,
    /// and returns it. Panics after 10 000 steps or 30 s of wall time.
    pub async fn run_until(
        &self,
        rt: &integration_runtime::Runtime,
        id: integration_runtime::CallId,
        step: Duration,
        done: impl Fn(&integration_runtime::CallRecord) -> bool,
    ) -> integration_runtime::CallRecord {
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            let call = rt.get(id).await.expect("the store answers").expect("the call exists");
            // Terminal and released, or whatever the test waits for.
            if done(&call) && call.lease_owner.is_none() {
                return call;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "call {id} not done in time: {call:?}"
            );
            self.settle().await;
            self.advance(step);
            self.settle().await;
        }
        panic!("call {id} not done after 10 000 steps of {step:?}");
    }

    /// Lets the runtime's tasks run for a moment of wall time.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

impl Default for TestClock {
    fn default() -> Self {
        TestClock::new()
    }
}

impl fmt::Debug for TestClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClock").field("now", &self.now()).finish()
    }
}

impl TimeSource for TestClock {
    fn now(&self) -> DateTime<Utc> {
        TestClock::now(self)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut now = self.0.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; a dropped clock never
            // moves again, so its sleepers stay asleep.
            if now.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With Tokio's time paused (and auto-advancing whenever the runtime
    /// idles), a sleep on the test clock still waits for the test's advance.
    #[tokio::test(start_paused = true)]
    async fn sleeps_end_when_the_test_advances_not_when_tokio_time_does() {
        let clock = TestClock::new();
        let due = clock.now() + chrono::Duration::seconds(10);
        let mut sleep = clock.clock().sleep_until(due);
        // An hour of Tokio's (paused, auto-advanced) time: still asleep.
        let outcome = tokio::time::timeout(Duration::from_secs(3_600), &mut sleep).await;
        assert!(outcome.is_err(), "woke without an advance");
        clock.advance(Duration::from_secs(9));
        assert!(tokio::time::timeout(Duration::from_secs(1), &mut sleep).await.is_err());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), &mut sleep)
            .await
            .expect("woke at its time");
        assert_eq!(clock.elapsed(), Duration::from_secs(10));
        // A time already reached needs no advance.
        clock.clock().sleep_until(due).await;
    }
}
