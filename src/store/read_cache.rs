//! The latest version of recently read or updated single keys, so that a linearizable get of
//! one key at the head (kube-apiserver's `get` without a resourceVersion, and the read of every
//! GuaranteedUpdate whose cached object is stale) is answered without the database, and so that
//! the sequencer knows the live version of a key a batch writes without asking for it.
//!
//! It holds only what this process's sequencer knows to be the head's state: it is enabled only
//! when this process is the database's only writer (SQLite). The sequencer applies every
//! committed batch to it before publishing the batch's revision, so every revision a reader
//! can see as the head is already in it. An entry is filled by a read that went to the
//! database, and only when no batch after that read's revision has begun to apply since: a
//! fill can never put back a version a later write replaced; or by a batch that replaced it.
//!
//! The sequencer reads it too: when a batch begins, every batch before it has been applied, so
//! an entry is the key's state at the batch's start, and only the keys not cached are fetched
//! (etcd's benchmark tool's txn-puts over 10,000 keys: 760 of 1,250 batches still queried; the
//! txn rate moved within its rounds' spread; docs/benchmarks.md, "Writes on SQLite").
//!
//! The rules, with `begun` the newest revision whose batch has started to apply:
//! - The sequencer sets `begun` to the batch's head, then replaces the entries of the keys it
//!   changed and adds those a put replaced (not the keys it created: a bulk load would only
//!   push the other entries out), then publishes the head. A batch that does not follow the
//!   last one applied (a failed commit whose outcome is unknown) clears everything.
//! - A read at head H is answered from an entry only when the entry is as of H or earlier
//!   (an entry as of a later revision belongs to a batch not yet published: the read goes to
//!   the database, at H).
//! - A read that went to the database at H fills its key only when `begun <= H`, checked under
//!   the lock of the key's shard, which the sequencer takes after raising `begun`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;

use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};

/// Independent locks, so that readers of different keys rarely wait for each other.
const SHARDS: usize = 16;
/// What an entry costs beyond its key and value (the map's slot, the allocation headers).
const ENTRY_OVERHEAD: usize = 96;

/// A key's state at the head: alive with this version, or absent.
#[derive(Clone)]
pub enum Cached {
    Live(KeyValue),
    Absent,
}

impl Cached {
    /// The live version, if any.
    pub fn into_live(self) -> Option<KeyValue> {
        match self {
            Cached::Live(kv) => Some(kv),
            Cached::Absent => None,
        }
    }
}

struct Entry {
    state: Cached,
    /// The revision as of which `state` is the key's state.
    as_of: i64,
}

impl Entry {
    fn bytes(key: &[u8], state: &Cached) -> usize {
        let held = match state {
            Cached::Live(kv) => kv.key.len() + kv.value.len(),
            Cached::Absent => 0,
        };
        key.len() + held + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Bytes, Entry>,
    bytes: usize,
}

impl Shard {
    fn put(&mut self, key: Bytes, entry: Entry, budget: usize) {
        let added = Entry::bytes(&key, &entry.state);
        if added > budget {
            // Too large to keep: the key's older entry must not stay in its place.
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= Entry::bytes(&key, &old.state);
            }
            return;
        }
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.bytes -= Entry::bytes(&key, &old.state);
        }
        self.bytes += added;
        if self.bytes > budget {
            self.evict(budget * 3 / 4, &key);
        }
    }

    /// Drops entries (in the map's order, which is as good as random) until at most `target`
    /// bytes are held, keeping `keep`.
    fn evict(&mut self, target: usize, keep: &[u8]) {
        let mut bytes = self.bytes;
        self.entries.retain(|key, entry| {
            if bytes <= target || key.as_ref() == keep {
                return true;
            }
            bytes -= Entry::bytes(key, &entry.state);
            false
        });
        self.bytes = bytes;
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

pub struct ReadCache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    /// Bytes each shard may hold.
    shard_budget: usize,
    /// The newest revision whose batch has begun to apply.
    begun: AtomicI64,
    /// The newest revision whose batch has been applied.
    applied: AtomicI64,
}

