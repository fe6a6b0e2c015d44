//! Waking workers: the background `LISTEN`, its channel, and the horizon
//! that decides when a call scheduled for later is worth a `NOTIFY`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::schema::MAX_IDENTIFIER_BYTES;
use super::PostgresStore;
use crate::clock::SharedClock;

/// How the listener backs off while the database is unreachable.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The listener task, stopped when the store goes.
#[derive(Debug)]
pub(super) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresStore {
    /// Starts the background `LISTEN`, once, if enabled and on a Tokio runtime.
    pub(super) fn start_listener(&self) {
        if !self.listen || self.listener.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.listener.get_or_init(|| {
            let connect = (*self.pool.connect_options()).clone();
            let wake = Wake {
                work: self.work.clone(),
                horizon: self.horizon.clone(),
            };
            AbortOnDrop(runtime.spawn(listen_for_work(connect, self.channel.clone(), wake)))
        });
    }
}

/// What the listener wakes: the store's waiters, and its horizon.
struct Wake {
    work: Arc<Notify>,
    horizon: Arc<Horizon>,
}

/// Keeps one connection listening on `channel` and wakes the store's
/// waiters on every notification, reconnecting with a backoff for as long
/// as the store lives (it aborts this task when dropped). A notification
/// whose payload is a due time (see [`Horizon`]) also lowers the horizon.
async fn listen_for_work(connect: PgConnectOptions, channel: String, wake: Wake) {
    let work = &wake.work;
    // A pool of its own: the listening connection is not taken from the
    // store's pool, and the pool reconnects it.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(connect);
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        let listener = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(&channel).await {
                Ok(()) => Ok(listener),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match listener {
            Ok(mut listener) => {
                backoff = LISTEN_BACKOFF_MIN;
                // Whatever was notified while nobody listened is lost.
                work.notify_waiters();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if let Some(at) = announced_due(notification.payload()) {
                                wake.horizon.heard(at);
                            }
                            work.notify_waiters();
                        }
                        // The connection was lost and is re-established
                        // (and re-subscribed); notifications meanwhile are lost.
                        Ok(None) => work.notify_waiters(),
                        Err(error) => {
                            tracing::warn!(
                                channel = %channel,
                                error = %error,
                                "lost the PostgreSQL LISTEN connection; reconnecting"
                            );
                            work.notify_waiters();
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    channel = %channel,
                    error = %error,
                    retry_in = ?backoff,
                    "cannot LISTEN for work on PostgreSQL; workers fall back to polling"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// The `NOTIFY` channel of `schema`: an identifier, so at most 63 bytes. A
/// long schema name is cut; two schemas sharing a channel merely wake each
/// other's workers.
pub(super) fn channel_name(schema: &str) -> String {
    let mut channel = format!("integration_work:{schema}");
    if channel.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !channel.is_char_boundary(end) {
            end -= 1;
        }
        channel.truncate(end);
    }
    channel
}

/// What this process knows of the earliest time an idle worker listening
/// on the channel (of any process) wakes at: when a write schedules a call
/// sooner than that, it sends a `NOTIFY` whose payload is the due time
/// ([`announcement`]), so idle workers everywhere learn of it and sleep
/// until then instead of until their `poll_idle` bound.
///
/// Every idle worker sleeps at most until the [`Store::next_due`](crate::Store::next_due) it read
/// last, and every notification makes the workers read it again. So the
/// horizon is the last `next_due` this store read, lowered by every due
/// time announced since (by any process) and by every call this store
/// scheduled since: a later call needs no announcement, since the workers
/// wake before it and then see it. Unknown (nothing read or heard yet) or
/// past, it announces every call. It is a hint, as the notifications are:
/// a worker of another process that read a later time than this process
/// knows of may oversleep a call, up to its `poll_idle` (its own process's
/// worker is woken locally by every write).
#[derive(Debug)]
pub(super) struct Horizon {
    earliest: Mutex<Option<DateTime<Utc>>>,
    /// The store's clock: due times are in its time.
    clock: SharedClock,
}

impl Horizon {
    /// A horizon read against the store's `clock`.
    pub(super) fn new(clock: SharedClock) -> Self {
        Horizon {
            earliest: Mutex::default(),
            clock,
        }
    }

    /// Whether a call due at `at` (in the future) must be announced.
    pub(super) fn must_announce(&self, at: DateTime<Utc>) -> bool {
        let known = *self.lock();
        known.is_none_or(|earliest| at < earliest || earliest <= self.clock.now())
    }

    /// The workers read `next_due` (`None`: nothing scheduled).
    pub(super) fn learned(&self, next_due: Option<DateTime<Utc>>) {
        *self.lock() = Some(next_due.unwrap_or(DateTime::<Utc>::MAX_UTC));
    }

    /// A call due at `at` was committed, or announced by another process.
    /// A call due now changes nothing: the workers claim it, then read
    /// `next_due` again.
    pub(super) fn heard(&self, at: DateTime<Utc>) {
        let now = self.clock.now();
        if at <= now {
            return;
        }
        let mut known = self.lock();
        *known = Some(
            known
                .filter(|earliest| *earliest > now)
                .map_or(at, |earliest| earliest.min(at)),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DateTime<Utc>>> {
        self.earliest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `NOTIFY` payload announcing a call due at `at`: its Unix time in
/// milliseconds. A call due now is announced with an empty payload.
pub(super) fn announcement(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

/// The due time a notification's payload announces, if any.
fn announced_due(payload: &str) -> Option<DateTime<Utc>> {
    payload.parse().ok().and_then(DateTime::<Utc>::from_timestamp_millis)
}
