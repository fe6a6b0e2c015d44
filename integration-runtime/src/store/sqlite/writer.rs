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
//! each write in its own savepoint inside one `BEGIN IMMEDIATE` transaction,
//! commits once, and only then answers each caller. A write that fails rolls
//! back to its savepoint and leaves the others in the batch untouched.
//!
//! An idle store pays nothing for this: a lone write is a batch of one, sent
//! at once. A caller that stops waiting does not cancel its write (it runs,
//! or not, as a whole, and transactions are never abandoned half-way).

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use tokio::sync::{mpsc, oneshot};

use crate::store::error::ErrorKind;
use crate::store::{BoxFuture, StoreError};

/// The most writes one transaction takes. Bounds how long a batch holds the
/// file's write lock, not how many callers may wait.
const MAX_BATCH: usize = 256;

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_BATCH;

/// The handle to the writer task; the task ends when the handle is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Opens the writer's own connection with `options` and starts the task.
    pub(super) async fn start(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let connection = options.connect().await?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(serve(connection, options, queue));
        Ok(Writer { jobs })
    }

    /// Runs `write` on the writer's connection inside a transaction shared
    /// with other writes, and returns its result once that transaction has
    /// committed. An error from `write` undoes only what `write` did.
    pub(super) async fn write<T, W>(&self, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Queued { write, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::new(ErrorKind::Backend, "the store's writer has stopped")
}

/// A write waiting for its turn, type-erased so one queue takes them all.
trait Job: Send {
    /// Runs the write; what it returns is held until the commit.
    fn run<'c>(self: Box<Self>, connection: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Ran>>;
    /// Answers the caller without running: the batch could not start.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// A write that ran, waiting to learn whether its transaction committed.
trait Ran: Send {
    fn succeeded(&self) -> bool;
    /// Answers the caller: the write's own result if the batch committed (or
    /// the write failed anyway), else why the batch failed.
    fn answer(self: Box<Self>, batch: Result<(), &StoreError>);
}

struct Queued<T, W> {
    write: W,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct Done<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, W> Job for Queued<T, W>
where
    T: Send + 'static,
    W: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, connection: &'c mut SqliteConnection) -> BoxFuture<'c, Box<dyn Ran>> {
        let Queued { write, reply } = *self;
        Box::pin(async move {
            let result = write(connection).await;
            Box::new(Done { result, reply }) as Box<dyn Ran>
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
        let result = match (self.result, batch) {
            (Ok(_), Err(error)) => Err(batch_failed(error)),
            (result, _) => result,
        };
        let _ = self.reply.send(result);
    }
}

fn batch_failed(error: &StoreError) -> StoreError {
    StoreError::new(
        ErrorKind::Backend,
        format_args!("the write was not committed: {error}"),
    )
}

/// The writer task: one batch at a time, until every handle is dropped.
async fn serve(mut connection: SqliteConnection, options: SqliteConnectOptions, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        if let Err(error) = commit_batch(&mut connection, jobs).await {
            tracing::warn!(%error, "a batch of store writes failed; reconnecting the writer");
            // The connection's state is unknown (a failed ROLLBACK, a broken
            // file handle): start the next batch on a fresh one.
            match options.connect().await {
                Ok(fresh) => connection = fresh,
                Err(error) => tracing::warn!(%error, "reconnecting the store's writer failed; keeping the old connection"),
            }
        }
    }
}

/// Runs `jobs` in one transaction and answers each. Errs (after answering
/// every job) when the transaction itself failed.
async fn commit_batch(
    connection: &mut SqliteConnection,
    jobs: Vec<Box<dyn Job>>,
) -> Result<(), StoreError> {
    let mut jobs = jobs.into_iter();
    if let Err(error) = execute(connection, "BEGIN IMMEDIATE").await {
        for job in jobs {
            job.refuse(batch_failed(&error));
        }
        return Err(error);
    }
    let mut ran: Vec<Box<dyn Ran>> = Vec::new();
    let mut failure = None;
    while let Some(job) = jobs.next() {
        match run_in_savepoint(connection, job).await {
            Ok(done) => ran.push(done),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let outcome = match failure {
        None => execute(connection, "COMMIT").await,
        Some(error) => Err(error),
    };
    if outcome.is_err() {
        // Whatever the transaction held is gone; nothing was answered yet.
        let _ = execute(connection, "ROLLBACK").await;
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
async fn run_in_savepoint(connection: &mut SqliteConnection, job: Box<dyn Job>) -> Result<Box<dyn Ran>, StoreError> {
    if let Err(error) = execute(connection, "SAVEPOINT store_write").await {
        job.refuse(batch_failed(&error));
        return Err(error);
    }
    let done = job.run(connection).await;
    if !done.succeeded() {
        if let Err(error) = execute(connection, "ROLLBACK TO store_write").await {
            done.answer(Err(&error));
            return Err(error);
        }
    }
    if let Err(error) = execute(connection, "RELEASE store_write").await {
        done.answer(Err(&error));
        return Err(error);
    }
    Ok(done)
}

async fn execute(connection: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut *connection).await?;
    Ok(())
}
