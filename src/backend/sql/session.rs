//! A connection in use: a pooled read connection, or the sequencer's write transaction. Both
//! read the key space through the same [`KvRead`] implementation, so "what the store looks like
//! at revision R" has exactly one definition, whichever connection asks.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Database;

use super::connections::Held;
use super::counted::CountedPrefixes;
use super::dialect::Dialect;
use super::driver::{Driver as _, Value};
use super::rowid_ranges::{RowidRanges, range_end};
use super::rows;
use super::statements::{RangeArgs, Statements, limit_or_all};
use super::template::{self, Sql};
use crate::backend::{BatchWrite, KeyEnd, KeyRange, KvRead, LeaseRecord, WriteTxn};
use crate::error::Result;
use crate::metrics::timed;
use crate::proto::KeyValue;

pub struct Session<D: Dialect> {
    conn: Held<D::Db>,
    sql: Arc<Statements>,
    /// For a write transaction on a shared database: the revision and compacted revision read
    /// under its lock.
    locked: Option<(i64, i64)>,
    /// The prefixes known to have a counter row, shared by the backend's write transactions.
    counted: Arc<CountedPrefixes>,
    /// Prefixes this transaction found or gave a counter row: known once it commits.
    counted_here: Vec<Bytes>,
    /// The next rowid of each resource's range of `current` (where the dialect uses them).
    rowids: Arc<RowidRanges>,
    /// What a write transaction's statements need besides the connection.
    writer: D::Writer,
    dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> Session<D> {
    pub fn new(
        conn: Held<D::Db>,
        sql: Arc<Statements>,
        locked: Option<(i64, i64)>,
        counted: Arc<CountedPrefixes>,
        rowids: Arc<RowidRanges>,
    ) -> Session<D> {
        Session {
            conn,
            sql,
            locked,
            counted,
            counted_here: Vec::new(),
            rowids,
            writer: D::Writer::default(),
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> Session<D> {
    /// This session as the sequencer's write transaction, begun with `writer`.
    pub fn writing(self, writer: D::Writer) -> Session<D> {
        Session { writer, ..self }
    }

    /// Applies a batch's changes of live keys per prefix, after its keys are written: a
    /// prefix with a counter row adds its change; one without gets a row, with its exact
    /// count, once it holds `counted_prefix_min_keys` keys (counted up to that many).
    async fn write_counts(&mut self, changes: &[(Bytes, i64)]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let sql = self.sql.clone();
        let min_keys = sql.counted_prefix_min_keys;
        let (known, unknown): (Vec<_>, Vec<_>) = changes
            .iter()
            .cloned()
            .partition(|(prefix, _)| self.counted.contains(prefix));
        let mut counted: std::collections::HashSet<Bytes> =
            known.into_iter().map(|(prefix, _)| prefix).collect();
        for (statement, chunk) in sql.counted_of.chunks(&unknown) {
            let arguments: Vec<Value> = chunk.iter().map(|(p, _)| Value::Bytes(p)).collect();
            let found = timed("counted_of", self.conn.fetch_all(statement, &arguments)).await?;
            for row in found {
                let prefix = Bytes::from(D::Db::bytes(&row, 0)?);
                self.counted_here.push(prefix.clone());
                counted.insert(prefix);
            }
        }
        // Without a row a prefix held fewer than `min_keys` keys before this batch, so it holds
        // fewer than `min_keys + change` now: counted up to that, the count is exact.
        let growing: Vec<(&Bytes, Vec<u8>, i64)> = changes
            .iter()
            .filter(|(prefix, change)| *change > 0 && !counted.contains(prefix.as_ref()))
            .map(|(prefix, change)| (prefix, prefix_end(prefix), min_keys + change))
            .collect();
        let mut rows: Vec<(Bytes, i64)> = changes
            .iter()
            .filter(|(prefix, _)| counted.contains(prefix.as_ref()))
            .cloned()
            .collect();
        for (statement, chunk) in sql.live_up_to.chunks(&growing) {
            let mut arguments = Vec::with_capacity(chunk.len() * 4);
            for (ordinal, (prefix, end, limit)) in chunk.iter().enumerate() {
                arguments.extend([
                    Value::Int(ordinal as i64),
                    Value::Bytes(prefix),
                    Value::Bytes(end),
                    Value::Int(*limit),
                ]);
            }
            let counted = timed("count_growing", self.conn.fetch_all(statement, &arguments));
            for row in counted.await? {
                let live = D::Db::int(&row, 1)?;
                let at = usize::try_from(D::Db::int(&row, 0)?).ok();
                if let Some((prefix, _, _)) = at.and_then(|at| chunk.get(at))
                    && live >= min_keys
                {
                    rows.push(((*prefix).clone(), live));
                    self.counted_here.push((*prefix).clone());
                }
            }
        }
        for (statement, chunk) in sql.add_counts.chunks(&rows) {
            let mut arguments = Vec::with_capacity(chunk.len() * 2);
            for (prefix, change) in chunk {
                arguments.extend([Value::Bytes(prefix), Value::Int(*change)]);
            }
            self.conn
                .write::<D>(&self.writer, statement, &arguments)
                .await?;
        }
        Ok(())
    }

    /// A rowid in its resource's range for each live version, reading the last rowid of each
    /// range this server has not written to yet.
    async fn rowids_for(&mut self, live: &[KeyValue]) -> Result<Vec<i64>> {
        let keys = || live.iter().map(|kv| kv.key.as_ref());
        for range in self.rowids.unknown(keys()) {
            let arguments = [Value::Int(range), Value::Int(range_end(range))];
            let rows = self
                .conn
                .fetch_all(&self.sql.last_rowid, &arguments)
                .await?;
            let last = rows.first().map(|row| D::Db::int(row, 0)).transpose()?;
            self.rowids.found(range, last);
        }
        Ok(self.rowids.assign(keys()))
    }
}

/// The end of a `/`-ending prefix's range: the prefix with its last byte raised by one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        // A counted prefix ends in `/`, which has a successor.
        *last = last.saturating_add(1);
    }
    end
}

/// The one number a statement selects.
pub fn single_int<D: Dialect>(rows: &[<D::Db as Database>::Row]) -> Result<i64> {
    match rows.first() {
        Some(row) => Ok(D::Db::int(row, 0)?),
        None => Err(sqlx::Error::RowNotFound.into()),
    }
}

#[async_trait]
impl<D: Dialect> KvRead for Session<D> {
    async fn range(&mut self, range: KeyRange<'_>, rev: i64, limit: i64) -> Result<Vec<KeyValue>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let args = RangeArgs {
            rev,
            limit: limit_or_all(limit),
            ..RangeArgs::new(range)
        };
        let page = &self.sql.range(range.end).page;
        let arguments = args.values();
        let mut kvs = match range.end {
            // One key, at most one row: sqlx's cache of prepared statements serves it best.
            KeyEnd::Single => {
                let fetched = timed("range", self.conn.fetch_all(page, &arguments)).await?;
                fetched
                    .iter()
                    .map(rows::key_value::<D::Db>)
                    .collect::<Result<Vec<_>, _>>()?
            }
            _ => timed("range", self.conn.page::<D>(page, &arguments)).await?,
        };
        // Both parts come sorted and hold disjoint keys; merge them and cut to the limit.
        kvs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        if limit > 0 {
            kvs.truncate(limit as usize);
        }
        Ok(kvs)
    }

    async fn count(&mut self, range: KeyRange<'_>, rev: i64) -> Result<i64> {
        if range.is_empty() {
            return Ok(0);
        }
        let args = RangeArgs {
            rev,
            ..RangeArgs::new(range)
        };
        let statements = self.sql.range(range.end);
        let count = match range.is_counted_prefix() {
            true => &statements.prefix_count,
            false => &statements.count,
        };
        let rows = timed("count", self.conn.fetch_all(count, &args.values())).await?;
        single_int::<D>(&rows)
    }
}

/// The columns of key versions, `key, create_revision, mod_revision, version, lease, value`
/// per version (as `current` and `history` both take them).
fn version_arguments<D: Dialect>(versions: &[KeyValue]) -> Vec<Value<'_>> {
    versions_with_rowids::<D>(versions, &[])
}

