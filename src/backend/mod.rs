//! The SQL layer: everything etcdshim asks of a database, behind one trait per role.
//!
//! The store above speaks in revisions and key ranges; a backend turns those into SQL for one
//! database. All SQL text lives in the backend modules. Reads at any revision go through
//! [`KvRead`], which both a pooled read connection and the sequencer's write transaction
//! implement, so "what the store looks like at revision R" has exactly one definition.

mod dialect;
mod multirow;
mod network;
mod sqlite;

pub use network::NetworkBackend;
pub use sqlite::SqliteBackend;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::KeyValue;
use crate::proto::mvccpb::Event;

/// The upper end of a key range, decoded from etcd's `range_end` conventions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEnd {
    /// Only the key itself.
    Single,
    /// Every key in `[key, end)`.
    Before(Bytes),
    /// Every key `>= key` (etcd's `range_end = "\0"`).
    Unbounded,
}

impl KeyEnd {
    /// Decodes etcd's `range_end`: empty means the key alone, `"\0"` means no upper bound.
    pub fn from_range_end(range_end: &Bytes) -> KeyEnd {
        match range_end.as_ref() {
            [] => KeyEnd::Single,
            [0] => KeyEnd::Unbounded,
            _ => KeyEnd::Before(range_end.clone()),
        }
    }

    /// Whether `[key, end)` can hold no key at all (an end at or below the start).
    pub fn is_empty_for(&self, key: &[u8]) -> bool {
        matches!(self, KeyEnd::Before(end) if end.as_ref() <= key)
    }

    /// Whether `candidate` lies in `[key, end)`.
    pub fn contains(&self, key: &[u8], candidate: &[u8]) -> bool {
        match self {
            KeyEnd::Single => candidate == key,
            KeyEnd::Before(end) => key <= candidate && candidate < end.as_ref(),
            KeyEnd::Unbounded => key <= candidate,
        }
    }
}

/// The store's bookkeeping as persisted in the database.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub revision: i64,
    pub compacted: i64,
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Sizes reported by Maintenance.Status.
#[derive(Clone, Copy, Debug, Default)]
pub struct DbSize {
    pub allocated: i64,
    pub in_use: i64,
}

/// Reads of the key space as of a revision.
#[async_trait]
pub trait KvRead: Send {
    /// Keys of `[key, end)` alive at `revision`, in bytewise key order; at most `limit` of them
    /// when `limit > 0`.
    async fn range(
        &mut self,
        key: &[u8],
        end: &KeyEnd,
        revision: i64,
        limit: i64,
    ) -> Result<Vec<KeyValue>>;

    /// How many keys of `[key, end)` are alive at `revision`.
    async fn count(&mut self, key: &[u8], end: &KeyEnd, revision: i64) -> Result<i64>;
}

/// One row of the log: a key's new version, or its deletion, whose `kv` holds only the key and
/// the deleting revision (as etcd's DELETE events do). `sub` orders the rows of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub kv: KeyValue,
    pub deleted: bool,
    pub sub: i64,
}

/// A lease as stored: its granted TTL and when it expires (milliseconds since the Unix epoch,
/// so that time keeps counting across restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    pub expires_ms: i64,
}

