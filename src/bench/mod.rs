//! `etcdshim bench`: a client of any etcd v3 endpoint (etcd, etcdshim, another shim), so the
//! same command measures each; users point it at their own database-backed server to see
//! whether it holds their fleet.
//!
//! Workloads run closed-loop: `--clients` tasks over `--conns` connections take operations
//! until `--total` are done or `--duration` has passed, optionally paced to `--rate`.

pub(crate) mod client;
mod drive;
mod fleet;
mod objects;
mod plot;
mod report;
mod workloads;

pub use fleet::FleetArgs;
pub use report::{Recorder, Report};

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::duration::parse_interval;

#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub workload: Workload,

    /// etcd v3 endpoints to measure (http://HOST:PORT); clients spread over them.
    #[arg(long, num_args = 1.., default_value = "http://127.0.0.1:2379", global = true)]
    pub endpoints: Vec<String>,

    /// Concurrent clients.
    #[arg(long, default_value_t = 100, global = true)]
    pub clients: usize,

    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 10, global = true)]
    pub conns: usize,

    /// Key size in bytes (keys are padded to it).
    #[arg(long, default_value_t = 32, global = true)]
    pub key_size: usize,

    /// Value size in bytes.
    #[arg(long, default_value_t = 256, global = true)]
    pub val_size: usize,

    /// Operations to run (for `list` and `count`, whole lists and counts; for `watch`, events
    /// written; `load` and `fleet` take --objects and --clusters instead).
    #[arg(long, default_value_t = 10_000, global = true)]
    pub total: u64,

    /// Stop after this long even if --total is not reached (e.g. 30s).
    #[arg(long, value_parser = parse_interval, global = true)]
    pub duration: Option<Duration>,

    /// Operations per second over all clients; 0 runs as fast as the server answers.
    #[arg(long, default_value_t = 0, global = true)]
    pub rate: u64,

    /// Print one JSON object per report line instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Also draw throughput over time and the latency histogram into this SVG file.
    #[arg(long, global = true)]
    pub plot: Option<PathBuf>,

    /// Key prefix the workload writes under.
    #[arg(long, default_value = "/bench/", global = true)]
    pub prefix: String,
}

#[derive(Clone, Debug, Subcommand)]
pub enum Workload {
    /// Put fresh keys.
    Put,
    /// kube-apiserver's txns: `create` puts fresh keys if absent (mod_revision 0); `update`
    /// rewrites --keys existing keys with GuaranteedUpdate (put if mod_revision is still the one
    /// last seen, else read the current one back and retry).
    TxnPut {
        #[arg(long, value_enum, default_value_t = TxnShape::Create)]
        shape: TxnShape,
        /// Keys the `update` shape rewrites (created before measuring).
        #[arg(long, default_value_t = 1000)]
        keys: u64,
    },
    /// Get single keys at random from a prefilled set.
    Range {
        /// Keys written before measuring.
        #[arg(long, default_value_t = 1000)]
        keys: u64,
    },
    /// Full paged lists at a pinned revision, as kube-apiserver lists.
    List {
        /// Keys written before measuring; 0 lists what is already under --prefix (for
        /// example after `load`, with --prefix /registry/).
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        /// Keys per page.
        #[arg(long, default_value_t = 500)]
        page_size: i64,
    },
    /// Fill the store with Kubernetes-shaped objects (kube-apiserver's create txns under
    /// /registry/RESOURCE/NAMESPACE/NAME), for scale runs; --val-size sets the object size.
    Load {
        /// Objects to create.
        #[arg(long, default_value_t = 100_000)]
        objects: u64,
    },
    /// Count-only ranges of everything under --prefix (kube-apiserver's object counts).
    Count {
        /// Instead, ranges of this many keys over the whole prefix, which carry the exact count
        /// of it as the first page of a list does.
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Watchers of one prefix; latency from a put to each watcher's receipt.
    Watch {
        /// Watches open while the events are written.
        #[arg(long, default_value_t = 10)]
        watchers: usize,
    },
    /// The Fleet scale test: clusters register and report status while a manager lists all
    /// clusters in pages and reloads its cache (list, then watch from the list's revision).
    Fleet(FleetArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TxnShape {
    Create,
    Update,
}

/// Runs the workload, draws `--plot` if asked, and returns what it measured: one report, or
/// for `fleet` one per kind of request.
pub async fn run(args: &BenchArgs) -> Result<Vec<Report>, String> {
    let reports = workloads::run(args).await?;
    if let Some(path) = &args.plot {
        plot::draw(path, &reports).map_err(|e| format!("drawing {}: {e}", path.display()))?;
    }
    Ok(reports)
}
