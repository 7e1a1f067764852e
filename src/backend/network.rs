//! PostgreSQL and MySQL/MariaDB, through sqlx's Any driver with SQL rendered per dialect.
//!
//! Several etcdshim processes may share one of these databases. Each write transaction starts
//! by locking the `meta` rows that hold the revision (`SELECT ... FOR UPDATE`), so transactions
//! from every process commit one after another in revision order, and a revision is visible
//! only after every lower one: no gaps, no fill rows. Readers ask the database for its revision,
//! so a read is never older than a write another process acknowledged.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng as _;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, ConnectOptions as _, Row as _, Transaction};
use tokio::sync::Notify;

use super::dialect::{Dialect, Param, RangeStatements, Sql};
use super::multirow::{MultiRow, placeholders};
use super::{
    Backend, DatastoreOptions, DbSize, KeyEnd, KvRead, LeaseRecord, LogRow, Meta, WriteTxn,
};
use crate::error::{Error, Result};
use crate::proto::KeyValue;
use crate::proto::mvccpb::{Event, event::EventType};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// The values a statement's parameters take.
#[derive(Default)]
struct Values<'a> {
    key: &'a [u8],
    end: &'a [u8],
    rev: i64,
    limit: i64,
    from: i64,
    to: i64,
    with_prev: bool,
}

fn bind<'q>(sql: &Sql, values: &Values<'q>) -> Query<'q, Any, AnyArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql.text.clone()));
    for param in &sql.params {
        query = match param {
            Param::Key => query.bind(values.key),
            Param::End => query.bind(values.end),
            Param::Rev => query.bind(values.rev),
            Param::Limit => query.bind(values.limit),
            Param::From => query.bind(values.from),
            Param::To => query.bind(values.to),
            Param::WithPrev => query.bind(values.with_prev),
        };
    }
    query
}

/// No limit, as a number both databases take in `LIMIT`.
fn limit_or_all(limit: i64) -> i64 {
    if limit > 0 { limit } else { i64::MAX }
}

struct Statements {
    single: RangeStatements,
    before: RangeStatements,
    unbounded: RangeStatements,
    current_of_keys: MultiRow,
    insert_log: MultiRow,
    upsert_current: MultiRow,
    delete_current: MultiRow,
    lock_meta: Sql,
    save_meta: Sql,
    compact_superseded: Sql,
    compact_tombstones: Sql,
    compact_progress: Sql,
    db_size: Arc<str>,
    defragment: Arc<str>,
    save_lease: Arc<str>,
    add_identity: Arc<str>,
}

