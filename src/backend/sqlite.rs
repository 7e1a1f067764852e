//! The SQLite dialect: one embedded database file in WAL mode.
//!
//! One dedicated connection writes (SQLite allows one writer at a time, and the sequencer is the
//! only one); a pool of connections reads concurrently from WAL snapshots. `synchronous=FULL`
//! makes every commit durable before the sequencer answers, even across power loss.
//!
//! Reads at revision R use `current` for keys not changed since R and the `log` for the rest,
//! so a read at the head is a primary-key range scan and a read at a pinned past revision costs
//! the page plus the changes made since R, never a scan of the whole range's history.

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Row as _};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::multirow::{MultiRow, placeholders};
use super::{Backend, DbSize, KeyEnd, KvRead, LeaseRecord, LogRow, Meta, WriteTxn};
use crate::error::{Error, Result};
use crate::proto::KeyValue;
use crate::proto::mvccpb::{Event, event::EventType};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const READ_POOL_SIZE: u32 = 8;

/// SQL whose key-range condition depends on the shape of the range; built once per shape.
struct RangeSql {
    history: Arc<str>,
    /// The keys alive at ?3 in key order, up to ?4 of them, in one statement: those `current`
    /// lists (at their version as of ?3), then those deleted since ?3 and not alive now.
    page: Arc<str>,
    count: Arc<str>,
}

/// Parameters: ?1 key, ?2 range end, ?3 revision, ?4 limit (-1: none).
fn key_condition(column: &str, end: &KeyEnd) -> String {
    match end {
        KeyEnd::Single => format!("{column} = ?1"),
        KeyEnd::Before(_) => format!("{column} >= ?1 AND {column} < ?2"),
        KeyEnd::Unbounded => format!("{column} >= ?1"),
    }
}

/// The latest log row of key `{key}` at or below revision ?3, looked up only when `guard` holds
/// (SQLite would otherwise evaluate the lookup for every row scanned).
fn latest_at(key: &str, guard: &str) -> String {
    format!(
        "(SELECT MAX(m.revision) FROM log m WHERE {guard} AND m.key = {key} AND m.revision <= ?3)"
    )
}

impl RangeSql {
    fn new(end: &KeyEnd) -> RangeSql {
        let current_keys = key_condition("c.key", end);
        let deleted_keys = key_condition("d.key", end);
        let latest_c = latest_at("c.key", "c.mod_revision > ?3");
        let latest_g = latest_at("g.key", "1");
        // Tombstones after ?3: for a range, found through the index of tombstones by revision
        // (few, even while many keys change); for one key, through the key's own history.
        let deleted_rows = match end {
            KeyEnd::Single => "log d",
            KeyEnd::Before(_) | KeyEnd::Unbounded => "log d INDEXED BY log_tombstones",
        };
        // Keys deleted after ?3 and not alive now: the only keys alive at ?3 that `current`
        // does not list.
        let deleted_since = format!(
            "FROM (SELECT DISTINCT d.key AS key FROM {deleted_rows} \
                   WHERE d.revision > ?3 AND d.deleted = 1 AND {deleted_keys}) g \
             JOIN log l ON l.key = g.key AND l.revision = {latest_g} \
             WHERE l.deleted = 0 AND NOT EXISTS (SELECT 1 FROM current c WHERE c.key = g.key)"
        );
        let pick = |column: &str, log_column: &str| {
            format!("CASE WHEN c.mod_revision <= ?3 THEN c.{column} ELSE l.{log_column} END")
        };
        let log_keys = key_condition("l.key", end);
        let changes = match end {
            KeyEnd::Single => "log l",
            KeyEnd::Before(_) | KeyEnd::Unbounded => "log l INDEXED BY log_by_revision",
        };
        RangeSql {
            // ?3 first and ?4 last revision, ?5 limit, ?6 whether to look up previous versions.
            history: format!(
                "SELECT l.revision, l.key, l.deleted, l.create_revision, l.version, l.lease, l.value, \
                   p.create_revision, p.revision, p.version, p.lease, p.value \
                 FROM {changes} LEFT JOIN log p ON ?6 AND p.key = l.key AND p.deleted = 0 \
                   AND p.revision = (SELECT MAX(m.revision) FROM log m \
                     WHERE ?6 AND m.key = l.key AND m.revision < l.revision) \
                 WHERE l.revision >= ?3 AND l.revision <= ?4 AND {log_keys} \
                 ORDER BY l.revision, l.sub LIMIT ?5"
            )
            .into(),
            page: format!(
                "SELECT * FROM (SELECT c.key, {} AS create_revision, {} AS mod_revision, \
                   {} AS version, {} AS lease, {} AS value FROM current c \
                 LEFT JOIN log l ON c.mod_revision > ?3 AND l.key = c.key AND l.revision = {latest_c} \
                 WHERE {current_keys} AND (c.mod_revision <= ?3 OR l.deleted = 0) \
                 ORDER BY c.key LIMIT ?4) \
                 UNION ALL \
                 SELECT * FROM (SELECT l.key, l.create_revision, l.revision, l.version, l.lease, \
                   l.value {deleted_since} ORDER BY l.key LIMIT ?4)",
                pick("create_revision", "create_revision"),
                pick("mod_revision", "revision"),
                pick("version", "version"),
                pick("lease", "lease"),
                pick("value", "value"),
            )
            .into(),
            count: format!(
                "SELECT (SELECT COUNT(*) FROM current c WHERE {current_keys} AND \
                   (CASE WHEN c.mod_revision <= ?3 THEN 1 ELSE EXISTS (SELECT 1 FROM log l \
                      WHERE l.key = c.key AND l.deleted = 0 AND l.revision = {latest_c}) END)) \
                 + (SELECT COUNT(*) {deleted_since})"
            )
            .into(),
        }
    }
}

