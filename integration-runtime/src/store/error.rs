//! The one error type of every store.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong in a store operation.
///
/// Opaque on purpose: callers branch on the `is_*` methods, which stay stable
/// when a backend (PostgreSQL) adds causes of its own.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    NotFound,
    Conflict,
    LeaseLost,
    // Only the SQL stores have a backend that fails.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    Backend,
    Unavailable,
    Corrupt,
}

impl StoreError {
    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        StoreError {
            kind,
            message: message.to_string(),
            source: None,
        }
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl fmt::Display,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        StoreError {
            kind,
            message: message.to_string(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format_args!("{what} not found"))
    }

    pub(crate) fn conflict(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub(crate) fn lease_lost(call: impl fmt::Display, worker: &str) -> Self {
        Self::new(
            ErrorKind::LeaseLost,
            format_args!("worker `{worker}` no longer holds the lease on call {call}"),
        )
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn backend(message: impl fmt::Display, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::with_source(ErrorKind::Backend, message, source)
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn unavailable(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn corrupt(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// The call (or the call behind an external id) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The operation contradicts what is stored: an idempotency key reused for
    /// a different request, an external id that already belongs to another
    /// call, or a lease held by another worker ([`StoreError::is_lease_lost`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self.kind, ErrorKind::Conflict | ErrorKind::LeaseLost)
    }

    /// The worker's lease expired and another worker claimed the call: the
    /// caller must stop working on it.
    pub fn is_lease_lost(&self) -> bool {
        self.kind == ErrorKind::LeaseLost
    }

    /// The backend failed (I/O, database busy or unreachable, migration
    /// failure, or [`StoreError::is_unavailable`]); retrying later may succeed.
    pub fn is_backend(&self) -> bool {
        matches!(self.kind, ErrorKind::Backend | ErrorKind::Unavailable)
    }

    /// The store cannot write now, and said so within its bounded wait
    /// instead of blocking: the database stayed locked (by another
    /// connection or process) past the wait, or refused the write (disk
    /// full, read-only). Nothing of the operation was written; retry later.
    /// Also [`StoreError::is_backend`].
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// Stored data could not be read back (an unknown status, invalid JSON):
    /// retrying will not help.
    pub fn is_corrupt(&self) -> bool {
        self.kind == ErrorKind::Corrupt
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let kind = match &error {
            sqlx::Error::RowNotFound => ErrorKind::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => ErrorKind::Conflict,
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorKind::Corrupt,
            sqlx::Error::Database(db) if cannot_write(db.as_ref()) => ErrorKind::Unavailable,
            _ => ErrorKind::Backend,
        };
        let message = format!("database error: {error}");
        StoreError::with_source(kind, message, error)
    }
}

/// Whether the database refused a write for a reason of its own state (a
/// lock held too long, a full disk, a read-only database), not because of
/// the statement.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn cannot_write(error: &dyn sqlx::error::DatabaseError) -> bool {
    #[cfg(feature = "sqlite")]
    if let Some(sqlite) = error.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        return sqlx::error::DatabaseError::code(sqlite)
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(sqlite_cannot_write);
    }
    // SQLSTATEs: disk_full, read_only_sql_transaction, lock_not_available.
    matches!(error.code().as_deref(), Some("53100" | "25006" | "55P03"))
}

/// [`cannot_write`] for an SQLite result code (primary or extended).
#[cfg(feature = "sqlite")]
fn sqlite_cannot_write(code: i32) -> bool {
    use rusqlite::ffi;
    matches!(
        code & 0xff,
        ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED | ffi::SQLITE_READONLY | ffi::SQLITE_FULL
    )
}

/// The SQLite store's writer runs on rusqlite (same library as sqlx's
/// driver): its errors fall into the same kinds as sqlx's.
#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::{ffi, Error};
        let kind = match &error {
            Error::QueryReturnedNoRows => ErrorKind::NotFound,
            Error::SqliteFailure(failure, _)
                if matches!(
                    failure.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                ErrorKind::Conflict
            }
            Error::SqliteFailure(failure, _) if sqlite_cannot_write(failure.extended_code) => ErrorKind::Unavailable,
            Error::FromSqlConversionFailure(..) | Error::IntegralValueOutOfRange(..) | Error::InvalidColumnType(..) => {
                ErrorKind::Corrupt
            }
            _ => ErrorKind::Backend,
        };
        let message = format!("database error: {error}");
        StoreError::with_source(kind, message, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_lost_is_a_conflict() {
        let error = StoreError::lease_lost("c1", "w1");
        assert!(error.is_lease_lost() && error.is_conflict());
        assert!(!error.is_not_found() && !error.is_backend() && !error.is_corrupt());
        assert!(error.to_string().contains("w1"), "{error}");
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn sqlx_errors_map_to_kinds() {
        assert!(StoreError::from(sqlx::Error::RowNotFound).is_not_found());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_backend());
        assert!(!StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn rusqlite_errors_map_to_the_kinds_of_sqlx_ones() {
        use rusqlite::{ffi, Error};
        let failure = |code| StoreError::from(Error::SqliteFailure(ffi::Error::new(code), None));
        assert!(StoreError::from(Error::QueryReturnedNoRows).is_not_found());
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_READONLY,
            ffi::SQLITE_FULL,
        ] {
            assert!(failure(code).is_unavailable(), "{code}");
        }
        assert!(failure(ffi::SQLITE_CONSTRAINT_UNIQUE).is_conflict());
        assert!(!failure(ffi::SQLITE_CONSTRAINT_NOTNULL).is_conflict());
        assert!(!failure(ffi::SQLITE_IOERR).is_unavailable() && failure(ffi::SQLITE_IOERR).is_backend());
        let decode = Error::InvalidColumnType(0, "status".into(), rusqlite::types::Type::Integer);
        assert!(StoreError::from(decode).is_corrupt());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn unavailable_is_a_backend_failure() {
        let error = StoreError::unavailable("locked");
        assert!(error.is_unavailable() && error.is_backend());
        assert!(!error.is_conflict() && !error.is_corrupt());
    }
}