impl Statements {
    fn new(dialect: Dialect) -> Statements {
        let key = dialect.key_column();
        let p = |n| dialect.placeholder(n);
        let list = |n: usize| (1..=n).map(p).collect::<Vec<_>>().join(", ");
        Statements {
            single: RangeStatements::new(dialect, &KeyEnd::Single),
            before: RangeStatements::new(dialect, &KeyEnd::Before(Bytes::new())),
            unbounded: RangeStatements::new(dialect, &KeyEnd::Unbounded),
            current_of_keys: MultiRow::new(|n| {
                format!(
                    "SELECT {key}, create_revision, mod_revision, version, lease, value \
                     FROM current WHERE {key} IN ({})",
                    list(n)
                )
            }),
            insert_log: MultiRow::new(|n| {
                format!(
                    "INSERT INTO log (revision, sub, {key}, deleted, create_revision, version, lease, value) \
                     VALUES {} {}",
                    placeholders(n, 8, p),
                    dialect.upsert(
                        &format!("{key}, revision"),
                        &["sub", "deleted", "create_revision", "version", "lease", "value"]
                    )
                )
            }),
            upsert_current: MultiRow::new(|n| {
                format!(
                    "INSERT INTO current ({key}, create_revision, mod_revision, version, lease, value) \
                     VALUES {} {}",
                    placeholders(n, 6, p),
                    dialect.upsert(
                        key,
                        &["create_revision", "mod_revision", "version", "lease", "value"]
                    )
                )
            }),
            delete_current: MultiRow::new(|n| {
                format!("DELETE FROM current WHERE {key} IN ({})", list(n))
            }),
            // One row only: two rows locked by one statement may be locked in different orders
            // by different transactions, and deadlock. Writers change the compacted revision
            // only under this lock, so reading it afterwards is consistent.
            lock_meta: dialect.render("SELECT value FROM meta WHERE name = 'revision' FOR UPDATE"),
            save_meta: dialect.render(
                "UPDATE meta SET value = CASE name WHEN 'revision' THEN :rev ELSE :to END \
                 WHERE name IN ('revision', 'compacted')",
            ),
            // Rows superseded by a change in (:from, :to], all at or below the compacted
            // revision; tombstones trail by one revision (a watch may start at the compacted
            // revision and must see its deletions).
            compact_superseded: dialect.render(match dialect {
                Dialect::Postgres => {
                    "DELETE FROM log o USING log n WHERE o.@key = n.@key \
                     AND o.revision < n.revision AND n.revision > :from AND n.revision <= :to"
                }
                Dialect::Mysql => {
                    "DELETE o FROM log o JOIN log n ON o.@key = n.@key \
                     AND o.revision < n.revision WHERE n.revision > :from AND n.revision <= :to"
                }
            }),
            compact_tombstones: dialect.render(
                "DELETE FROM log WHERE revision >= :from AND revision < :to AND deleted = 1",
            ),
            compact_progress: dialect.render(
                "UPDATE meta SET value = GREATEST(value, :to) WHERE name = 'compact_progress'",
            ),
            db_size: match dialect {
                Dialect::Postgres => {
                    "SELECT pg_database_size(current_database()), pg_database_size(current_database())"
                }
                Dialect::Mysql => {
                    // The sizes are unsigned: subtracting in unsigned arithmetic can underflow.
                    "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED), \
                     GREATEST(CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
                       - CAST(COALESCE(SUM(data_free), 0) AS SIGNED), 0) \
                     FROM information_schema.tables WHERE table_schema = DATABASE()"
                }
            }
            .into(),
            defragment: match dialect {
                Dialect::Postgres => "VACUUM",
                Dialect::Mysql => "OPTIMIZE TABLE log, current, leases",
            }
            .into(),
            save_lease: format!(
                "INSERT INTO leases (id, ttl, expires_ms) VALUES ({}, {}, {}) {}",
                p(1),
                p(2),
                p(3),
                dialect.upsert("id", &["ttl", "expires_ms"])
            )
            .into(),
            add_identity: match dialect {
                Dialect::Postgres => {
                    "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
                }
                Dialect::Mysql => "INSERT IGNORE INTO meta (name, value) VALUES (?, ?)",
            }
            .into(),
        }
    }

    fn for_end(&self, end: &KeyEnd) -> &RangeStatements {
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

fn key_value(row: &AnyRow) -> Result<KeyValue> {
    Ok(KeyValue {
        key: Bytes::from(row.try_get::<Vec<u8>, _>(0)?),
        create_revision: row.try_get(1)?,
        mod_revision: row.try_get(2)?,
        version: row.try_get(3)?,
        lease: row.try_get(4)?,
        value: Bytes::from(row.try_get::<Vec<u8>, _>(5)?),
    })
}

/// A history row: the change (columns 0..=6) and the key's previous live version
/// (columns 7..=11, NULL when there was none or it was not asked for).
fn history_event(row: &AnyRow) -> Result<Event> {
    let revision: i64 = row.try_get(0)?;
    let key = Bytes::from(row.try_get::<Vec<u8>, _>(1)?);
    let deleted = row.try_get::<i64, _>(2)? != 0;
    let kv = if deleted {
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
    let prev_kv = match row.try_get::<Option<i64>, _>(8)? {
        Some(prev_revision) => Some(KeyValue {
            key,
            create_revision: row.try_get::<Option<i64>, _>(7)?.unwrap_or_default(),
            mod_revision: prev_revision,
            version: row.try_get::<Option<i64>, _>(9)?.unwrap_or_default(),
            lease: row.try_get::<Option<i64>, _>(10)?.unwrap_or_default(),
            value: Bytes::from(row.try_get::<Option<Vec<u8>>, _>(11)?.unwrap_or_default()),
        }),
        None => None,
    };
    Ok(Event {
        r#type: if deleted {
            EventType::Delete
        } else {
            EventType::Put
        } as i32,
        kv: Some(kv),
        prev_kv,
    })
}

async fn range_at(
    conn: &mut sqlx::AnyConnection,
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
    let values = Values {
        key,
        end: end_bytes(end),
        rev: revision,
        limit: limit_or_all(limit),
        ..Values::default()
    };
    let fetched = bind(&statements.page, &values)
        .fetch_all(&mut *conn)
        .await?;
    let mut rows = fetched.iter().map(key_value).collect::<Result<Vec<_>>>()?;
    rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    if limit > 0 {
        rows.truncate(limit as usize);
    }
    Ok(rows)
}

async fn count_at(
    conn: &mut sqlx::AnyConnection,
    sql: &Statements,
    key: &[u8],
    end: &KeyEnd,
    revision: i64,
) -> Result<i64> {
    if end.is_empty_for(key) {
        return Ok(0);
    }
    let values = Values {
        key,
        end: end_bytes(end),
        rev: revision,
        ..Values::default()
    };
    let row = bind(&sql.for_end(end).count, &values)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get(0)?)
}

