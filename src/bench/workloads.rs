//! The single-operation workloads of `etcdshim bench`: put, txn-put, range, list, count, load
//! and watch. The Fleet simulator lives in `fleet.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{self, Channel, MAX_MESSAGE, create, put};
use super::drive::drive;
use super::objects::object_key;
use super::{BenchArgs, Recorder, Report, TxnShape, Workload, fleet};
use crate::proto::watch_client::WatchClient;
use crate::proto::watch_request::RequestUnion;
use crate::proto::{RangeRequest, WatchCreateRequest, WatchRequest};

pub async fn run(args: &BenchArgs) -> Result<Vec<Report>, String> {
    let channels = client::connect(args).await?;
    let run = run_id();
    let keys = Keys {
        prefix: format!("{}{run}/", args.prefix),
        size: args.key_size,
    };
    let value = Bytes::from(vec![b'v'; args.val_size]);
    let report = match &args.workload {
        Workload::Put => {
            let (recorder, elapsed) = drive(args, "put", &channels, args.total, move |ch, i| {
                put(ch, keys.key(i), value.clone())
            })
            .await;
            recorder.report("put", elapsed)
        }
        Workload::TxnPut {
            shape: TxnShape::Create,
            ..
        } => {
            let (recorder, elapsed) =
                drive(args, "txn-put", &channels, args.total, move |ch, i| {
                    let create = create(ch, keys.key(i), value.clone());
                    async move { create.await.map(drop) }
                })
                .await;
            recorder.report("txn-put", elapsed)
        }
        Workload::TxnPut {
            shape: TxnShape::Update,
            keys: count,
        } => update(args, &channels, &keys, *count, &value).await?,
        Workload::Range { keys: count } => {
            fill(args, &channels, &keys, *count, &value).await?;
            let count = (*count).max(1);
            let (recorder, elapsed) = drive(args, "range", &channels, args.total, move |ch, i| {
                // A stride that visits every key, in an order unlike the writes'.
                let key = keys.key(i.wrapping_mul(7919) % count);
                get_one(ch, key)
            })
            .await;
            recorder.report("range", elapsed)
        }
        Workload::List {
            keys: count,
            page_size,
        } => list(args, &channels, &keys, *count, *page_size, &value).await?,
        Workload::Count { limit } => {
            let (prefix, limit) = (Bytes::from(args.prefix.clone()), *limit);
            let (recorder, elapsed) = drive(args, "count", &channels, args.total, move |ch, _| {
                let prefix = prefix.clone();
                async move { client::count(ch, &prefix, limit).await.map(drop) }
            })
            .await;
            let counted = client::count(channels[0].clone(), args.prefix.as_bytes(), 0).await?;
            recorder
                .report("count", elapsed)
                .with("keys_counted", counted as f64)
                .with("limit", limit as f64)
        }
        Workload::Load { objects } => {
            let (recorder, elapsed) = drive(args, "load", &channels, *objects, move |ch, i| {
                let create = create(ch, object_key(&run, i), value.clone());
                async move { create.await.map(drop) }
            })
            .await;
            recorder.report("load", elapsed)
        }
        Workload::Watch { watchers } => watch(args, &channels, &keys, *watchers).await?,
        Workload::Fleet(fleet_args) => {
            return fleet::run(args, fleet_args, &channels, &run).await;
        }
    };
    Ok(vec![report])
}

/// A name for this run's keys, unlike any other run's.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:x}",
        u64::from(std::process::id()) * 1_000_003 + nanos % 1_000_003
    )
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

async fn get_one(channel: Channel, key: Bytes) -> Result<(), String> {
    let resp = client::kv(channel)
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
    let (recorder, _) = drive(&fill_args, "fill", channels, count, move |ch, i| {
        put(ch, keys.key(i), value.clone())
    })
    .await;
    let report = recorder.report("fill", Duration::from_secs(1));
    match report.first_error {
        Some(error) => Err(format!(
            "{} of {count} puts failed while filling: {error}",
            report.errors
        )),
        None => Ok(()),
    }
}

