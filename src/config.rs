//! The command line, with Kine's flag names so etcdshim drops in where Kine ran.

use clap::{Parser, Subcommand};

use crate::server::{DEFAULT_ETCD_VERSION, ServerOptions};

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
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the etcd v3 gRPC API on: HOST:PORT, or unix:///path/to/socket.
    #[arg(long, default_value = "127.0.0.1:2379", global = true)]
    pub listen_address: String,

    /// Datastore to keep the data in: sqlite://PATH (the file and its folder are created).
    #[arg(long, default_value = "sqlite://./db/state.db", global = true)]
    pub endpoint: String,

    /// etcd version reported to clients by Maintenance.Status; kube-apiserver turns on its
    /// watch-progress features only for 3.5.13 and later.
    #[arg(long, default_value = DEFAULT_ETCD_VERSION, global = true)]
    pub emulated_etcd_version: String,
}

impl ServeArgs {
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            endpoint: self.endpoint.clone(),
            emulated_etcd_version: self.emulated_etcd_version.clone(),
        }
    }
}
