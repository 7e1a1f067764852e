//! How a store keeps its data, serves watchers, follows other servers and compacts, with
//! Kine's defaults where Kine has the same setting.

use std::time::Duration;

use crate::backend::DatastoreOptions;
use crate::store::watch_hub;

/// How often a process sharing its database with others looks for their writes, by default.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How to talk to the datastore: pools, TLS, slow-statement logging.
    pub datastore: DatastoreOptions,
    /// How many recent events, and bytes of their keys and values, the watch hub keeps in
    /// memory at most; watchers further behind read the log.
    pub watch_window_events: usize,
    pub watch_window_bytes: usize,
    /// On a database shared with other processes: how often to look for their writes
    /// (PostgreSQL also wakes this process at once when another commits)...
    pub follow_interval: Duration,
    /// ... and how many log rows to read per query while catching up (Kine's
    /// `--poll-batch-size`).
    pub follow_batch: i64,
    pub compaction: CompactionOptions,
    /// Bytes of keys and values of recently read single keys kept to answer gets of one key
    /// at the head without the database (0: none). Used only where this process is the
    /// database's only writer (SQLite).
    pub read_cache_bytes: usize,
}

/// The read cache's size by default.
pub const DEFAULT_READ_CACHE_BYTES: usize = 16 * 1024 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            datastore: DatastoreOptions::default(),
            watch_window_events: watch_hub::DEFAULT_WINDOW_EVENTS,
            watch_window_bytes: watch_hub::DEFAULT_WINDOW_BYTES,
            follow_interval: DEFAULT_FOLLOW_INTERVAL,
            follow_batch: 500,
            compaction: CompactionOptions::default(),
            read_cache_bytes: DEFAULT_READ_CACHE_BYTES,
        }
    }
}

/// Automatic compaction, and how the compactor removes history (Kine's `--compact-*` flags).
#[derive(Clone, Copy, Debug)]
pub struct CompactionOptions {
    /// Compact every this long (zero: never; clients such as kube-apiserver compact on their
    /// own).
    pub interval: Duration,
    /// Each interval is lengthened or shortened by up to this percentage, at random (0..100).
    pub jitter_percent: u32,
    /// Compact to the head minus this many revisions.
    pub min_retain: i64,
    /// Revisions whose history one compactor transaction removes.
    pub batch_revisions: i64,
    /// How long one such transaction may take before it is abandoned and retried.
    pub timeout: Duration,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            interval: Duration::from_secs(5 * 60),
            jitter_percent: 0,
            min_retain: 1000,
            batch_revisions: 1000,
            timeout: Duration::from_secs(5),
        }
    }
}
