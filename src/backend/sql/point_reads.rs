//! Gets of one key at the head on a shared database (PostgreSQL, MySQL), batched while the
//! database is busy with earlier ones.
//!
//! Where other servers write, a linearizable get must ask the database: one statement reads the
//! revision and the key from one snapshot. With many clients the database then spends its time
//! on what every statement costs (the round trip, binding, executing, and on MariaDB optimizing
//! the prepared statement again), not on the key lookup: one get per statement held reads at
//! about half of etcd's rate on this project's two-core machine (docs/benchmarks.md). So a get
//! that finds [`MAX_RUNNING`] statements of gets already running waits for one of them to end,
//! and every get waiting by then goes in the next statement together, up to
//! [`MAX_ROWS_PER_STATEMENT`] keys (`keys_at_latest`). A get that finds the database idle goes
//! at once: a lone client pays nothing for the batching.
//!
//! This keeps etcd's guarantee. Every get in a statement began before the statement was sent,
//! and the statement's snapshot holds every write committed before it started, so each get
//! sees every write acknowledged before it began, on any server; its header is that
//! snapshot's revision. etcd batches concurrent linearizable reads behind one read index the
//! same way.
//!
//! The statements run on a task of their own, so a get whose client goes away does not stop
//! the batch it is part of, and the others in it are answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::connections::Connections;
use super::driver::{Driver, Value};
use super::multirow::MAX_ROWS_PER_STATEMENT;
use super::rows::{self, LatestKeys};
use super::statements::Statements;
use crate::backend::KeyAtLatest;
use crate::error::{Error, Result};
use crate::metrics::timed;
use crate::proto::KeyValue;

/// Statements of gets running at once. Two keep the database busy while this process decodes
/// one batch and sends the next; more would only split the waiting gets into smaller batches.
pub const MAX_RUNNING: usize = 2;

pub struct PointReads<DB: Driver> {
    reads: Connections<DB>,
    sql: Arc<Statements>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    running: usize,
    waiting: Vec<Waiting>,
}

struct Waiting {
    key: Bytes,
    answer: oneshot::Sender<Result<KeyAtLatest>>,
}

impl<DB: Driver> PointReads<DB> {
    pub fn new(reads: Connections<DB>, sql: Arc<Statements>) -> Arc<PointReads<DB>> {
        Arc::new(PointReads {
            reads,
            sql,
            queue: Mutex::default(),
        })
    }

    /// `key`'s live version at the head, and the head, from one snapshot.
    pub async fn get(self: &Arc<Self>, key: &[u8]) -> Result<KeyAtLatest> {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            key: Bytes::copy_from_slice(key),
            answer,
        };
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.waiting.push(waiting);
            let start = queue.running < MAX_RUNNING;
            if start {
                queue.running += 1;
            }
            start.then(|| queue.take_batch())
        };
        if let Some(batch) = start {
            tokio::spawn(self.clone().run(batch));
        }
        answered.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Runs batches until none is waiting.
    async fn run(self: Arc<Self>, mut batch: Vec<Waiting>) {
        loop {
            let result = self.read(&batch).await;
            answer(batch, result);
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.running -= 1;
                return;
            }
            batch = queue.take_batch();
        }
    }

    async fn read(&self, batch: &[Waiting]) -> Result<LatestKeys> {
        let (statement, size) = self.sql.keys_at_latest.covering(batch.len());
        let mut arguments: Vec<Value<'_>> =
            batch.iter().map(|get| Value::Bytes(&get.key)).collect();
        // Pad to the statement's size with a key already asked for.
        if let Some(last) = batch.last() {
            arguments.resize(size, Value::Bytes(&last.key));
        }
        crate::metrics::metrics()
            .point_read_batch_size
            .observe(batch.len() as f64);
        let mut conn = self.reads.acquire().await?;
        let rows = timed("keys_at_latest", conn.fetch_all(statement, &arguments)).await?;
        rows::keys_at_latest::<DB>(&rows)
    }
}

impl Queue {
    /// The longest-waiting gets, as many as one statement takes.
    fn take_batch(&mut self) -> Vec<Waiting> {
        let size = self.waiting.len().min(MAX_ROWS_PER_STATEMENT);
        self.waiting.drain(..size).collect()
    }
}

