//! `bench fleet`: the Fleet scale test in miniature. Simulated downstream clusters register
//! (ten objects each, kube-apiserver's create txn), read their bundle deployments and report
//! status (kube-apiserver's update txn on their cluster record), while a manager keeps a cache
//! of every cluster record the way a controller's informer does: a full paged list, then a
//! watch from the list's revision, reloaded every `--reload-every`.
//!
//! At the end the manager's cache must hold exactly what the clusters wrote (every record at
//! its last mod_revision, and as many records as the store counts): a watch that lost or
//! reordered an event, or a list that skipped a key, fails the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{self, Channel, MAX_MESSAGE, Streaming};
use super::drive::drive;
use super::objects::{self, CLUSTERS_PREFIX, PER_CLUSTER};
use super::{BenchArgs, Recorder, Report};
use crate::duration::parse_interval;
use crate::proto::mvccpb::event::EventType;
use crate::proto::watch_client::WatchClient;
use crate::proto::watch_request::RequestUnion;
use crate::proto::{
    RangeRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};

#[derive(Clone, Debug, Args)]
pub struct FleetArgs {
    /// Simulated downstream clusters (ten objects each). --clients of them register at once;
    /// --rate paces registrations (clusters per second); --duration stops new registrations.
    #[arg(long, default_value_t = 1000)]
    pub clusters: u64,
    /// Status updates each cluster reports after registering.
    #[arg(long, default_value_t = 5)]
    pub updates: u64,
    /// Keys per page of the manager's list.
    #[arg(long, default_value_t = 500)]
    pub page_size: i64,
    /// How long the manager watches before it drops its cache and reloads (list, then watch).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub reload_every: Duration,
}

/// Latencies of the clusters' requests, by kind.
struct AgentRecorders {
    register: Mutex<Recorder>,
    read: Mutex<Recorder>,
    status: Mutex<Recorder>,
}

/// Times one reload's list may start again after compaction passed its revision; a list that
/// always outlasts the compaction interval would otherwise never end.
const MAX_LIST_RESTARTS: u32 = 10;

/// How long the manager may take to see the clusters' last writes once they are done.
const SETTLE: Duration = Duration::from_secs(30);

pub async fn run(
    args: &BenchArgs,
    fleet: &FleetArgs,
    channels: &[Channel],
    run: &str,
) -> Result<Vec<Report>, String> {
    let origin = Instant::now();
    let agents = Arc::new(AgentRecorders {
        register: Mutex::new(Recorder::new(origin)),
        read: Mutex::new(Recorder::new(origin)),
        status: Mutex::new(Recorder::new(origin)),
    });
    // Each cluster record's last mod_revision, as its cluster wrote it.
    let written: Arc<Mutex<HashMap<Bytes, i64>>> = Arc::default();
    let (done, done_rx) = watch::channel(None);
    let manager = tokio::spawn(manage(
        channels[0].clone(),
        fleet.clone(),
        done_rx,
        written.clone(),
        origin,
    ));

    let cluster_args = (
        agents.clone(),
        written.clone(),
        run.to_string(),
        fleet.updates,
        Bytes::from(vec![b'v'; args.val_size]),
    );
    let (clusters, elapsed) = drive(args, "clusters", channels, fleet.clusters, move |ch, c| {
        let (agents, written, run, updates, value) = cluster_args.clone();
        async move {
            let last = live_cluster(&ch, &agents, &run, c, updates, &value).await?;
            if let Ok(mut written) = written.lock() {
                written.insert(objects::cluster_key(&run, c), last);
            }
            Ok(())
        }
    })
    .await;
    let target = written
        .lock()
        .map(|w| w.values().copied().max().unwrap_or(0))
        .unwrap_or(0);
    let _ = done.send(Some(target));
    let outcome = match manager.await {
        Ok(outcome) => outcome,
        Err(err) => Err(format!("the manager stopped: {err}")),
    };
    let mut reports = vec![clusters.report("fleet-clusters", elapsed)];
    for (name, recorder) in [
        ("fleet-register", &agents.register),
        ("fleet-read", &agents.read),
        ("fleet-status", &agents.status),
    ] {
        let recorder = recorder.lock().map_err(|_| "a cluster task panicked")?;
        reports.push(recorder.report(name, elapsed));
    }
    let outcome = outcome?;
    reports.push(
        outcome
            .lists
            .report("fleet-list", origin.elapsed())
            .with("clusters_listed", outcome.last_listed as f64)
            .with("list_restarts", outcome.list_restarts as f64),
    );
    reports.push(outcome.pages.report("fleet-page", origin.elapsed()));
    reports.push(
        outcome
            .reloads
            .report("fleet-reload", origin.elapsed())
            .with("watch_events", outcome.events as f64)
            .with("clusters_cached", outcome.cached as f64),
    );
    Ok(reports)
}