/// kube-apiserver's GuaranteedUpdate of `count` keys created first: each update compares the
/// mod_revision last seen for its key and, on a conflict (another client updated it), takes the
/// current one from the txn's failure branch and tries again. Reports the conflicts.
async fn update(
    args: &BenchArgs,
    channels: &[Channel],
    keys: &Keys,
    count: u64,
    value: &Bytes,
) -> Result<Report, String> {
    let count = count.max(1);
    let seen: Arc<Vec<AtomicI64>> = Arc::new((0..count).map(|_| AtomicI64::new(0)).collect());
    let fill_args = BenchArgs {
        duration: None,
        rate: 0,
        ..args.clone()
    };
    let (created, _) = {
        let (keys, value, seen) = (keys.clone(), value.clone(), seen.clone());
        drive(&fill_args, "create", channels, count, move |ch, i| {
            let (create, seen) = (create(ch, keys.key(i), value.clone()), seen.clone());
            async move {
                seen[i as usize].store(create.await?, Ordering::Relaxed);
                Ok(())
            }
        })
        .await
    };
    if created.operations() < count {
        return Err(format!(
            "only {} of {count} keys were created",
            created.operations()
        ));
    }
    let conflicts = Arc::new(AtomicU64::new(0));
    let (keys, value, counted) = (keys.clone(), value.clone(), conflicts.clone());
    let (recorder, elapsed) = drive(args, "txn-put", channels, args.total, move |ch, i| {
        let n = (i % count) as usize;
        let (key, value, seen, conflicts) = (
            keys.key(n as u64),
            value.clone(),
            seen.clone(),
            counted.clone(),
        );
        async move {
            let mut expected = seen[n].load(Ordering::Relaxed);
            for _ in 0..MAX_CONFLICTS {
                match client::update(ch.clone(), key.clone(), value.clone(), expected).await? {
                    Ok(revision) => {
                        seen[n].fetch_max(revision, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(current) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        expected = current.map_or(0, |kv| kv.mod_revision);
                    }
                }
            }
            Err(format!("{MAX_CONFLICTS} conflicts in a row"))
        }
    })
    .await;
    Ok(recorder
        .report("txn-put", elapsed)
        .with("conflicts", conflicts.load(Ordering::Relaxed) as f64))
}

/// Retries of one update before it counts as failed.
const MAX_CONFLICTS: u32 = 100;

/// Full paged lists, timed after each connection's first request ([`warm_up`]). The report adds
/// the keys per list, the mean and the median over the lists of the first, middle and last
/// page's time (the mean counts a list that ran on a cold cache, the median of three lists
/// leaves one out), and percentiles of every page's time.
async fn list(
    args: &BenchArgs,
    channels: &[Channel],
    keys: &Keys,
    count: u64,
    page_size: i64,
    value: &Bytes,
) -> Result<Report, String> {
    let (prefix, expected) = if count == 0 {
        (args.prefix.clone(), None)
    } else {
        fill(args, channels, keys, count, value).await?;
        (keys.prefix.clone(), Some(count as usize))
    };
    let page_size = page_size.max(1);
    warm_up(channels, prefix.as_bytes()).await?;
    let origin = Instant::now();
    let pages = Arc::new(std::sync::Mutex::new(ListedPages {
        keys: 0,
        marks: [(); 3].map(|_| Recorder::new(origin)),
        all: Recorder::new(origin),
    }));
    let seen = pages.clone();
    let (recorder, elapsed) = drive(args, "list", channels, args.total, move |ch, _| {
        let (prefix, seen) = (prefix.clone(), seen.clone());
        async move {
            let listed = client::list(ch, prefix.as_bytes(), page_size, drop)
                .await
                .map_err(|failure| failure.message)?;
            if let Ok(mut seen) = seen.lock() {
                seen.add(&listed);
            }
            match expected {
                Some(expected) if listed.count != expected => {
                    Err(format!("listed {} keys of {expected}", listed.count))
                }
                _ => Ok(()),
            }
        }
    })
    .await;
    let pages = pages.lock().map_err(|_| "a list task panicked")?;
    let page = pages.all.report("page", elapsed);
    Ok(recorder
        .report("list", elapsed)
        .with("keys_listed", pages.keys as f64)
        .with("first_page_ms", pages.marks[0].mean_ms())
        .with("middle_page_ms", pages.marks[1].mean_ms())
        .with("last_page_ms", pages.marks[2].mean_ms())
        .with("first_page_p50_ms", pages.marks[0].quantile_ms(0.5))
        .with("middle_page_p50_ms", pages.marks[1].quantile_ms(0.5))
        .with("last_page_p50_ms", pages.marks[2].quantile_ms(0.5))
        .with("page_p50_ms", page.p50_ms)
        .with("page_p99_ms", page.p99_ms)
        .with("page_p999_ms", page.p999_ms))
}

/// Makes each connection's first request before the lists are timed: a new client's first
/// request took 1 to 2.5 ms more than the next ones, most of it in the client (its first stream
/// on the channel), which a client that holds its connection, as kube-apiserver does, pays
/// once and not per list (docs/benchmarks.md, "Both databases to 20M"). A get of the prefix
/// itself, one key: it leaves the server's remembered page counts of the range alone.
async fn warm_up(channels: &[Channel], prefix: &[u8]) -> Result<(), String> {
    for channel in channels {
        client::kv(channel.clone())
            .range(RangeRequest {
                key: Bytes::copy_from_slice(prefix),
                ..Default::default()
            })
            .await
            .map_err(|status| format!("warming up the connection: {}", status.message()))?;
    }
    Ok(())
}

/// The pages of every list a `list` run made.
struct ListedPages {
    /// Keys in the last list.
    keys: usize,
    /// The first, middle and last page's times, one recorder each.
    marks: [Recorder; 3],
    all: Recorder,
}

impl ListedPages {
    fn add(&mut self, listed: &client::Listed) {
        self.keys = listed.count;
        let pages = &listed.pages;
        for (mark, at) in self
            .marks
            .iter_mut()
            .zip([0, pages.len() / 2, pages.len().max(1) - 1])
        {
            mark.record(pages.get(at).copied().unwrap_or_default());
        }
        for page in pages {
            self.all.record(*page);
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
    let origin = Instant::now();
    // How many puts were written, once the writers are done.
    let (written_tx, written_rx) = tokio::sync::watch::channel(None::<u64>);
    let mut receivers = Vec::new();
    for w in 0..watchers.max(1) {
        let mut client = WatchClient::new(channels[w % channels.len()].clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let (requests, outbound) = tokio::sync::mpsc::channel(1);
        let create = WatchCreateRequest {
            key: keys.prefix.clone().into(),
            range_end: client::prefix_end(keys.prefix.as_bytes()),
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
        let mut written = written_rx.clone();
        receivers.push(tokio::spawn(async move {
            let _open = requests;
            let mut recorder = Recorder::new(origin);
            let mut received = 0;
            loop {
                if written.borrow().is_some_and(|total| received >= total) {
                    return recorder;
                }
                let response = tokio::select! {
                    response = responses.message() => response,
                    _ = written.changed() => continue,
                };
                let Ok(Some(response)) = response else {
                    recorder.error("the watch ended early");
                    return recorder;
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
                        None => recorder.error("an event without the bench's time stamp"),
                    }
                }
            }
        }));
    }
    let size = args.val_size.max(20);
    let keys = keys.clone();
    let (writes, _) = drive(args, "watch", channels, args.total, move |ch, i| {
        let key = keys.key(i % 1000);
        async move {
            let stamp = format!("{:020}", origin.elapsed().as_nanos());
            let mut value = stamp.into_bytes();
            value.resize(size, b'v');
            put(ch, key, value.into()).await
        }
    })
    .await;
    let _ = written_tx.send(Some(writes.operations()));
    let mut all = Recorder::new(origin);
    for receiver in receivers {
        match tokio::time::timeout(Duration::from_secs(60), receiver).await {
            Ok(Ok(recorder)) => all.merge(&recorder),
            _ => all.error("a watcher did not receive every event within 60 s"),
        }
    }
    all.merge_errors(&writes);
    Ok(all
        .report("watch", origin.elapsed())
        .with("events_written", writes.operations() as f64))
}
