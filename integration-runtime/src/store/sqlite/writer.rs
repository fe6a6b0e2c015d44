//! Group commit: every write of a [`SqliteStore`](super::SqliteStore) runs
//! on one dedicated connection, and the writes that queue up while a commit
//! is in flight share the next transaction.
//!
//! Why: a durable commit costs one `fsync` (about half a millisecond on a
//! virtio disk), whatever it holds, and SQLite admits one writer at a time.
//! With a writer per pool connection, concurrent writers wait in SQLite's
//! busy handler, which *sleeps* (1, 2, 5, ... up to 100 ms) instead of
//! queueing, and every write pays its own `fsync`. Here writers queue in
//! memory; the writer takes everything queued (up to [`MAX_BATCH`]), runs
//! them inside one `BEGIN IMMEDIATE` transaction, commits once, and only then
//! answers each caller. A write that fails leaves the others in the batch
//! untouched: writes queued with [`Writer::write`] must change nothing when
//! they fail (each is one statement, or reads after its only statement),
//! while the batch's appends and the writes queued with
//! [`Writer::write_statements`], which write several statements, run in a
//! savepoint.
//!
//! An idle store pays nothing for this: a lone write is a batch of one, sent
//! at once.
//!
//! The connection is rusqlite's, owned by a thread of the writer's own:
//! writes are closures over it, their statements plain calls into SQLite
//! (prepared once, then taken from the connection's cache), so a batch holds
//! the file's write lock for the time SQLite works, not for a round trip per
//! statement between the runtime's threads and a database thread. Callers
//! queue their writes on a channel and hear back on their own one.
//!
//! Leases and notification marks are written without waiting for the disk
//! ([`Writer::write_unsynced`]): a batch that holds nothing else commits with
//! `synchronous=NORMAL`. Losing one in a power cut only repeats work the
//! runtime does at least once anyway (a call becomes claimable again sooner,
//! as when its worker dies; a hook runs again); every later commit with the
//! configured level (`FULL` by default) syncs the WAL, their frames
//! included. Calls, events and schedules are always written with the
//! configured level. A caller that stops waiting does not cancel its write (it runs,
//! or not, as a whole, and transactions are never abandoned half-way).
//!
//! No write waits longer than [`WRITE_WAIT`] for its turn: while another
//! connection (another process, a caller's own transaction) holds the
//! database's write lock, a batch waits for it only as long as its oldest
//! write may still wait (SQLite's busy timeout, set per batch), and a write
//! that queued longer is refused without running. Either way the caller
//! hears [`StoreError::is_unavailable`] within the bound, and nothing of its
//! write is stored.

use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::appends::append_batch;
use super::database::Database;
use crate::clock::SharedClock;
use crate::store::error::ErrorKind;
use crate::store::folding::Appends;
use crate::store::{AppendOutcome, StoreError};

/// The most writes one transaction takes. Bounds how long a batch holds the
/// file's write lock, not how many callers may wait.
const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// The longest a write waits for its turn (see the module docs): a locked
/// database is reported in seconds, not after a pile-up of busy timeouts.
pub(crate) const WRITE_WAIT: Duration = Duration::from_secs(5);

/// The handle to the writer thread; the thread ends when the handle is
/// dropped (after the writes already queued).
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<(Instant, Item)>,
}

/// What callers queue: a write of its own, or appends, which the writer
/// runs together (see the `appends` module).
enum Item {
    Write(Box<dyn Job>),
    Append(Appends, Reply<Vec<AppendOutcome>>),
}

