//! Prometheus metrics: what operators watch, and the `/metrics` endpoint that serves them.
//!
//! One process-wide registry (metrics describe the process, whichever server in it did the
//! work), recorded where the work happens: gRPC requests by a tower layer around every service
//! (`server/grpc_metrics.rs`), SQL by the backends (grouped by statement name), the sequencer, watches, compaction, leases.

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

mod http;

pub use http::{serve, tls_config};

pub struct Metrics {
    registry: Registry,
    pub grpc_requests: IntCounterVec,
    pub grpc_seconds: HistogramVec,
    pub sql_seconds: HistogramVec,
    pub batch_size: prometheus::Histogram,
    pub point_read_batch_size: prometheus::Histogram,
    pub revision: IntGauge,
    pub watchers: IntGauge,
    pub events_sent: IntCounter,
    pub compacted_revision: IntGauge,
    pub compaction_progress: IntGauge,
    pub lease_grants: IntCounter,
    pub lease_revocations: IntCounterVec,
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    // Names are fixed and distinct, so registering cannot fail; a failure would only lose
    // the series, never the server.
    if let Err(err) = registry.register(Box::new(metric.clone())) {
        tracing::error!(error = %err, "registering a metric failed");
    }
    metric
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("etcdshim".into()), None)?;
    let latency = vec![
        0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ];
    Ok(Metrics {
        grpc_requests: register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "grpc_requests_total",
                    "gRPC requests by method and status code",
                ),
                &["method", "code"],
            )?,
        ),
        grpc_seconds: register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "grpc_request_duration_seconds",
                    "gRPC request latency (to the first response for streams)",
                )
                .buckets(latency.clone()),
                &["method"],
            )?,
        ),
        sql_seconds: register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sql_statement_duration_seconds",
                    "SQL statements by name, with latency",
                )
                .buckets(latency),
                &["statement"],
            )?,
        ),
        batch_size: register(
            &registry,
            prometheus::Histogram::with_opts(
                HistogramOpts::new("sequencer_batch_size", "Requests per sequencer transaction")
                    .buckets(vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
                    ]),
            )?,
        ),
        point_read_batch_size: register(
            &registry,
            prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "point_read_batch_size",
                    "Gets of one key at the head per statement (PostgreSQL and MySQL)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
            )?,
        ),
        revision: register(
            &registry,
            IntGauge::new(
                "revision",
                "The newest revision this process has committed or seen",
            )?,
        ),
        watchers: register(
            &registry,
            IntGauge::new("watchers", "Watches open on this process")?,
        ),
        events_sent: register(
            &registry,
            IntCounter::new("watch_events_sent_total", "Events sent to watchers")?,
        ),
        compacted_revision: register(
            &registry,
            IntGauge::new("compacted_revision", "The compacted revision")?,
        ),
        compaction_progress: register(
            &registry,
            IntGauge::new(
                "compaction_progress_revision",
                "Revision up to which compacted history has been removed",
            )?,
        ),
        lease_grants: register(
            &registry,
            IntCounter::new("lease_grants_total", "Leases granted")?,
        ),
        lease_revocations: register(
            &registry,
            IntCounterVec::new(
                Opts::new("lease_revocations_total", "Leases revoked, by reason"),
                &["reason"],
            )?,
        ),
        registry,
    })
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| match build() {
        Ok(metrics) => metrics,
        // The definitions above are static and valid; this is unreachable in practice.
        Err(err) => panic!("metric definitions are invalid: {err}"),
    });
    &METRICS
}

/// Records one SQL statement (or group of statements) named `name`.
pub fn observe_sql(name: &str, elapsed: Duration) {
    metrics()
        .sql_seconds
        .with_label_values(&[name])
        .observe(elapsed.as_secs_f64());
}

/// Statements (or groups of them) slower than this many nanoseconds are logged as warnings;
/// 0: none are. Process-wide, like the metrics.
static SLOW_SQL_WARNING_NANOS: AtomicU64 = AtomicU64::new(0);

/// Logs a warning for every statement slower than `threshold` from now on (zero: none).
pub fn warn_of_sql_slower_than(threshold: Duration) {
    let nanos = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
    SLOW_SQL_WARNING_NANOS.store(nanos, Ordering::Relaxed);
}

/// Times `work` as the SQL statement `name`.
pub async fn timed<T>(name: &str, work: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = work.await;
    let elapsed = started.elapsed();
    observe_sql(name, elapsed);
    let warn_after = SLOW_SQL_WARNING_NANOS.load(Ordering::Relaxed);
    if warn_after > 0 && elapsed.as_nanos() > u128::from(warn_after) {
        tracing::warn!(
            statement = name,
            elapsed_ms = elapsed.as_millis() as u64,
            "slow SQL"
        );
    }
    result
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&metrics().registry.gather(), &mut buffer) {
        tracing::error!(error = %err, "encoding metrics failed");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}