/// The sequencer's transaction: reads see its own earlier writes; nothing is visible to others
/// before `commit`.
#[async_trait]
pub trait WriteTxn: KvRead {
    /// For a database shared by several processes: the revision and the compacted revision,
    /// read under the lock this transaction holds until it ends. `None` when this process is
    /// the only writer and its own bookkeeping is authoritative.
    fn locked_revisions(&self) -> Option<(i64, i64)> {
        None
    }
    /// The live versions of `keys` at the head; missing keys are absent from the answer.
    async fn current(&mut self, keys: &[Bytes]) -> Result<Vec<KeyValue>>;
    /// Appends `log` (at most one row per key and revision) and sets the live state of keys:
    /// `live` become these versions, `gone` are deleted.
    async fn write(&mut self, log: &[LogRow], live: &[KeyValue], gone: &[Bytes]) -> Result<()>;
    /// The live keys attached to `lease`.
    async fn keys_with_lease(&mut self, lease: i64) -> Result<Vec<KeyValue>>;
    async fn lease(&mut self, lease: i64) -> Result<Option<LeaseRecord>>;
    /// Creates or refreshes a lease.
    async fn save_lease(&mut self, lease: LeaseRecord) -> Result<()>;
    async fn delete_lease(&mut self, lease: i64) -> Result<()>;
    /// Persists the revision counter and the compacted revision.
    async fn save_meta(&mut self, revision: i64, compacted: i64) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A database that holds an etcd key space.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Reads the persisted bookkeeping, creating it on first start.
    async fn load_meta(&self) -> Result<Meta>;
    /// A read handle on a pooled connection.
    async fn reader(&self) -> Result<Box<dyn KvRead>>;
    /// Opens the one write transaction; the caller (the sequencer) never holds two.
    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>>;
    /// Removes the history superseded by the changes in `(after, up_to]` (all at or below the
    /// compacted revision), and records `up_to` as the compaction progress, in one short
    /// transaction. Returns the number of rows removed.
    async fn compact_window(&self, after: i64, up_to: i64) -> Result<u64>;
    /// The revision up to which superseded history has been removed.
    async fn compact_progress(&self) -> Result<i64>;
    /// For a database shared by several processes: its newest revision and compacted revision,
    /// which other processes may have moved. `None` when this process is the only writer.
    async fn latest_revisions(&self) -> Result<Option<(i64, i64)>> {
        Ok(None)
    }
    /// Woken when another process may have committed (PostgreSQL's LISTEN/NOTIFY), so a
    /// follower need not wait for its next poll.
    fn change_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    async fn db_size(&self) -> Result<DbSize>;
    /// Returns unused space to the file system (SQLite's VACUUM, Postgres' VACUUM).
    async fn defragment(&self) -> Result<()>;
    /// The log rows of `[key, end)` with revisions in `[from, to]`, in revision order, at most
    /// `limit` of them, each with the key's previous live version when `with_prev` is set.
    async fn history(
        &self,
        key: &[u8],
        end: &KeyEnd,
        from: i64,
        to: i64,
        limit: i64,
        with_prev: bool,
    ) -> Result<Vec<Event>>;
    async fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>>;
    async fn leases(&self) -> Result<Vec<i64>>;
    /// Leases whose expiry is at or before `now_ms`, soonest first, at most `limit`.
    async fn expired_leases(&self, now_ms: i64, limit: i64) -> Result<Vec<LeaseRecord>>;
    async fn keys_of_lease(&self, lease: i64) -> Result<Vec<Bytes>>;
}

/// How to talk to the datastore (Kine's `--datastore-*`, `--ca-file`, `--cert-file`,
/// `--key-file` and `--slow-sql-threshold` flags).
#[derive(Clone, Debug)]
pub struct DatastoreOptions {
    /// PostgreSQL/MySQL: the most connections the pool opens.
    pub max_open: u32,
    /// PostgreSQL/MySQL: connections kept open while idle.
    pub max_idle: u32,
    /// PostgreSQL/MySQL: replace a connection after this long.
    pub max_lifetime: Option<std::time::Duration>,
    /// Statements slower than this are logged (as warnings, with the statement's text).
    pub slow_sql_threshold: std::time::Duration,
    /// PostgreSQL/MySQL: TLS to the database.
    pub tls: DatabaseTls,
}

/// PEM files for TLS to PostgreSQL or MySQL. Unless the endpoint sets `sslmode` / `ssl-mode`,
/// a CA file turns on verification of the database's certificate and host name, and without
/// one the connection is plain TCP. A certificate and key authenticate etcdshim to the
/// database.
#[derive(Clone, Debug, Default)]
pub struct DatabaseTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl DatabaseTls {
    /// `url` with the TLS files and mode as query parameters, which PostgreSQL and MySQL URLs
    /// both take.
    fn apply(&self, dialect: dialect::Dialect, url: &str) -> String {
        let mut params = Vec::new();
        for (name, file) in [
            ("ssl-ca", &self.ca_file),
            ("ssl-cert", &self.cert_file),
            ("ssl-key", &self.key_file),
        ] {
            if let Some(file) = file {
                params.push(format!("{name}={}", escape_query(&file.to_string_lossy())));
            }
        }
        let names_mode = url.contains("sslmode=") || url.contains("ssl-mode=");
        if !names_mode {
            // With a CA, verify everything. Without one, plain TCP, as Kine does: the drivers'
            // default ("prefer") tries TLS first, and its fallback connection was measured at a
            // tenth of the throughput (responses stalled ~40 ms).
            params.push(
                match (dialect, self.ca_file.is_some()) {
                    (dialect::Dialect::Postgres, true) => "sslmode=verify-full",
                    (dialect::Dialect::Postgres, false) => "sslmode=disable",
                    (dialect::Dialect::Mysql, true) => "ssl-mode=VERIFY_IDENTITY",
                    (dialect::Dialect::Mysql, false) => "ssl-mode=DISABLED",
                }
                .to_string(),
            );
        }
        if params.is_empty() {
            return url.to_string();
        }
        let joiner = if url.contains('?') { '&' } else { '?' };
        format!("{url}{joiner}{}", params.join("&"))
    }
}

