//! etcdshim: the etcd v3 API over SQL.
//!
//! Layers, each calling only the one below:
//! - [`server`]: the gRPC services, request validation, etcd's errors ([`error`]).
//! - [`store`]: etcd semantics: revisions, MVCC reads, the write sequencer with group commit,
//!   lazy compaction.
//! - [`backend`]: SQL, one dialect per database; schemas live in `migrations/`.
//!
//! [`metrics`] holds the Prometheus series and their endpoint. [`proto`] holds the types generated from etcd's protobuf definitions and [`config`] the
//! command line. To embed a server, open a [`Server`] and call [`Server::serve`] with a listener
//! you bound and a future that says when to stop (see `examples/embedded.rs`).

mod backend;
pub mod bench;
pub mod config;
pub mod duration;
pub mod error;
pub mod importer;
pub mod metrics;
mod progress;
pub mod proto;
pub mod server;
pub mod store;

pub use error::{Error, Result};
pub use server::{Listener, Server, ServerOptions, TlsFiles};
