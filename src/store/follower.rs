//! For a database shared by several processes: follow the other processes' writes.
//!
//! Every poll interval (and at once when PostgreSQL notifies that some process committed), the
//! follower reads the database's revision and compacted revision, and
//! feeds the log rows this process has not published yet to the watch hub, whole revisions at
//! a time and in order, so each process's watchers see every revision exactly once, whoever
//! wrote it.

use std::time::Duration;

use crate::backend::KeyEnd;
use crate::error::Result;
use crate::metrics::timed;
use crate::store::backoff::Backoff;
use crate::store::{Store, WeakStore};

/// Log rows read per query.
const PAGE: i64 = 1000;

pub(crate) async fn follow(store: WeakStore, interval: Duration) {
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
        match catch_up(&store).await {
            Ok(()) => backoff.reset(),
            Err(err) => backoff.fail("follower", &err).await,
        }
    }
}

async fn catch_up(store: &Store) -> Result<()> {
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
        let mut events = timed(
            "history",
            backend.history(b"\0", &KeyEnd::Unbounded, from, i64::MAX, PAGE, true),
        )
        .await?;
        let revision_of = |i: usize| {
            events
                .get(i)
                .and_then(|e| e.kv.as_ref())
                .map_or(0, |kv| kv.mod_revision)
        };
        let Some(last) = events.len().checked_sub(1).map(revision_of) else {
            return Ok(());
        };
        let first = revision_of(0);
        if events.len() as i64 >= PAGE {
            if first == last {
                events = backend
                    .history(b"\0", &KeyEnd::Unbounded, first, first, 0, true)
                    .await?;
            } else {
                events.retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision < last));
            }
        }
        let published_up_to = match events.last().and_then(|e| e.kv.as_ref()) {
            Some(kv) => kv.mod_revision,
            None => return Ok(()),
        };
        if first > from {
            // Compaction removed history this process had not published yet.
            hub.skip_to(first - 1);
        }
        hub.publish(first, events, published_up_to);
    }
}
