//! The SQL layer: everything etcdshim asks of a database, behind one trait per role.
//!
//! The store above speaks in revisions and key ranges; a backend turns those into SQL. There is
//! one implementation ([`sql`]) for every database, with every statement written once; the
//! files `sqlite.rs`, `postgres.rs` and `mysql.rs` hold only what differs per database. Reads
//! at any revision go through [`KvRead`], which both a pooled read connection and the
//! sequencer's write transaction implement, so "what the store looks like at revision R" has
//! exactly one definition.

mod endpoint;
mod mysql;
mod options;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_pages;

use std::sync::Arc;

pub use options::{DatabaseTls, DatastoreOptions};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::KeyValue;
use crate::proto::mvccpb::Event;

/// The upper end of a key range, decoded from etcd's `range_end` conventions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEnd {
    /// Only the key itself.
    Single,
    /// Every key in `[key, end)`.
    Before(Bytes),
    /// Every key `>= key` (etcd's `range_end = "\0"`).
    Unbounded,
}

impl KeyEnd {
    /// Decodes etcd's `range_end`: empty means the key alone, `"\0"` means no upper bound.
    pub fn from_range_end(range_end: &Bytes) -> KeyEnd {
        match range_end.as_ref() {
            [] => KeyEnd::Single,
            [0] => KeyEnd::Unbounded,
            _ => KeyEnd::Before(range_end.clone()),
        }
    }

    /// Whether `[key, end)` can hold no key at all (an end at or below the start).
    pub fn is_empty_for(&self, key: &[u8]) -> bool {
        matches!(self, KeyEnd::Before(end) if end.as_ref() <= key)
    }

    /// Whether `candidate` lies in `[key, end)`.
    pub fn contains(&self, key: &[u8], candidate: &[u8]) -> bool {
        match self {
            KeyEnd::Single => candidate == key,
            KeyEnd::Before(end) => key <= candidate && candidate < end.as_ref(),
            KeyEnd::Unbounded => key <= candidate,
        }
    }
}

/// A range of keys in etcd's terms: `key` alone, `[key, end)`, or every key from `key` on.
#[derive(Clone, Copy, Debug)]
pub struct KeyRange<'a> {
    pub key: &'a [u8],
    pub end: &'a KeyEnd,
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], end: &'a KeyEnd) -> KeyRange<'a> {
        KeyRange { key, end }
    }

    /// Whether the range can hold no key at all (an end at or below the start).
    pub fn is_empty(&self) -> bool {
        self.end.is_empty_for(self.key)
    }

    /// Whether the range is every key under a prefix that ends in `/` (`[P, P with its last
    /// byte raised)`, as kube-apiserver's lists and counts of a resource or a namespace are):
    /// those are counted from a live-key counter row, or, below the row's threshold of keys,
    /// through the key index.
    pub fn is_counted_prefix(&self) -> bool {
        let (Some((b'/', stem)), KeyEnd::Before(end)) = (self.key.split_last(), self.end) else {
            return false;
        };
        end.split_last() == Some((&b'0', stem))
    }
}

/// The prefixes of `key` that may have a live-key counter row: every one that ends in `/` (the
/// key itself too, when it does).
pub fn counted_prefixes(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    key.iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'/')
        .map(|(at, _)| &key[..=at])
}

/// Which changes of a range to read from the log: revisions `from..=to`, at most `limit` rows
/// (0: all), each with the key's previous live version when `with_prev` is set.
#[derive(Clone, Copy, Debug)]
pub struct Changes {
    pub from: i64,
    pub to: i64,
    pub limit: i64,
    pub with_prev: bool,
}

/// The store's bookkeeping as persisted in the database.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub revision: i64,
    pub compacted: i64,
    pub cluster_id: u64,
    pub member_id: u64,
}

/// A key's live version (if it has one) and the revisions of the snapshot it was read in.
#[derive(Debug)]
pub struct KeyAtLatest {
    pub revision: i64,
    pub compacted: i64,
    pub kv: Option<KeyValue>,
}

/// Sizes reported by Maintenance.Status.
#[derive(Clone, Copy, Debug, Default)]
pub struct DbSize {
    pub allocated: i64,
    pub in_use: i64,
}

