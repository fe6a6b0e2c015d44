//! Group commit: the creates and worker turns of one `PostgresStore` that
//! queue up while a batch is in flight go into the next transaction
//! together, written with a few set-based statements (the `batch` module)
//! whatever the batch holds.
//!
//! Why: on a busy server the cost of a call is its statements and round
//! trips (parse, plan, execute, a network turn each), more than its commits.
//! A turn alone costs a dozen statements (a lock, and per event a key
//! check, an insert and an update); a batch of turns costs six, and a batch
//! of creates three or four. An idle store pays nothing for this: a lone
//! request is a batch of one, sent at once.
//!
//! # Failure isolation
//!
//! What a request itself gets wrong (a lease it lost, an unknown call, a
//! reused idempotency key, an external id set twice in the batch) is
//! decided in memory before anything is written: it is that request's
//! result, and its batch-mates commit. When the server refuses a statement
//! of the batch (an external id another process set meanwhile violates its
//! unique constraint, a lock timeout), the transaction is rolled back and
//! every request runs again alone, in a transaction of its own, so only
//! the one at fault fails. When the connection breaks before `COMMIT`,
//! nothing was written: the batch runs again on another connection (a
//! pooled connection the server closed meanwhile fails only so), and if the
//! server stays unreachable every caller hears a backend error, safe to
//! retry.
//!
//! # A `COMMIT` without an answer
//!
//! When the connection breaks while `COMMIT` is in flight, the transaction
//! may or may not have committed. Answering "failed" would be wrong half
//! of the time: a worker retrying a turn that did commit would record it
//! twice, or give back a call another worker already runs. So the writer
//! asks the server: every batch that writes learns its transaction id
//! (`pg_current_xact_id()`) with its first write, and after an unanswered
//! `COMMIT` it polls `pg_xact_status` on another connection until the
//! server says committed (the callers get their results) or aborted (a
//! backend error: nothing was written). Only when the server stays
//! unreachable for [`RESOLVE_FOR`] does a caller hear that the outcome is
//! unknown; a turn retried then finds its lease released (if it had
//! committed) and fails with a lost lease instead of writing twice.
//!
//! # Callers that stop waiting
//!
//! A request whose caller dropped its future before the batch started is
//! not run. Once it runs, it runs as a whole (a transaction is never left
//! half-way), as on SQLite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use chrono::{DateTime, Utc};

use super::batch::{earlier, finish_turns, insert_calls, notify_scheduled, Tables, Wrote};
use crate::store::error::ErrorKind;
use crate::store::folding::Appends;
use crate::store::{AppendOutcome, Created, NewCall, StoreError};

/// The most requests one transaction takes: bounds how long a batch holds
/// its row locks, not how many callers may wait.
const MAX_BATCH: usize = 64;

/// How many requests may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// How long the writer keeps asking an unreachable server whether an
/// unanswered `COMMIT` committed (see the module docs).
const RESOLVE_FOR: Duration = Duration::from_secs(30);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What callers queue.
enum Queued {
    Create(NewCall, Reply<Created>),
    Turn(Appends, Reply<Vec<AppendOutcome>>),
}

impl Queued {
    /// The caller stopped waiting: nobody needs the write.
    fn abandoned(&self) -> bool {
        match self {
            Queued::Create(_, reply) => reply.is_closed(),
            Queued::Turn(_, reply) => reply.is_closed(),
        }
    }
}

/// The handle to the writer task; the task ends when the handle is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer task on the current Tokio runtime: it writes to
    /// `tables` with connections of `pool`, and wakes `work`'s waiters when
    /// a batch made a call due or scheduled one.
    pub(super) fn start(pool: PgPool, tables: Tables, work: Arc<Notify>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(serve(pool, tables, work, queue));
        Writer { jobs }
    }

    /// Creates `call` (see `Store::create`) in the next batch.
    pub(super) async fn create(&self, call: NewCall) -> Result<Created, StoreError> {
        self.request(|reply| Queued::Create(call, reply)).await
    }

    /// Ends a worker's turn (see `Store::finish_turn`; `turn` names its
    /// call by id) in the next batch.
    pub(super) async fn finish_turn(&self, turn: Appends) -> Result<Vec<AppendOutcome>, StoreError> {
        self.request(|reply| Queued::Turn(turn, reply)).await
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Queued) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(make(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::new(ErrorKind::Backend, "the store's writer has stopped")
}

/// The writer task: one batch at a time, until the handle is dropped.
async fn serve(pool: PgPool, tables: Tables, work: Arc<Notify>, mut queue: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let mut batch = Batch::default();
        for item in queued.drain(..).filter(|item| !item.abandoned()) {
            match item {
                Queued::Create(call, reply) => {
                    batch.creates.push(call);
                    batch.create_replies.push(reply);
                }
                Queued::Turn(turn, reply) => {
                    batch.turns.push(turn);
                    batch.turn_replies.push(reply);
                }
            }
        }
        // Also for a call due later: a local worker may sleep past it.
        if let Some(at) = batch.write(&pool, &tables).await {
            tables.horizon.heard(at);
            work.notify_waiters();
        }
    }
}