async fn lease_record(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    lease: i64,
) -> Result<Option<LeaseRecord>> {
    let sql = format!(
        "SELECT id, ttl, expires_ms FROM leases WHERE id = {}",
        dialect.placeholder(1)
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(lease)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        Ok(LeaseRecord {
            id: row.try_get(0)?,
            ttl: row.try_get(1)?,
            expires_ms: row.try_get(2)?,
        })
    })
    .transpose()
}

/// A PostgreSQL or MySQL database, possibly shared with other etcdshim processes.
pub struct NetworkBackend {
    dialect: Dialect,
    pool: AnyPool,
    sql: Arc<Statements>,
    /// PostgreSQL: notified whenever any process commits a write.
    changes: Option<Arc<Notify>>,
}

/// The PostgreSQL channel every write transaction notifies when it commits.
const CHANGES_CHANNEL: &str = "etcdshim_changes";

/// Relays PostgreSQL notifications on [`CHANGES_CHANNEL`] to `changes` until it is dropped,
/// reconnecting after failures.
async fn listen_for_changes(url: String, changes: std::sync::Weak<Notify>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if listener.listen(CHANGES_CHANNEL).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        match changes.upgrade() {
                            Some(changes) => changes.notify_one(),
                            None => return,
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for other servers' writes failed; retrying")
            }
        }
        if changes.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl NetworkBackend {
    /// Connects to `url` (a sqlx URL of the dialect's scheme), creating the database if it is
    /// missing, and applies the migrations.
    pub async fn open(
        dialect: Dialect,
        url: &str,
        database: &str,
        options: DatastoreOptions,
    ) -> Result<NetworkBackend> {
        sqlx::any::install_default_drivers();
        create_database(dialect, url, database).await?;
        let url = with_database(url, database);
        let read_committed = dialect == Dialect::Mysql;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_open.max(2))
            .min_connections(options.max_idle.min(options.max_open))
            .max_lifetime(options.max_lifetime)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Statements inside a write transaction must see what other processes
                    // committed before it took the revision lock.
                    if read_committed {
                        sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(
                sqlx::any::AnyConnectOptions::from_str(&url)?
                    .log_statements(tracing::log::LevelFilter::Trace)
                    .log_slow_statements(
                        tracing::log::LevelFilter::Warn,
                        options.slow_sql_threshold,
                    ),
            )
            .await?;
        let migrator = match dialect {
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::Mysql => &MYSQL_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        let changes = (dialect == Dialect::Postgres).then(|| {
            let changes = Arc::new(Notify::new());
            tokio::spawn(listen_for_changes(url.clone(), Arc::downgrade(&changes)));
            changes
        });
        Ok(NetworkBackend {
            dialect,
            pool,
            sql: Arc::new(Statements::new(dialect)),
            changes,
        })
    }
}

/// `url` with its path set to `/database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{database}{query}", &base[..host_end])
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

async fn create_database(dialect: Dialect, url: &str, database: &str) -> Result<()> {
    if !is_plain_name(database) {
        return Err(Error::InvalidEndpoint(
            "the database name may hold only letters, digits, '_' and '-'".into(),
        ));
    }
    use sqlx::Connection as _;
    let admin = match dialect {
        Dialect::Postgres => with_database(url, "postgres"),
        Dialect::Mysql => with_database(url, ""),
    };
    let mut conn = sqlx::AnyConnection::connect(&admin).await?;
    match dialect {
        Dialect::Postgres => {
            let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut conn)
                .await?
                .is_some();
            if !exists {
                let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
                    .execute(&mut conn)
                    .await;
                // Another process may have created it meanwhile.
                if let Err(err) = created
                    && !err.to_string().contains("already exists")
                {
                    return Err(err.into());
                }
            }
        }
        Dialect::Mysql => {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE DATABASE IF NOT EXISTS `{database}`"
            )))
            .execute(&mut conn)
            .await?;
        }
    }
    conn.close().await?;
    Ok(())
}

