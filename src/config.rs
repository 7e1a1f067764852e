//! The command line, with Kine's flag names so etcdshim drops in where Kine ran.

use clap::{Parser, Subcommand};

use std::path::PathBuf;
use std::time::Duration;

use crate::duration::{parse_duration, parse_interval};
use crate::server::{DEFAULT_ETCD_VERSION, ServerOptions, TlsFiles};
use crate::store::{CompactionOptions, DatabaseTls, DatastoreOptions, StoreOptions};

/// An etcd v3 server that keeps its data in SQL.
#[derive(Debug, Parser)]
#[command(name = "etcdshim", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the etcd v3 API (the default when no command is given).
    Serve,
    /// Measure any etcd v3 endpoint (etcd, etcdshim, or another shim).
    Bench(crate::bench::BenchArgs),
    /// Copy a Kine database or an etcd endpoint into the empty datastore --endpoint names,
    /// keeping every key's revisions, version and lease.
    Import(crate::importer::ImportArgs),
}

/// The serving flags: Kine's whole command line (k3s-io/kine `pkg/app/app.go`) with Kine's
/// meanings, and etcdshim's own. Where a default differs from Kine's, the README says why.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the etcd v3 gRPC API on: HOST:PORT (`:PORT` is every interface), or
    /// unix:///path/to/socket.
    #[arg(long, default_value = "127.0.0.1:2379", global = true)]
    pub listen_address: String,

    /// Datastore to keep the data in: sqlite://PATH (the file and its folder are created),
    /// postgres://USER:PASS@HOST:PORT/DB?sslmode=..., mysql://USER:PASS@tcp(HOST:PORT)/DB or
    /// mysql://USER:PASS@HOST:PORT/DB. A missing database is created (default name kubernetes).
    #[arg(long, default_value = "sqlite://./db/state.db", global = true)]
    pub endpoint: String,

    /// etcd version reported to clients by Maintenance.Status; kube-apiserver turns on its
    /// watch-progress features only for 3.5.13 and later.
    #[arg(long, default_value = DEFAULT_ETCD_VERSION, global = true)]
    pub emulated_etcd_version: String,

    /// How often watches created with progress_notify get a progress notification when they
    /// have no events to send (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_interval, global = true)]
    pub watch_progress_notify_interval: Duration,

    /// Serve clients over TLS with this certificate (PEM); needs --server-key-file.
    #[arg(long, requires = "server_key_file", global = true)]
    pub server_cert_file: Option<PathBuf>,

    /// The private key (PEM) of --server-cert-file.
    #[arg(long, requires = "server_cert_file", global = true)]
    pub server_key_file: Option<PathBuf>,

    /// Demand client certificates signed by this CA (PEM); needs --server-cert-file.
    #[arg(long, requires = "server_cert_file", global = true)]
    pub trusted_ca_file: Option<PathBuf>,

    /// Serve Prometheus metrics at ADDRESS/metrics; 0 turns them off. Unset, metrics go to
    /// 127.0.0.1:8080 if it is free (a warning says so when it is not); an address given here
    /// that cannot be bound stops the start.
    #[arg(long, global = true)]
    pub metrics_bind_address: Option<String>,

    /// Kine's pprof handlers (a Go profiler) have no counterpart; accepted with a warning.
    #[arg(long, global = true)]
    pub metrics_enable_profiling: bool,

    /// Serve metrics over plain HTTP even when the API is served over TLS (by default metrics
    /// use the API's certificate, key and client CA, as in Kine).
    #[arg(long, global = true)]
    pub metrics_ignore_tls_config: bool,

    /// The most concurrent gRPC streams (requests, watch and keep-alive streams) per client
    /// connection.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONCURRENT_STREAMS, global = true)]
    pub max_concurrent_streams: u32,

    /// The most watches one watch stream may hold; more are refused with a reason.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_WATCHES_PER_STREAM, global = true)]
    pub max_watches_per_stream: usize,

    /// Log SQL statements slower than this at info level, with the statement's text; 0 turns
    /// it off.
    #[arg(long, default_value = "1s", value_parser = parse_duration, global = true)]
    pub slow_sql_threshold: Duration,

    /// Log SQL statements slower than this as warnings; 0 turns it off.
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    pub slow_sql_warning_threshold: Duration,

    /// Log lines as plain text (`plain`, or `text`) or as JSON objects, one per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,

    /// Log everything etcdshim does (trace level), as Kine's --debug; RUST_LOG, when set,
    /// decides instead.
    #[arg(long, global = true)]
    pub debug: bool,

    /// PostgreSQL/MySQL: verify the database's certificate against this CA (PEM); turns on
    /// full verification unless the endpoint sets sslmode / ssl-mode.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,

    /// PostgreSQL/MySQL: client certificate (PEM) presented to the database.
    #[arg(long, requires = "key_file", global = true)]
    pub cert_file: Option<PathBuf>,

    /// PostgreSQL/MySQL: the private key (PEM) of --cert-file.
    #[arg(long, requires = "cert_file", global = true)]
    pub key_file: Option<PathBuf>,

    /// PostgreSQL/MySQL: encrypt the connection but do not verify the database's certificate
    /// (sslmode=require / ssl-mode=REQUIRED, unless the endpoint sets a mode).
    #[arg(long, global = true)]
    pub skip_verify: bool,

    /// PostgreSQL/MySQL: the most connections the pool opens; 0 means no limit.
    #[arg(long, default_value_t = 16, global = true)]
    pub datastore_max_open_connections: u32,

    /// PostgreSQL/MySQL: connections kept open while idle; 0 keeps 2, fewer than 0 none.
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        global = true
    )]
    pub datastore_max_idle_connections: i32,

    /// PostgreSQL/MySQL: close and replace a connection after this long (e.g. 30m); 0 keeps
    /// connections for as long as they work.
    #[arg(long, default_value = "0", value_parser = parse_duration, global = true)]
    pub datastore_connection_max_lifetime: Duration,

    /// SQLite: MiB of recently read or updated single keys (keys and values) kept to answer gets
    /// of one key at the head, and to give the sequencer a key's live version, without the
    /// database (0 turns it off). Ignored on PostgreSQL and MySQL, where other servers write.
    #[arg(long, default_value_t = 16, global = true)]
    pub read_cache_mib: usize,

    /// Compact automatically this often, to the head minus --compact-min-retain revisions;
    /// 0 turns it off.
    #[arg(long, default_value = "5m", value_parser = parse_duration, global = true)]
    pub compact_interval: Duration,

    /// Lengthen or shorten each compaction interval by up to this percentage, at random.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..100), global = true)]
    pub compact_interval_jitter: u32,

    /// How long one transaction of the compactor may take before it is abandoned and retried.
    #[arg(long, default_value = "5s", value_parser = parse_interval, global = true)]
    pub compact_timeout: Duration,

    /// Revisions automatic compaction keeps below the head.
    #[arg(long, default_value_t = 1000, global = true)]
    pub compact_min_retain: i64,

    /// Revisions whose history one transaction of the compactor removes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..), global = true)]
    pub compact_batch_size: i64,

    /// Log rows read per query while following the writes of other servers on the same
    /// database.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..), global = true)]
    pub poll_batch_size: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text (Kine's name; `text` is the same).
    #[value(alias = "text")]
    Plain,
    Json,
}