/// The requests of one batch, with their callers.
#[derive(Default)]
struct Batch {
    creates: Vec<NewCall>,
    create_replies: Vec<Reply<Created>>,
    turns: Vec<Appends>,
    turn_replies: Vec<Reply<Vec<AppendOutcome>>>,
}

impl Batch {
    /// Writes the batch and answers every caller; the earliest due time of
    /// the calls it left scheduled (now or later).
    async fn write(self, pool: &PgPool, tables: &Tables) -> Option<DateTime<Utc>> {
        let requests = self.creates.len() + self.turns.len();
        if requests == 0 {
            return None;
        }
        let mut attempted = attempt(pool, tables, &self.creates, &self.turns).await;
        // Typically pooled connections the server closed meanwhile (they are
        // not tested before every use, see `PostgresStore::connect_with`):
        // again on another one, at most once per connection of the pool.
        let mut tries = pool.options().get_max_connections();
        while let Err(Failure::Unsent(error)) = &attempted {
            if tries == 0 {
                break;
            }
            tries -= 1;
            tracing::debug!(%error, "a batch of store writes failed before its commit; trying it again");
            attempted = attempt(pool, tables, &self.creates, &self.turns).await;
        }
        match attempted {
            Ok(ran) => {
                let earliest = ran.earliest();
                answer(self.create_replies, ran.creates.results);
                answer(self.turn_replies, ran.turns.results);
                earliest
            }
            Err(Failure::Refused(_)) if requests > 1 => self.write_one_by_one(pool, tables).await,
            Err(failure) if requests == 1 => {
                // A batch of one: the failure is the request's own.
                if let Some(reply) = self.create_replies.into_iter().next() {
                    let _ = reply.send(Err(failure.into_error()));
                } else if let Some(reply) = self.turn_replies.into_iter().next() {
                    let _ = reply.send(Err(turn_error(failure)));
                }
                None
            }
            Err(failure) => {
                let error = failure.into_error();
                refuse(self.create_replies, &error);
                refuse(self.turn_replies, &error);
                None
            }
        }
    }

    /// Runs every request alone, after the server refused the batch: only
    /// the request at fault fails.
    async fn write_one_by_one(self, pool: &PgPool, tables: &Tables) -> Option<DateTime<Utc>> {
        let mut due = None;
        for (call, reply) in self.creates.into_iter().zip(self.create_replies) {
            let result = attempt(pool, tables, std::slice::from_ref(&call), &[]).await;
            due = earlier(due, result.as_ref().ok().and_then(Ran::earliest));
            let _ = reply.send(result.map_err(Failure::into_error).and_then(|ran| first(ran.creates)));
        }
        for (turn, reply) in self.turns.into_iter().zip(self.turn_replies) {
            let result = attempt(pool, tables, &[], std::slice::from_ref(&turn)).await;
            due = earlier(due, result.as_ref().ok().and_then(Ran::earliest));
            let result = match result {
                Ok(ran) => first(ran.turns),
                Err(failure) => Err(turn_error(failure)),
            };
            let _ = reply.send(result);
        }
        due
    }
}

/// What the caller of a turn that failed alone hears: a unique violation
/// can only be the external id one of its events sets.
fn turn_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Refused(error) if error.is_conflict() => StoreError::conflict(format_args!(
            "an external id this turn sets already belongs to another call: {error}"
        )),
        failure => failure.into_error(),
    }
}

/// The only result of a batch of one.
fn first<T>(wrote: Wrote<T>) -> Result<T, StoreError> {
    wrote.results.into_iter().next().unwrap_or_else(|| {
        Err(StoreError::new(
            ErrorKind::Backend,
            "a write of the batch gave no result",
        ))
    })
}

fn answer<T>(replies: Vec<Reply<T>>, results: Vec<Result<T, StoreError>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have stopped waiting: nobody to tell.
        let _ = reply.send(result);
    }
}

fn refuse<T>(replies: Vec<Reply<T>>, error: &StoreError) {
    for reply in replies {
        let _ = reply.send(Err(StoreError::new(
            ErrorKind::Backend,
            format_args!("the write was not committed: {error}"),
        )));
    }
}

/// What a committed batch did.
struct Ran {
    creates: Wrote<Created>,
    turns: Wrote<Vec<AppendOutcome>>,
}

impl Ran {
    fn due(&self) -> bool {
        self.creates.due || self.turns.due
    }

    /// The earliest due time of the calls the batch left scheduled.
    fn earliest(&self) -> Option<DateTime<Utc>> {
        earlier(self.creates.earliest, self.turns.earliest)
    }
}

