//! The sequencer: the one task that writes, with group commit.
//!
//! It takes every request waiting (up to `MAX_BATCH`), applies them in arrival order inside one
//! database transaction (each sees the writes of those before it), gives each request that
//! changes something the next revision, commits once, and only then answers. One fsync thus
//! serves the whole batch. A request that fails a check leaves the batch untouched; a database
//! failure fails the whole batch, and nothing of it is acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::{Backend, LeaseRecord};
use crate::error::{Error, Result};
use crate::proto::mvccpb::Event;
use crate::proto::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};
use crate::store::Revisions;
use crate::store::apply::{Apply, point_keys_of_txn};
use crate::store::buffer::WriteBuffer;
use crate::store::read_cache::ReadCache;
use crate::store::watch_hub::WatchHub;

/// The most requests one transaction takes.
pub const MAX_BATCH: usize = 1000;

pub(crate) enum WriteOp {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    /// Compact to the head minus `retain`, unless any server did within the last
    /// `min_gap_ms` (see `auto_compact`).
    AutoCompact {
        retain: i64,
        min_gap_ms: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke(i64),
    LeaseKeepAlive(i64),
    LeaseExpire(i64),
}

pub(crate) enum WriteOutcome {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// Compaction recorded; the revision the store was at.
    Compact(i64),
    /// The revision compacted to, if it was this server's turn and there was history to drop.
    AutoCompacted(Option<i64>),
    LeaseGranted(LeaseRecord),
    LeaseRevoked,
    /// The lease's TTL, or `None` for an unknown lease.
    LeaseKeptAlive(Option<i64>),
    /// Whether the lease was still expired and so was revoked.
    LeaseExpired(bool),
}

pub(crate) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// How the sequencer has been batching, for benchmarks and operators.
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    requests: AtomicU64,
    largest: AtomicU64,
}

/// A copy of [`WriterStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStatsSnapshot {
    /// Transactions committed.
    pub batches: u64,
    /// Requests those transactions carried.
    pub requests: u64,
    /// The most requests one transaction carried.
    pub largest: u64,
}

impl WriterStats {
    fn record(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(size as u64, Ordering::Relaxed);
        self.largest.fetch_max(size as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
        }
    }
}

/// What a committed batch did.
struct Committed {
    /// Each request's outcome, in order.
    outcomes: Vec<Result<WriteOutcome>>,
    events: Vec<Event>,
    /// The first revision the batch could take (the head before it, plus one).
    first: i64,
    head: i64,
    compacted: i64,
}

pub(crate) struct Writer {
    pub backend: Arc<dyn Backend>,
    pub hub: Arc<WatchHub>,
    pub read_cache: Arc<ReadCache>,
    pub revisions: Arc<Revisions>,
    pub stats: Arc<WriterStats>,
    /// Tells the compactor the newest compacted revision.
    pub compaction: watch::Sender<i64>,
    /// Dropped with the writer, which tells [`crate::store::Store::stopped`] that no more
    /// writes will reach the database.
    pub _running: watch::Sender<()>,
}

