//! The one SQL implementation of [`Backend`], for SQLite, PostgreSQL and MySQL/MariaDB alike.
//!
//! Every statement is written once ([`statements`]) and rendered per database by its
//! [`Dialect`]; each database's own file (`backend/sqlite.rs`, `postgres.rs`, `mysql.rs`) holds
//! only what truly differs: how to connect, placeholders, upserts, the delete-join of
//! compaction, sizes, and for PostgreSQL the notifications of other servers' writes.
//!
//! The backend runs on sqlx's typed drivers (`sqlx::Sqlite`, `sqlx::Postgres`, `sqlx::MySql`),
//! not on its `Any` driver, which converts every row into its own value representation first
//! (one more copy of every key and value read) and re-dispatches every call. Measured on
//! PostgreSQL with the same statements (release builds, `etcdshim bench`, this machine):
//! see docs/design.md, "Why typed drivers".
//!
//! Reads take a connection of the read set; the sequencer's writes take one transaction at a
//! time from the write set, which for SQLite is its own single connection (SQLite has one
//! writer) and for the network databases is the read set itself ([`connections`] says why
//! these are not sqlx's pools).

pub mod connections;
mod counted;
mod counts;
mod dialect;
mod driver;
mod kine;
mod multirow;
mod point_reads;
pub mod reopen;
mod rowid_ranges;
pub(crate) mod rows;
mod session;
mod statements;
pub mod template;

pub use dialect::{BoxFuture, Dialect};
pub use driver::Value;
pub use kine::KineSource;

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng as _;
use tokio::sync::Notify;

use crate::backend::{
    Backend, Changes, DbSize, KeyAtLatest, KeyRange, KvRead, LeaseRecord, Meta, WriteTxn,
};
use crate::error::Result;
use crate::metrics::timed;
use crate::proto::mvccpb::Event;
use connections::{Connections, Held};
use counted::CountedPrefixes;
use driver::Driver as _;
use point_reads::PointReads;
use rowid_ranges::RowidRanges;
use session::{Session, single_int};
use statements::{RangeArgs, Statements, limit_or_all};

pub struct SqlBackend<D: Dialect> {
    reads: Connections<D::Db>,
    /// The connections write transactions run on (for the network databases, `reads` itself).
    writes: Connections<D::Db>,
    sql: Arc<Statements>,
    /// Gets of one key at the head, batched while the database is busy (shared databases).
    point_reads: Arc<PointReads<D::Db>>,
    /// Woken when another process may have committed.
    changes: Option<Arc<Notify>>,
    /// SQLite: what belongs to the one database file (see [`LocalFile`]).
    file: Option<LocalFile>,
    /// The prefixes known to have a counter row.
    counted: Arc<CountedPrefixes>,
    /// The next rowid of each resource's range of `current` (SQLite).
    rowids: Arc<RowidRanges>,
    /// What the last write transaction kept besides its connection, and that connection's
    /// serial number in `writes`: the next one on the same connection starts from it (SQLite's handle,
    /// taken from sqlx's worker thread once per connection rather than once per batch).
    writer: std::sync::Mutex<Option<(u64, D::Writer)>>,
    dialect: PhantomData<fn() -> D>,
}

/// What a backend on an embedded database file (SQLite) holds besides its pools.
pub struct LocalFile {
    /// Which connections a failed write retired (see [`reopen`]).
    pub reopen: Arc<reopen::Reopen>,
    /// The lock that keeps other servers off the file, held while the backend lives.
    pub _lock: std::fs::File,
}

impl<D: Dialect> SqlBackend<D> {
    /// A backend over connections to a migrated database.
    pub fn new(
        reads: Connections<D::Db>,
        writes: Connections<D::Db>,
        changes: Option<Arc<Notify>>,
        file: Option<LocalFile>,
        counted_prefix_min_keys: i64,
    ) -> SqlBackend<D> {
        let sql = Arc::new(Statements::new::<D>(counted_prefix_min_keys));
        SqlBackend {
            point_reads: PointReads::new(reads.clone(), sql.clone()),
            reads,
            writes,
            sql,
            changes,
            file,
            counted: Arc::default(),
            rowids: Arc::default(),
            writer: std::sync::Mutex::new(None),
            dialect: PhantomData,
        }
    }