struct Statements {
    single: RangeSql,
    before: RangeSql,
    unbounded: RangeSql,
    current_of_keys: MultiRow,
    insert_log: MultiRow,
    upsert_current: MultiRow,
    delete_current: MultiRow,
}

impl Statements {
    fn new() -> Statements {
        Statements {
            single: RangeSql::new(&KeyEnd::Single),
            before: RangeSql::new(&KeyEnd::Before(Bytes::new())),
            unbounded: RangeSql::new(&KeyEnd::Unbounded),
            current_of_keys: MultiRow::new(|n| {
                format!(
                    "SELECT key, create_revision, mod_revision, version, lease, value \
                     FROM current WHERE key IN ({})",
                    vec!["?"; n].join(", ")
                )
            }),
            // Two changes of one key at one revision (a from-key delete escapes etcd's
            // duplicate-key check) arrive merged, but an earlier flush of the same batch may
            // have written the first of them: the later one replaces it.
            insert_log: MultiRow::new(|n| {
                format!(
                    "INSERT INTO log (revision, sub, key, deleted, create_revision, version, lease, value) \
                     VALUES {} ON CONFLICT (key, revision) DO UPDATE SET sub = excluded.sub, \
                     deleted = excluded.deleted, create_revision = excluded.create_revision, \
                     version = excluded.version, lease = excluded.lease, value = excluded.value",
                    placeholders(n, 8, |_| "?".to_string())
                )
            }),
            upsert_current: MultiRow::new(|n| {
                format!(
                    "INSERT INTO current (key, create_revision, mod_revision, version, lease, value) \
                     VALUES {} ON CONFLICT (key) DO UPDATE SET \
                     create_revision = excluded.create_revision, mod_revision = excluded.mod_revision, \
                     version = excluded.version, lease = excluded.lease, value = excluded.value",
                    placeholders(n, 6, |_| "?".to_string())
                )
            }),
            delete_current: MultiRow::new(|n| {
                format!(
                    "DELETE FROM current WHERE key IN ({})",
                    vec!["?"; n].join(", ")
                )
            }),
        }
    }

    fn for_end(&self, end: &KeyEnd) -> &RangeSql {
        match end {
            KeyEnd::Single => &self.single,
            KeyEnd::Before(_) => &self.before,
            KeyEnd::Unbounded => &self.unbounded,
        }
    }
}

fn end_bytes(end: &KeyEnd) -> &[u8] {
    match end {
        KeyEnd::Before(end) => end,
        KeyEnd::Single | KeyEnd::Unbounded => &[],
    }
}

fn key_value(row: &SqliteRow) -> Result<KeyValue> {
    Ok(KeyValue {
        key: Bytes::from(row.try_get::<Vec<u8>, _>(0)?),
        create_revision: row.try_get(1)?,
        mod_revision: row.try_get(2)?,
        version: row.try_get(3)?,
        lease: row.try_get(4)?,
        value: Bytes::from(row.try_get::<Vec<u8>, _>(5)?),
    })
}