/// [`version_arguments`], each version's row led by its rowid where `rowids` has one.
fn versions_with_rowids<'a, D: Dialect>(
    versions: &'a [KeyValue],
    rowids: &[i64],
) -> Vec<Value<'a>> {
    let mut arguments = Vec::with_capacity(versions.len() * 7);
    for (at, kv) in versions.iter().enumerate() {
        if let Some(rowid) = rowids.get(at) {
            arguments.push(Value::Int(*rowid));
        }
        // NULL for a number that is its default, where the dialect stores defaults so: each
        // reads back exactly (`rows::with_defaults`).
        let stored = |value: i64, default: i64| match D::NULL_DEFAULTS && value == default {
            true => Value::Null,
            false => Value::Int(value),
        };
        arguments.extend([
            Value::Bytes(&kv.key),
            stored(kv.create_revision, kv.mod_revision),
            Value::Int(kv.mod_revision),
            stored(kv.version, 1),
            stored(kv.lease, 0),
            Value::Bytes(&kv.value),
        ]);
    }
    arguments
}

/// The most statements of a batch's changes sent as one query: one per table when each
/// table's rows fit one multi-row statement, as a small batch's do.
const MAX_JOINED: usize = 5;

/// The statements that write `changes`, each with its arguments: the log rows, the replaced
/// versions, the live versions (with `rowids`, one per live version, where the dialect takes
/// them), the deleted keys and the counters, in that order.
fn write_statements<'a, D: Dialect>(
    sql: &'a Statements,
    changes: &BatchWrite<'a>,
    rowids: &[i64],
) -> Vec<(&'a Sql, Vec<Value<'a>>)> {
    let mut statements = Vec::new();
    for (statement, chunk) in sql.insert_log.chunks(changes.log) {
        let mut arguments = Vec::with_capacity(chunk.len() * 4);
        for row in chunk {
            arguments.extend([
                Value::Int(row.kv.mod_revision),
                Value::Int(row.sub),
                Value::Bytes(&row.kv.key),
                Value::Int(i64::from(row.deleted)),
            ]);
        }
        statements.push((statement, arguments));
    }
    for (statement, chunk) in sql.insert_history.chunks(changes.superseded) {
        statements.push((statement, version_arguments::<D>(chunk)));
    }
    let mut rowids = rowids;
    for (statement, chunk) in sql.upsert_current.chunks(changes.live) {
        let (these, rest) = rowids.split_at(chunk.len().min(rowids.len()));
        rowids = rest;
        statements.push((statement, versions_with_rowids::<D>(chunk, these)));
    }
    for (statement, chunk) in sql.delete_current.chunks(changes.gone) {
        statements.push((
            statement,
            chunk.iter().map(|key| Value::Bytes(key)).collect(),
        ));
    }
    statements
}

