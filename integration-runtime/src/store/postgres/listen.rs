//! Waking workers: the background `LISTEN` and its channel.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::schema::MAX_IDENTIFIER_BYTES;
use super::PostgresStore;

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
            AbortOnDrop(runtime.spawn(listen_for_work(connect, self.channel.clone(), self.work.clone())))
        });
    }
}

/// Keeps one connection listening on `channel` and wakes `work`'s waiters
/// on every notification, reconnecting with a backoff for as long as the
/// store lives (it aborts this task when dropped).
async fn listen_for_work(connect: PgConnectOptions, channel: String, work: Arc<Notify>) {
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
                        Ok(Some(_)) => work.notify_waiters(),
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
