//! The closed loop every workload runs: `--clients` tasks over the connections take operation
//! numbers until `total` are done or `--duration` has passed, paced to `--rate` when set.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::client::Channel;
use super::{BenchArgs, Recorder};
use crate::progress;

/// Runs `op` for operation numbers 0..total; returns the latencies and the time taken.
pub async fn drive<F, Fut>(
    args: &BenchArgs,
    label: &str,
    channels: &[Channel],
    total: u64,
    op: F,
) -> (Recorder, Duration)
where
    F: Fn(Channel, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let bar = progress::bar(label, Some(total));
    let pacer = (args.rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Arc::new(Mutex::new(interval))
    });
    let mut tasks = Vec::new();
    for client in 0..args.clients.max(1) {
        let (next, pacer, op, bar) = (next.clone(), pacer.clone(), op.clone(), bar.clone());
        let channel = channels[client % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::new(started);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    return recorder;
                }
                if let Some(pacer) = &pacer {
                    pacer.lock().await.tick().await;
                }
                let began = Instant::now();
                match op(channel.clone(), i).await {
                    Ok(()) => recorder.record(began.elapsed()),
                    Err(message) => recorder.error(message),
                }
                bar.inc(1);
            }
        }));
    }
    let mut all = Recorder::new(started);
    for task in tasks {
        if let Ok(recorder) = task.await {
            all.merge(&recorder);
        }
    }
    bar.finish_and_clear();
    (all, started.elapsed())
}
