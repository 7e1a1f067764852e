//! etcd semantics over a [`Backend`]: revisions, ranges at any revision, writes through the
//! sequencer, and lazy compaction. No gRPC types live here; the server layer translates.
//!
//! [`Store`] is a cheap handle. The sequencer and the compactor run as tasks that end by
//! themselves once every handle is dropped (the sequencer's channel closes, and with it the
//! compactor's).

mod apply;
mod auto_compact;
mod backoff;
mod buffer;
mod compactor;
mod follower;
mod history;
mod lease;
mod options;
mod range;
mod read_cache;
pub mod watch_hub;
pub mod watcher;
mod writer;

pub use crate::backend::{DatabaseTls, DatastoreOptions};

pub use lease::{MAX_LEASE_TTL, now_ms};
pub use options::{CompactionOptions, DEFAULT_FOLLOW_INTERVAL, StoreOptions};
pub use writer::{MAX_BATCH, WriterStatsSnapshot};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::{Backend, DbSize, KeyEnd, KeyRange, LeaseRecord};
use crate::error::{Error, Result};
use crate::proto::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use compactor::Compactor;
use read_cache::{Cached, ReadCache};
use watch_hub::WatchHub;
use writer::{WriteOp, WriteOutcome, WriteRequest, Writer, WriterStats};

/// etcd's raft term is meaningless here; a single constant keeps clients that display it calm.
pub const RAFT_TERM: u64 = 1;

/// The committed head and compacted revisions, published by the sequencer after each commit.
#[derive(Debug)]
pub(crate) struct Revisions {
    head: AtomicI64,
    compacted: AtomicI64,
}

impl Revisions {
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    pub fn compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// Moves the revisions forward (never back: another process's news may have come first).
    fn publish(&self, head: i64, compacted: i64) {
        let compacted = self
            .compacted
            .fetch_max(compacted, Ordering::AcqRel)
            .max(compacted);
        let head = self.head.fetch_max(head, Ordering::AcqRel).max(head);
        let metrics = crate::metrics::metrics();
        metrics.revision.set(head);
        metrics.compacted_revision.set(compacted);
    }
}

/// A handle on the key space; clone it freely.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    /// Counts of the next pages of paged lists at pinned revisions.
    page_counts: range::PageCounts,
    read_cache: Arc<ReadCache>,
    hub: Arc<WatchHub>,
    /// Tells the compactor the newest compacted revision.
    compaction: watch::Sender<i64>,
    revisions: Arc<Revisions>,
    writes: mpsc::Sender<WriteRequest>,
    compact_progress: watch::Receiver<i64>,
    writer_stats: Arc<WriterStats>,
    /// Closed once the sequencer has stopped.
    writer_running: watch::Receiver<()>,
    auto_compactions: std::sync::atomic::AtomicU64,
    cluster_id: u64,
    member_id: u64,
}

impl Store {
    /// Opens the datastore a Kine-style `endpoint` names (creating and migrating it as needed),
    /// loads the store's state and starts the sequencer, the compactor, the lease expiry task
    /// and, on a shared database, the follower of other processes' writes.
    pub async fn open(endpoint: &str, options: &StoreOptions) -> Result<Store> {
        let backend = crate::backend::open(endpoint, &options.datastore).await?;
        Store::with_backend(backend, options).await
    }

    async fn with_backend(backend: Arc<dyn Backend>, options: &StoreOptions) -> Result<Store> {
        backend.ensure_counts().await?;
        let meta = backend.load_meta().await?;
        let progress = backend.compact_progress().await?;
        let revisions = Arc::new(Revisions {
            head: AtomicI64::new(meta.revision),
            compacted: AtomicI64::new(meta.compacted),
        });
        let (writes, write_queue) = mpsc::channel(MAX_BATCH * 4);
        let (compaction, target) = watch::channel(meta.compacted);
        let (progress_sender, compact_progress) = watch::channel(progress);
        let writer_stats = Arc::new(WriterStats::default());
        let (writer_running_sender, writer_running) = watch::channel(());
        // Only a process that is its database's only writer knows the head without asking.
        let shared_database = backend.latest_revisions().await?.is_some();
        let cache_bytes = if shared_database {
            0
        } else {
            options.read_cache_bytes
        };
        let read_cache = Arc::new(ReadCache::new(cache_bytes, meta.revision));
        let hub = Arc::new(WatchHub::new(
            meta.revision,
            options.watch_window_events,
            options.watch_window_bytes,
        ));
        tokio::spawn(
            Writer {
                backend: backend.clone(),
                hub: hub.clone(),
                read_cache: read_cache.clone(),
                revisions: revisions.clone(),
                stats: writer_stats.clone(),
                compaction: compaction.clone(),
                _running: writer_running_sender,
            }
            .run(write_queue),
        );
        tokio::spawn(
            Compactor {
                backend: backend.clone(),
                target,
                progress: progress_sender,
                window: options.compaction.batch_revisions.max(1),
                timeout: options.compaction.timeout,
            }
            .run(),
        );
        let store = Store {
            shared: Arc::new(Shared {
                backend,
                page_counts: range::PageCounts::default(),
                read_cache,
                hub,
                compaction,
                revisions,
                writes,
                compact_progress,
                writer_stats,
                writer_running,
                auto_compactions: Default::default(),
                cluster_id: meta.cluster_id,
                member_id: meta.member_id,
            }),
        };
        tokio::spawn(lease::expire_leases(store.downgrade()));
        tokio::spawn(auto_compact::run(store.downgrade(), options.compaction));
        if shared_database {
            let (interval, batch) = (options.follow_interval, options.follow_batch.max(1));
            tokio::spawn(follower::follow(store.downgrade(), interval, batch));
        }
        Ok(store)
    }