/// Where metrics are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddress {
    Off,
    /// The default: used if free, else metrics are off with a warning.
    Default(String),
    /// Given on the command line: not being able to bind it stops the start.
    Given(String),
}

/// Where metrics go when --metrics-bind-address is not given.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:8080";

impl ServeArgs {
    pub fn metrics_address(&self) -> MetricsAddress {
        match self.metrics_bind_address.as_deref() {
            None => MetricsAddress::Default(DEFAULT_METRICS_ADDRESS.to_string()),
            Some("0") => MetricsAddress::Off,
            Some(address) => MetricsAddress::Given(crate::server::bindable(address)),
        }
    }

    /// One line for each flag that is accepted but cannot apply here.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if self.metrics_enable_profiling {
            warnings.push(
                "--metrics-enable-profiling has no effect: etcdshim serves no pprof handlers \
                 (they profile Go programs); profile with perf or valgrind instead",
            );
        }
        warnings
    }

    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            endpoint: self.endpoint.clone(),
            emulated_etcd_version: self.emulated_etcd_version.clone(),
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            tls: match (&self.server_cert_file, &self.server_key_file) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.trusted_ca_file.clone(),
                }),
                _ => None,
            },
            max_concurrent_streams: self.max_concurrent_streams,
            max_watches_per_stream: self.max_watches_per_stream,
            store: StoreOptions {
                datastore: DatastoreOptions {
                    max_open: self.datastore_max_open_connections,
                    max_idle: self.datastore_max_idle_connections,
                    max_lifetime: (!self.datastore_connection_max_lifetime.is_zero())
                        .then_some(self.datastore_connection_max_lifetime),
                    slow_sql_threshold: self.slow_sql_threshold,
                    slow_sql_warning_threshold: self.slow_sql_warning_threshold,
                    tls: DatabaseTls {
                        ca_file: self.ca_file.clone(),
                        cert_file: self.cert_file.clone(),
                        key_file: self.key_file.clone(),
                        skip_verify: self.skip_verify,
                    },
                    ..DatastoreOptions::default()
                },
                follow_batch: self.poll_batch_size,
                compaction: CompactionOptions {
                    interval: self.compact_interval,
                    jitter_percent: self.compact_interval_jitter,
                    min_retain: self.compact_min_retain,
                    batch_revisions: self.compact_batch_size,
                    timeout: self.compact_timeout,
                },
                read_cache_bytes: self.read_cache_mib.saturating_mul(1024 * 1024),
                ..StoreOptions::default()
            },
        }
    }
}
