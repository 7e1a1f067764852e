//! Fresh SQLite connections after a failed write.
//!
//! A filesystem that turns read-only under an open database (ext4 remounts itself read-only on
//! an I/O error) comes back only by being unmounted, repaired and mounted again, and the
//! connections opened before still hold the files of the old mount: the writer would fail for
//! ever, and a reader would answer from the old files, missing every write made since. So after
//! a failed write no connection opened before the failure is handed out again (the connection
//! sets ask [`Reopen::keeps`] before each acquire), and when a write transaction first begins after
//! failures, the connections opened before that moment go too: a reader opened during the
//! outage may hold the old mount. Both happen before the recovering batch commits, so no read
//! that could include its writes runs on an old connection.
//!
//! Nothing changes while writes succeed: the check is one lock and a comparison per acquire.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Reopen {
    /// A write failed and none has begun since.
    failed: AtomicBool,
    /// Connections opened before this are closed instead of handed out.
    since: Mutex<Option<Instant>>,
}

impl Reopen {
    /// Whether a connection opened `age` ago may serve.
    pub fn keeps(&self, age: Duration) -> bool {
        let since = *self
            .since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match since {
            None => true,
            Some(since) => Instant::now()
                .checked_sub(age)
                .is_some_and(|opened| opened >= since),
        }
    }

    /// A write failed: every connection open now is suspect.
    pub fn write_failed(&self) {
        self.failed.store(true, Ordering::Release);
        self.retire_open_connections();
    }

    /// A write transaction began (on a connection opened after the last failure): after a
    /// failure, the connections opened during the outage are retired too.
    pub fn write_began(&self) {
        if self.failed.swap(false, Ordering::AcqRel) {
            tracing::info!(
                "writes work again; reopening the SQLite connections opened during the failure"
            );
            self.retire_open_connections();
        }
    }

    fn retire_open_connections(&self) {
        *self
            .since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_failure_or_a_recovery_are_retired() {
        let reopen = Reopen::default();
        assert!(
            reopen.keeps(Duration::from_secs(3600)),
            "nothing failed yet"
        );
        reopen.write_failed();
        assert!(
            !reopen.keeps(Duration::from_secs(1)),
            "opened before the failure"
        );
        assert!(reopen.keeps(Duration::ZERO), "opened after it");
        std::thread::sleep(Duration::from_millis(20));
        let opened_during_outage = Duration::from_millis(10);
        reopen.write_began();
        assert!(
            !reopen.keeps(opened_during_outage),
            "opened during the outage"
        );
        std::thread::sleep(Duration::from_millis(20));
        reopen.write_began();
        assert!(
            reopen.keeps(Duration::from_millis(10)),
            "later writes retire nothing"
        );
    }
}
