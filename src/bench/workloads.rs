//! The workloads of `etcdshim bench`, over the generated etcd v3 client.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{BenchArgs, Recorder, Report, Workload};
use crate::proto::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::kv_client::KvClient;
use crate::proto::request_op::Request;
use crate::proto::watch_client::WatchClient;
use crate::proto::watch_request::RequestUnion;
use crate::proto::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};

/// Responses up to this size are accepted (a list page or a watch batch may be large).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

pub async fn run(args: &BenchArgs) -> Result<Report, String> {
    let channels = connect(args).await?;
    let run = format!(
        "{:x}",
        std::process::id() as u64 * 1_000_003 + epoch_nanos() % 1_000_003
    );
    let keys = Keys {
        prefix: format!("{}{run}/", args.prefix),
        size: args.key_size,
    };
    let value = Bytes::from(vec![b'v'; args.val_size]);
    match &args.workload {
        Workload::Put => {
            let (recorder, elapsed) = drive(args, &channels, args.total, move |channel, i| {
                put(channel, keys.key(i), value.clone())
            })
            .await;
            Ok(recorder.report("put", elapsed))
        }
        Workload::TxnPut => {
            let (recorder, elapsed) = drive(args, &channels, args.total, move |channel, i| {
                create(channel, keys.key(i), value.clone())
            })
            .await;
            Ok(recorder.report("txn-put", elapsed))
        }
        Workload::Range { keys: count } => {
            fill(args, &channels, &keys, *count, &value).await?;
            let count = (*count).max(1);
            let (recorder, elapsed) = drive(args, &channels, args.total, move |channel, i| {
                // A stride that visits every key, in an order unlike the writes'.
                let key = keys.key(i.wrapping_mul(7919) % count);
                async move {
                    let resp = kv(channel)
                        .range(RangeRequest {
                            key,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    if resp.into_inner().kvs.len() == 1 {
                        Ok(())
                    } else {
                        Err("a prefilled key is missing".into())
                    }
                }
            })
            .await;
            Ok(recorder.report("range", elapsed))
        }
        Workload::List {
            keys: count,
            page_size,
        } => {
            let (prefix, expected) = if *count == 0 {
                (args.prefix.clone(), None)
            } else {
                fill(args, &channels, &keys, *count, &value).await?;
                (keys.prefix.clone(), Some(*count as usize))
            };
            let page_size = (*page_size).max(1);
            let (recorder, elapsed) = drive(args, &channels, args.total, move |channel, _| {
                let prefix = prefix.clone();
                async move {
                    let listed = list(channel, &prefix, page_size).await?;
                    match expected {
                        Some(expected) if listed != expected => {
                            Err(format!("listed {listed} keys of {expected}"))
                        }
                        _ => Ok(()),
                    }
                }
            })
            .await;
            Ok(recorder.report("list", elapsed))
        }
        Workload::Watch { watchers } => watch(args, &channels, &keys, *watchers).await,
        Workload::Load { objects } => {
            let (recorder, elapsed) = drive(args, &channels, *objects, move |channel, i| {
                let object = kubernetes_key(&run, i);
                create(channel, object, value.clone())
            })
            .await;
            Ok(recorder.report("load", elapsed))
        }
    }
}

async fn connect(args: &BenchArgs) -> Result<Vec<Channel>, String> {
    if args.endpoints.is_empty() {
        return Err("give at least one endpoint".into());
    }
    let mut channels = Vec::new();
    for i in 0..args.conns.max(1) {
        let endpoint = &args.endpoints[i % args.endpoints.len()];
        let channel = Channel::from_shared(endpoint.clone())
            .map_err(|e| format!("{endpoint}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// kube-apiserver's create: put `key` if it does not exist.
async fn create(channel: Channel, key: Bytes, value: Bytes) -> Result<(), String> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::ModRevision(0)),
            range_end: Bytes::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key,
                value,
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    };
    let resp = kv(channel)
        .txn(txn)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    if resp.succeeded {
        Ok(())
    } else {
        Err("the key existed".to_string())
    }
}

/// The `i`th object of a Fleet-shaped store: per simulated cluster, a cluster record, its
/// registration objects and its bundle deployments, each under its own namespace.
fn kubernetes_key(run: &str, i: u64) -> Bytes {
    const RESOURCES: [&str; 10] = [
        "fleet.cattle.io/clusters",
        "serviceaccounts",
        "secrets",
        "rbac.authorization.k8s.io/roles",
        "rbac.authorization.k8s.io/rolebindings",
        "fleet.cattle.io/clusterregistrations",
        "fleet.cattle.io/bundledeployments",
        "fleet.cattle.io/bundledeployments",
        "configmaps",
        "coordination.k8s.io/leases",
    ];
    let cluster = i / RESOURCES.len() as u64;
    let resource = RESOURCES[(i % RESOURCES.len() as u64) as usize];
    Bytes::from(format!(
        "/registry/{resource}/cluster-fleet-{run}-{cluster}/object-{i}"
    ))
}

async fn put(channel: Channel, key: Bytes, value: Bytes) -> Result<(), String> {
    kv(channel)
        .put(PutRequest {
            key,
            value,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

fn epoch_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Keys of one run: the prefix, then the operation number padded to the key size.
#[derive(Clone)]
struct Keys {
    prefix: String,
    size: usize,
}

impl Keys {
    fn key(&self, i: u64) -> Bytes {
        let width = self.size.saturating_sub(self.prefix.len()).max(1);
        Bytes::from(format!("{}{i:0>width$}", self.prefix))
    }
}

/// Runs `op` for operation numbers 0..total on `--clients` tasks (or until `--duration`),
/// paced to `--rate`; returns the latencies and the time taken.
async fn drive<F, Fut>(
    args: &BenchArgs,
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
    let pacer = (args.rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Arc::new(Mutex::new(interval))
    });
    let mut tasks = Vec::new();
    for client in 0..args.clients.max(1) {
        let (next, pacer, op) = (next.clone(), pacer.clone(), op.clone());
        let channel = channels[client % channels.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::default();
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
                    Err(_) => recorder.error(),
                }
            }
        }));
    }
    let mut all = Recorder::default();
    for task in tasks {
        if let Ok(recorder) = task.await {
            all.merge(&recorder);
        }
    }
    (all, started.elapsed())
}

/// Writes keys 0..count (not measured).
async fn fill(
    args: &BenchArgs,
    channels: &[Channel],
    keys: &Keys,
    count: u64,
    value: &Bytes,
) -> Result<(), String> {
    let fill_args = BenchArgs {
        duration: None,
        rate: 0,
        ..args.clone()
    };
    let (keys, value) = (keys.clone(), value.clone());
    let (recorder, _) = drive(&fill_args, channels, count, move |channel, i| {
        put(channel, keys.key(i), value.clone())
    })
    .await;
    let report = recorder.report("fill", Duration::from_secs(1));
    if report.errors > 0 {
        return Err(format!(
            "{} of {count} puts failed while filling",
            report.errors
        ));
    }
    Ok(())
}

/// One full paged list of `prefix`, pinned to the first page's revision. Returns the keys seen.
async fn list(channel: Channel, prefix: &str, page_size: i64) -> Result<usize, String> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let (end, mut start) = (Bytes::from(end), prefix.as_bytes().to_vec());
    let mut client = kv(channel);
    let (mut revision, mut listed) = (0, 0);
    loop {
        let page = client
            .range(RangeRequest {
                key: Bytes::from(start.clone()),
                range_end: end.clone(),
                limit: page_size,
                revision,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if revision == 0 {
            revision = page.header.map_or(0, |h| h.revision);
        }
        listed += page.kvs.len();
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                start = last.key.to_vec();
                start.push(0);
            }
            _ => return Ok(listed),
        }
    }
}

