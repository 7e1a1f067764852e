//! SQLite: one embedded database file in WAL mode.
//!
//! One dedicated connection writes (SQLite allows one writer at a time, and the sequencer is the
//! only one); a pool of `query_only` connections reads concurrently from WAL snapshots.
//! `synchronous=FULL` makes every commit durable before the sequencer answers, even across
//! power loss. A write transaction begins `IMMEDIATE`, taking the write lock at once.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::DatastoreOptions;
use super::sql::connections::{Connections, KeepCheck, Limits};
use super::sql::reopen::Reopen;
use super::sql::template::{Placeholders, Sql};
use super::sql::{BoxFuture, Dialect, LocalFile, SqlBackend, Value};
use super::sqlite_pages::{self, WriterHandle};
use crate::error::{Error, Result};
use crate::proto::KeyValue;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const READ_POOL_SIZE: u32 = 8;
/// Pages of a new database file: 8 KiB. A `current` row of a 1 KiB object takes about 1,150
/// bytes: three fit a 4 KiB page (a third of each page empty), seven an 8 KiB one. Measured
/// 2026-12-03 (100,000 puts of 1 KiB values, compacted and defragmented): 1,250 bytes per object
/// against 1,450 with 4 KiB pages, one client's put p50 0.76 and 0.86 ms against 0.73 and 0.90,
/// txn-puts of 100 clients 4,947 and 5,211/s against 6,126 and 5,257 (two rounds each, beside
/// another load); on a quiet machine etcd's benchmark tool (256-byte values, 100 clients, two
/// rounds) made 11,978 and 13,570 puts/s against 11,603 and 11,179, and 9,626 and 11,211
/// txn-puts/s against 8,341 and 10,041: smaller trees, fewer pages per commit. Pages of 16 KiB store the same 1 KiB rows no better, and every page a commit
/// changes goes to the WAL whole: a one-put commit took 2.06 ms against 0.81 to 1.22 ms with 4
/// KiB pages (2026-12-02). A file made before keeps its page size (VACUUM does not change it
/// in WAL mode).
const SQLITE_PAGE_SIZE: u32 = 8192;

/// The bytes the WAL file keeps after a checkpoint empties it. SQLite reuses the file rather
/// than shrinking it, so without a limit it stays as large as it ever grew: while long lists
/// hold snapshots, or after a defragment (a whole copy of the database).
const WAL_SIZE_LIMIT: &str = "67108864";

/// Page cache per connection, in KiB (SQLite's negative `cache_size`). Each connection has its
/// own: the writer's holds the indexes a batch updates; readers stream pages the operating
/// system caches anyway and need only the B-trees' inner pages, so theirs stay small (eight
/// readers at 32 MiB each held 256 MiB after a full list of 1M objects).
const WRITER_CACHE_KIB: &str = "-16384";
const READER_CACHE_KIB: &str = "-4096";

/// Prepared statements the writer keeps: its own few dozen, and the joined writes of small
/// batches (one per mix of multi-row sizes seen), which would otherwise push them out of
/// sqlx's default 100.
const WRITER_STATEMENTS: usize = 400;

/// How long a write waits for the writer connection (held by the sequencer or the compactor's
/// short transactions) before its batch fails.
const WRITER_WAIT: Duration = Duration::from_secs(60);

/// How long a read waits for one of the reader connections.
const READER_WAIT: Duration = Duration::from_secs(30);

pub struct Sqlite;

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    type Writer = Option<WriterHandle>;
    const PLACEHOLDERS: Placeholders = Placeholders::Question;
    const KEY: &'static str = "key";
    const SHARED: bool = false;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const JOINED_STATEMENTS: bool = true;
    const ROWID_RANGES: bool = true;
    const BOUNDED_JOINS: bool = false;
    // SQLite has no delete-join: the superseded rows are named by their primary key.
    fn delete_superseded(changes: &str) -> Option<String> {
        Some(format!(
            "DELETE FROM history WHERE (@key, revision) IN \
             (SELECT o.@key, o.revision FROM {changes} n JOIN history o ON o.@key = n.@key \
              AND o.revision < n.revision)"
        ))
    }
    const DB_SIZE: &'static str = "SELECT p.page_count * s.page_size, \
        (p.page_count - f.freelist_count) * s.page_size \
        FROM pragma_page_count() p, pragma_page_size() s, pragma_freelist_count() f";
    // VACUUM writes the whole new file through the WAL; the checkpoint copies it back and
    // empties the WAL, which would otherwise keep that size on disk beside the file.
    const DEFRAGMENT: &'static str = "VACUUM; PRAGMA wal_checkpoint(TRUNCATE)";
    const GREATEST: &'static str = "MAX";
    const INTEGER_CAST: &'static str = "INTEGER";

    fn page<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, std::result::Result<Vec<KeyValue>, sqlx::Error>> {
        Box::pin(sqlite_pages::key_values(conn, sql, arguments))
    }

    fn begin_write<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        writer: &'c mut Option<WriterHandle>,
    ) -> BoxFuture<'c, std::result::Result<(), sqlx::Error>> {
        Box::pin(async move {
            let handle = match *writer {
                Some(handle) => handle,
                None => WriterHandle::of(conn).await?,
            };
            *writer = Some(handle);
            handle.execute(Self::BEGIN, &[], &[])?;
            Ok(())
        })
    }

    /// The commit waits on the disk (the WAL's fsync, and a checkpoint when the WAL is full):
    /// this tokio worker's other tasks move to another meanwhile. The batch's other statements
    /// change pages in memory and run inline. (`BEGIN IMMEDIATE` waits only if another process
    /// holds the file's write lock: the lock file keeps other servers off it.)
    fn commit_write<'c>(
        _conn: &'c mut sqlx::SqliteConnection,
        writer: &'c Option<WriterHandle>,
    ) -> BoxFuture<'c, std::result::Result<(), sqlx::Error>> {
        on_handle(writer, |handle| {
            sqlite_pages::blocking(|| handle.execute("COMMIT", &[], &[])).map(drop)
        })
    }

    fn write<'c>(
        _conn: &'c mut sqlx::SqliteConnection,
        writer: &'c Option<WriterHandle>,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, std::result::Result<u64, sqlx::Error>> {
        on_handle(writer, |handle| {
            handle.execute(&sql.text, &sql.binds, arguments)
        })
    }

    fn live_versions<'c>(
        _conn: &'c mut sqlx::SqliteConnection,
        writer: &'c Option<WriterHandle>,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, std::result::Result<Vec<KeyValue>, sqlx::Error>> {
        on_handle(writer, |handle| handle.key_values(sql, arguments))
    }

    /// SQLite's planner takes the key range's index for scans by revision unless told.
    fn table_via(table: &str, alias: &str, index: &str) -> String {
        format!("{table} {alias} INDEXED BY {index}")
    }
}