/// Gives every get of `batch` its key's version, or the batch's failure.
fn answer(batch: Vec<Waiting>, result: Result<LatestKeys>) {
    let latest = match result {
        Ok(latest) => latest,
        Err(err) => {
            // Logged once for the batch; clients see etcd's unavailable, never the detail.
            tracing::error!(error = %err.detail(), gets = batch.len(), "a batch of gets failed");
            for get in batch {
                let _ = get.answer.send(Err(Error::Unavailable));
            }
            return;
        }
    };
    let live: HashMap<Bytes, KeyValue> = latest
        .live
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    for get in batch {
        let kv = live.get(&get.key).cloned();
        let _ = get.answer.send(Ok(KeyAtLatest {
            revision: latest.revision,
            compacted: latest.compacted,
            kv,
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;
    use std::time::Duration;

    use super::*;
    use crate::backend::sql::connections::Limits;
    use crate::backend::sql::template::{Placeholders, Sql};

    const SCHEMA: [&str; 4] = [
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER)",
        "INSERT INTO meta VALUES ('revision', 40), ('compacted', 7)",
        "CREATE TABLE current (key BLOB PRIMARY KEY, create_revision INTEGER, \
         mod_revision INTEGER, version INTEGER, lease INTEGER, value BLOB)",
        // Even keys are live, odd ones are not.
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 2 FROM n WHERE i < 98) \
         INSERT INTO current SELECT CAST('k' || i AS BLOB), i, i + 1, 2, 0, \
         CAST('v' || i AS BLOB) FROM n",
    ];

    #[tokio::test]
    async fn gets_that_wait_go_together_and_each_gets_its_own_key() {
        let connect = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite::memory:")
            .expect("in-memory SQLite");
        // One connection: an in-memory database lives with its connection.
        let limits = Limits {
            max: 1,
            min: 1,
            max_lifetime: None,
            acquire_timeout: Duration::from_secs(5),
            on_connect: Vec::new(),
            keep: None,
        };
        let connections = Connections::<sqlx::Sqlite>::open(connect, limits)
            .await
            .expect("in-memory SQLite");
        {
            let mut conn = connections.acquire().await.expect("in-memory SQLite");
            for statement in SCHEMA {
                let sql = Sql::render(Placeholders::Question, "key", statement, &[]);
                conn.execute(&sql, &[]).await.expect("schema");
            }
        }
        let sql = Arc::new(Statements::new::<crate::backend::sqlite::Sqlite>(
            crate::backend::options::COUNTED_PREFIX_MIN_KEYS,
        ));
        let reads = PointReads::new(connections, sql);
        let batches_before = crate::metrics::metrics()
            .point_read_batch_size
            .get_sample_count();

        // 150 gets at once, every key twice or more; on this one-thread runtime they all queue
        // before the first statement runs.
        let mut gets = tokio::task::JoinSet::new();
        for n in 0..150 {
            let reads = reads.clone();
            gets.spawn(async move {
                let key = format!("k{}", n % 100);
                (n % 100, reads.get(key.as_bytes()).await)
            });
        }
        let mut answered = 0;
        while let Some(joined) = gets.join_next().await {
            let (n, got) = joined.expect("get task");
            let got = got.expect("get");
            assert_eq!((got.revision, got.compacted), (40, 7));
            match got.kv {
                Some(kv) => {
                    assert_eq!(n % 2, 0, "k{n} is not live");
                    assert_eq!(kv.key, format!("k{n}").as_bytes());
                    assert_eq!(kv.value, format!("v{n}").as_bytes());
                    assert_eq!((kv.create_revision, kv.mod_revision), (n, n + 1));
                }
                None => assert_eq!(n % 2, 1, "k{n} is live"),
            }
            answered += 1;
        }
        assert_eq!(answered, 150);
        let batches = crate::metrics::metrics()
            .point_read_batch_size
            .get_sample_count()
            - batches_before;
        // The first MAX_RUNNING go alone, the other 148 in full statements.
        assert_eq!(batches, 2 + 148u64.div_ceil(MAX_ROWS_PER_STATEMENT as u64));
    }
}
