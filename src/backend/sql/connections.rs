//! The backend's connections to its database, kept without sqlx's pool.
//!
//! sqlx 0.9's pool pings every connection it takes back, and by default every one it hands
//! out: two round trips (to the database server, or for SQLite to the connection's worker
//! thread) around every read and every write batch, two of a point read's three. Here a
//! connection goes back as it is. What the pings were for is covered otherwise: a connection on
//! which a statement failed, or whose transaction did not commit, is closed instead of kept (a
//! fresh one is sure to be sound, and failures are rare), and one past its lifetime, or refused
//! by the owner's check (SQLite's [`super::reopen`]), is replaced before it serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, Database};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::dialect::Dialect;
use super::driver::{Driver, Value};
use super::template::Sql;
use crate::proto::KeyValue;

/// Whether a connection opened this long ago may serve (checked before each use).
pub type KeepCheck = Arc<dyn Fn(Duration) -> bool + Send + Sync>;

/// How long a connection beyond [`Limits::min`] may stay unused before it is closed (sqlx's
/// default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// How many connections, for how long, and what each new one runs first.
pub struct Limits {
    /// The most connections open at once; more callers wait.
    pub max: u32,
    /// Connections opened at start and kept however long they are idle; others are closed
    /// once unused for [`IDLE_TIMEOUT`] (seen when a connection is returned).
    pub min: u32,
    /// A connection older than this is replaced instead of handed out.
    pub max_lifetime: Option<Duration>,
    /// How long a caller waits for a connection (for a free one, then for a new one to open).
    pub acquire_timeout: Duration,
    /// Statements each new connection runs before it serves.
    pub on_connect: Vec<&'static str>,
    pub keep: Option<KeepCheck>,
}

/// A set of connections to one database, shared by clones.
pub struct Connections<DB: Database> {
    shared: Arc<Shared<DB>>,
}

impl<DB: Database> Clone for Connections<DB> {
    fn clone(&self) -> Self {
        Connections {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<DB: Database> {
    connect: Options<DB>,
    limits: Limits,
    /// Free connections, the most recently used last (handed out first: its pages are warm).
    idle: Mutex<Vec<Idle<DB>>>,
    /// One per connection that may be open.
    permits: Arc<Semaphore>,
    /// The serial number of the next connection opened.
    serials: AtomicU64,
}

struct Idle<DB: Database> {
    conn: DB::Connection,
    opened: Instant,
    serial: u64,
    since: Instant,
}

impl<DB: Driver> Connections<DB> {
    /// Opens `limits.min` connections (at least one, so that a wrong endpoint fails here).
    pub async fn open(
        connect: Options<DB>,
        limits: Limits,
    ) -> Result<Connections<DB>, sqlx::Error> {
        let max = limits.max.max(1);
        let connections = Connections {
            shared: Arc::new(Shared {
                connect,
                permits: Arc::new(Semaphore::new(max as usize)),
                idle: Mutex::new(Vec::new()),
                limits,
                serials: AtomicU64::new(0),
            }),
        };
        // Held together, so each acquire opens a new one; all go idle when dropped.
        let mut opened = Vec::new();
        for _ in 0..connections.shared.limits.min.clamp(1, max) {
            opened.push(connections.acquire().await?);
        }
        drop(opened);
        Ok(connections)
    }

    /// A connection to use alone until the returned handle is dropped.
    pub async fn acquire(&self) -> Result<Held<DB>, sqlx::Error> {
        let shared = &self.shared;
        let deadline = tokio::time::Instant::now() + shared.limits.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, shared.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        self.hand_out(permit, deadline).await
    }

    /// A connection if one is free now (or may be opened now), without waiting for one.
    pub async fn try_acquire(&self) -> Result<Option<Held<DB>>, sqlx::Error> {
        let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + self.shared.limits.acquire_timeout;
        self.hand_out(permit, deadline).await.map(Some)
    }

    /// The connection `permit` entitles to: the most recently used idle one that may still
    /// serve, or a new one opened before `deadline`.
    async fn hand_out(
        &self,
        permit: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
    ) -> Result<Held<DB>, sqlx::Error> {
        let shared = &self.shared;
        while let Some(idle) = shared.idle().pop() {
            if shared.may_serve(idle.opened) {
                let opened = (idle.opened, idle.serial);
                return Ok(Held::new(idle.conn, opened, permit, shared.clone()));
            }
            close(idle.conn, None);
        }
        let conn = tokio::time::timeout_at(deadline, shared.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let serial = shared.serials.fetch_add(1, Ordering::Relaxed);
        Ok(Held::new(
            conn,
            (Instant::now(), serial),
            permit,
            shared.clone(),
        ))
    }
}

impl<DB: Driver> Shared<DB> {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle<DB>>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn may_serve(&self, opened: Instant) -> bool {
        let age = opened.elapsed();
        self.limits.max_lifetime.is_none_or(|max| age < max)
            && self.limits.keep.as_ref().is_none_or(|keep| keep(age))
    }

    async fn connect(&self) -> Result<DB::Connection, sqlx::Error> {
        let mut conn = self.connect.connect().await?;
        for statement in &self.limits.on_connect {
            DB::run_plain(&mut conn, statement).await?;
        }
        Ok(conn)
    }
}

/// Closes `conn` in the background, keeping `permit` (its place among the open connections)
/// until it is closed: a new connection must not wait on locks the old one still holds.
fn close<C: Connection + 'static>(conn: C, permit: Option<OwnedSemaphorePermit>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let _ = conn.close().await;
                drop(permit);
            });
        }
        Err(_) => drop(conn),
    }
}