impl Writer {
    /// Runs until every sender of `requests` is gone.
    pub async fn run(self, mut requests: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.stats.record(batch.len());
            crate::metrics::metrics()
                .batch_size
                .observe(batch.len() as f64);
            match self.commit(&batch).await {
                Ok(done) => {
                    // Before the head: a reader that sees the head finds its writes cached.
                    self.read_cache.apply(done.first, done.head, &done.events);
                    self.revisions.publish(done.head, done.compacted);
                    // Refused when other processes' revisions come first: the follower then
                    // delivers this batch's events too, from the log.
                    if done.head >= done.first {
                        self.hub.publish(done.first, done.events, done.head);
                    }
                    crate::store::raise(&self.compaction, done.compacted);
                    for (request, outcome) in batch.drain(..).zip(done.outcomes) {
                        // A client that went away no longer needs its answer.
                        let _ = request.reply.send(outcome);
                    }
                }
                Err(err) => {
                    self.backend.write_failed();
                    self.read_cache.forget();
                    tracing::error!(error = %err.detail(), size = batch.len(), "write batch failed; nothing of it was committed");
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(Error::Unavailable));
                    }
                }
            }
        }
    }

    /// Applies and commits one batch; on success returns each request's outcome and the new
    /// head and compacted revisions.
    async fn commit(&self, batch: &[WriteRequest]) -> Result<Committed> {
        let txn = crate::metrics::timed("begin", self.backend.begin_write()).await?;
        let (mut head, mut compacted) = txn
            .locked_revisions()
            .unwrap_or((self.revisions.head(), self.revisions.compacted()));
        let first = head + 1;
        let mut buffer = WriteBuffer::begin(txn, head).await?;
        let mut keys = Vec::new();
        for request in batch {
            match &request.op {
                WriteOp::Put(req) => keys.push(req.key.clone()),
                WriteOp::DeleteRange(req) if req.range_end.is_empty() => keys.push(req.key.clone()),
                WriteOp::Txn(req) => point_keys_of_txn(req, &mut keys),
                _ => {}
            }
        }
        // Keys whose state at `head` the read cache holds need no query.
        keys.retain(|key| match self.read_cache.get(key, head) {
            Some(cached) => {
                buffer.known(key.clone(), cached.into_live());
                false
            }
            None => true,
        });
        buffer.prefetch(keys).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            let mut apply = Apply {
                buffer: &mut buffer,
                head,
                compacted,
                changed: false,
            };
            let outcome = match &request.op {
                WriteOp::Put(req) => apply.put(req).await.map(WriteOutcome::Put),
                WriteOp::DeleteRange(req) => {
                    apply.delete_range(req).await.map(WriteOutcome::DeleteRange)
                }
                WriteOp::Txn(req) => apply.txn(req).await.map(WriteOutcome::Txn),
                WriteOp::Compact(revision) => {
                    compact(*revision, head, &mut compacted).map(|()| WriteOutcome::Compact(head))
                }
                WriteOp::AutoCompact { retain, min_gap_ms } => {
                    auto_compact(apply.buffer, head, &mut compacted, *retain, *min_gap_ms)
                        .await
                        .map(WriteOutcome::AutoCompacted)
                }
                WriteOp::LeaseGrant { id, ttl } => apply
                    .lease_grant(*id, *ttl)
                    .await
                    .map(WriteOutcome::LeaseGranted),
                WriteOp::LeaseRevoke(id) => apply
                    .lease_revoke(*id)
                    .await
                    .map(|()| WriteOutcome::LeaseRevoked),
                WriteOp::LeaseKeepAlive(id) => apply
                    .lease_keep_alive(*id)
                    .await
                    .map(WriteOutcome::LeaseKeptAlive),
                WriteOp::LeaseExpire(id) => apply
                    .lease_expire(*id)
                    .await
                    .map(WriteOutcome::LeaseExpired),
            };
            if let Err(Error::Database(err)) = outcome {
                return Err(Error::Database(err));
            }
            // A request that failed its checks wrote nothing and takes no revision.
            if outcome.is_ok() {
                head = apply.final_revision();
            }
            outcomes.push(outcome);
        }
        let events = buffer.commit(head, compacted).await?;
        Ok(Committed {
            outcomes,
            events,
            first,
            head,
            compacted,
        })
    }
}

/// Name of the bookkeeping row holding when a server last compacted automatically.
const AUTO_COMPACTED_AT: &str = "auto_compacted_ms";

/// Compacts to `head - retain` unless there is nothing to drop or a server (this one or
/// another on the same database) did so within the last `min_gap_ms`. The time is read and
/// written in the batch's transaction, under the revision lock on shared databases.
async fn auto_compact(
    buffer: &mut WriteBuffer,
    head: i64,
    compacted: &mut i64,
    retain: i64,
    min_gap_ms: i64,
) -> Result<Option<i64>> {
    let target = head - retain.max(0);
    if target <= *compacted {
        return Ok(None);
    }
    let now = crate::store::now_ms();
    if let Some(last) = buffer.meta_value(AUTO_COMPACTED_AT).await?
        && now.saturating_sub(last) < min_gap_ms
    {
        return Ok(None);
    }
    buffer.save_meta_value(AUTO_COMPACTED_AT, now).await?;
    *compacted = target;
    Ok(Some(target))
}

/// etcd's rules for a compaction request.
fn compact(revision: i64, head: i64, compacted: &mut i64) -> Result<()> {
    if revision <= *compacted {
        return Err(Error::Compacted);
    }
    if revision > head {
        return Err(Error::FutureRevision);
    }
    *compacted = revision;
    Ok(())
}