async fn range_at(
    conn: &mut SqliteConnection,
    sql: &Statements,
    key: &[u8],
    end: &KeyEnd,
    revision: i64,
    limit: i64,
) -> Result<Vec<KeyValue>> {
    if end.is_empty_for(key) {
        return Ok(Vec::new());
    }
    let statements = sql.for_end(end);
    let limit = if limit > 0 { limit } else { -1 };
    let fetched = sqlx::query(AssertSqlSafe(statements.page.clone()))
        .bind(key)
        .bind(end_bytes(end))
        .bind(revision)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut rows = fetched.iter().map(key_value).collect::<Result<Vec<_>>>()?;
    // Both parts come sorted and hold disjoint keys; merge them and cut to the limit.
    rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    if limit > 0 {
        rows.truncate(limit as usize);
    }
    Ok(rows)
}

async fn count_at(
    conn: &mut SqliteConnection,
    sql: &Statements,
    key: &[u8],
    end: &KeyEnd,
    revision: i64,
) -> Result<i64> {
    if end.is_empty_for(key) {
        return Ok(0);
    }
    let count = sqlx::query_scalar(AssertSqlSafe(sql.for_end(end).count.clone()))
        .bind(key)
        .bind(end_bytes(end))
        .bind(revision)
        .fetch_one(&mut *conn)
        .await?;
    Ok(count)
}

/// The SQLite backend: a read pool and the single writer connection.
pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Arc<Mutex<WriterConnection>>,
    sql: Arc<Statements>,
}

struct WriterConnection {
    conn: SqliteConnection,
    /// A transaction was begun and neither committed nor rolled back (its owner failed).
    open: bool,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file at `path` and applies the migrations.
    /// Statements slower than `slow_statement` are logged as warnings.
    pub async fn open(path: &str, slow_statement: Duration) -> Result<SqliteBackend> {
        if path.is_empty() {
            return Err(Error::InvalidEndpoint("sqlite:// needs a file path".into()));
        }
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, slow_statement);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        MIGRATOR.run(&mut conn).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .connect_with(options.clone().pragma("query_only", "true"))
            .await?;
        Ok(SqliteBackend {
            pool,
            writer: Arc::new(Mutex::new(WriterConnection { conn, open: false })),
            sql: Arc::new(Statements::new()),
        })
    }

    async fn lock_writer(&self) -> Result<OwnedMutexGuard<WriterConnection>> {
        let mut writer = self.writer.clone().lock_owned().await;
        if writer.open {
            sqlx::query("ROLLBACK").execute(&mut writer.conn).await?;
            writer.open = false;
        }
        Ok(writer)
    }
}

async fn lease_record(conn: &mut SqliteConnection, lease: i64) -> Result<Option<LeaseRecord>> {
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT id, ttl, expires_ms FROM leases WHERE id = ?1")
            .bind(lease)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(id, ttl, expires_ms)| LeaseRecord {
        id,
        ttl,
        expires_ms,
    }))
}

/// A history row: the change (columns 0..=7) and, when asked for, the key's previous live
/// version (columns 8..=12, NULL when there was none).
fn history_event(row: &SqliteRow) -> Result<Event> {
    let revision: i64 = row.try_get(0)?;
    let key = Bytes::from(row.try_get::<Vec<u8>, _>(1)?);
    let deleted: i64 = row.try_get(2)?;
    let kv = if deleted != 0 {
        KeyValue {
            key: key.clone(),
            mod_revision: revision,
            ..Default::default()
        }
    } else {
        KeyValue {
            key: key.clone(),
            create_revision: row.try_get(3)?,
            mod_revision: revision,
            version: row.try_get(4)?,
            lease: row.try_get(5)?,
            value: Bytes::from(row.try_get::<Vec<u8>, _>(6)?),
        }
    };
    let prev_revision: Option<i64> = row.try_get(8)?;
    let prev_kv = match prev_revision {
        Some(prev_revision) => Some(KeyValue {
            key,
            create_revision: row.try_get(7)?,
            mod_revision: prev_revision,
            version: row.try_get::<Option<i64>, _>(9)?.unwrap_or_default(),
            lease: row.try_get::<Option<i64>, _>(10)?.unwrap_or_default(),
            value: Bytes::from(row.try_get::<Option<Vec<u8>>, _>(11)?.unwrap_or_default()),
        }),
        None => None,
    };
    Ok(Event {
        r#type: if deleted != 0 {
            EventType::Delete
        } else {
            EventType::Put
        } as i32,
        kv: Some(kv),
        prev_kv,
    })
}