/// Why a batch wrote nothing.
enum Failure {
    /// The server refused a statement (and rolled the transaction back):
    /// possibly because of one request, so worth retrying alone.
    Refused(StoreError),
    /// The connection or the pool failed before `COMMIT` was sent: nothing
    /// can have committed, so the batch may run again on another connection.
    Unsent(StoreError),
    /// The transaction is known not to have committed, its outcome could
    /// not be learned, or trying again would not help.
    Lost(StoreError),
}

impl Failure {
    fn into_error(self) -> StoreError {
        match self {
            Failure::Refused(error) | Failure::Unsent(error) | Failure::Lost(error) => error,
        }
    }

    /// The failure of a statement before `COMMIT`.
    fn of(error: StoreError) -> Self {
        match std::error::Error::source(&error).and_then(|source| source.downcast_ref::<sqlx::Error>()) {
            Some(cause) if connection_lost(cause) => Failure::Unsent(error),
            Some(sqlx::Error::Database(_)) => Failure::Refused(error),
            // Rows that cannot be read back: trying again would not help.
            _ => Failure::Lost(error),
        }
    }
}

/// Whether `error` says the connection is gone (the server may have ended
/// the session after or instead of answering), not that the server refused
/// a statement on a live session.
fn connection_lost(error: &sqlx::Error) -> bool {
    match error {
        // Class 08: connection exception; 57P01-57P05: the session was
        // terminated (an administrator, a shutdown, a crash, idle timeouts).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => true,
    }
}

/// Runs `creates` and `turns` in one transaction and commits it.
async fn attempt(pool: &PgPool, tables: &Tables, creates: &[NewCall], turns: &[Appends]) -> Result<Ran, Failure> {
    // No connection within the pool's timeout: the server is unreachable,
    // and trying again at once would only make the callers wait longer.
    let mut conn = pool.acquire().await.map_err(|error| Failure::Lost(error.into()))?;
    let mut tx = conn.begin().await.map_err(|error| Failure::Unsent(error.into()))?;
    let ran = match run(tables, &mut tx, creates, turns).await {
        Ok(ran) => ran,
        Err(error) => {
            // A failed rollback means a broken connection, which ends the
            // transaction anyway.
            let _ = tx.rollback().await;
            return Err(Failure::of(error));
        }
    };
    let xact = ran.creates.xact.clone().or_else(|| ran.turns.xact.clone());
    match tx.commit().await {
        Ok(()) => Ok(ran),
        // The server refused the commit: the transaction rolled back.
        Err(error) if !connection_lost(&error) => Err(Failure::Refused(error.into())),
        // The session ended around the COMMIT: an error answering it may
        // come after the commit itself (a backend terminated while
        // committing reports so once the commit is durable).
        // Nothing was written: the results are what they would be.
        Err(_) if xact.is_none() => Ok(ran),
        Err(error) => {
            let xact = xact.expect("checked above");
            resolve(pool, &xact, error).await.map(|()| ran)
        }
    }
}

/// The statements of the batch, inside its transaction.
async fn run(
    tables: &Tables,
    conn: &mut PgConnection,
    creates: &[NewCall],
    turns: &[Appends],
) -> Result<Ran, StoreError> {
    let now = tables.clock.now();
    let creates = if creates.is_empty() {
        Wrote::default()
    } else {
        insert_calls(&tables.calls, conn, creates, now).await?
    };
    let turns = if turns.is_empty() {
        Wrote::default()
    } else {
        finish_turns(tables, conn, turns, now).await?
    };
    let ran = Ran { creates, turns };
    notify_scheduled(conn, (&tables.channel, &tables.horizon), ran.due(), ran.earliest()).await?;
    Ok(ran)
}

/// Learns whether transaction `xact`, whose `COMMIT` went unanswered
/// (`lost`), committed: `Ok` if it did (see the module docs).
async fn resolve(pool: &PgPool, xact: &str, lost: sqlx::Error) -> Result<(), Failure> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        let status: Result<Option<String>, sqlx::Error> = sqlx::query_scalar("SELECT pg_xact_status($1::xid8)")
            .bind(xact)
            .fetch_one(pool)
            .await;
        match status.as_ref().map(Option::as_deref) {
            Ok(Some("committed")) => {
                tracing::info!(%lost, "a batch's COMMIT went unanswered, but it committed");
                return Ok(());
            }
            Ok(Some("aborted")) => {
                return Err(Failure::Lost(StoreError::backend(
                    "the connection broke while committing; nothing was written",
                    lost,
                )))
            }
            // In progress: the session that ran it is still ending. Or the
            // server cannot be reached yet. `None`: too old to tell.
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
        if started.elapsed() + delay > RESOLVE_FOR {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    Err(Failure::Lost(StoreError::backend(
        format_args!(
            "the connection broke while committing, and whether the write committed could not be \
             learned within {} s",
            RESOLVE_FOR.as_secs()
        ),
        lost,
    )))
}