impl Item {
    /// Answers the caller without running the item.
    fn refuse(self, error: StoreError) {
        match self {
            Item::Write(job) => job.refuse(error),
            // The caller may have stopped waiting: nobody to tell.
            Item::Append(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl Writer {
    /// Opens the writer's connection to `database` on a thread of its own,
    /// which then serves the writes.
    pub(super) async fn start(database: Database, clock: SharedClock) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (opened, open) = oneshot::channel();
        thread::Builder::new()
            .name("integration-sqlite-writer".to_owned())
            .spawn(move || match database.open() {
                Ok(connection) => {
                    if opened.send(Ok(())).is_ok() {
                        serve(connection, &database, queue, &clock);
                    }
                }
                Err(error) => drop(opened.send(Err(error))),
            })
            .map_err(|error| StoreError::backend("starting the store's writer thread failed", error))?;
        open.await.map_err(|_| stopped())??;
        Ok(Writer { jobs })
    }

    /// Runs `write` on the writer's connection inside a transaction shared
    /// with other writes, and returns its result once that transaction has
    /// committed with the connection's configured durability.
    ///
    /// `write` must change nothing when it returns an error: it runs without
    /// a savepoint of its own (one statement that writes, reads after it).
    pub(super) async fn write<T, W>(&self, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(true, true, write).await
    }

    /// As [`Writer::write`], for a write of several statements: in a batch
    /// with others it runs in a savepoint, so that when it fails nothing of
    /// it is written (alone, its transaction is rolled back).
    pub(super) async fn write_statements<T, W>(&self, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(true, false, write).await
    }

    /// As [`Writer::write`], for a write whose loss in a power cut only
    /// repeats work done at least once anyway (a lease, a notification
    /// mark): its commit need not wait for the disk (see the module docs).
    pub(super) async fn write_unsynced<T, W>(&self, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(false, true, write).await
    }

    async fn enqueue<T, W>(&self, durable: bool, atomic: bool, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.request(|reply| {
            Item::Write(Box::new(Queued {
                write,
                durable,
                atomic,
                reply,
            }))
        })
        .await
    }

    /// Appends events (and ends a worker's turn), together with the other
    /// appends of the batch; durable like [`Writer::write`]. An error
    /// leaves nothing of this request written.
    pub(super) async fn append(&self, appends: Appends) -> Result<Vec<AppendOutcome>, StoreError> {
        self.request(|reply| Item::Append(appends, reply)).await
    }

    /// Queues the item `make` builds around its reply channel, and waits for
    /// the answer.
    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Item) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queued = (Instant::now(), make(reply));
        self.jobs.send(queued).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::new(ErrorKind::Backend, "the store's writer has stopped")
}

/// A write waiting for its turn, type-erased so one queue takes them all.
trait Job: Send {
    /// Whether the commit must reach the disk before the caller hears of it.
    fn durable(&self) -> bool;
    /// Whether the job changes nothing when it fails (else it runs in a
    /// savepoint when it shares the batch).
    fn atomic(&self) -> bool;
    /// Runs the write; what it returns is held until the commit.
    fn run(self: Box<Self>, connection: &Connection) -> Box<dyn Ran>;
    /// Answers the caller without running: the batch could not start.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// A write that ran, waiting to learn whether its transaction committed.
trait Ran {
    fn succeeded(&self) -> bool;
    /// Answers the caller: the write's own result if the batch committed (or
    /// the write failed anyway), else why the batch failed.
    fn answer(self: Box<Self>, batch: Result<(), &StoreError>);
}

struct Queued<T, W> {
    write: W,
    durable: bool,
    /// The write changes nothing when it fails (one statement that writes).
    atomic: bool,
    reply: Reply<T>,
}

struct Done<T> {
    result: Result<T, StoreError>,
    reply: Reply<T>,
}

impl<T, W> Job for Queued<T, W>
where
    T: Send + 'static,
    W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn atomic(&self) -> bool {
        self.atomic
    }

    fn run(self: Box<Self>, connection: &Connection) -> Box<dyn Ran> {
        let Queued { write, reply, .. } = *self;
        Box::new(Done {
            result: write(connection),
            reply,
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        // The caller may have stopped waiting: nobody to tell.
        let _ = self.reply.send(Err(error));
    }
}

impl<T: Send + 'static> Ran for Done<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>, batch: Result<(), &StoreError>) {
        let _ = self.reply.send(settle(self.result, batch));
    }
}

/// Every append request of a batch, run as one job.
struct AppendJob {
    requests: Vec<Appends>,
    replies: Vec<Reply<Vec<AppendOutcome>>>,
    now: DateTime<Utc>,
}

/// Each request's outcome, or why the whole append step failed.
struct AppendsDone {
    result: Result<Vec<Result<Vec<AppendOutcome>, StoreError>>, StoreError>,
    replies: Vec<Reply<Vec<AppendOutcome>>>,
}

impl Job for AppendJob {
    fn durable(&self) -> bool {
        true
    }

    fn atomic(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, connection: &Connection) -> Box<dyn Ran> {
        let AppendJob { requests, replies, now } = *self;
        Box::new(AppendsDone {
            result: append_batch(connection, requests, now),
            replies,
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        refuse_all(self.replies, &error);
    }
}

impl Ran for AppendsDone {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>, batch: Result<(), &StoreError>) {
        match self.result {
            Ok(results) => {
                for (result, reply) in results.into_iter().zip(self.replies) {
                    let _ = reply.send(settle(result, batch));
                }
            }
            Err(error) => refuse_all(self.replies, &error),
        }
    }
}

/// What a write's caller hears: its own result, unless it succeeded in a
/// batch that did not commit.
fn settle<T>(result: Result<T, StoreError>, batch: Result<(), &StoreError>) -> Result<T, StoreError> {
    match (result, batch) {
        (Ok(_), Err(error)) => Err(batch_failed(error)),
        (result, _) => result,
    }
}

fn refuse_all<T>(replies: Vec<Reply<T>>, error: &StoreError) {
    for reply in replies {
        // The caller may have stopped waiting: nobody to tell.
        let _ = reply.send(Err(batch_failed(error)));
    }
}

/// Why a write was not committed; as unavailable as the batch's failure.
fn batch_failed(error: &StoreError) -> StoreError {
    let message = format_args!("the write was not committed: {error}");
    if error.is_unavailable() {
        StoreError::unavailable(message)
    } else {
        StoreError::new(ErrorKind::Backend, message)
    }
}

/// The writer thread: one batch at a time, until the handle is dropped and
/// the queue is empty.
fn serve(
    mut connection: Connection,
    database: &Database,
    mut queue: mpsc::Receiver<(Instant, Item)>,
    clock: &SharedClock,
) {
    let mut sync = Synchronous::read(&connection);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(oldest) = refuse_expired(&mut batch) else {
            continue;
        };
        let jobs = into_jobs(batch.drain(..).map(|(_, item)| item), clock.now());
        // The batch waits for a lock held elsewhere only as long as its
        // oldest write may still wait (zero would wait not at all).
        let left = WRITE_WAIT
            .saturating_sub(oldest.elapsed())
            .max(Duration::from_millis(1));
        let result = match connection.busy_timeout(left) {
            Ok(()) => commit_batch(&connection, &mut sync, jobs),
            Err(error) => {
                let error = StoreError::from(error);
                for job in jobs {
                    job.refuse(batch_failed(&error));
                }
                Err(error)
            }
        };
        match result {
            Ok(()) => {}
            // A lock held elsewhere, a full disk: the connection is fine.
            Err(error) if error.is_unavailable() => {
                tracing::warn!(%error, "a batch of store writes could not be written");
            }
            Err(error) => {
                tracing::warn!(%error, "a batch of store writes failed; reconnecting the writer");
                // The connection's state is unknown (a failed ROLLBACK, a broken
                // file handle): start the next batch on a fresh one.
                match database.open() {
                    Ok(fresh) => {
                        connection = fresh;
                        sync = Synchronous::read(&connection);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reconnecting the store's writer failed; keeping the old connection")
                    }
                }
            }
        }
    }
}

/// Refuses the writes of `batch` that waited [`WRITE_WAIT`] already (they
/// never ran); the time the oldest other one was queued, if any is left.
fn refuse_expired(batch: &mut Vec<(Instant, Item)>) -> Option<Instant> {
    let oldest = batch.iter().map(|(at, _)| *at).min()?;
    if oldest.elapsed() < WRITE_WAIT {
        // Nearly always: nothing waited that long.
        return Some(oldest);
    }
    let (expired, live): (Vec<_>, Vec<_>) = batch.drain(..).partition(|(at, _)| at.elapsed() >= WRITE_WAIT);
    for (_, item) in expired {
        item.refuse(StoreError::unavailable(format_args!(
            "the store could not write for {} s: the database is locked by another connection, or failing",
            WRITE_WAIT.as_secs()
        )));
    }
    *batch = live;
    batch.iter().map(|(at, _)| *at).min()
}

/// The batch's jobs: each write on its own, then every append in one job,
/// recorded at `now`.
fn into_jobs(items: impl Iterator<Item = Item>, now: DateTime<Utc>) -> Vec<Box<dyn Job>> {
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut appends = AppendJob {
        requests: Vec::new(),
        replies: Vec::new(),
        now,
    };
    for item in items {
        match item {
            Item::Write(job) => jobs.push(job),
            Item::Append(request, reply) => {
                appends.requests.push(request);
                appends.replies.push(reply);
            }
        }
    }
    if !appends.requests.is_empty() {
        jobs.push(Box::new(appends));
    }
    jobs
}

/// The writer connection's `synchronous` level: the configured one for
/// batches that hold calls or events, at most `NORMAL` for lease-only ones.
struct Synchronous {
    configured: i64,
    current: i64,
}

/// `PRAGMA synchronous` values.
const NORMAL: i64 = 1;

impl Synchronous {
    fn read(connection: &Connection) -> Self {
        // Unreadable: assume FULL, which only costs speed.
        let configured = connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap_or(2);
        Synchronous {
            configured,
            current: configured,
        }
    }

    /// Sets the level for the next batch (outside a transaction, where
    /// SQLite allows it).
    fn set(&mut self, connection: &Connection, durable: bool) -> Result<(), StoreError> {
        let wanted = if durable {
            self.configured
        } else {
            self.configured.min(NORMAL)
        };
        if wanted != self.current {
            execute(connection, pragma(wanted))?;
            self.current = wanted;
        }
        Ok(())
    }
}

fn pragma(level: i64) -> &'static str {
    match level {
        0 => "PRAGMA synchronous = OFF",
        1 => "PRAGMA synchronous = NORMAL",
        3 => "PRAGMA synchronous = EXTRA",
        _ => "PRAGMA synchronous = FULL",
    }
}

/// Runs `jobs` in one transaction, at the durability they need, and answers
/// each. Errs (after answering every job) when the transaction itself failed.
fn commit_batch(connection: &Connection, sync: &mut Synchronous, jobs: Vec<Box<dyn Job>>) -> Result<(), StoreError> {
    // A lone job needs no savepoint: the transaction is its own.
    let alone = jobs.len() == 1;
    let durable = jobs.iter().any(|job| job.durable());
    let mut jobs = jobs.into_iter();
    let began = sync
        .set(connection, durable)
        .and_then(|()| execute(connection, "BEGIN IMMEDIATE"));
    if let Err(error) = began {
        for job in jobs {
            job.refuse(batch_failed(&error));
        }
        return Err(error);
    }
    let mut ran: Vec<Box<dyn Ran>> = Vec::new();
    let mut failure = None;
    for job in jobs.by_ref() {
        let step = if alone || job.atomic() {
            Ok(job.run(connection))
        } else {
            run_in_savepoint(connection, job)
        };
        match step {
            // SQLite rolls the whole transaction back on some failures (a
            // full disk, an I/O error): the rest of the batch would run
            // outside any transaction, each write committed on its own.
            Ok(done) if !done.succeeded() && connection.is_autocommit() => {
                ran.push(done);
                failure = Some(StoreError::unavailable(
                    "the database rolled back the transaction after a write failed (its disk is full, or it failed)",
                ));
                break;
            }
            Ok(done) => ran.push(done),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let outcome = match failure {
        // The lone job failed: undo it (its caller hears its own error).
        None if alone && !ran.iter().all(|done| done.succeeded()) => execute(connection, "ROLLBACK"),
        None => execute(connection, "COMMIT"),
        Some(error) => Err(error),
    };
    if outcome.is_err() {
        // Whatever the transaction held is gone; nothing was answered yet.
        let _ = execute(connection, "ROLLBACK");
    }
    for done in ran {
        done.answer(outcome.as_ref().map(|_| ()));
    }
    if let Err(error) = &outcome {
        for job in jobs {
            job.refuse(batch_failed(error));
        }
    }
    outcome
}

/// Runs one job between `SAVEPOINT` and `RELEASE`, rolling back to the
/// savepoint when it fails. Errs only when the transaction cannot go on.
fn run_in_savepoint(connection: &Connection, job: Box<dyn Job>) -> Result<Box<dyn Ran>, StoreError> {
    if let Err(error) = execute(connection, "SAVEPOINT store_write") {
        job.refuse(batch_failed(&error));
        return Err(error);
    }
    let done = job.run(connection);
    if !done.succeeded() {
        if let Err(error) = execute(connection, "ROLLBACK TO store_write") {
            done.answer(Err(&error));
            return Err(error);
        }
    }
    if let Err(error) = execute(connection, "RELEASE store_write") {
        done.answer(Err(&error));
        return Err(error);
    }
    Ok(done)
}

fn execute(connection: &Connection, sql: &'static str) -> Result<(), StoreError> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn lease_only_batches_skip_the_sync_and_others_restore_it() {
        let dir = super::super::tests::temp_dir();
        let connection = Connection::open(dir.join("sync.db")).unwrap();
        connection.pragma_update(None, "journal_mode", "wal").unwrap();
        execute(&connection, pragma(3)).unwrap();
        let mut sync = Synchronous::read(&connection);
        assert_eq!(level(&connection), 3);

        sync.set(&connection, false).unwrap();
        assert_eq!(level(&connection), NORMAL);
        sync.set(&connection, true).unwrap();
        assert_eq!(level(&connection), 3, "the configured level comes back");

        // A connection configured below NORMAL is never raised by leases.
        execute(&connection, pragma(0)).unwrap();
        let mut sync = Synchronous::read(&connection);
        sync.set(&connection, false).unwrap();
        assert_eq!(level(&connection), 0);
        drop(connection);
        std::fs::remove_dir_all(dir).ok();
    }

    /// A queued write of `value` into table `t`, and where its caller hears back.
    fn insert(value: Vec<u8>) -> (Box<dyn Job>, oneshot::Receiver<Result<(), StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let write = move |connection: &Connection| -> Result<(), StoreError> {
            connection.execute("INSERT INTO t VALUES (?1)", [value])?;
            Ok(())
        };
        let job = Queued {
            write,
            durable: true,
            atomic: true,
            reply,
        };
        (Box::new(job), answer)
    }

    /// A write of several statements (`Writer::write_statements`) that
    /// fails after its first is undone alone: its batch-mates commit.
    #[test]
    fn a_failed_write_of_several_statements_leaves_nothing_and_its_batch_commits() {
        let dir = super::super::tests::temp_dir();
        let connection = Connection::open(dir.join("several.db")).unwrap();
        execute(&connection, "CREATE TABLE t (x)").unwrap();
        let mut sync = Synchronous::read(&connection);
        let (before, before_answer) = insert(b"before".to_vec());
        let (reply, half_answer) = oneshot::channel();
        let half_done = Queued {
            write: |connection: &Connection| -> Result<(), StoreError> {
                connection.execute("INSERT INTO t VALUES (?1)", [b"half".to_vec()])?;
                Err(StoreError::conflict("the second statement failed"))
            },
            durable: true,
            atomic: false,
            reply,
        };
        let (after, after_answer) = insert(b"after".to_vec());

        commit_batch(&connection, &mut sync, vec![before, Box::new(half_done), after]).unwrap();
        let rows: Vec<Vec<u8>> = connection
            .prepare("SELECT x FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [b"before".to_vec(), b"after".to_vec()]);
        assert!(half_answer.blocking_recv().unwrap().unwrap_err().is_conflict());
        before_answer.blocking_recv().unwrap().unwrap();
        after_answer.blocking_recv().unwrap().unwrap();
        drop(connection);
        std::fs::remove_dir_all(dir).ok();
    }

    /// A write that fills the disk makes SQLite roll back the whole
    /// transaction. The writes after it must not then run outside any
    /// transaction, each committed on its own while its caller hears that
    /// the batch was not.
    #[test]
    fn a_write_whose_failure_ends_the_transaction_ends_the_batch() {
        let dir = super::super::tests::temp_dir();
        let connection = Connection::open(dir.join("full.db")).unwrap();
        connection.pragma_update(None, "journal_mode", "wal").unwrap();
        execute(&connection, "CREATE TABLE t (x)").unwrap();
        // 20 pages of 4 KiB: the second write does not fit.
        connection.pragma_update(None, "max_page_count", 20).unwrap();
        let mut sync = Synchronous::read(&connection);
        let (first, first_answer) = insert(b"first".to_vec());
        let (second, second_answer) = insert(vec![0; 200_000]);
        let (third, third_answer) = insert(b"third".to_vec());

        let batch = commit_batch(&connection, &mut sync, vec![first, second, third]);
        let error = batch.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        let rows: i64 = connection
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0, "nothing of the batch is stored");
        for answer in [first_answer, second_answer, third_answer] {
            let answer = answer.blocking_recv().unwrap();
            assert!(answer.as_ref().is_err_and(StoreError::is_unavailable), "{answer:?}");
        }
        drop(connection);
        std::fs::remove_dir_all(dir).ok();
    }
}