async fn meta_value(conn: &mut SqliteConnection, name: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = ?1")
        .bind(name)
        .fetch_optional(conn)
        .await?)
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn load_meta(&self) -> Result<Meta> {
        let mut writer = self.lock_writer().await?;
        let conn = &mut writer.conn;
        let mut identity = [0u64; 2];
        for (slot, name) in identity.iter_mut().zip(["cluster_id", "member_id"]) {
            let value = match meta_value(conn, name).await? {
                Some(value) => value,
                None => {
                    // Positive and non-zero, as etcd's ids are.
                    let fresh = rand::rng().random_range(1..i64::MAX);
                    sqlx::query("INSERT INTO meta (name, value) VALUES (?1, ?2)")
                        .bind(name)
                        .bind(fresh)
                        .execute(&mut *conn)
                        .await?;
                    fresh
                }
            };
            *slot = value as u64;
        }
        let revision = meta_value(conn, "revision").await?.unwrap_or(1);
        let compacted = meta_value(conn, "compacted").await?.unwrap_or(-1);
        Ok(Meta {
            revision,
            compacted,
            cluster_id: identity[0],
            member_id: identity[1],
        })
    }

    async fn reader(&self) -> Result<Box<dyn KvRead>> {
        Ok(Box::new(SqliteReader {
            conn: self.pool.acquire().await?,
            sql: self.sql.clone(),
        }))
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        let mut writer = self.lock_writer().await?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut writer.conn)
            .await?;
        writer.open = true;
        Ok(Box::new(SqliteWriteTxn {
            writer,
            sql: self.sql.clone(),
        }))
    }

    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64> {
        let mut writer = self.lock_writer().await?;
        let conn = &mut writer.conn;
        let mut txn = conn.begin().await?;
        // Each row of the window is at or below the compacted revision, so it supersedes every
        // older row of its key, wherever that row lies; a tombstone there then says nothing a
        // missing row does not. Walking superseding rows visits each change once.
        let superseded = sqlx::query(
            "DELETE FROM log WHERE rowid IN (SELECT o.rowid FROM log n \
               JOIN log o ON o.key = n.key AND o.revision < n.revision \
               WHERE n.revision > ?1 AND n.revision <= ?2)",
        )
        .bind(after)
        .bind(up_to)
        .execute(&mut *txn)
        .await?
        .rows_affected();
        // Tombstones trail by one revision: a watch may start at the compacted revision itself
        // and must still see the deletions made there.
        let tombstones =
            sqlx::query("DELETE FROM log WHERE revision >= ?1 AND revision < ?2 AND deleted = 1")
                .bind(after)
                .bind(up_to)
                .execute(&mut *txn)
                .await?
                .rows_affected();
        sqlx::query("UPDATE meta SET value = ?1 WHERE name = 'compact_progress'")
            .bind(up_to)
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        Ok(superseded + tombstones)
    }

    async fn compact_progress(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        Ok(meta_value(&mut conn, "compact_progress")
            .await?
            .unwrap_or(0))
    }

    async fn db_size(&self) -> Result<DbSize> {
        let mut conn = self.pool.acquire().await?;
        let (allocated, in_use): (i64, i64) = sqlx::query_as(
            "SELECT p.page_count * s.page_size, (p.page_count - f.freelist_count) * s.page_size \
             FROM pragma_page_count() p, pragma_page_size() s, pragma_freelist_count() f",
        )
        .fetch_one(&mut *conn)
        .await?;
        Ok(DbSize { allocated, in_use })
    }

    async fn defragment(&self) -> Result<()> {
        let mut writer = self.lock_writer().await?;
        sqlx::query("VACUUM").execute(&mut writer.conn).await?;
        Ok(())
    }

    async fn history(
        &self,
        key: &[u8],
        end: &KeyEnd,
        from: i64,
        to: i64,
        limit: i64,
        with_prev: bool,
    ) -> Result<Vec<Event>> {
        if end.is_empty_for(key) {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(AssertSqlSafe(self.sql.for_end(end).history.clone()))
            .bind(key)
            .bind(end_bytes(end))
            .bind(from)
            .bind(to)
            .bind(if limit > 0 { limit } else { -1 })
            .bind(with_prev)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(history_event).collect()
    }

    async fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>> {
        let mut conn = self.pool.acquire().await?;
        lease_record(&mut conn, lease).await
    }

    async fn leases(&self) -> Result<Vec<i64>> {
        let mut conn = self.pool.acquire().await?;
        Ok(sqlx::query_scalar("SELECT id FROM leases ORDER BY id")
            .fetch_all(&mut *conn)
            .await?)
    }

    async fn expired_leases(&self, now_ms: i64, limit: i64) -> Result<Vec<LeaseRecord>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT id, ttl, expires_ms FROM leases WHERE expires_ms <= ?1 \
             ORDER BY expires_ms LIMIT ?2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, ttl, expires_ms)| LeaseRecord {
                id,
                ttl,
                expires_ms,
            })
            .collect())
    }

    async fn keys_of_lease(&self, lease: i64) -> Result<Vec<Bytes>> {
        let mut conn = self.pool.acquire().await?;
        let keys: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT key FROM current WHERE lease = ?1 ORDER BY key")
                .bind(lease)
                .fetch_all(&mut *conn)
                .await?;
        Ok(keys.into_iter().map(Bytes::from).collect())
    }
}