/// Runs `statement` on the write transaction's handle, on this thread. Without one the
/// connection did not begin the sequencer's transaction: a bug, reported as an error.
fn on_handle<'c, T: Send + 'c>(
    writer: &Option<WriterHandle>,
    statement: impl FnOnce(WriterHandle) -> std::result::Result<T, sqlx::Error>,
) -> BoxFuture<'c, std::result::Result<T, sqlx::Error>> {
    let outcome = match *writer {
        Some(handle) => statement(handle),
        None => Err(sqlx::Error::Protocol(
            "a write statement outside the sequencer's transaction".into(),
        )),
    };
    Box::pin(std::future::ready(outcome))
}

/// How long a server waits for the lock of a file another store of this process is closing.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the lock that makes this server the only one on the file at `path` (`PATH.lock`,
/// held until the backend is dropped; the kernel releases it if the process dies). Two servers
/// on one SQLite file would each number revisions from their own memory.
async fn lock_exclusively(path: &str) -> Result<std::fs::File> {
    let name = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidEndpoint(format!(
                    "{path} is served by another etcdshim (it holds {name}): a SQLite database \
                     takes one server; run several on PostgreSQL or MySQL"
                )));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(err.into()),
        }
    }
}

/// The database file at `path`, read-only (a Kine database to import).
pub async fn read_only(path: &str) -> Result<sqlx::SqlitePool> {
    if !Path::new(path).is_file() {
        return Err(Error::InvalidEndpoint(format!(
            "there is no SQLite file at {path}"
        )));
    }
    let connect = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await?)
}

/// Opens (creating if needed) the database file at `path` and applies the migrations.
pub async fn open(path: &str, options: &DatastoreOptions) -> Result<SqlBackend<Sqlite>> {
    if path.is_empty() {
        return Err(Error::InvalidEndpoint("sqlite:// needs a file path".into()));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent).await?;
    }
    let lock = lock_exclusively(path).await?;
    let connect = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .page_size(SQLITE_PAGE_SIZE)
        .pragma("temp_store", "memory")
        .pragma("journal_size_limit", WAL_SIZE_LIMIT);
    let connect = options.logged(connect);
    // Created here, once: a connection opened later (after a failure, see `reopen`) must find
    // the file, not make an empty one where an unmounted volume used to be.
    sqlx::SqliteConnection::connect_with(&connect.clone().create_if_missing(true))
        .await?
        .close()
        .await?;
    let reopen = Arc::new(Reopen::default());
    let keep: KeepCheck = {
        let reopen = reopen.clone();
        Arc::new(move |age| reopen.keeps(age))
    };
    // A failed COMMIT (a full or failing disk) leaves the writer's connection closed by
    // `connections`, so the next batch begins on a fresh one whatever state SQLite left.
    let writes = Connections::open(
        connect
            .clone()
            .pragma("cache_size", WRITER_CACHE_KIB)
            .statement_cache_capacity(WRITER_STATEMENTS),
        Limits {
            max: 1,
            min: 1,
            max_lifetime: None,
            acquire_timeout: WRITER_WAIT,
            on_connect: Vec::new(),
            keep: Some(keep.clone()),
        },
    )
    .await?;
    MIGRATOR.run(writes.acquire().await?.raw()).await?;
    let reads = Connections::open(
        connect
            .pragma("cache_size", READER_CACHE_KIB)
            .pragma("query_only", "true"),
        Limits {
            max: READ_POOL_SIZE,
            min: 1,
            max_lifetime: None,
            acquire_timeout: READER_WAIT,
            on_connect: Vec::new(),
            keep: Some(keep),
        },
    )
    .await?;
    Ok(SqlBackend::new(
        reads,
        writes,
        None,
        Some(LocalFile {
            reopen,
            _lock: lock,
        }),
        options.counted_prefix_min_keys,
    ))
}