/// A connection in use, returned to its set when dropped. A statement that fails on it, or a
/// transaction begun and not committed, has it closed instead.
pub struct Held<DB: Driver> {
    conn: Option<DB::Connection>,
    opened: Instant,
    /// Which connection this is: no other connection of its set ever has its number.
    serial: u64,
    sound: bool,
    in_transaction: bool,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared<DB>>,
}

impl<DB: Driver> Held<DB> {
    /// `opened`: when the connection was opened, and its serial number.
    fn new(
        conn: DB::Connection,
        (opened, serial): (Instant, u64),
        permit: OwnedSemaphorePermit,
        shared: Arc<Shared<DB>>,
    ) -> Held<DB> {
        Held {
            conn: Some(conn),
            opened,
            serial,
            sound: true,
            in_transaction: false,
            permit: Some(permit),
            shared,
        }
    }

    /// Which connection this is: no other connection of its set ever has its number.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// The connection itself, for what is not a statement of the backend (migrations). A
    /// failure through it is not noticed: the caller gives up on the connection then.
    pub fn raw(&mut self) -> &mut DB::Connection {
        self.conn
            .as_mut()
            .expect("a held connection is present until it is dropped")
    }

    fn noted<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if result.is_err() {
            self.sound = false;
        }
        result
    }

    pub async fn fetch_all(
        &mut self,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        let result = DB::fetch_all(self.raw(), sql, arguments).await;
        self.noted(result)
    }

    /// Runs `sql`, a page of a range, the dialect's way.
    pub async fn page<D: Dialect<Db = DB>>(
        &mut self,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<Vec<KeyValue>, sqlx::Error> {
        let result = D::page(self.raw(), sql, arguments).await;
        self.noted(result)
    }

    pub async fn execute(
        &mut self,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        let result = DB::execute(self.raw(), sql, arguments).await;
        self.noted(result)
    }

    /// Begins the sequencer's write transaction, the dialect's way (see [`Dialect::Writer`]).
    pub async fn begin_write<D: Dialect<Db = DB>>(
        &mut self,
        writer: &mut D::Writer,
    ) -> Result<(), sqlx::Error> {
        self.in_transaction = true;
        let result = D::begin_write(self.raw(), writer).await;
        self.noted(result)
    }

    /// Runs a write statement of the sequencer's transaction, the dialect's way.
    pub async fn write<D: Dialect<Db = DB>>(
        &mut self,
        writer: &D::Writer,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        let result = D::write(self.raw(), writer, sql, arguments).await;
        self.noted(result)
    }

    /// Reads live versions of keys in the sequencer's transaction, the dialect's way.
    pub async fn live_versions<D: Dialect<Db = DB>>(
        &mut self,
        writer: &D::Writer,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<Vec<KeyValue>, sqlx::Error> {
        let result = D::live_versions(self.raw(), writer, sql, arguments).await;
        self.noted(result)
    }

    /// Begins a transaction with `statement` (`BEGIN`, or SQLite's `BEGIN IMMEDIATE`).
    pub async fn begin(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        self.in_transaction = true;
        let result = DB::run_plain(self.raw(), statement).await;
        self.noted(result)
    }

    pub async fn commit(&mut self) -> Result<(), sqlx::Error> {
        let result = DB::run_plain(self.raw(), "COMMIT").await;
        if result.is_ok() {
            self.in_transaction = false;
        }
        self.noted(result)
    }

    /// Commits the sequencer's write transaction, the dialect's way.
    pub async fn commit_write<D: Dialect<Db = DB>>(
        &mut self,
        writer: &D::Writer,
    ) -> Result<(), sqlx::Error> {
        let result = D::commit_write(self.raw(), writer).await;
        if result.is_ok() {
            self.in_transaction = false;
        }
        self.noted(result)
    }
}

impl<DB: Driver> Drop for Held<DB> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.sound && !self.in_transaction && self.shared.may_serve(self.opened) {
            let mut idle = self.shared.idle();
            idle.push(Idle {
                conn,
                opened: self.opened,
                serial: self.serial,
                since: Instant::now(),
            });
            // The least recently used come first.
            while idle.len() > self.shared.limits.min as usize
                && idle[0].since.elapsed() > IDLE_TIMEOUT
            {
                close(idle.remove(0).conn, None);
            }
            drop(idle);
            // The permit goes only now, so a caller it wakes finds the connection idle.
            drop(self.permit.take());
        } else {
            if !self.sound {
                tracing::info!("closing a database connection on which a statement failed");
            }
            close(conn, self.permit.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::backend::sql::template::{Placeholders, Sql};

    fn sql(text: &str) -> Sql {
        Sql::render(Placeholders::Question, "key", text, &[])
    }

    /// A temporary table lives with its connection, so finding it tells the same connection
    /// came back.
    async fn same_connection(held: &mut Held<sqlx::Sqlite>) -> bool {
        held.fetch_all(&sql("SELECT COUNT(*) FROM marker"), &[])
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn connections_come_back_unless_they_failed_or_left_a_transaction_open() {
        let refuse = Arc::new(AtomicBool::new(false));
        let keep: KeepCheck = {
            let refuse = refuse.clone();
            Arc::new(move |_| !refuse.load(Ordering::SeqCst))
        };
        let connect = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite::memory:")
            .expect("in-memory SQLite");
        let connections = Connections::<sqlx::Sqlite>::open(
            connect,
            Limits {
                max: 1,
                min: 1,
                max_lifetime: None,
                acquire_timeout: Duration::from_secs(5),
                on_connect: Vec::new(),
                keep: Some(keep),
            },
        )
        .await
        .expect("in-memory SQLite");
        let mark = sql("CREATE TEMP TABLE marker (x INTEGER)");

        let mut held = connections.acquire().await.expect("in-memory SQLite");
        held.execute(&mark, &[]).await.expect("in-memory SQLite");
        let first = held.serial();
        drop(held);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        assert!(
            same_connection(&mut held).await,
            "a sound connection is reused"
        );
        assert_eq!(held.serial(), first, "and keeps its serial number");
        assert!(
            held.fetch_all(&sql("SELECT nothing FROM nowhere"), &[])
                .await
                .is_err()
        );
        drop(held);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        assert!(
            !same_connection(&mut held).await,
            "one whose statement failed is not"
        );
        // SQLite's write transactions keep the handle of a connection by this number.
        assert_ne!(
            held.serial(),
            first,
            "and its successor has a number of its own"
        );
        drop(held);

        let mut held = connections.acquire().await.expect("in-memory SQLite");
        held.execute(&mark, &[]).await.expect("in-memory SQLite");
        held.begin("BEGIN").await.expect("in-memory SQLite");
        drop(held);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        assert!(
            !same_connection(&mut held).await,
            "nor one left in a transaction"
        );
        drop(held);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        held.execute(&mark, &[]).await.expect("in-memory SQLite");
        held.begin("BEGIN").await.expect("in-memory SQLite");
        held.commit().await.expect("in-memory SQLite");
        drop(held);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        assert!(same_connection(&mut held).await, "a committed one is");
        drop(held);

        refuse.store(true, Ordering::SeqCst);
        let mut held = connections.acquire().await.expect("in-memory SQLite");
        assert!(
            !same_connection(&mut held).await,
            "nor one the check refuses"
        );
    }
}
