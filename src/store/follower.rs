//! For a database shared by several processes: follow the other processes' writes.
//!
//! Every poll interval (and at once when PostgreSQL notifies that some process committed), the
//! follower reads the database's revision and compacted revision, and
//! feeds the log rows this process has not published yet to the watch hub, whole revisions at
//! a time and in order, so each process's watchers see every revision exactly once, whoever
//! wrote it.

use std::time::Duration;

use crate::backend::{KeyEnd, KeyRange};
use crate::error::Result;
use crate::metrics::timed;
use crate::store::backoff::Backoff;
use crate::store::history::{read_page, revision_of};
use crate::store::{Store, WeakStore};

/// Follows the other processes' writes every `interval` (and on their notifications), reading
/// about `batch` log rows per query.
pub(crate) async fn follow(store: WeakStore, interval: Duration, batch: i64) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let changes = store.upgrade().and_then(|s| s.backend().change_signal());
    let mut backoff = Backoff::default();
    loop {
        match &changes {
            Some(changes) => {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = changes.notified() => {}
                }
            }
            None => {
                tick.tick().await;
            }
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        match catch_up(&store, batch).await {
            Ok(()) => backoff.reset(),
            Err(err) => backoff.fail("follower", &err).await,
        }
    }
}

async fn catch_up(store: &Store, batch: i64) -> Result<()> {
    let backend = store.backend();
    if let Some((head, compacted)) = timed("latest_revision", backend.latest_revisions()).await? {
        store.shared.revisions.publish(head, compacted);
        store.note_compacted(compacted);
    }
    let hub = store.hub();
    loop {
        let from = hub.head() + 1;
        if from > store.head() {
            return Ok(());
        }
        let everything = KeyRange::new(b"\0", &KeyEnd::Unbounded);
        let (events, _) = read_page(&**backend, everything, (from, i64::MAX), batch, true).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let (first, published_up_to) = (revision_of(first), revision_of(last));
        if first > from {
            // Compaction removed history this process had not published yet.
            hub.skip_to(first - 1);
        }
        hub.publish(first, events, published_up_to);
    }
}
