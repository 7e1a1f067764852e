//! Lazy compaction: Compact(R) only records R; this task removes the history it made
//! unreadable, one small window of revisions per short transaction, so it never holds the
//! writer for long. Progress is persisted, so a restart resumes where it stopped.

use std::sync::Arc;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::store::backoff::Backoff;

/// Revisions removed per transaction.
const WINDOW: i64 = 500;

pub(crate) struct Compactor {
    pub backend: Arc<dyn Backend>,
    /// The newest compacted revision; closes when the store is gone.
    pub target: watch::Receiver<i64>,
    /// The revision up to which history is physically removed.
    pub progress: watch::Sender<i64>,
}

impl Compactor {
    pub async fn run(mut self) {
        let mut done = *self.progress.borrow();
        let mut backoff = Backoff::default();
        loop {
            let compacted = *self.target.borrow_and_update();
            while done < compacted {
                let up_to = (done + WINDOW).min(compacted);
                match crate::metrics::timed("compact", self.backend.compact_window(done, up_to))
                    .await
                {
                    Ok(removed) => {
                        backoff.reset();
                        tracing::debug!(up_to, removed, "compacted history");
                        done = up_to;
                        self.progress.send_replace(done);
                        crate::metrics::metrics().compaction_progress.set(done);
                    }
                    Err(err) => backoff.fail("compactor", &err).await,
                }
                // Let the sequencer in between windows.
                tokio::task::yield_now().await;
            }
            if self.target.changed().await.is_err() {
                return;
            }
        }
    }
}
