//! What a benchmark run measured: counts, throughput and latency percentiles (hdrhistogram),
//! printed for people or as JSON for machines.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies of one workload, in microseconds.
pub struct Recorder {
    histogram: Histogram<u64>,
    errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            // 1 µs to 1 h at 3 significant digits; the bounds are constants, so this holds.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            errors: 0,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram.saturating_record(micros);
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both use the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.errors += other.errors;
    }

    pub fn report(&self, workload: &str, elapsed: Duration) -> Report {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        let ops = self.histogram.len();
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
}

impl Report {
    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(line) => println!("{line}"),
                Err(err) => eprintln!("encoding the report failed: {err}"),
            }
            return;
        }
        println!(
            "{}: {} ops ({} errors) in {:.2} s = {:.0} ops/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
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
    }
}