/// The sequencer's write transaction (a session whose connection began one).
#[async_trait]
impl<D: Dialect> WriteTxn for Session<D> {
    fn locked_revisions(&self) -> Option<(i64, i64)> {
        self.locked
    }

    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>> {
        let mut found = Vec::with_capacity(keys.len());
        for (statement, chunk) in self.sql.current_of_keys.chunks(keys) {
            let arguments: Vec<Value> = chunk.iter().map(|key| Value::Bytes(key)).collect();
            found.extend(
                self.conn
                    .live_versions::<D>(&self.writer, statement, &arguments)
                    .await?,
            );
        }
        Ok(found)
    }

    async fn write(&mut self, changes: &BatchWrite<'_>) -> Result<()> {
        let rowids = match D::ROWID_RANGES {
            true => self.rowids_for(changes.live).await?,
            false => Vec::new(),
        };
        let statements = write_statements::<D>(&self.sql, changes, &rowids);
        // A small batch's statements go together where the driver allows it: on SQLite each
        // call is a round trip to the connection's worker thread. A larger one's are many
        // chunk sizes, which would fill the statement cache with one-off joins.
        if D::JOINED_STATEMENTS && statements.len() <= MAX_JOINED {
            let (sql, arguments) = template::joined(&statements);
            self.conn.write::<D>(&self.writer, &sql, &arguments).await?;
            return self.write_counts(changes.counts).await;
        }
        for (statement, arguments) in &statements {
            self.conn
                .write::<D>(&self.writer, statement, arguments)
                .await?;
        }
        self.write_counts(changes.counts).await
    }

    async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>> {
        let rows = self
            .conn
            .fetch_all(&self.sql.live_of_lease, &[Value::Int(lease)])
            .await?;
        Ok(rows
            .iter()
            .map(rows::key_value::<D::Db>)
            .collect::<Result<_, _>>()?)
    }

    async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>> {
        let rows = self
            .conn
            .fetch_all(&self.sql.lease, &[Value::Int(lease)])
            .await?;
        rows.first().map(rows::lease::<D::Db>).transpose()
    }

    async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()> {
        let arguments = [
            Value::Int(lease.id),
            Value::Int(lease.ttl),
            Value::Int(lease.expires_ms),
        ];
        self.conn.execute(&self.sql.save_lease, &arguments).await?;
        Ok(())
    }

    async fn delete_lease(&mut self, lease: i64) -> Result<()> {
        self.conn
            .execute(&self.sql.delete_lease, &[Value::Int(lease)])
            .await?;
        Ok(())
    }

    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()> {
        let arguments = [Value::Int(revision), Value::Int(compacted)];
        self.conn
            .write::<D>(&self.writer, &self.sql.save_meta, &arguments)
            .await?;
        Ok(())
    }

    async fn meta_value(&mut self, name: &'static str) -> Result<Option<i64>> {
        let rows = self
            .conn
            .fetch_all(&self.sql.meta_value, &[Value::Text(name)])
            .await?;
        rows.first().map(|row| Ok(D::Db::int(row, 0)?)).transpose()
    }

    async fn save_meta_value(&mut self, name: &'static str, value: i64) -> Result<()> {
        let arguments = [Value::Text(name), Value::Int(value)];
        self.conn
            .execute(&self.sql.save_meta_value, &arguments)
            .await?;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.commit_write::<D>(&self.writer).await?;
        self.counted
            .add_committed(std::mem::take(&mut self.counted_here));
        Ok(())
    }
}