/// Reads of the key space as of a revision.
#[async_trait]
pub trait KvRead: Send {
    /// Keys of `range` alive at revision `rev`, in bytewise key order; at most `limit` of them
    /// when `limit > 0`.
    async fn range(&mut self, range: KeyRange<'_>, rev: i64, limit: i64) -> Result<Vec<KeyValue>>;

    /// How many keys of `range` are alive at revision `rev`.
    async fn count(&mut self, range: KeyRange<'_>, rev: i64) -> Result<i64>;
}

/// One row of the log: a key's new version, or its deletion, whose `kv` holds only the key and
/// the deleting revision (as etcd's DELETE events do). `sub` orders the rows of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub kv: KeyValue,
    pub deleted: bool,
    pub sub: i64,
}

/// What a batch changed since it last wrote to its transaction.
#[derive(Clone, Copy, Debug)]
pub struct BatchWrite<'a> {
    /// New log rows (at most one per key and revision).
    pub log: &'a [LogRow],
    /// Versions that a change replaced or deleted (they move to the history).
    pub superseded: &'a [KeyValue],
    /// Keys whose live version is now this one.
    pub live: &'a [KeyValue],
    /// Keys no longer alive.
    pub gone: &'a [Bytes],
    /// Changes of the live-key counters: (prefix, added keys, negative for removed).
    pub counts: &'a [(Bytes, i64)],
}

/// A lease as stored: its granted TTL and when it expires (milliseconds since the Unix epoch,
/// so that time keeps counting across restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    pub expires_ms: i64,
}

/// The sequencer's transaction: reads see its own earlier writes; nothing is visible to others
/// before `commit`.
#[async_trait]
pub trait WriteTxn: KvRead {
    /// For a database shared by several processes: the revision and the compacted revision,
    /// read under the lock this transaction holds until it ends. `None` when this process is
    /// the only writer and its own bookkeeping is authoritative.
    fn locked_revisions(&self) -> Option<(i64, i64)> {
        None
    }
    /// The live versions of `keys` at the head; missing keys are absent from the answer.
    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>>;
    /// Writes changes made by the batch since its last write.
    async fn write(&mut self, changes: &BatchWrite<'_>) -> Result<()>;
    /// The live keys attached to `lease`.
    async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>>;
    async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>>;
    /// Creates or refreshes a lease.
    async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()>;
    async fn delete_lease(&mut self, lease: i64) -> Result<()>;
    /// Persists the revision counter and the compacted revision.
    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()>;
    /// Another bookkeeping value, by name.
    async fn meta_value(&mut self, name: &'static str) -> Result<Option<i64>>;
    async fn save_meta_value(&mut self, name: &'static str, value: i64) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The latest row of one key in a Kine database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KineRow {
    pub name: String,
    /// The row's revision.
    pub id: i64,
    pub created: bool,
    pub deleted: bool,
    /// The revision that created the key (0 on the creating row itself).
    pub create_revision: i64,
    /// Kine's lease: the key's TTL in seconds (0: none).
    pub lease: i64,
    pub value: Vec<u8>,
    /// The rows of the key's current life still in the table (its version, unless compaction
    /// removed some).
    pub rows_alive: i64,
}

/// A Kine database being read.
#[async_trait]
pub trait KineRows: Send {
    /// Kine's newest revision and the revision it compacted to.
    async fn revisions(&mut self) -> Result<(i64, i64)>;
    /// How many keys are alive (for progress).
    async fn live_keys(&mut self) -> Result<i64>;
    /// The latest rows of the next `limit` keys after `after`, in key order; deleted keys and
    /// Kine's bookkeeping included.
    async fn page(&mut self, after: &str, limit: i64) -> Result<Vec<KineRow>>;
}

/// A database that holds an etcd key space.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads the persisted bookkeeping, creating it on first start.
    async fn load_meta(&self) -> Result<Meta>;
    /// A read handle on a pooled connection.
    async fn reader(&self) -> Result<Box<dyn KvRead>>;
    /// A second read handle for a request that already holds one, if a connection is free
    /// now: waiting for one while holding another could wait on itself.
    async fn spare_reader(&self) -> Result<Option<Box<dyn KvRead>>>;
    /// Opens the one write transaction; the caller (the sequencer) never holds two.
    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>>;
    /// The sequencer's batch failed (nothing of it was committed): a backend whose
    /// connections may be left unusable by the cause replaces them.
    fn write_failed(&self) {}
    /// Removes the history superseded by the changes in `(after, up_to]` (all at or below the
    /// compacted revision), and records `up_to` as the compaction progress, in one short
    /// transaction. Returns the number of rows removed.
    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64>;
    /// The revision up to which superseded history has been removed.
    async fn compact_progress(&self) -> Result<i64>;
    /// Rebuilds the live-key counters from the live keys if they are not known to be complete
    /// (a database made by an older etcdshim, or imported); a no-op once they are.
    async fn ensure_counts(&self) -> Result<()>;
    /// Empties the datastore: every key, its history, every lease, and the revisions back to
    /// the start (after a failed import).
    async fn discard_everything(&self) -> Result<()>;
    /// For a database shared by several processes: its newest revision and compacted revision,
    /// which other processes may have moved. `None` when this process is the only writer.
    async fn latest_revisions(&self) -> Result<Option<(i64, i64)>> {
        Ok(None)
    }
    /// For a database shared by several processes: the newest and compacted revisions and
    /// `key`'s live version, read by one statement and so from one snapshot (a read of one key
    /// at the head in one round trip). `None` when this process is the only writer.
    async fn key_at_latest(&self, _key: &[u8]) -> Result<Option<KeyAtLatest>> {
        Ok(None)
    }
    /// Woken when another process may have committed (PostgreSQL's LISTEN/NOTIFY), so a
    /// follower need not wait for its next poll.
    fn change_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    async fn db_size(&self) -> Result<DbSize>;
    /// Returns unused space to the file system (SQLite's VACUUM, Postgres' VACUUM).
    async fn defragment(&self) -> Result<()>;
    /// The `changes` of `range` in the log, in revision order.
    async fn history(&self, range: KeyRange<'_>, changes: Changes) -> Result<Vec<Event>>;
    async fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>>;
    async fn leases(&self) -> Result<Vec<i64>>;
    /// Leases whose expiry is at or before `now_ms`, soonest first, at most `limit`.
    async fn expired_leases(&self, now_ms: i64, limit: i64) -> Result<Vec<LeaseRecord>>;
    async fn keys_of_lease(&self, lease: i64) -> Result<Vec<Bytes>>;
}

/// Opens the backend named by a Kine-style endpoint: `sqlite://PATH`,
/// `postgres://user:pass@host:port/db?sslmode=...`, `mysql://user:pass@tcp(host:port)/db` or
/// `mysql://user:pass@host:port/db`. A missing database is created.
pub async fn open(endpoint: &str, options: &DatastoreOptions) -> Result<Arc<dyn Backend>> {
    crate::metrics::warn_of_sql_slower_than(options.slow_sql_warning_threshold);
    if let Some(path) = endpoint.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        return Ok(Arc::new(sqlite::open(path, options).await?));
    }
    if endpoint.starts_with("postgres://") || endpoint.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::open(endpoint, options).await?));
    }
    if endpoint.starts_with("mysql://") {
        return Ok(Arc::new(mysql::open(endpoint, options).await?));
    }
    Err(unknown_endpoint())
}