impl ReadCache {
    /// A cache of at most `max_bytes` of keys and values (0 keeps nothing), as of `head`.
    pub fn new(max_bytes: usize, head: i64) -> ReadCache {
        ReadCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            shard_budget: max_bytes / SHARDS,
            begun: AtomicI64::new(head),
            applied: AtomicI64::new(head),
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        self.shard_at((self.hasher.hash_one(key) as usize) % SHARDS)
    }

    /// The key's state at `head` (the published head), if the cache knows it.
    pub fn get(&self, key: &[u8], head: i64) -> Option<Cached> {
        if self.shard_budget == 0 {
            return None;
        }
        let shard = self.shard(key);
        let entry = shard.entries.get(key)?;
        if entry.as_of > head {
            return None;
        }
        Some(entry.state.clone())
    }

    /// Remembers what a read of `key` at `revision` (the head when it started) found, unless a
    /// batch after `revision` has begun to apply.
    pub fn fill(&self, key: &[u8], revision: i64, found: Option<&KeyValue>) {
        if self.shard_budget == 0 {
            return;
        }
        let mut shard = self.shard(key);
        if self.begun.load(Ordering::SeqCst) > revision {
            return;
        }
        let state = match found {
            Some(kv) => Cached::Live(owned(kv)),
            None => Cached::Absent,
        };
        let entry = Entry {
            state,
            as_of: revision,
        };
        shard.put(Bytes::copy_from_slice(key), entry, self.shard_budget);
    }

    /// Applies a committed batch, revisions `first..=head`, whose changes are `events` (in
    /// revision order). Call before publishing `head`.
    pub fn apply(&self, first: i64, head: i64, events: &[Event]) {
        if self.shard_budget == 0 || head < first {
            return;
        }
        // Also ends the refusal of fills that `forget` began.
        self.begun.store(head, Ordering::SeqCst);
        if self.applied.load(Ordering::SeqCst) != first - 1 {
            // Revisions this process did not see: any entry may be stale.
            for index in 0..SHARDS {
                self.shard_at(index).clear();
            }
        } else {
            for event in events {
                let Some(kv) = &event.kv else { continue };
                let put = EventType::try_from(event.r#type) == Ok(EventType::Put);
                let mut shard = self.shard(&kv.key);
                // A cached key must follow every change. Of the others, only a key a put
                // replaced is added: a key written again is likely written (and read) again,
                // while creates (a bulk load) would only push the cache's entries out.
                let replaced = put && event.prev_kv.is_some();
                if !replaced && !shard.entries.contains_key(&kv.key) {
                    continue;
                }
                let (key, state) = if put {
                    let kv = owned(kv);
                    (kv.key.clone(), Cached::Live(kv))
                } else {
                    (Bytes::copy_from_slice(&kv.key), Cached::Absent)
                };
                let entry = Entry {
                    state,
                    as_of: kv.mod_revision,
                };
                shard.put(key, entry, self.shard_budget);
            }
        }
        self.applied.store(head, Ordering::SeqCst);
    }

    /// Forgets everything (a batch failed: what it did is not known).
    pub fn forget(&self) {
        if self.shard_budget == 0 {
            return;
        }
        // Nothing read before this may fill: the next batch's revision is not known yet.
        self.begun.store(i64::MAX, Ordering::SeqCst);
        for index in 0..SHARDS {
            self.shard_at(index).clear();
        }
    }

    fn shard_at(&self, index: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard may have left it half-changed: start it over.
        match self.shards[index].lock() {
            Ok(shard) => shard,
            Err(poisoned) => {
                let mut shard = poisoned.into_inner();
                shard.clear();
                shard
            }
        }
    }
}

/// A copy of `kv` in allocations of its own: a request's key and value may be slices of the
/// whole buffer the request arrived in, which an entry must not keep alive.
fn owned(kv: &KeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(&kv.key),
        value: Bytes::copy_from_slice(&kv.value),
        ..kv.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, revision: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }

    fn put_event(key: &str, value: &str, revision: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(kv(key, value, revision)),
            prev_kv: None,
        }
    }

    fn value_of(cache: &ReadCache, key: &str, head: i64) -> Option<Option<String>> {
        cache.get(key.as_bytes(), head).map(|found| match found {
            Cached::Live(kv) => Some(String::from_utf8_lossy(&kv.value).into_owned()),
            Cached::Absent => None,
        })
    }

    #[test]
    fn a_fill_from_before_a_batch_began_is_refused() {
        let cache = ReadCache::new(1 << 20, 10);
        // A read at 10 raced with a batch committing 11 that changed the key: the batch began
        // applying before the read's fill, and the key was not cached, so nothing was replaced.
        cache.apply(11, 11, &[put_event("k", "new", 11)]);
        cache.fill(b"k", 10, Some(&kv("k", "old", 5)));
        assert_eq!(
            value_of(&cache, "k", 11),
            None,
            "the stale fill was refused"
        );
        cache.fill(b"k", 11, Some(&kv("k", "new", 11)));
        assert_eq!(value_of(&cache, "k", 11), Some(Some("new".into())));
    }

    #[test]
    fn a_batch_adds_the_keys_it_replaced_not_those_it_created() {
        let cache = ReadCache::new(1 << 20, 10);
        let replaced = Event {
            prev_kv: Some(kv("old", "before", 3)),
            ..put_event("old", "after", 11)
        };
        cache.apply(11, 11, &[put_event("new", "v", 11), replaced]);
        assert_eq!(value_of(&cache, "new", 11), None, "a create is not added");
        assert_eq!(value_of(&cache, "old", 11), Some(Some("after".into())));
        // A stale fill does not replace what the batch stored.
        cache.fill(b"old", 10, Some(&kv("old", "before", 3)));
        assert_eq!(value_of(&cache, "old", 11), Some(Some("after".into())));
        // A cached key follows its deletion.
        let deleted = Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv("old", "", 12)),
            prev_kv: Some(kv("old", "after", 11)),
        };
        cache.apply(12, 12, &[deleted]);
        assert_eq!(value_of(&cache, "old", 12), Some(None));
    }

    #[test]
    fn a_version_too_large_to_keep_drops_the_entry_before_it() {
        let cache = ReadCache::new(16 * 4096, 10);
        cache.fill(b"k", 10, Some(&kv("k", "small", 5)));
        assert_eq!(value_of(&cache, "k", 10), Some(Some("small".into())));
        let large = "x".repeat(8192);
        let replaced = Event {
            prev_kv: Some(kv("k", "small", 5)),
            ..put_event("k", &large, 11)
        };
        cache.apply(11, 11, &[replaced]);
        assert_eq!(value_of(&cache, "k", 11), None, "the old version is gone");
    }

    #[test]
    fn entries_of_an_unpublished_revision_are_not_answered() {
        let cache = ReadCache::new(1 << 20, 10);
        cache.fill(b"k", 10, None);
        assert_eq!(value_of(&cache, "k", 10), Some(None));
        // Applied but not yet published: a reader still at head 10 goes to the database.
        cache.apply(11, 11, &[put_event("k", "v", 11)]);
        assert_eq!(value_of(&cache, "k", 10), None);
        assert_eq!(value_of(&cache, "k", 11), Some(Some("v".into())));
    }

    #[test]
    fn a_gap_or_a_failed_batch_forgets_everything() {
        let cache = ReadCache::new(1 << 20, 10);
        cache.fill(b"k", 10, Some(&kv("k", "v", 3)));
        // Revision 11 was never applied here (a commit whose outcome was unknown).
        cache.apply(12, 12, &[]);
        assert_eq!(value_of(&cache, "k", 12), None);
        cache.fill(b"k", 12, Some(&kv("k", "v", 3)));
        cache.forget();
        assert_eq!(value_of(&cache, "k", 12), None);
        cache.fill(b"k", 12, Some(&kv("k", "v", 3)));
        assert_eq!(
            value_of(&cache, "k", 12),
            None,
            "no fill until a batch applies"
        );
        cache.apply(13, 13, &[]);
        cache.fill(b"k", 13, Some(&kv("k", "v", 3)));
        assert_eq!(value_of(&cache, "k", 13), Some(Some("v".into())));
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = ReadCache::new(64 * 1024, 1);
        let value = "x".repeat(1000);
        for n in 0..1000 {
            let key = format!("key-{n}");
            cache.fill(key.as_bytes(), 1, Some(&kv(&key, &value, 1)));
        }
        let held: usize = (0..SHARDS).map(|index| cache.shard_at(index).bytes).sum();
        assert!(held <= 64 * 1024, "{held} bytes held");
        assert!(held > 0);
    }
}
