//! The sequencer's working copy during one batch.
//!
//! A database round trip per statement would cap the sequencer at a few thousand writes a
//! second. So a batch first fetches, in one query, the live version of every single key its
//! requests name (on SQLite, of those the read cache does not hold: `known` takes the others);
//! requests then read and write that in-memory state; and the changes reach the
//! database as a few multi-row statements when the batch commits. Reads the state cannot answer
//! (key ranges, past revisions, keys by lease) first flush the pending changes, then ask the
//! database, which then sees every earlier write of the batch.
//!
//! The buffer also collects the batch's events, with their previous versions, for the watch hub;
//! the versions the batch replaced or deleted, for the history; and how many live keys each
//! counted prefix gained or lost.
//!
//! Of its changes the database's log keeps every deletion and every change of a revision with
//! more than one; a revision's only change, a put, is read back from its version (in `current`
//! or `history`), so its log row would only repeat the key at about a hundred and sixty bytes an
//! object (migrations/sqlite/0007_versions_by_revision.sql).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{
    BatchWrite, KeyEnd, KeyRange, KvRead, LeaseRecord, LogRow, WriteTxn, counted_prefixes,
};
use crate::error::Result;
use crate::metrics::timed;
use crate::proto::KeyValue;
use crate::proto::mvccpb::{Event, event::EventType};

pub(crate) struct WriteBuffer {
    txn: Box<dyn WriteTxn>,
    /// The newest version of every key read or written in this batch (`None`: no live key).
    state: HashMap<Bytes, Option<KeyValue>>,
    /// Log rows not yet written, in order.
    log: Vec<LogRow>,
    /// Where each key's last unwritten row is in `log`.
    last_row: HashMap<Bytes, usize>,
    /// The `sub` of each key's row written by a flush at revision `latest`: a later change of
    /// the key at that revision takes it, so that its row replaces the written one.
    flushed_subs: HashMap<Bytes, i64>,
    /// Keys changed since the last flush, and whether each was alive at that flush (or at the
    /// start of the batch).
    changed: HashMap<Bytes, bool>,
    /// Versions replaced or deleted since the last flush.
    superseded: Vec<KeyValue>,
    /// The newest revision written in this batch (or the head before it).
    latest: i64,
    /// The next `sub` within revision `latest`.
    next_sub: i64,
    /// Revision `latest`'s first change, a put, which a flush left out of the log while it was
    /// the revision's only one: written after all if the revision gets another.
    unlisted: Option<LogRow>,
    /// The revisions of this batch with more than one change: the log lists all of theirs,
    /// also a change that replaces one of the same key a flush wrote before.
    shared: HashSet<i64>,
    /// Every change of the batch, in order, for watchers.
    events: Vec<Event>,
}

impl WriteBuffer {
    /// Opens the batch's transaction. `head` is the revision before the batch (for a database
    /// shared with other processes, the one read under the transaction's lock).
    pub async fn begin(txn: Box<dyn WriteTxn>, head: i64) -> Result<WriteBuffer> {
        Ok(WriteBuffer {
            txn,
            state: HashMap::new(),
            log: Vec::new(),
            last_row: HashMap::new(),
            flushed_subs: HashMap::new(),
            changed: HashMap::new(),
            superseded: Vec::new(),
            latest: head,
            next_sub: 0,
            unlisted: None,
            shared: HashSet::new(),
            events: Vec::new(),
        })
    }

    /// Loads the live versions of `keys` in one query.
    pub async fn prefetch(&mut self, mut keys: Vec<Bytes>) -> Result<()> {
        keys.sort_unstable();
        keys.dedup();
        keys.retain(|key| !self.state.contains_key(key));
        if keys.is_empty() {
            return Ok(());
        }
        let found = timed("current", self.txn.current(&keys)).await?;
        for key in keys {
            self.state.insert(key, None);
        }
        for kv in found {
            self.state.insert(kv.key.clone(), Some(kv));
        }
        Ok(())
    }

    /// Records `key`'s live version at the start of the batch, known without a query.
    pub fn known(&mut self, key: Bytes, live: Option<KeyValue>) {
        self.state.entry(key).or_insert(live);
    }

