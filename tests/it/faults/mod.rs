//! Faults of the disk and the database under write load: a full filesystem, one that turns
//! read-only, a database stopped and started again, connections killed mid-transaction,
//! statements timing out. In each case the server stays up, requests fail with `Unavailable`
//! and etcdshim's message, no acknowledged write is lost, no transaction is half applied, and
//! writes succeed again once the fault is gone, without a restart.
//!
//! The load: writers each send a Txn that puts two keys (`<n>/a` and `<n>/b`) with the same
//! value, so a half-applied transaction shows as one key without the other.

mod database;
mod disk;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, Txn, TxnOp};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// Where the load writes.
const PREFIX: &str = "fault/";
/// What every failure must say.
const UNAVAILABLE: (tonic::Code, &str) = (
    tonic::Code::Unavailable,
    "etcdshim: the datastore is unavailable",
);

#[derive(Default)]
struct Seen {
    /// Each acknowledged transaction's first key, revision, and when the answer came.
    acknowledged: Vec<(String, i64, Instant)>,
    /// The first key of each transaction that failed, and when.
    failed: Vec<(String, Instant)>,
    failures: Vec<(tonic::Code, String)>,
}

/// Writers sending two-key transactions until stopped.
pub(crate) struct WriteLoad {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    /// `writers` writers on `client`, each value `value_size` bytes, `pause` between writes.
    pub(crate) fn start(
        client: &etcd_client::Client,
        writers: usize,
        value_size: usize,
        pause: Duration,
    ) -> WriteLoad {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (mut client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
                let value = vec![b'v'; value_size];
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("{PREFIX}{w}/{i}");
                        let txn = Txn::new().and_then([
                            TxnOp::put(format!("{key}/a"), value.clone(), None),
                            TxnOp::put(format!("{key}/b"), value.clone(), None),
                        ]);
                        let outcome = client.txn(txn).await;
                        let mut seen = seen.lock().await;
                        match outcome {
                            Ok(response) => {
                                let revision = response.header().expect("header").revision();
                                seen.acknowledged.push((key, revision, Instant::now()));
                            }
                            Err(etcd_client::Error::GRpcStatus(status)) => {
                                seen.failed.push((key, Instant::now()));
                                seen.failures
                                    .push((status.code(), status.message().to_string()));
                            }
                            Err(other) => panic!("not a gRPC status: {other}"),
                        }
                        drop(seen);
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        WriteLoad {
            seen,
            stop,
            writers,
        }
    }

    /// Transactions acknowledged and failed so far.
    async fn counts(&self) -> (usize, usize) {
        let seen = self.seen.lock().await;
        (seen.acknowledged.len(), seen.failed.len())
    }

    /// Waits until `more` further transactions have been acknowledged, failing after `within`.
    pub(crate) async fn wait_for_acknowledged(&self, more: usize, within: Duration, what: &str) {
        self.wait_for(|(acknowledged, _)| acknowledged, more, within, what)
            .await;
    }

    /// Waits until `more` further transactions have failed, failing after `within`.
    pub(crate) async fn wait_for_failed(&self, more: usize, within: Duration, what: &str) {
        self.wait_for(|(_, failed)| failed, more, within, what)
            .await;
    }

    /// Waits until the count `pick` takes from (acknowledged, failed) has grown by `more`.
    async fn wait_for(
        &self,
        pick: fn((usize, usize)) -> usize,
        more: usize,
        within: Duration,
        what: &str,
    ) {
        let target = pick(self.counts().await) + more;
        let deadline = tokio::time::Instant::now() + within;
        while pick(self.counts().await) < target {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the writers and checks against the store (read through `client`) that every
    /// acknowledged transaction is there whole at its revision, that every failed one is there
    /// whole or not at all, and that every failure was `Unavailable` with etcdshim's message.
    pub(crate) async fn finish_and_check(self, client: &etcd_client::Client, what: &str) {
        self.finish_and_check_after(client, what, None).await;
    }

    /// As [`WriteLoad::finish_and_check`], except for the transactions acknowledged from
    /// `fault` until the first failure after it: the filesystem itself may lose those (see
    /// disk.rs), so they are reported, not required.
    pub(crate) async fn finish_and_check_after(
        self,
        client: &etcd_client::Client,
        what: &str,
        fault: Option<Instant>,
    ) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.await.expect("writer");
        }
        let seen = std::mem::take(&mut *self.seen.lock().await);
        assert!(!seen.failures.is_empty(), "{what}: the fault was seen");
        for (code, message) in &seen.failures {
            assert_eq!((*code, message.as_str()), UNAVAILABLE, "{what}");
        }
        let window = fault.map(|fault| {
            let first_failure = seen
                .failed
                .iter()
                .map(|(_, at)| *at)
                .filter(|at| *at >= fault)
                .min();
            (fault, first_failure)
        });
        let in_window = |at: Instant| {
            window.is_some_and(|(fault, first_failure)| {
                at >= fault && first_failure.is_none_or(|failure| at <= failure)
            })
        };
        let stored = client
            .clone()
            .get(
                PREFIX,
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .expect("list what was written");
        let stored = crate::harness::mod_revisions(&stored);
        let mut lost_by_filesystem = Vec::new();
        for (key, revision, at) in &seen.acknowledged {
            let halves = ["a", "b"].map(|half| stored.get(&format!("{key}/{half}")));
            if in_window(*at) && halves == [None, None] {
                lost_by_filesystem.push(*revision);
                continue;
            }
            assert_eq!(
                halves,
                [Some(revision), Some(revision)],
                "{what}: acknowledged {key}@{revision} was lost"
            );
        }
        for (key, _) in &seen.failed {
            // A failure can hide a commit whose answer was lost with its connection, but
            // never half of one.
            assert_eq!(
                stored.contains_key(&format!("{key}/a")),
                stored.contains_key(&format!("{key}/b")),
                "{what}: the failed transaction {key} was half applied"
            );
        }
        eprintln!(
            "{what}: {} transactions acknowledged, {} failed",
            seen.acknowledged.len(),
            seen.failed.len()
        );
        if fault.is_some() {
            eprintln!(
                "{what}: acknowledged as the fault struck and lost by the filesystem: revisions {lost_by_filesystem:?}"
            );
        }
    }
}
