//! Where SQLite puts a new row of `current`: in a range of rowids that belongs to the key's
//! resource, so that one resource's objects share the table's pages.
//!
//! `current` is a rowid table: its rows sit in the B-tree in rowid order, and SQLite numbers
//! new rows in insertion order. A store written the way Kubernetes writes one interleaves
//! resources (Fleet creates each cluster's ten objects of ten resources together), so a list of
//! one resource, walking the key index, finds each row on a page among other resources' rows:
//! one 8 KiB page read per 1 KiB object. While the file fits in the page cache that costs
//! nothing; at 20M objects (a 25 GB file) the Fleet manager's list of 1.9M cluster records read
//! 15 GB at random and took 176 to 278 s, with pages at 1 to 2.4 s at p99.9 (docs/benchmarks.md,
//! 2026-12-04).
//!
//! So a row's rowid is its resource's range (the top 15 bits, a hash of the key's resource
//! prefix, never 0) and a sequence in that range (the low 48 bits) that the writer keeps. A
//! resource's rows fill pages together, about seven to a page, and a list of it reads a seventh
//! of the pages it read before. Rows still append at the end of their range, which fills pages
//! as a plain append does: 200,000 rows of 1 KiB in ten interleaved ranges took 1,238 bytes a
//! row against 1,231 appended in one (SQLite 3.40, 8 KiB pages).
//!
//! Why not a `WITHOUT ROWID` table ordered by key: its interior pages hold whole rows, so with
//! 1 KiB values a tree of 20M rows would be twice as deep as the rowid table's. Why not a
//! rowid that follows key order: inserts in the middle of a range split pages half full.
//!
//! Only the sequencer's write transaction assigns rowids, one at a time (one writer per SQLite
//! file, held by a file lock), so a range's next rowid, once read from the table, is known in
//! memory from then on. A rowid given to a row whose transaction then rolled back is skipped,
//! never reused: a gap, which costs nothing. Rows an update rewrites keep their rowid (the
//! upsert's `DO UPDATE` does not set it), and rows written before this layout keep theirs in
//! range 0. Hash collisions put two resources in one range: their rows mix, as all did before.
//! VACUUM (`etcdctl defrag`) kept every rowid in a check on SQLite 3.40, so the grouping
//! survives a defragment; SQLite documents that it may renumber the rows of a table without an
//! INTEGER PRIMARY KEY, and if a version does, they get small rowids outside every range: the
//! grouping is lost, and no new row collides with them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Bits of a rowid that number the rows of one range.
const SEQUENCE_BITS: u32 = 48;

/// Ranges 1 to this one (15 bits; 0 holds the rows written before ranges were used).
const RANGES: u64 = (1 << 15) - 1;

/// The key's resource: `/registry/<resource>/`, or `/registry/<group>/<resource>/` when the
/// second segment is a group (it holds a dot, as `fleet.cattle.io` does). Any other key's is its
/// first two segments, `/<a>/<b>/`, or its parent when it has fewer.
pub fn resource_of(key: &[u8]) -> &[u8] {
    let slashes: Vec<usize> = key
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'/')
        .map(|(at, _)| at)
        .take(4)
        .collect();
    let ends_at = |nth: usize| slashes.get(nth).map(|at| at + 1);
    let grouped = match (slashes.get(1), slashes.get(2)) {
        (Some(&from), Some(&to)) => key[from..to].contains(&b'.'),
        _ => false,
    };
    let wanted = if grouped { 3 } else { 2 };
    ends_at(wanted)
        .or_else(|| slashes.last().map(|at| at + 1))
        .map_or(&key[..0], |end| &key[..end])
}

/// The first rowid of the range of `key`'s resource (FNV-1a of the resource, never range 0).
pub fn range_of(key: &[u8]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in resource_of(key) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((hash % RANGES + 1) << SEQUENCE_BITS) as i64
}

/// The last rowid of the range starting at `range`.
pub fn range_end(range: i64) -> i64 {
    range + ((1_i64 << SEQUENCE_BITS) - 1)
}

/// The next rowid of each range the writer has used, shared by the backend's write transactions.
#[derive(Default)]
pub struct RowidRanges {
    next: Mutex<HashMap<i64, i64>>,
}

impl RowidRanges {
    fn next(&self) -> MutexGuard<'_, HashMap<i64, i64>> {
        self.next
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ranges of `keys` whose next rowid is not known yet, each once.
    pub fn unknown<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<i64> {
        let next = self.next();
        let mut unknown: Vec<i64> = keys
            .map(range_of)
            .filter(|range| !next.contains_key(range))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        unknown
    }

    /// Learns a range's last rowid in the table (`None`: the range is empty).
    pub fn found(&self, range: i64, last: Option<i64>) {
        let next = last.map_or(range, |last| last + 1);
        let mut known = self.next();
        let entry = known.entry(range).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// A new rowid for each key, in its resource's range. Every range must be known (see
    /// [`RowidRanges::unknown`]); one that is not starts at its first rowid.
    pub fn assign<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<i64> {
        let mut next = self.next();
        keys.map(|key| {
            let range = range_of(key);
            let rowid = next.entry(range).or_insert(range);
            let assigned = *rowid;
            *rowid += 1;
            assigned
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_belongs_to_its_resource_with_or_without_a_group() {
        let cases: [(&str, &str); 8] = [
            ("/registry/pods/default/web-1", "/registry/pods/"),
            ("/registry/namespaces/default", "/registry/namespaces/"),
            (
                "/registry/fleet.cattle.io/clusters/ns/c-1",
                "/registry/fleet.cattle.io/clusters/",
            ),
            (
                "/registry/fleet.cattle.io/clusters",
                "/registry/fleet.cattle.io/",
            ),
            ("/app/config/a/b", "/app/config/"),
            ("/app/config", "/app/"),
            ("plain", ""),
            ("", ""),
        ];
        for (key, resource) in cases {
            assert_eq!(
                resource_of(key.as_bytes()),
                resource.as_bytes(),
                "resource of {key}"
            );
        }
    }

    #[test]
    fn rowids_follow_on_in_each_range_and_never_repeat() {
        let ranges = RowidRanges::default();
        let pods = b"/registry/pods/a/x".as_slice();
        let secrets = b"/registry/secrets/a/x".as_slice();
        assert_ne!(range_of(pods), range_of(secrets));
        assert_eq!(range_of(pods), range_of(b"/registry/pods/b/y"));
        assert!(range_of(pods) > 0 && range_of(secrets) > 0);
        assert_eq!(ranges.unknown([pods, secrets, pods].into_iter()).len(), 2);
        ranges.found(range_of(pods), Some(range_of(pods) + 41));
        ranges.found(range_of(secrets), None);
        assert!(ranges.unknown([pods, secrets].into_iter()).is_empty());
        let first = ranges.assign([pods, secrets, pods].into_iter());
        assert_eq!(
            first,
            [range_of(pods) + 42, range_of(secrets), range_of(pods) + 43]
        );
        // A later, lower report of a range's last rowid does not take it back.
        ranges.found(range_of(pods), Some(range_of(pods)));
        assert_eq!(ranges.assign([pods].into_iter()), [range_of(pods) + 44]);
        assert!(range_end(range_of(pods)) < range_of(pods) + (1 << 48));
    }
}