/// One cluster's life: register, read its deployments, report status `updates` times.
/// Returns its cluster record's last mod_revision.
async fn live_cluster(
    channel: &Channel,
    agents: &AgentRecorders,
    run: &str,
    cluster: u64,
    updates: u64,
    value: &Bytes,
) -> Result<i64, String> {
    let mut record_revision = 0;
    for n in 0..PER_CLUSTER {
        let began = Instant::now();
        let created = client::create(
            channel.clone(),
            objects::object_key(run, cluster * PER_CLUSTER + n),
            value.clone(),
        )
        .await;
        let revision = timed(&agents.register, began, created)?;
        if n == 0 {
            record_revision = revision;
        }
    }

    let began = Instant::now();
    let prefix = objects::deployments_prefix(run, cluster);
    let read = client::kv(channel.clone())
        .range(RangeRequest {
            key: Bytes::from(prefix.clone()),
            range_end: client::prefix_end(prefix.as_bytes()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|resp| match resp.into_inner().kvs.len() {
            n if n == objects::deployments_per_cluster() => Ok(()),
            n => Err(format!("cluster {cluster} read {n} bundle deployments")),
        });
    timed(&agents.read, began, read)?;

    let key = objects::cluster_key(run, cluster);
    for generation in 1..=updates {
        let mut status = format!("{{\"status\":{{\"observedGeneration\":{generation}}}}}");
        status.push_str(&"v".repeat(value.len().saturating_sub(status.len())));
        let began = Instant::now();
        let updated = client::update(
            channel.clone(),
            key.clone(),
            Bytes::from(status),
            record_revision,
        )
        .await
        .and_then(|outcome| {
            outcome.map_err(|current| {
                format!(
                    "cluster {cluster}'s record changed under it (now {:?})",
                    current.map(|kv| kv.mod_revision)
                )
            })
        });
        record_revision = timed(&agents.status, began, updated)?;
    }
    Ok(record_revision)
}

/// Records `result`'s latency (or failure) in `recorder` and passes it on.
fn timed<T>(
    recorder: &Mutex<Recorder>,
    began: Instant,
    result: Result<T, String>,
) -> Result<T, String> {
    if let Ok(mut recorder) = recorder.lock() {
        match &result {
            Ok(_) => recorder.record(began.elapsed()),
            Err(message) => recorder.error(message.clone()),
        }
    }
    result
}

/// What the manager did and what its cache held at the end.
struct ManagerOutcome {
    lists: Recorder,
    /// Every page of those lists.
    pages: Recorder,
    /// From the start of a list to the watch after it being caught up (a progress response).
    reloads: Recorder,
    events: u64,
    /// Lists started again because compaction passed their revision.
    list_restarts: u64,
    last_listed: usize,
    cached: usize,
}

/// The manager: reload (paged list, watch from its revision) every `reload_every`; once the
/// clusters are done (`done` carries their last revision), catch up and check the cache.
async fn manage(
    channel: Channel,
    fleet: FleetArgs,
    mut done: watch::Receiver<Option<i64>>,
    written: Arc<Mutex<HashMap<Bytes, i64>>>,
    origin: Instant,
) -> Result<ManagerOutcome, String> {
    let mut outcome = ManagerOutcome {
        lists: Recorder::new(origin),
        pages: Recorder::new(origin),
        reloads: Recorder::new(origin),
        events: 0,
        list_restarts: 0,
        last_listed: 0,
        cached: 0,
    };
    let prefix = CLUSTERS_PREFIX.as_bytes();
    loop {
        let began = Instant::now();
        let mut cache = HashMap::new();
        let mut restarts = 0;
        let listed = loop {
            let listed = client::list(channel.clone(), prefix, fleet.page_size, |page| {
                for kv in page {
                    cache.insert(kv.key, kv.mod_revision);
                }
            })
            .await;
            match listed {
                Ok(listed) => break listed,
                // Compaction passed the list's revision (a long list while the clusters
                // write): start again, as a reflector does.
                Err(failure) if failure.compacted && restarts < MAX_LIST_RESTARTS => {
                    restarts += 1;
                    outcome.list_restarts += 1;
                    failure
                        .pages
                        .iter()
                        .for_each(|page| outcome.pages.record(*page));
                    cache.clear();
                }
                Err(failure) => {
                    return Err(format!("the manager's list failed: {}", failure.message));
                }
            }
        };
        // From the first attempt: what the manager waited for its cache.
        outcome.lists.record(began.elapsed());
        for page in &listed.pages {
            outcome.pages.record(*page);
        }
        outcome.last_listed = listed.count;

        let mut stream = ManagerWatch::open(channel.clone(), listed.revision + 1).await?;
        stream.request_progress().await?;
        let (mut synced, mut seen) = (false, listed.revision);
        let reload_at = tokio::time::Instant::now() + fleet.reload_every;
        let mut target = *done.borrow();
        let mut settle_by = None;
        loop {
            if let Some(target) = target
                && seen >= target
            {
                let settle_by = *settle_by.get_or_insert_with(|| Instant::now() + SETTLE);
                match check(&channel, &cache, &written).await {
                    Ok(()) => {
                        // The writes may end before the manager's list does: its cache is
                        // then in sync without a progress response, and the reload ends here.
                        if !synced {
                            outcome.reloads.record(began.elapsed());
                        }
                        outcome.cached = cache.len();
                        return Ok(outcome);
                    }
                    Err(problem) if Instant::now() >= settle_by => return Err(problem),
                    // etcd 3.4 may answer a progress request before sending events it has
                    // (etcd#15220): wait for them.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        stream.request_progress().await?;
                    }
                }
            }
            let response = tokio::select! {
                response = stream.next() => response?,
                _ = tokio::time::sleep_until(reload_at), if synced && target.is_none() => break,
                changed = done.changed(), if target.is_none() => {
                    if changed.is_err() {
                        return Err("the clusters' driver stopped".into());
                    }
                    target = *done.borrow();
                    stream.request_progress().await?;
                    continue;
                }
            };
            if response.events.is_empty() {
                // A progress response: every event up to its revision has been sent.
                seen = seen.max(response.header.map_or(0, |h| h.revision));
                if !synced {
                    synced = true;
                    outcome.reloads.record(began.elapsed());
                }
                continue;
            }
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                outcome.events += 1;
                seen = seen.max(kv.mod_revision);
                if event.r#type == EventType::Delete as i32 {
                    cache.remove(&kv.key);
                } else {
                    cache.insert(kv.key, kv.mod_revision);
                }
            }
        }
    }
}