struct SqliteReader {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    sql: Arc<Statements>,
}

#[async_trait]
impl KvRead for SqliteReader {
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>> {
        crate::metrics::timed(
            "range",
            range_at(&mut self.conn, &self.sql, key, end, revision, limit),
        )
        .await
    }

    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64> {
        crate::metrics::timed(
            "count",
            count_at(&mut self.conn, &self.sql, key, end, revision),
        )
        .await
    }
}

struct SqliteWriteTxn {
    writer: OwnedMutexGuard<WriterConnection>,
    sql: Arc<Statements>,
}

#[async_trait]
impl KvRead for SqliteWriteTxn {
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>> {
        crate::metrics::timed(
            "range",
            range_at(&mut self.writer.conn, &self.sql, key, end, revision, limit),
        )
        .await
    }

    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64> {
        crate::metrics::timed(
            "count",
            count_at(&mut self.writer.conn, &self.sql, key, end, revision),
        )
        .await
    }
}

#[async_trait]
impl WriteTxn for SqliteWriteTxn {
    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>> {
        let mut found = Vec::with_capacity(keys.len());
        for (statement, chunk) in self.sql.current_of_keys.chunks(keys) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for key in chunk {
                query = query.bind(key.as_ref());
            }
            for row in query.fetch_all(&mut self.writer.conn).await? {
                found.push(key_value(&row)?);
            }
        }
        Ok(found)
    }

    async fn write(&mut self, log: &[LogRow], live: &[KeyValue], gone: &[Bytes]) -> Result<()> {
        let conn = &mut self.writer.conn;
        for (statement, chunk) in self.sql.insert_log.chunks(log) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for row in chunk {
                query = query
                    .bind(row.kv.mod_revision)
                    .bind(row.sub)
                    .bind(row.kv.key.as_ref())
                    .bind(i64::from(row.deleted))
                    .bind(row.kv.create_revision)
                    .bind(row.kv.version)
                    .bind(row.kv.lease)
                    .bind(row.kv.value.as_ref());
            }
            query.execute(&mut *conn).await?;
        }
        for (statement, chunk) in self.sql.upsert_current.chunks(live) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for kv in chunk {
                query = query
                    .bind(kv.key.as_ref())
                    .bind(kv.create_revision)
                    .bind(kv.mod_revision)
                    .bind(kv.version)
                    .bind(kv.lease)
                    .bind(kv.value.as_ref());
            }
            query.execute(&mut *conn).await?;
        }
        for (statement, chunk) in self.sql.delete_current.chunks(gone) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for key in chunk {
                query = query.bind(key.as_ref());
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>> {
        let rows = sqlx::query(
            "SELECT key, create_revision, mod_revision, version, lease, value FROM current \
             WHERE lease = ?1 ORDER BY key",
        )
        .bind(lease)
        .fetch_all(&mut self.writer.conn)
        .await?;
        rows.iter().map(key_value).collect()
    }

    async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>> {
        lease_record(&mut self.writer.conn, lease).await
    }

    async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO leases (id, ttl, expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET ttl = excluded.ttl, expires_ms = excluded.expires_ms",
        )
        .bind(lease.id)
        .bind(lease.ttl)
        .bind(lease.expires_ms)
        .execute(&mut self.writer.conn)
        .await?;
        Ok(())
    }

    async fn delete_lease(&mut self, lease: i64) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE id = ?1")
            .bind(lease)
            .execute(&mut self.writer.conn)
            .await?;
        Ok(())
    }

    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()> {
        sqlx::query(
            "UPDATE meta SET value = CASE name WHEN 'revision' THEN ?1 ELSE ?2 END \
             WHERE name IN ('revision', 'compacted')",
        )
        .bind(revision)
        .bind(compacted)
        .execute(&mut self.writer.conn)
        .await?;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut self.writer.conn).await?;
        self.writer.open = false;
        Ok(())
    }
}