    /// Completes once the store has stopped writing: every handle is gone and the sequencer,
    /// which also writes for the lease expiry task, has ended. Take it before dropping the last
    /// handle, for example to open the same database again in this process.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut running = self.shared.writer_running.clone();
        async move { while running.changed().await.is_ok() {} }
    }

    /// A handle that does not keep the store (and its background tasks) alive.
    fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.shared))
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    pub(crate) fn hub(&self) -> &WatchHub {
        &self.shared.hub
    }

    /// Wakes when the watch hub has published a newer revision.
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.shared.hub.subscribe()
    }

    pub fn head(&self) -> i64 {
        self.shared.revisions.head()
    }

    pub fn compacted(&self) -> i64 {
        self.shared.revisions.compacted()
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    pub fn writer_stats(&self) -> WriterStatsSnapshot {
        self.shared.writer_stats.snapshot()
    }

    /// How many automatic compactions this store made (other servers' not counted).
    pub fn auto_compactions(&self) -> u64 {
        self.shared.auto_compactions.load(Ordering::Relaxed)
    }

    fn count_auto_compaction(&self) {
        self.shared.auto_compactions.fetch_add(1, Ordering::Relaxed);
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.shared.cluster_id,
            member_id: self.shared.member_id,
            revision,
            raft_term: RAFT_TERM,
        }
    }

    /// The sequencer knows only the revision; add this server's identity.
    fn complete_header(&self, partial: Option<ResponseHeader>) -> Option<ResponseHeader> {
        Some(self.header(partial.map_or_else(|| self.head(), |h| h.revision)))
    }

    pub async fn db_size(&self) -> Result<DbSize> {
        self.shared.backend.db_size().await
    }

    /// Tells the compactor about a compacted revision (its own or another process's).
    fn note_compacted(&self, compacted: i64) {
        raise(&self.shared.compaction, compacted);
    }

    /// Range at the head or at a past revision (a true snapshot).
    pub async fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        // One key at the head, on a shared database: the head and the key in one statement.
        if req.revision <= 0
            && range::single_key_unfiltered(req)
            && let Some(latest) = self.shared.backend.key_at_latest(&req.key).await?
        {
            self.shared
                .revisions
                .publish(latest.revision, latest.compacted);
            let found = latest.kv.map_or(Cached::Absent, Cached::Live);
            let mut resp = range::answer_from(req, found);
            // The snapshot's revision: its state is what the answer shows.
            resp.header = Some(self.header(latest.revision));
            return Ok(resp);
        }
        // On a shared database, other processes may have written since this one last looked.
        if let Some((head, compacted)) = self.shared.backend.latest_revisions().await? {
            self.shared.revisions.publish(head, compacted);
        }
        let head = self.head();
        let revision = if req.revision <= 0 {
            head
        } else {
            req.revision
        };
        self.check_readable(revision, head)?;
        let cacheable = revision == head && range::single_key_unfiltered(req);
        if cacheable && let Some(cached) = self.shared.read_cache.get(&req.key, head) {
            let mut resp = range::answer_from(req, cached);
            resp.header = Some(self.header(head));
            return Ok(resp);
        }
        let mut reader = self.shared.backend.reader().await?;
        let known_count = self.shared.page_counts.take(req, revision);
        // The first page of a range that took more than a page before: count it on a second
        // reader, if one is free, while this one reads the page.
        let spare = match known_count {
            None if self.shared.page_counts.spans_pages(req) => {
                self.shared.backend.spare_reader().await?
            }
            _ => None,
        };
        let count = match (known_count, spare) {
            (Some(count), _) => range::RangeCount::Known(count),
            (None, Some(mut counter)) => range::RangeCount::Ahead(Box::pin(async move {
                let end = KeyEnd::from_range_end(&req.range_end);
                counter.count(KeyRange::new(&req.key, &end), revision).await
            })),
            (None, None) => range::RangeCount::After,
        };
        let mut resp = range::read_range(&mut *reader, req, revision, count).await?;
        drop(reader);
        self.shared.page_counts.remember(req, revision, &resp);
        if known_count.is_none() {
            self.shared.page_counts.remember_spanning(req, &resp);
        }
        if cacheable && !req.keys_only && !req.count_only {
            self.shared
                .read_cache
                .fill(&req.key, revision, resp.kvs.first());
        }
        // A compaction past `revision` may have removed rows while we read.
        self.check_readable(revision, head)?;
        resp.header = Some(self.header(head));
        Ok(resp)
    }

    fn check_readable(&self, revision: i64, head: i64) -> Result<()> {
        if revision > head {
            return Err(Error::FutureRevision);
        }
        if revision < self.compacted() {
            return Err(Error::Compacted);
        }
        Ok(())
    }

    pub async fn put(&self, req: PutRequest) -> Result<PutResponse> {
        match self.write(WriteOp::Put(req)).await? {
            WriteOutcome::Put(mut resp) => {
                resp.header = self.complete_header(resp.header);
                Ok(resp)
            }
            _ => Err(Error::Unavailable),
        }
    }

    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.write(WriteOp::DeleteRange(req)).await? {
            WriteOutcome::DeleteRange(mut resp) => {
                resp.header = self.complete_header(resp.header);
                Ok(resp)
            }
            _ => Err(Error::Unavailable),
        }
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.write(WriteOp::Txn(req)).await? {
            WriteOutcome::Txn(mut resp) => {
                resp.header = self.complete_header(resp.header);
                Ok(resp)
            }
            _ => Err(Error::Unavailable),
        }
    }

    /// Records the compaction at once; with `physical`, also waits until the compacted history
    /// is removed. Returns the revision the store was at.
    pub async fn compact(&self, req: &CompactionRequest) -> Result<i64> {
        let head = match self.write(WriteOp::Compact(req.revision)).await? {
            WriteOutcome::Compact(head) => head,
            _ => return Err(Error::Unavailable),
        };
        if req.physical {
            let mut progress = self.shared.compact_progress.clone();
            progress
                .wait_for(|done| *done >= req.revision)
                .await
                .map_err(|_| Error::ShuttingDown)?;
        }
        Ok(head)
    }

    /// Runs Defragment: the backend returns unused space to the file system.
    pub async fn defragment(&self) -> Result<()> {
        self.shared.backend.defragment().await
    }

    /// Grants a lease (`id` 0: the server picks one); returns it.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseRecord> {
        match self.write(WriteOp::LeaseGrant { id, ttl }).await? {
            WriteOutcome::LeaseGranted(lease) => {
                crate::metrics::metrics().lease_grants.inc();
                Ok(lease)
            }
            _ => Err(Error::Unavailable),
        }
    }

    /// Revokes a lease and deletes its keys at one revision.
    pub async fn lease_revoke(&self, id: i64) -> Result<()> {
        match self.write(WriteOp::LeaseRevoke(id)).await? {
            WriteOutcome::LeaseRevoked => {
                let revocations = &crate::metrics::metrics().lease_revocations;
                revocations.with_label_values(&["revoked"]).inc();
                Ok(())
            }
            _ => Err(Error::Unavailable),
        }
    }

    /// Restarts a lease's TTL; `None` for an unknown lease.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<Option<i64>> {
        match self.write(WriteOp::LeaseKeepAlive(id)).await? {
            WriteOutcome::LeaseKeptAlive(ttl) => Ok(ttl),
            _ => Err(Error::Unavailable),
        }
    }

    async fn expire_lease(&self, id: i64) -> Result<bool> {
        match self.write(WriteOp::LeaseExpire(id)).await? {
            WriteOutcome::LeaseExpired(expired) => {
                if expired {
                    let revocations = &crate::metrics::metrics().lease_revocations;
                    revocations.with_label_values(&["expired"]).inc();
                }
                Ok(expired)
            }
            _ => Err(Error::Unavailable),
        }
    }

    /// A lease as stored, with the keys attached to it when `with_keys` is set.
    pub async fn lease(
        &self,
        id: i64,
        with_keys: bool,
    ) -> Result<Option<(LeaseRecord, Vec<bytes::Bytes>)>> {
        let Some(lease) = self.shared.backend.lease(id).await? else {
            return Ok(None);
        };
        let keys = if with_keys {
            self.shared.backend.keys_of_lease(id).await?
        } else {
            Vec::new()
        };
        Ok(Some((lease, keys)))
    }

    pub async fn leases(&self) -> Result<Vec<i64>> {
        self.shared.backend.leases().await
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// A [`Store`] that background tasks hold without keeping it alive.
pub(crate) struct WeakStore(Weak<Shared>);

impl WeakStore {
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|shared| Store { shared })
    }
}

/// Moves a watched revision forward to `value` (never back), waking receivers only on a change.
pub(crate) fn raise(sender: &watch::Sender<i64>, value: i64) {
    sender.send_if_modified(|current| {
        let newer = value > *current;
        if newer {
            *current = value;
        }
        newer
    });
}