/// The cache holds every cluster record at the revision its cluster last wrote, and as many
/// records as the store has under the prefix now.
async fn check(
    channel: &Channel,
    cache: &HashMap<Bytes, i64>,
    written: &Mutex<HashMap<Bytes, i64>>,
) -> Result<(), String> {
    let stale = written
        .lock()
        .map_err(|_| "a cluster task panicked")?
        .iter()
        .filter(|(key, revision)| cache.get(*key) != Some(*revision))
        .count();
    let stored = client::count(channel.clone(), CLUSTERS_PREFIX.as_bytes(), 0).await?;
    if stale > 0 || stored != cache.len() as i64 {
        return Err(format!(
            "the manager's cache differs from the store: {stale} cluster records missing or \
             stale, {} cached of {stored} stored",
            cache.len()
        ));
    }
    Ok(())
}

/// The manager's watch of every cluster record.
struct ManagerWatch {
    requests: tokio::sync::mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl ManagerWatch {
    async fn open(channel: Channel, start_revision: i64) -> Result<ManagerWatch, String> {
        let mut client = WatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        let (requests, outbound) = tokio::sync::mpsc::channel(4);
        let create = WatchCreateRequest {
            key: Bytes::from_static(CLUSTERS_PREFIX.as_bytes()),
            range_end: client::prefix_end(CLUSTERS_PREFIX.as_bytes()),
            start_revision,
            ..Default::default()
        };
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .map_err(|_| "the manager's watch closed".to_string())?;
        let mut responses = client
            .watch(ReceiverStream::new(outbound))
            .await
            .map_err(|e| format!("the manager's watch failed: {e}"))?
            .into_inner();
        match responses.message().await {
            Ok(Some(created)) if created.created && !created.canceled => Ok(ManagerWatch {
                requests,
                responses,
            }),
            other => Err(format!("the manager's watch was refused: {other:?}")),
        }
    }

    async fn request_progress(&self) -> Result<(), String> {
        self.requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            })
            .await
            .map_err(|_| "the manager's watch closed".to_string())
    }

    /// The next response with events or progress; a cancel is an error.
    async fn next(&mut self) -> Result<WatchResponse, String> {
        match self.responses.message().await {
            Ok(Some(response)) if response.canceled => Err(format!(
                "the manager's watch was cancelled (compacted at {}): {}",
                response.compact_revision, response.cancel_reason
            )),
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err("the manager's watch ended".into()),
            Err(status) => Err(format!("the manager's watch failed: {status}")),
        }
    }
}
