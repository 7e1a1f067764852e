//! Lazy compaction: Compact(R) only records R; this task removes the history it made
//! unreadable, one small window of revisions per short transaction, so it never holds the
//! writer for long. Progress is persisted, so a restart resumes where it stopped.

use std::sync::Arc;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::store::backoff::Backoff;

pub(crate) struct Compactor {
    pub backend: Arc<dyn Backend>,
    /// The newest compacted revision; closes when the store is gone.
    pub target: watch::Receiver<i64>,
    /// The revision up to which history is physically removed.
    pub progress: watch::Sender<i64>,
    /// Revisions whose history one transaction removes.
    pub window: i64,
    /// How long one transaction may take before it is abandoned (and retried).
    pub timeout: std::time::Duration,
}

impl Compactor {
    pub async fn run(mut self) {
        let mut done = *self.progress.borrow();
        let mut backoff = Backoff::default();
        loop {
            let compacted = *self.target.borrow_and_update();
            while done < compacted {
                let up_to = (done + self.window).min(compacted);
                let window = self.backend.compact_window(done, up_to);
                let window = tokio::time::timeout(self.timeout, window);
                let outcome = match crate::metrics::timed("compact", window).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(crate::error::Error::Timeout("a compaction transaction")),
                };
                match outcome {
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
