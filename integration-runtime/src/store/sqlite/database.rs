//! The writer's connection: to the pool's database, opened as sqlx opens
//! the pool's connections (file name, VFS), with the settings of theirs that
//! writes depend on.
//!
//! sqlx's options only tell their file name and (through their URL) how the
//! file is opened; the pragmas they apply are read back from a pooled
//! connection, which also catches what an `after_connect` hook set.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags};
use sqlx::ConnectOptions;

use super::{SqlitePool, StoreError};

/// Prepared statements the writer keeps: every fixed one, and the dynamic
/// ones (one per placeholder count) of recent batch sizes.
const STATEMENTS: usize = 64;

/// How to open the writer's connection.
pub(super) struct Database {
    path: PathBuf,
    vfs: Option<String>,
    /// `PRAGMA synchronous` of the pool's connections: the durability the
    /// application chose for its commits.
    synchronous: i64,
    foreign_keys: bool,
}

impl Database {
    /// The database of `pool`, whose connections tell the settings.
    pub(super) async fn of(pool: &SqlitePool) -> Result<Self, StoreError> {
        let options = pool.connect_options();
        let vfs = options
            .to_url_lossy()
            .query_pairs()
            .find(|(key, _)| key == "vfs")
            .map(|(_, vfs)| vfs.into_owned());
        let mut connection = pool.acquire().await?;
        let synchronous = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *connection)
            .await?;
        let foreign_keys = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *connection)
            .await?;
        Ok(Database {
            path: options.get_filename().to_owned(),
            vfs,
            synchronous,
            foreign_keys,
        })
    }

    /// Opens a connection; its busy timeout is set per batch by the writer.
    pub(super) fn open(&self) -> Result<Connection, StoreError> {
        // As sqlx: a name starting with `file:` is a URI; the writer has
        // the connection to itself.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = match &self.vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(&self.path, flags, vfs)?,
            None => Connection::open_with_flags(&self.path, flags)?,
        };
        connection.pragma_update(None, "synchronous", self.synchronous)?;
        connection.pragma_update(None, "foreign_keys", self.foreign_keys)?;
        connection.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};

    use super::*;

    #[tokio::test]
    async fn the_writer_opens_the_pools_file_with_its_vfs_and_settings() {
        let dir = super::super::tests::temp_dir();
        let options = SqliteConnectOptions::new()
            .filename(dir.join("settings.db"))
            .create_if_missing(true)
            .vfs("unix-dotfile")
            .synchronous(SqliteSynchronous::Extra)
            .foreign_keys(false);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE t (x)").execute(&pool).await.unwrap();
        let database = Database::of(&pool).await.unwrap();
        assert_eq!(database.vfs.as_deref(), Some("unix-dotfile"));

        let connection = database.open().unwrap();
        let setting = |name| {
            connection
                .pragma_query_value(None, name, |row| row.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!((setting("synchronous"), setting("foreign_keys")), (3, 0));
        let tables: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 't'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(tables, 1, "not the pool's database");
        drop(connection);
        pool.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