fn unknown_endpoint() -> Error {
    Error::InvalidEndpoint(
        "expected sqlite://PATH, postgres://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@tcp(HOST:PORT)/DB".into(),
    )
}

/// Opens the Kine database an endpoint in Kine's forms names, to read its `table`; nothing is
/// created or migrated there.
pub async fn open_kine(
    endpoint: &str,
    options: &DatastoreOptions,
    table: &str,
) -> Result<Box<dyn KineRows>> {
    if let Some(path) = endpoint.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        return Ok(Box::new(sql::KineSource::<sqlite::Sqlite>::new(
            sqlite::read_only(path).await?,
            table,
        )?));
    }
    if endpoint.starts_with("postgres://") || endpoint.starts_with("postgresql://") {
        let pool = postgres::existing(endpoint, options).await?;
        return Ok(Box::new(sql::KineSource::<postgres::Postgres>::new(
            pool, table,
        )?));
    }
    if endpoint.starts_with("mysql://") {
        let pool = mysql::existing(endpoint, options).await?;
        return Ok(Box::new(sql::KineSource::<mysql::Mysql>::new(pool, table)?));
    }
    Err(unknown_endpoint())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_prefixes_are_counted() {
        let prefixes: Vec<&[u8]> = counted_prefixes(b"/registry/pods/ns/a").collect();
        assert_eq!(
            prefixes,
            [
                &b"/"[..],
                b"/registry/",
                b"/registry/pods/",
                b"/registry/pods/ns/"
            ]
        );
        let itself: Vec<&[u8]> = counted_prefixes(b"a/b/").collect();
        assert_eq!(itself, [&b"a/"[..], b"a/b/"]);
        let range = |key: &'static [u8], end: KeyEnd| {
            let end = Box::leak(Box::new(end));
            KeyRange::new(key, end).is_counted_prefix()
        };
        let before = |end: &'static [u8]| KeyEnd::Before(Bytes::from_static(end));
        assert!(range(b"/registry/pods/", before(b"/registry/pods0")));
        assert!(!range(b"/registry/pods", before(b"/registry/podt")));
        assert!(!range(b"/registry/pods/", before(b"/registry/pods1")));
        assert!(!range(b"/registry/pods/a", before(b"/registry/pods0")));
        assert!(!range(b"/registry/pods/", KeyEnd::Unbounded));
        assert!(!range(b"/", KeyEnd::Single));
    }
}
