//! The sequencer's working copy during one batch.
//!
//! A database round trip per statement would cap the sequencer at a few thousand writes a
//! second. So a batch first fetches, in one query, the live version of every single key its
//! requests name; requests then read and write that in-memory state; and the changes reach the
//! database as a few multi-row statements when the batch commits. Reads the state cannot answer
//! (key ranges, past revisions) first flush the pending changes, then ask the database, which
//! then sees every earlier write of the batch.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::{Backend, Change, KeyEnd, KvRead, WriteTxn};
use crate::error::Result;
use crate::proto::KeyValue;

pub(crate) struct WriteBuffer {
    txn: Box<dyn WriteTxn>,
    /// The newest version of every key read or written in this batch (`None`: no live key).
    state: HashMap<Bytes, Option<KeyValue>>,
    /// Log rows not yet written, in order.
    log: Vec<Change>,
    /// Where each key's last unwritten row is in `log`.
    last_row: HashMap<Bytes, usize>,
    /// Keys whose live state changed since the last flush.
    dirty: Vec<Bytes>,
    /// The newest revision written in this batch (or the head before it).
    latest: i64,
}

impl WriteBuffer {
    pub async fn begin(backend: &dyn Backend, head: i64) -> Result<WriteBuffer> {
        Ok(WriteBuffer {
            txn: backend.begin_write().await?,
            state: HashMap::new(),
            log: Vec::new(),
            last_row: HashMap::new(),
            dirty: Vec::new(),
            latest: head,
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
        let found = self.txn.current(&keys).await?;
        for key in keys {
            self.state.insert(key, None);
        }
        for kv in found {
            self.state.insert(kv.key.clone(), Some(kv));
        }
        Ok(())
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

    pub fn put(&mut self, kv: KeyValue) {
        self.record(Change::Put(kv.clone()));
        self.set_state(kv.key.clone(), Some(kv));
    }

    pub fn delete(&mut self, key: Bytes, revision: i64) {
        self.record(Change::Delete {
            key: key.clone(),
            revision,
        });
        self.set_state(key, None);
    }

    fn set_state(&mut self, key: Bytes, state: Option<KeyValue>) {
        self.state.insert(key.clone(), state);
        self.dirty.push(key);
    }

    /// Appends a log row; a second change of one key at one revision replaces the first,
    /// as only the last is visible once the revision commits.
    fn record(&mut self, change: Change) {
        self.latest = self.latest.max(change.revision());
        if let Some(&at) = self.last_row.get(change.key())
            && self.log[at].revision() == change.revision()
        {
            self.log[at] = change;
            return;
        }
        self.last_row.insert(change.key().clone(), self.log.len());
        self.log.push(change);
    }

    /// Writes every pending change to the database transaction.
    pub async fn flush(&mut self) -> Result<()> {
        if self.log.is_empty() {
            return Ok(());
        }
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for key in self.dirty.drain(..) {
            match self.state.get(&key) {
                Some(Some(kv)) => live.push(kv.clone()),
                _ => gone.push(key),
            }
        }
        self.txn.write(&self.log, &live, &gone).await?;
        self.log.clear();
        self.last_row.clear();
        Ok(())
    }

    pub async fn lease_exists(&mut self, lease: i64) -> Result<bool> {
        self.txn.lease_exists(lease).await
    }

    /// Writes what is pending, the bookkeeping, and commits.
    pub async fn commit(mut self, head: i64, compacted: i64) -> Result<()> {
        self.flush().await?;
        self.txn.save_meta(head, compacted).await?;
        self.txn.commit().await
    }
}

#[async_trait]
impl KvRead for WriteBuffer {
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>> {
        if *end == KeyEnd::Single && revision >= self.latest {
            return Ok(self.get(key).await?.into_iter().collect());
        }
        self.flush().await?;
        self.txn.range(key, end, revision, limit).await
    }

    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64> {
        if *end == KeyEnd::Single && revision >= self.latest {
            return Ok(i64::from(self.get(key).await?.is_some()));
        }
        self.flush().await?;
        self.txn.count(key, end, revision).await
    }
}
