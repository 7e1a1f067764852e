//! The command line, with Kine's flag names so etcdshim drops in where Kine ran.

use clap::{Parser, Subcommand};

use std::path::PathBuf;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::server::{DEFAULT_ETCD_VERSION, ServerOptions, TlsFiles};
use crate::store::{DatabaseTls, DatastoreOptions};

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
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the etcd v3 gRPC API on: HOST:PORT, or unix:///path/to/socket.
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
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
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

    /// Serve Prometheus metrics at http://ADDRESS/metrics; 0 turns them off.
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    pub metrics_bind_address: String,

    /// The most concurrent gRPC streams (requests, watch and keep-alive streams) per client
    /// connection.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONCURRENT_STREAMS, global = true)]
    pub max_concurrent_streams: u32,

    /// The most watches one watch stream may hold; more are refused with a reason.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_WATCHES_PER_STREAM, global = true)]
    pub max_watches_per_stream: usize,

    /// Log SQL statements slower than this (as warnings, with the statement's text).
    #[arg(long, default_value = "1s", value_parser = parse_duration, global = true)]
    pub slow_sql_threshold: Duration,

    /// Log lines as plain text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

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

    /// PostgreSQL/MySQL: the most connections the pool opens.
    #[arg(long, default_value_t = 16, global = true)]
    pub datastore_max_open_connections: u32,

    /// PostgreSQL/MySQL: connections kept open while idle.
    #[arg(long, default_value_t = 2, global = true)]
    pub datastore_max_idle_connections: u32,

    /// PostgreSQL/MySQL: close and replace a connection after this long (e.g. 30m); unset keeps
    /// connections for as long as they work.
    #[arg(long, value_parser = parse_duration, global = true)]
    pub datastore_connection_max_lifetime: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
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
            datastore: DatastoreOptions {
                max_open: self.datastore_max_open_connections,
                max_idle: self.datastore_max_idle_connections,
                max_lifetime: self.datastore_connection_max_lifetime,
                slow_sql_threshold: self.slow_sql_threshold,
                tls: DatabaseTls {
                    ca_file: self.ca_file.clone(),
                    cert_file: self.cert_file.clone(),
                    key_file: self.key_file.clone(),
                },
            },
            ..ServerOptions::default()
        }
    }
}
