//! How to talk to the datastore (Kine's `--datastore-*`, TLS and slow-SQL flags, with Kine's
//! meanings), and what they make of a connection pool and its connections.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::pool::PoolOptions;

use super::sql::connections::Limits;

#[derive(Clone, Debug)]
pub struct DatastoreOptions {
    /// PostgreSQL/MySQL: the most connections the pool opens; 0 means no limit, as in Kine
    /// (here at most [`UNLIMITED_CONNECTIONS`]).
    pub max_open: u32,
    /// PostgreSQL/MySQL: connections kept open while idle; 0 keeps Go's default of 2 (Kine's
    /// meaning), fewer than 0 none.
    pub max_idle: i32,
    /// PostgreSQL/MySQL: replace a connection after this long (`None`: never).
    pub max_lifetime: Option<Duration>,
    /// Statements slower than this are logged at info level, with the statement's text (zero:
    /// none are).
    pub slow_sql_threshold: Duration,
    /// Statements slower than this are logged as warnings, by name (zero: none are).
    pub slow_sql_warning_threshold: Duration,
    /// PostgreSQL/MySQL: TLS to the database.
    pub tls: DatabaseTls,
    /// A `/`-ending prefix gets a live-key counter row once it holds this many keys; a smaller
    /// one is counted through the key index (at most this many keys read).
    pub counted_prefix_min_keys: i64,
}

/// See [`DatastoreOptions::counted_prefix_min_keys`]: an index count of 1,000 keys costs well
/// under a millisecond, and most namespaces of a resource hold fewer keys (a Fleet namespace
/// mostly one), so most counter rows, one per namespace and resource, are not written.
pub const COUNTED_PREFIX_MIN_KEYS: i64 = 1000;

/// How long a statement waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool size that stands for "no limit".
pub const UNLIMITED_CONNECTIONS: u32 = 10_000;

impl Default for DatastoreOptions {
    fn default() -> Self {
        DatastoreOptions {
            max_open: 16,
            max_idle: 0,
            max_lifetime: None,
            slow_sql_threshold: Duration::from_secs(1),
            slow_sql_warning_threshold: Duration::from_secs(5),
            tls: DatabaseTls::default(),
            counted_prefix_min_keys: COUNTED_PREFIX_MIN_KEYS,
        }
    }
}

impl DatastoreOptions {
    /// The most connections open at once, and how many are opened at start.
    fn sizes(&self) -> (u32, u32) {
        let max_open = match self.max_open {
            0 => UNLIMITED_CONNECTIONS,
            n => n.max(2),
        };
        let idle = match self.max_idle {
            0 => 2,
            n => u32::try_from(n).unwrap_or(0),
        };
        (max_open, idle.min(max_open))
    }

    /// The backend's PostgreSQL or MySQL connections, sized as these options say; each new
    /// one runs `on_connect` first.
    pub(super) fn limits(&self, on_connect: Vec<&'static str>) -> Limits {
        let (max, min) = self.sizes();
        Limits {
            max,
            min,
            max_lifetime: self.max_lifetime,
            acquire_timeout: ACQUIRE_TIMEOUT,
            on_connect,
            keep: None,
        }
    }

    /// A sqlx pool sized the same way (reading a Kine database to import).
    pub(super) fn pool<DB: sqlx::Database>(&self) -> PoolOptions<DB> {
        let (max, min) = self.sizes();
        PoolOptions::new()
            .max_connections(max)
            .min_connections(min)
            .max_lifetime(self.max_lifetime)
            .acquire_timeout(ACQUIRE_TIMEOUT)
    }

    /// `options` logging every statement at trace level and slow ones at info level.
    pub(super) fn logged<O: ConnectOptions>(&self, options: O) -> O {
        let slow = match self.slow_sql_threshold.is_zero() {
            true => tracing::log::LevelFilter::Off,
            false => tracing::log::LevelFilter::Info,
        };
        options
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(slow, self.slow_sql_threshold)
    }
}

/// PEM files for TLS to PostgreSQL or MySQL. Unless the endpoint sets `sslmode` / `ssl-mode`,
/// a CA file turns on verification of the database's certificate and host name (or, with
/// `skip_verify`, encryption without verification), and without one the connection is plain
/// TCP. A certificate and key authenticate etcdshim to the database.
#[derive(Clone, Debug, Default)]
pub struct DatabaseTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Kine's `--skip-verify`: encrypt, but do not verify the database's certificate.
    pub skip_verify: bool,
}
