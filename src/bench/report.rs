//! What a benchmark run measured: counts, throughput and latency percentiles (hdrhistogram),
//! printed for people or as JSON for machines, plus the series `--plot` draws.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Width of one throughput-over-time bucket.
pub const TIMELINE_STEP: Duration = Duration::from_millis(250);

/// Latencies of one workload, in microseconds, and completions over time since `origin`.
pub struct Recorder {
    origin: Instant,
    histogram: Histogram<u64>,
    /// Completions per TIMELINE_STEP since `origin`.
    timeline: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    /// A recorder whose timeline starts at `origin`; recorders merged together share it.
    pub fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            // 1 µs to 1 h at 3 significant digits; the bounds are constants, so this holds.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            timeline: Vec::new(),
            errors: 0,
            first_error: None,
        }
    }

    /// Records one operation that took `latency` and has just completed.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram.saturating_record(micros);
        let bucket = (self.origin.elapsed().as_nanos() / TIMELINE_STEP.as_nanos()) as usize;
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] += 1;
    }

    /// Counts a failed operation; the first failure's message goes into the report.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message.into());
        }
    }

    pub fn operations(&self) -> u64 {
        self.histogram.len()
    }

    /// Counts `other`'s failures as this recorder's, but not its latencies.
    pub fn merge_errors(&mut self, other: &Recorder) {
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both use the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.merge_errors(other);
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            *mine += theirs;
        }
    }

    /// The latency at quantile `q` (0.5 for the median), in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    /// The mean latency, in ms.
    pub fn mean_ms(&self) -> f64 {
        self.histogram.mean() / 1000.0
    }

    pub fn report(&self, workload: &str, elapsed: Duration) -> Report {
        let ms = |q: f64| self.quantile_ms(q);
        let ops = self.histogram.len();
        let step = TIMELINE_STEP.as_secs_f64();
        Report {
            workload: workload.to_string(),
            operations: ops,
            errors: self.errors,
            seconds: elapsed.as_secs_f64(),
            per_second: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.histogram.max() as f64 / 1000.0,
            first_error: self.first_error.clone(),
            extra: BTreeMap::new(),
            throughput: self
                .timeline
                .iter()
                .enumerate()
                .map(|(i, &count)| ((i as f64 + 1.0) * step, count as f64 / step))
                .collect(),
            latency_histogram: self
                .histogram
                .iter_log(1, 1.25)
                .map(|bucket| {
                    (
                        bucket.value_iterated_to() as f64 / 1000.0,
                        bucket.count_since_last_iteration(),
                    )
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub workload: String,
    /// Operations that succeeded (each one latency sample).
    pub operations: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// What the first failed operation said, if any failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Workload-specific measurements (keys listed, first page time, watch events...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, f64>,
    /// (seconds since the start, operations per second) per TIMELINE_STEP, for `--plot`.
    #[serde(skip)]
    pub throughput: Vec<(f64, f64)>,
    /// (latency upper bound in ms, operations) on log-spaced buckets, for `--plot`.
    #[serde(skip)]
    pub latency_histogram: Vec<(f64, u64)>,
}

impl Report {
    pub fn with(mut self, name: &str, value: f64) -> Report {
        self.extra.insert(name.to_string(), value);
        self
    }

    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(line) => println!("{line}"),
                Err(err) => eprintln!("encoding the report failed: {err}"),
            }
            return;
        }
        let extra: String = self
            .extra
            .iter()
            .map(|(name, value)| format!("; {name} {value}"))
            .collect();
        println!(
            "{}: {} ops ({} errors) in {:.2} s = {:.0} ops/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms{extra}",
            self.workload,
            self.operations,
            self.errors,
            self.seconds,
            self.per_second,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        );
        if let Some(error) = &self.first_error {
            println!("{}: first error: {error}", self.workload);
        }
    }
}