#[async_trait]
impl Backend for NetworkBackend {
    async fn load_meta(&self) -> Result<Meta> {
        let mut conn = self.pool.acquire().await?;
        for name in ["cluster_id", "member_id"] {
            let fresh: i64 = rand::rng().random_range(1..i64::MAX);
            sqlx::query(AssertSqlSafe(self.sql.add_identity.clone()))
                .bind(name)
                .bind(fresh)
                .execute(&mut *conn)
                .await?;
        }
        let rows = sqlx::query("SELECT name, value FROM meta")
            .fetch_all(&mut *conn)
            .await?;
        let mut meta = Meta {
            revision: 1,
            compacted: -1,
            cluster_id: 0,
            member_id: 0,
        };
        for row in rows {
            let name: String = row.try_get(0)?;
            let value: i64 = row.try_get(1)?;
            match name.as_str() {
                "revision" => meta.revision = value,
                "compacted" => meta.compacted = value,
                "cluster_id" => meta.cluster_id = value as u64,
                "member_id" => meta.member_id = value as u64,
                _ => {}
            }
        }
        // Every process sharing the database is its own member.
        let own: u64 = rand::rng().random_range(1..u64::MAX);
        meta.member_id ^= own;
        Ok(meta)
    }

    async fn reader(&self) -> Result<Box<dyn KvRead>> {
        Ok(Box::new(NetworkReader {
            conn: self.pool.acquire().await?,
            sql: self.sql.clone(),
        }))
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        let mut txn = self.pool.begin().await?;
        let revision: i64 = bind(&self.sql.lock_meta, &Values::default())
            .fetch_one(&mut *txn)
            .await?
            .try_get(0)?;
        let compacted: i64 = sqlx::query("SELECT value FROM meta WHERE name = 'compacted'")
            .fetch_one(&mut *txn)
            .await?
            .try_get(0)?;
        let locked = (revision, compacted);
        Ok(Box::new(NetworkWriteTxn {
            txn,
            dialect: self.dialect,
            sql: self.sql.clone(),
            locked,
        }))
    }

    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64> {
        let mut txn = self.pool.begin().await?;
        let values = Values {
            from: after,
            to: up_to,
            ..Values::default()
        };
        let superseded = bind(&self.sql.compact_superseded, &values)
            .execute(&mut *txn)
            .await?
            .rows_affected();
        let tombstones = bind(&self.sql.compact_tombstones, &values)
            .execute(&mut *txn)
            .await?
            .rows_affected();
        bind(&self.sql.compact_progress, &values)
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        Ok(superseded + tombstones)
    }