/// `watchers` watches of the run's prefix; `--total` puts; latency from each put's start to
/// each watcher's receipt. The report counts deliveries (watchers x events).
async fn watch(
    args: &BenchArgs,
    channels: &[Channel],
    keys: &Keys,
    watchers: usize,
) -> Result<Report, String> {
    let mut end = keys.prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let origin = Instant::now();
    let mut receivers = Vec::new();
    for w in 0..watchers.max(1) {
        let mut client = WatchClient::new(channels[w % channels.len()].clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let (requests, outbound) = tokio::sync::mpsc::channel(1);
        let create = WatchCreateRequest {
            key: keys.prefix.clone().into(),
            range_end: end.clone().into(),
            ..Default::default()
        };
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut responses = client
            .watch(ReceiverStream::new(outbound))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        match responses.message().await {
            Ok(Some(created)) if created.created => {}
            other => return Err(format!("creating watch {w} failed: {other:?}")),
        }
        let total = args.total;
        receivers.push(tokio::spawn(async move {
            let _open = requests;
            let mut recorder = Recorder::default();
            let mut received = 0;
            while received < total {
                let Ok(Some(response)) = responses.message().await else {
                    break;
                };
                for event in response.events {
                    received += 1;
                    // The value starts with the put's start, in nanoseconds since `origin`.
                    let sent = event
                        .kv
                        .as_ref()
                        .and_then(|kv| {
                            std::str::from_utf8(&kv.value[..kv.value.len().min(20)]).ok()
                        })
                        .and_then(|text| text.trim_end_matches('v').parse::<u64>().ok());
                    match sent {
                        Some(sent) => recorder
                            .record(origin.elapsed().saturating_sub(Duration::from_nanos(sent))),
                        None => recorder.error(),
                    }
                }
            }
            recorder
        }));
    }
    let size = args.val_size.max(20);
    let keys = keys.clone();
    let (writes, _) = drive(args, channels, args.total, move |channel, i| {
        let key = keys.key(i % 1000);
        async move {
            let stamp = format!("{:020}", origin.elapsed().as_nanos());
            let mut value = stamp.into_bytes();
            value.resize(size, b'v');
            put(channel, key, value.into()).await
        }
    })
    .await;
    let written = writes.report("writes", Duration::from_secs(1)).operations;
    let mut all = Recorder::default();
    for receiver in receivers {
        let waited = tokio::time::timeout(Duration::from_secs(60), receiver).await;
        match waited {
            Ok(Ok(recorder)) => all.merge(&recorder),
            _ => all.error(),
        }
    }
    let mut report = all.report("watch", origin.elapsed());
    if written < args.total {
        report.errors += args.total - written;
    }
    Ok(report)
}