    /// The live version of `key` at the newest revision of the batch.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>> {
        if let Some(known) = self.state.get(key) {
            return Ok(known.clone());
        }
        let key = Bytes::copy_from_slice(key);
        self.prefetch(vec![key.clone()]).await?;
        Ok(self.state.get(&key).cloned().flatten())
    }

    /// Records a new version of a key; `prev` is its live version before.
    pub fn put(&mut self, kv: KeyValue, prev: Option<KeyValue>) {
        self.record(
            LogRow {
                kv: kv.clone(),
                deleted: false,
                sub: 0,
            },
            prev,
        );
        self.state.insert(kv.key.clone(), Some(kv));
    }

    /// Records the deletion of the live version `prev` at `revision`.
    pub fn delete(&mut self, prev: KeyValue, revision: i64) {
        let key = prev.key.clone();
        self.record(
            LogRow {
                kv: KeyValue {
                    key: key.clone(),
                    mod_revision: revision,
                    ..Default::default()
                },
                deleted: true,
                sub: 0,
            },
            Some(prev),
        );
        self.state.insert(key, None);
    }

    /// Appends a log row and its event. A second change of one key at one revision replaces
    /// the first row, as only the last is visible once the revision commits (in the database
    /// too, when a flush wrote the first: the row keeps the first one's `sub`); watchers still
    /// get both events, as etcd sends them.
    fn record(&mut self, mut row: LogRow, prev: Option<KeyValue>) {
        let revision = row.kv.mod_revision;
        // A version made earlier in this same revision was never visible: only versions of
        // older revisions move to the history.
        if let Some(prev) = prev.as_ref().filter(|p| p.mod_revision < revision) {
            self.superseded.push(prev.clone());
        }
        self.changed
            .entry(row.kv.key.clone())
            .or_insert(prev.is_some());
        if revision != self.latest {
            self.latest = revision;
            self.next_sub = 0;
            self.flushed_subs.clear();
        }
        row.sub = match self.flushed_subs.get(&row.kv.key) {
            Some(&written) => written,
            None => {
                self.next_sub += 1;
                self.next_sub - 1
            }
        };
        if row.sub > 0 {
            self.shared.insert(revision);
        }
        self.events.push(Event {
            r#type: if row.deleted {
                EventType::Delete
            } else {
                EventType::Put
            } as i32,
            kv: Some(row.kv.clone()),
            prev_kv: prev,
        });
        let key = row.kv.key.clone();
        if let Some(&at) = self.last_row.get(&key)
            && self.log[at].kv.mod_revision == revision
        {
            self.log[at] = row;
            return;
        }
        self.last_row.insert(key, self.log.len());
        self.log.push(row);
    }

    /// Writes every pending change to the database transaction.
    pub async fn flush(&mut self) -> Result<()> {
        if self.log.is_empty() {
            return Ok(());
        }
        let mut changed: Vec<(Bytes, bool)> = self.changed.drain().collect();
        changed.sort_unstable();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        let mut counts: HashMap<Bytes, i64> = HashMap::new();
        for (key, was_alive) in changed {
            let now = self.state.get(&key).cloned().flatten();
            let change = i64::from(now.is_some()) - i64::from(was_alive);
            if change != 0 {
                for prefix in counted_prefixes(&key) {
                    *counts.entry(key.slice_ref(prefix)).or_default() += change;
                }
            }
            match now {
                Some(kv) => live.push(kv),
                None => gone.push(key),
            }
        }
        let mut counts: Vec<(Bytes, i64)> = counts.into_iter().filter(|(_, c)| *c != 0).collect();
        counts.sort_unstable();
        let listed = self.listed_rows();
        let changes = BatchWrite {
            log: &listed,
            superseded: &self.superseded,
            live: &live,
            gone: &gone,
            counts: &counts,
        };
        timed("write", self.txn.write(&changes)).await?;
        for row in self
            .log
            .iter()
            .filter(|row| row.kv.mod_revision == self.latest)
        {
            self.flushed_subs.insert(row.kv.key.clone(), row.sub);
        }
        self.log.clear();
        self.last_row.clear();
        self.superseded.clear();
        Ok(())
    }

    /// The rows of `log` the database keeps: every deletion, and every change of a revision
    /// with more than one (the log alone records their order within the revision). A
    /// revision's only change, a put, is left out; at revision `latest` more may come, so the
    /// row is kept in `unlisted` until they do.
    fn listed_rows(&mut self) -> Vec<LogRow> {
        let shared = &self.shared;
        let mut listed = Vec::with_capacity(self.log.len() + 1);
        if let Some(first) = self.unlisted.take() {
            let revision = first.kv.mod_revision;
            // A later change of the same key at that revision took its `sub`: it is the row.
            let replaced = self
                .log
                .iter()
                .any(|row| row.kv.mod_revision == revision && row.sub == first.sub);
            if !replaced && shared.contains(&revision) {
                listed.push(first);
            } else if !replaced && revision == self.latest {
                self.unlisted = Some(first);
            }
        }
        for row in &self.log {
            let revision = row.kv.mod_revision;
            if row.deleted || shared.contains(&revision) {
                listed.push(row.clone());
            } else if revision == self.latest {
                self.unlisted = Some(row.clone());
            }
        }
        listed
    }

    /// The live keys attached to `lease`, including this batch's changes.
    pub async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>> {
        self.flush().await?;
        timed("keys_with_lease", self.txn.keys_with_lease(lease)).await
    }

    pub async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>> {
        timed("lease", self.txn.lease(lease)).await
    }

    pub async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()> {
        timed("save_lease", self.txn.save_lease(lease)).await
    }

    /// A bookkeeping value other than the revisions.
    pub async fn meta_value(&mut self, name: &'static str) -> Result<Option<i64>> {
        timed("meta", self.txn.meta_value(name)).await
    }

    pub async fn save_meta_value(&mut self, name: &'static str, value: i64) -> Result<()> {
        timed("save_meta", self.txn.save_meta_value(name, value)).await
    }

    pub async fn delete_lease(&mut self, lease: i64) -> Result<()> {
        timed("delete_lease", self.txn.delete_lease(lease)).await
    }

    /// Writes what is pending and the bookkeeping, commits, and returns the batch's events.
    pub async fn commit(mut self, head: i64, compacted: i64) -> Result<Vec<Event>> {
        self.flush().await?;
        timed("save_meta", self.txn.save_meta(head, compacted)).await?;
        timed("commit", self.txn.commit()).await?;
        Ok(self.events)
    }
}

#[async_trait]
impl KvRead for WriteBuffer {
    async fn range(&mut self, range: KeyRange<'_>, rev: i64, limit: i64) -> Result<Vec<KeyValue>> {
        if *range.end == KeyEnd::Single && rev >= self.latest {
            return Ok(self.get(range.key).await?.into_iter().collect());
        }
        self.flush().await?;
        self.txn.range(range, rev, limit).await
    }

    async fn count(&mut self, range: KeyRange<'_>, rev: i64) -> Result<i64> {
        if *range.end == KeyEnd::Single && rev >= self.latest {
            return Ok(i64::from(self.get(range.key).await?.is_some()));
        }
        self.flush().await?;
        self.txn.count(range, rev).await
    }
}