    async fn compact_progress(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM meta WHERE name = 'compact_progress'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    async fn latest_revisions(&self) -> Result<Option<(i64, i64)>> {
        let rows =
            sqlx::query("SELECT name, value FROM meta WHERE name IN ('revision', 'compacted')")
                .fetch_all(&self.pool)
                .await?;
        let mut latest = (1, -1);
        for row in rows {
            let name: String = row.try_get(0)?;
            let value: i64 = row.try_get(1)?;
            match name.as_str() {
                "revision" => latest.0 = value,
                _ => latest.1 = value,
            }
        }
        Ok(Some(latest))
    }

    fn change_signal(&self) -> Option<Arc<Notify>> {
        self.changes.clone()
    }

    async fn db_size(&self) -> Result<DbSize> {
        let row = sqlx::query(AssertSqlSafe(self.sql.db_size.clone()))
            .fetch_one(&self.pool)
            .await?;
        Ok(DbSize {
            allocated: row.try_get(0)?,
            in_use: row.try_get(1)?,
        })
    }

    async fn defragment(&self) -> Result<()> {
        sqlx::query(AssertSqlSafe(self.sql.defragment.clone()))
            .fetch_all(&self.pool)
            .await?;
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
        let values = Values {
            key,
            end: end_bytes(end),
            from,
            to,
            limit: limit_or_all(limit),
            with_prev,
            ..Values::default()
        };
        let rows = bind(&self.sql.for_end(end).history, &values)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(history_event).collect()
    }

    async fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>> {
        let mut conn = self.pool.acquire().await?;
        lease_record(&mut conn, self.dialect, lease).await
    }

    async fn leases(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM leases ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    async fn expired_leases(&self, now_ms: i64, limit: i64) -> Result<Vec<LeaseRecord>> {
        let sql = format!(
            "SELECT id, ttl, expires_ms FROM leases WHERE expires_ms <= {} ORDER BY expires_ms LIMIT {}",
            self.dialect.placeholder(1),
            self.dialect.placeholder(2)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LeaseRecord {
                    id: row.try_get(0)?,
                    ttl: row.try_get(1)?,
                    expires_ms: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn keys_of_lease(&self, lease: i64) -> Result<Vec<Bytes>> {
        let key = self.dialect.key_column();
        let sql = format!(
            "SELECT {key} FROM current WHERE lease = {} ORDER BY {key}",
            self.dialect.placeholder(1)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(lease)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok(Bytes::from(row.try_get::<Vec<u8>, _>(0)?)))
            .collect()
    }
}

struct NetworkReader {
    conn: sqlx::pool::PoolConnection<Any>,
    sql: Arc<Statements>,
}

#[async_trait]
impl KvRead for NetworkReader {
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

struct NetworkWriteTxn {
    txn: Transaction<'static, Any>,
    dialect: Dialect,
    sql: Arc<Statements>,
    /// The revision and compacted revision read under the lock.
    locked: (i64, i64),
}

#[async_trait]
impl KvRead for NetworkWriteTxn {
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>> {
        crate::metrics::timed(
            "range",
            range_at(&mut self.txn, &self.sql, key, end, revision, limit),
        )
        .await
    }

    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64> {
        crate::metrics::timed(
            "count",
            count_at(&mut self.txn, &self.sql, key, end, revision),
        )
        .await
    }
}

#[async_trait]
impl WriteTxn for NetworkWriteTxn {
    fn locked_revisions(&self) -> Option<(i64, i64)> {
        Some(self.locked)
    }

    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>> {
        let mut found = Vec::with_capacity(keys.len());
        for (statement, chunk) in self.sql.current_of_keys.chunks(keys) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for key in chunk {
                query = query.bind(key.as_ref());
            }
            for row in query.fetch_all(&mut *self.txn).await? {
                found.push(key_value(&row)?);
            }
        }
        Ok(found)
    }

    async fn write(&mut self, log: &[LogRow], live: &[KeyValue], gone: &[Bytes]) -> Result<()> {
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
            query.execute(&mut *self.txn).await?;
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
            query.execute(&mut *self.txn).await?;
        }
        for (statement, chunk) in self.sql.delete_current.chunks(gone) {
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for key in chunk {
                query = query.bind(key.as_ref());
            }
            query.execute(&mut *self.txn).await?;
        }
        Ok(())
    }

    async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>> {
        let key = self.dialect.key_column();
        let sql = format!(
            "SELECT {key}, create_revision, mod_revision, version, lease, value FROM current \
             WHERE lease = {} ORDER BY {key}",
            self.dialect.placeholder(1)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(lease)
            .fetch_all(&mut *self.txn)
            .await?;
        rows.iter().map(key_value).collect()
    }

    async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>> {
        lease_record(&mut self.txn, self.dialect, lease).await
    }

    async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()> {
        sqlx::query(AssertSqlSafe(self.sql.save_lease.clone()))
            .bind(lease.id)
            .bind(lease.ttl)
            .bind(lease.expires_ms)
            .execute(&mut *self.txn)
            .await?;
        Ok(())
    }

    async fn delete_lease(&mut self, lease: i64) -> Result<()> {
        let sql = format!(
            "DELETE FROM leases WHERE id = {}",
            self.dialect.placeholder(1)
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(lease)
            .execute(&mut *self.txn)
            .await?;
        Ok(())
    }

    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()> {
        let values = Values {
            rev: revision,
            to: compacted,
            ..Values::default()
        };
        bind(&self.sql.save_meta, &values)
            .execute(&mut *self.txn)
            .await?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.txn.commit().await?;
        Ok(())
    }
}