    async fn read_rows(
        &self,
        sql: &template::Sql,
        arguments: &[Value<'_>],
    ) -> Result<Vec<<D::Db as sqlx::Database>::Row>> {
        Ok(self
            .reads
            .acquire()
            .await?
            .fetch_all(sql, arguments)
            .await?)
    }

    /// A session on `conn` (with the revisions a write transaction locked, on a shared
    /// database).
    fn session(&self, conn: Held<D::Db>, locked: Option<(i64, i64)>) -> Session<D> {
        Session::new(
            conn,
            self.sql.clone(),
            locked,
            self.counted.clone(),
            self.rowids.clone(),
        )
    }

    fn last_writer(&self) -> std::sync::MutexGuard<'_, Option<(u64, D::Writer)>> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection of the write set with a transaction begun by `statement`.
    async fn begin(&self, statement: &'static str) -> Result<Held<D::Db>> {
        let mut conn = self.writes.acquire().await?;
        conn.begin(statement).await?;
        Ok(conn)
    }
}

impl<D: Dialect> SqlBackend<D> {
    /// Adds the counts of `closed` prefixes in the rebuild's transaction: those that hold
    /// enough keys to have a counter row.
    async fn flush_counts(&self, txn: &mut Held<D::Db>, closed: Vec<(Bytes, i64)>) -> Result<()> {
        let min_keys = self.sql.counted_prefix_min_keys;
        let kept: Vec<(Bytes, i64)> = closed
            .into_iter()
            .filter(|(_, live)| *live >= min_keys)
            .collect();
        for (statement, chunk) in self.sql.add_counts.chunks(&kept) {
            let mut arguments = Vec::with_capacity(chunk.len() * 2);
            for (prefix, live) in chunk {
                arguments.extend([Value::Bytes(prefix), Value::Int(*live)]);
            }
            txn.execute(statement, &arguments).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> Backend for SqlBackend<D> {
    async fn load_meta(&self) -> Result<Meta> {
        let mut conn = self.writes.acquire().await?;
        // Positive and non-zero, as etcd's ids are; kept only where none is stored yet.
        let fresh = || Value::Int(rand::rng().random_range(1..i64::MAX));
        conn.execute(&self.sql.add_identity, &[fresh(), fresh()])
            .await?;
        let rows = conn.fetch_all(&self.sql.meta, &[]).await?;
        let mut meta = Meta {
            revision: 1,
            compacted: -1,
            cluster_id: 0,
            member_id: 0,
        };
        for (name, value) in rows::named_values::<D::Db>(&rows)? {
            match name.as_str() {
                "revision" => meta.revision = value,
                "compacted" => meta.compacted = value,
                "cluster_id" => meta.cluster_id = value as u64,
                "member_id" => meta.member_id = value as u64,
                _ => {}
            }
        }
        if D::SHARED {
            // Every process sharing the database is its own member.
            meta.member_id ^= rand::rng().random_range(1..u64::MAX);
        }
        Ok(meta)
    }

    async fn reader(&self) -> Result<Box<dyn KvRead>> {
        let conn = self.reads.acquire().await?;
        Ok(Box::new(self.session(conn, None)))
    }

    async fn spare_reader(&self) -> Result<Option<Box<dyn KvRead>>> {
        let conn = self.reads.try_acquire().await?;
        Ok(conn.map(|conn| Box::new(self.session(conn, None)) as Box<dyn KvRead>))
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        let mut txn = self.writes.acquire().await?;
        let serial = txn.serial();
        let mut writer = match self.last_writer().clone() {
            Some((of, writer)) if of == serial => writer,
            _ => D::Writer::default(),
        };
        txn.begin_write::<D>(&mut writer).await?;
        *self.last_writer() = Some((serial, writer.clone()));
        if let Some(file) = &self.file {
            file.reopen.write_began();
        }
        let locked = if D::SHARED {
            let revision = txn.fetch_all(&self.sql.lock_revision, &[]).await?;
            let compacted = txn.fetch_all(&self.sql.compacted, &[]).await?;
            Some((single_int::<D>(&revision)?, single_int::<D>(&compacted)?))
        } else {
            None
        };
        Ok(Box::new(self.session(txn, locked).writing(writer)))
    }

    fn write_failed(&self) {
        if let Some(file) = &self.file {
            file.reopen.write_failed();
        }
    }

    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64> {
        let mut txn = self.begin("BEGIN").await?;
        let window = [Value::Int(after), Value::Int(up_to)];
        // Each change of the window is at or below the compacted revision, so it supersedes
        // every older version of its key, wherever that lies. Walking superseding changes
        // visits each once (where the dialect's DELETE would lock what it joins, the versions
        // are read first and deleted by primary key: `Dialect::delete_superseded`); then the
        // window's log rows go too, as no read at or above the compacted revision needs them
        // (`statements::latest_change`).
        let superseded = match &self.sql.compact_history {
            Some(statement) => txn.execute(statement, &window).await?,
            None => {
                let rows = txn.fetch_all(&self.sql.superseded, &window).await?;
                let versions = rows
                    .iter()
                    .map(|row| Ok((D::Db::bytes(row, 0)?, D::Db::int(row, 1)?)))
                    .collect::<Result<Vec<(Vec<u8>, i64)>, sqlx::Error>>()?;
                let mut deleted = 0;
                for (statement, chunk) in self.sql.delete_versions.chunks(&versions) {
                    let mut arguments = Vec::with_capacity(chunk.len() * 2);
                    for (key, revision) in chunk {
                        arguments.extend([Value::Bytes(key), Value::Int(*revision)]);
                    }
                    deleted += txn.execute(statement, &arguments).await?;
                }
                deleted
            }
        };
        let changes = txn.execute(&self.sql.compact_log, &window).await?;
        txn.execute(&self.sql.save_compact_progress, &window)
            .await?;
        txn.commit().await?;
        Ok(superseded + changes)
    }

    async fn ensure_counts(&self) -> Result<()> {
        let mut txn = self.begin(D::BEGIN).await?;
        if D::SHARED {
            // No other process writes (and moves the counters) while they are rebuilt.
            txn.fetch_all(&self.sql.lock_revision, &[]).await?;
        }
        let ready = txn.fetch_all(&self.sql.counts_ready, &[]).await?;
        if single_int::<D>(&ready)? != 0 {
            return Ok(());
        }
        tracing::info!("counting the live keys under every prefix (once, after an upgrade)");
        self.counted.clear();
        txn.execute(&self.sql.clear_counts, &[]).await?;
        let mut counter = counts::PrefixCounter::default();
        let mut after = Vec::new();
        loop {
            let page = [Value::Bytes(&after), Value::Int(counts::KEYS_PER_PAGE)];
            let rows = txn.fetch_all(&self.sql.keys_after, &page).await?;
            let Some(last) = rows.last() else {
                break;
            };
            let last = D::Db::bytes(last, 0)?;
            for row in &rows {
                counter.add(&D::Db::bytes(row, 0)?);
            }
            after = last;
            self.flush_counts(&mut txn, counter.closed()).await?;
        }
        self.flush_counts(&mut txn, counter.finish()).await?;
        txn.execute(&self.sql.set_counts_ready, &[]).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn discard_everything(&self) -> Result<()> {
        let mut txn = self.begin(D::BEGIN).await?;
        if D::SHARED {
            txn.fetch_all(&self.sql.lock_revision, &[]).await?;
        }
        // Before and after: a commit whose outcome is unknown may have deleted the rows.
        self.counted.clear();
        for statement in &self.sql.discard {
            txn.execute(statement, &[]).await?;
        }
        txn.commit().await?;
        self.counted.clear();
        Ok(())
    }

    async fn compact_progress(&self) -> Result<i64> {
        let rows = self.read_rows(&self.sql.compact_progress, &[]).await?;
        Ok(single_int::<D>(&rows).unwrap_or(0))
    }

    async fn latest_revisions(&self) -> Result<Option<(i64, i64)>> {
        if !D::SHARED {
            return Ok(None);
        }
        // Timed here, not by the store: where this process is the only writer nothing runs.
        let rows = timed(
            "latest_revision",
            self.read_rows(&self.sql.latest_revisions, &[]),
        )
        .await?;
        let mut latest = (1, -1);
        for (name, value) in rows::named_values::<D::Db>(&rows)? {
            match name.as_str() {
                "revision" => latest.0 = value,
                _ => latest.1 = value,
            }
        }
        Ok(Some(latest))
    }

    async fn key_at_latest(&self, key: &[u8]) -> Result<Option<KeyAtLatest>> {
        if !D::SHARED {
            return Ok(None);
        }
        Ok(Some(self.point_reads.get(key).await?))
    }

    fn change_signal(&self) -> Option<Arc<Notify>> {
        self.changes.clone()
    }

    async fn db_size(&self) -> Result<DbSize> {
        let rows = self.read_rows(&self.sql.db_size, &[]).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        Ok(DbSize {
            allocated: D::Db::int(row, 0)?,
            in_use: D::Db::int(row, 1)?,
        })
    }

    async fn defragment(&self) -> Result<()> {
        let mut conn = self.writes.acquire().await?;
        conn.fetch_all(&self.sql.defragment, &[]).await?;
        Ok(())
    }

    async fn history(&self, range: KeyRange<'_>, changes: Changes) -> Result<Vec<Event>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let args = RangeArgs {
            from: changes.from,
            to: changes.to,
            limit: limit_or_all(changes.limit),
            prev: changes.with_prev,
            ..RangeArgs::new(range)
        };
        let rows = self
            .read_rows(&self.sql.range(range.end).history, &args.values())
            .await?;
        rows.iter().map(rows::event::<D::Db>).collect()
    }

    async fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>> {
        let rows = self
            .read_rows(&self.sql.lease, &[Value::Int(lease)])
            .await?;
        rows.first().map(rows::lease::<D::Db>).transpose()
    }

    async fn leases(&self) -> Result<Vec<i64>> {
        let rows = self.read_rows(&self.sql.leases, &[]).await?;
        rows.iter().map(|row| Ok(D::Db::int(row, 0)?)).collect()
    }

    async fn expired_leases(&self, now_ms: i64, limit: i64) -> Result<Vec<LeaseRecord>> {
        let arguments = [Value::Int(now_ms), Value::Int(limit)];
        let rows = self.read_rows(&self.sql.expired_leases, &arguments).await?;
        rows.iter().map(rows::lease::<D::Db>).collect()
    }

    async fn keys_of_lease(&self, lease: i64) -> Result<Vec<Bytes>> {
        let rows = self
            .read_rows(&self.sql.keys_of_lease, &[Value::Int(lease)])
            .await?;
        rows.iter()
            .map(|row| Ok(Bytes::from(D::Db::bytes(row, 0)?)))
            .collect()
    }
}