/// Percent-encodes what would end a query parameter.
fn escape_query(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '&' | '=' | '#' | '+' | ' ' | '?' => {
                escaped.push_str(&format!("%{:02X}", c as u32))
            }
            c => escaped.push(c),
        }
    }
    escaped
}

impl Default for DatastoreOptions {
    fn default() -> Self {
        DatastoreOptions {
            max_open: 16,
            max_idle: 2,
            max_lifetime: None,
            slow_sql_threshold: std::time::Duration::from_secs(1),
            tls: DatabaseTls::default(),
        }
    }
}

/// The database name used when an endpoint names none (Kine's default).
pub const DEFAULT_DATABASE: &str = "kubernetes";

/// Opens the backend named by a Kine-style endpoint: `sqlite://PATH`,
/// `postgres://user:pass@host:port/db?sslmode=...`, `mysql://user:pass@tcp(host:port)/db` or
/// `mysql://user:pass@host:port/db`. A missing database is created.
pub async fn open(
    endpoint: &str,
    options: DatastoreOptions,
) -> Result<std::sync::Arc<dyn Backend>> {
    if let Some(path) = endpoint.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        return Ok(std::sync::Arc::new(
            SqliteBackend::open(path, options.slow_sql_threshold).await?,
        ));
    }
    let (dialect, url) = if endpoint.starts_with("postgres://")
        || endpoint.starts_with("postgresql://")
    {
        (dialect::Dialect::Postgres, endpoint.to_string())
    } else if endpoint.starts_with("mysql://") {
        (dialect::Dialect::Mysql, mysql_url(endpoint))
    } else {
        return Err(Error::InvalidEndpoint(
            "expected sqlite://PATH, postgres://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@tcp(HOST:PORT)/DB".into(),
        ));
    };
    let database = database_name(&url).unwrap_or(DEFAULT_DATABASE).to_string();
    let url = options.tls.apply(dialect, &url);
    Ok(std::sync::Arc::new(
        NetworkBackend::open(dialect, &url, &database, options).await?,
    ))
}

/// Kine's (Go driver's) `mysql://user:pass@tcp(host:port)/db` as a URL.
fn mysql_url(endpoint: &str) -> String {
    match (endpoint.find("@tcp("), endpoint.rfind(")/")) {
        (Some(open), Some(close)) if close > open => format!(
            "{}@{}{}",
            &endpoint[..open],
            &endpoint[open + 5..close],
            &endpoint[close + 1..]
        ),
        _ => endpoint.to_string(),
    }
}

/// The database a URL names in its path, if any.
fn database_name(url: &str) -> Option<&str> {
    let after_scheme = &url[url.find("://")? + 3..];
    let path = &after_scheme[after_scheme.find('/')? + 1..];
    let name = path.split('?').next().unwrap_or_default();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kine_endpoints_become_urls_with_a_database() {
        assert_eq!(
            mysql_url("mysql://root:pw@tcp(127.0.0.1:3306)/k8s"),
            "mysql://root:pw@127.0.0.1:3306/k8s"
        );
        assert_eq!(
            mysql_url("mysql://root@127.0.0.1:3306/k8s"),
            "mysql://root@127.0.0.1:3306/k8s"
        );
        assert_eq!(
            database_name("postgres://u:p@h:5432/db?sslmode=disable"),
            Some("db")
        );
        assert_eq!(database_name("postgres://u:p@h:5432/"), None);
        assert_eq!(database_name("postgres://u:p@h:5432"), None);
    }

    #[test]
    fn database_tls_files_become_url_parameters() {
        let tls = DatabaseTls {
            ca_file: Some("/etc/ca.pem".into()),
            cert_file: Some("/etc/my cert.pem".into()),
            key_file: None,
        };
        assert_eq!(
            tls.apply(dialect::Dialect::Postgres, "postgres://u@h/db"),
            "postgres://u@h/db?ssl-ca=/etc/ca.pem&ssl-cert=/etc/my%20cert.pem&sslmode=verify-full"
        );
        assert_eq!(
            tls.apply(dialect::Dialect::Mysql, "mysql://u@h/db?ssl-mode=REQUIRED"),
            "mysql://u@h/db?ssl-mode=REQUIRED&ssl-ca=/etc/ca.pem&ssl-cert=/etc/my%20cert.pem"
        );
        assert_eq!(
            DatabaseTls::default().apply(dialect::Dialect::Mysql, "mysql://u@h/db"),
            "mysql://u@h/db?ssl-mode=DISABLED"
        );
        assert_eq!(
            DatabaseTls::default().apply(
                dialect::Dialect::Postgres,
                "postgres://u@h/db?sslmode=require"
            ),
            "postgres://u@h/db?sslmode=require"
        );
    }
}
