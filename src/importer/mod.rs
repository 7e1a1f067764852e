//! `etcdshim import`: copies another store's live keys into an empty etcdshim datastore, each at
//! its own create and mod revisions, version and lease, and continues its head revision, so
//! clients holding revisions (kube-apiserver's resourceVersions) go on working. The source's
//! history is not copied: the imported store is compacted at its head, so a watch from an older
//! revision is told so and its client lists again, as after any compaction.
//!
//! Sources: a Kine database ([`kine`]), or any etcd v3 endpoint read at one revision ([`etcd`]).
//! The target must be empty; a second run into it refuses, and a failed run empties it again.

pub mod etcd;
pub mod kine;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use clap::{Args, Subcommand};

use crate::backend::{self, Backend, BatchWrite, KeyEnd, KeyRange, LeaseRecord, LogRow};
use crate::error::{Error, Result};
use crate::proto::KeyValue;
use crate::store::DatastoreOptions;

/// Keys read and written per transaction.
pub const KEYS_PER_BATCH: usize = 5_000;

#[derive(Clone, Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: Source,
}

#[derive(Clone, Debug, Subcommand)]
pub enum Source {
    /// A Kine database: sqlite://PATH, postgres://... or mysql://... (Kine's endpoint forms).
    Kine {
        /// The Kine database's endpoint.
        #[arg(long)]
        from: String,
        /// The table Kine keeps its rows in.
        #[arg(long, default_value = "kine")]
        table: String,
    },
    /// Any etcd v3 endpoint (http://HOST:PORT), read at its current revision.
    Etcd {
        /// The etcd endpoint.
        #[arg(long)]
        from: String,
    },
}

/// What an import copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub keys: u64,
    pub leases: u64,
    /// The revision the target continues from.
    pub head: i64,
}

/// Imports from `source` into the empty datastore `endpoint`.
pub async fn run(source: &Source, endpoint: &str, options: &DatastoreOptions) -> Result<Imported> {
    let target = Target::open(endpoint, options).await?;
    let copied = match source {
        Source::Kine { from, table } => kine::copy(from, table, options, &target).await,
        Source::Etcd { from } => etcd::copy(from, &target).await,
    };
    match copied {
        Ok(imported) => {
            target.finish(imported.head).await?;
            Ok(imported)
        }
        Err(err) => {
            // Leave no half import behind: the next run must find the target empty.
            if let Err(cleanup) = target.backend.discard_everything().await {
                tracing::error!(error = %cleanup.detail(), "emptying the target after the failed import failed too");
            }
            Err(err)
        }
    }
}

/// The datastore being filled.
pub struct Target {
    backend: Arc<dyn Backend>,
    /// The `sub` of the next key written. Keys of one revision (an etcd transaction's) may
    /// arrive in different pages, and a change is identified by its revision and `sub`, so
    /// every key copied gets a `sub` of its own.
    next_sub: AtomicI64,
}

impl Target {
    async fn open(endpoint: &str, options: &DatastoreOptions) -> Result<Target> {
        let backend = backend::open(endpoint, options).await?;
        backend.ensure_counts().await?;
        let meta = backend.load_meta().await?;
        let mut reader = backend.reader().await?;
        let everything = KeyRange::new(b"\0", &KeyEnd::Unbounded);
        let keys = reader.count(everything, meta.revision).await?;
        let leases = backend.leases().await?.len();
        if meta.revision > 1 || keys > 0 || leases > 0 {
            return Err(Error::Import(format!(
                "the target datastore is not empty (revision {}, {keys} keys, {leases} leases); \
                 import only into a new datastore, so that nothing is mixed",
                meta.revision
            )));
        }
        Ok(Target {
            backend,
            next_sub: AtomicI64::new(0),
        })
    }

    /// Writes live keys, each at its own revisions, and leases, in one transaction.
    pub async fn write(&self, kvs: &[KeyValue], leases: &[LeaseRecord]) -> Result<()> {
        let mut txn = self.backend.begin_write().await?;
        let first_sub = self.next_sub.fetch_add(kvs.len() as i64, Ordering::Relaxed);
        let log: Vec<LogRow> = kvs
            .iter()
            .zip(first_sub..)
            .map(|(kv, sub)| LogRow {
                kv: kv.clone(),
                deleted: false,
                sub,
            })
            .collect();
        let changes = BatchWrite {
            log: &log,
            superseded: &[],
            live: kvs,
            gone: &[],
            counts: &[],
        };
        txn.write(&changes).await?;
        for lease in leases {
            txn.save_lease(*lease).await?;
        }
        txn.commit().await
    }

    /// The head continues at `head`, compacted there; the counters are rebuilt.
    async fn finish(&self, head: i64) -> Result<()> {
        let mut txn = self.backend.begin_write().await?;
        txn.save_meta(head.max(1), head.max(1)).await?;
        txn.save_meta_value("compact_progress", head.max(1)).await?;
        txn.save_meta_value("counts_ready", 0).await?;
        txn.commit().await?;
        self.backend.ensure_counts().await
    }
}
