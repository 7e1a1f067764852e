//! The prefixes known to have a counter row, so that a batch that creates or deletes keys under
//! them adds its changes without first asking which of its prefixes have one (`counted_of`):
//! a statement, and on SQLite a wake of its worker thread, less per batch.
//!
//! Knowing is safe because a counter row, once committed, stays while servers run: rows are
//! deleted only by the rebuild at open (`ensure_counts`, before the sequencer starts) and by
//! the importer on a datastore it found empty (`discard_everything`), and both clear this set.
//! (An import into a database that servers already use is not supported: its revisions and
//! counts would be rewritten under them.)
//! A prefix is added only after the transaction that found or made its row has committed, so a
//! rolled-back row is never taken for a committed one. A row another server made is found by
//! the query the first time.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

#[derive(Default)]
pub struct CountedPrefixes {
    known: Mutex<HashSet<Bytes>>,
}

impl CountedPrefixes {
    fn known(&self) -> MutexGuard<'_, HashSet<Bytes>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `prefix` has a committed counter row.
    pub fn contains(&self, prefix: &[u8]) -> bool {
        self.known().contains(prefix)
    }

    /// Records prefixes whose rows a transaction that has committed found or made.
    pub fn add_committed(&self, prefixes: Vec<Bytes>) {
        if !prefixes.is_empty() {
            self.known().extend(prefixes);
        }
    }

    /// Forgets every prefix: the rows are being deleted or rebuilt.
    pub fn clear(&self) {
        self.known().clear();
    }
}
