//! Automatic compaction: every interval, compact to the head minus the revisions to retain, as
//! Kine does, so a store whose clients never compact does not keep its history forever.
//!
//! The compaction is a sequencer request like a client's Compact: it only records the revision,
//! and the lazy compactor removes the history. Several servers sharing a database each run this
//! task; the request records when it compacted in the database (under the revision lock), and a
//! server skips its turn when any server compacted within most of an interval (nine tenths of
//! its shortest length), so the database is compacted once per interval, not once per server:
//! whichever server comes first after that compacts.

use std::time::Duration;

use rand::Rng as _;

use crate::error::Error;
use crate::store::WeakStore;
use crate::store::options::CompactionOptions;
use crate::store::writer::{WriteOp, WriteOutcome};

pub(crate) async fn run(store: WeakStore, options: CompactionOptions) {
    if options.interval.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(jittered(options.interval, options.jitter_percent)).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let shortest = options
            .interval
            .mul_f64(1.0 - spread(options.jitter_percent));
        let request = WriteOp::AutoCompact {
            retain: options.min_retain,
            min_gap_ms: (shortest.as_millis() as i64) * 9 / 10,
        };
        match store.write(request).await {
            Ok(WriteOutcome::AutoCompacted(Some(revision))) => {
                store.count_auto_compaction();
                tracing::info!(revision, "compacted automatically")
            }
            Ok(_) => {}
            Err(Error::ShuttingDown) => return,
            Err(err) => {
                tracing::warn!(error = %err.detail(), "automatic compaction failed; trying again next interval")
            }
        }
    }
}

/// A jitter percentage as a fraction (below 1).
fn spread(percent: u32) -> f64 {
    f64::from(percent.min(99)) / 100.0
}

/// `interval`, lengthened or shortened by up to `percent` at random.
fn jittered(interval: Duration, percent: u32) -> Duration {
    let spread = spread(percent);
    if spread == 0.0 {
        return interval;
    }
    interval.mul_f64(1.0 + rand::rng().random_range(-spread..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_percentage() {
        let interval = Duration::from_secs(100);
        assert_eq!(jittered(interval, 0), interval);
        for _ in 0..1000 {
            let got = jittered(interval, 10);
            assert!(
                got >= Duration::from_secs(90) && got <= Duration::from_secs(110),
                "{got:?}"
            );
        }
    }
}
