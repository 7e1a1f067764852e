//! The SQL layer: everything etcdshim asks of a database, behind one trait per role.
//!
//! The store above speaks in revisions and key ranges; a backend turns those into SQL for one
//! database. All SQL text lives in the backend modules. Reads at any revision go through
//! [`KvRead`], which both a pooled read connection and the sequencer's write transaction
//! implement, so "what the store looks like at revision R" has exactly one definition.

mod sqlite;

pub use sqlite::SqliteBackend;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::KeyValue;

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
}

/// The store's bookkeeping as persisted in the database.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub revision: i64,
    pub compacted: i64,
    pub cluster_id: u64,
    pub member_id: u64,
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
    /// Keys of `[key, end)` alive at `revision`, in bytewise key order; at most `limit` of them
    /// when `limit > 0`.
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>>;

    /// How many keys of `[key, end)` are alive at `revision`.
    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64>;
}

/// One row of the log: a new version of a key, or its deletion.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Put(KeyValue),
    Delete { key: Bytes, revision: i64 },
}

impl Change {
    pub fn key(&self) -> &Bytes {
        match self {
            Change::Put(kv) => &kv.key,
            Change::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> i64 {
        match self {
            Change::Put(kv) => kv.mod_revision,
            Change::Delete { revision, .. } => *revision,
        }
    }
}

/// The sequencer's transaction: reads see its own earlier writes; nothing is visible to others
/// before `commit`.
#[async_trait]
pub trait WriteTxn: KvRead {
    /// The live versions of `keys` at the head; missing keys are absent from the answer.
    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>>;
    /// Appends `log` (at most one row per key and revision) and sets the live state of keys:
    /// `live` become these versions, `gone` are deleted.
    async fn write(&mut self, log: &[Change], live: &[KeyValue], gone: &[Bytes]) -> Result<()>;
    async fn lease_exists(&mut self, lease: i64) -> Result<bool>;
    /// Persists the revision counter and the compacted revision.
    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A database that holds an etcd key space.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads the persisted bookkeeping, creating it on first start.
    async fn load_meta(&self) -> Result<Meta>;
    /// A read handle on a pooled connection.
    async fn reader(&self) -> Result<Box<dyn KvRead>>;
    /// Opens the one write transaction; the caller (the sequencer) never holds two.
    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>>;
    /// Removes the history superseded by the changes in `(after, up_to]` (all at or below the
    /// compacted revision), and records `up_to` as the compaction progress, in one short
    /// transaction. Returns the number of rows removed.
    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64>;
    /// The revision up to which superseded history has been removed.
    async fn compact_progress(&self) -> Result<i64>;
    async fn db_size(&self) -> Result<DbSize>;
}

/// Opens the backend named by a Kine-style endpoint.
pub async fn open(endpoint: &str) -> Result<std::sync::Arc<dyn Backend>> {
    if let Some(path) = endpoint.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        return Ok(std::sync::Arc::new(SqliteBackend::open(path).await?));
    }
    if endpoint.starts_with("postgres://") || endpoint.starts_with("mysql://") {
        return Err(Error::InvalidEndpoint(format!(
            "{} is not implemented yet; use sqlite://PATH",
            endpoint.split("://").next().unwrap_or_default()
        )));
    }
    Err(Error::InvalidEndpoint(
        "expected sqlite://PATH (postgres:// and mysql:// are planned)".to_string(),
    ))
}
