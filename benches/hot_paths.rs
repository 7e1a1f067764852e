//! Criterion micro-benchmarks of the store's hot paths, in process on a SQLite file (no gRPC,
//! no client): what one sequencer batch commit costs, what a list page at a past revision costs
//! next to one at the head, and what delivering one event to N watchers costs.
//!
//! `cargo bench --bench hot_paths` (add `-- --quick` for a short run). The whole-server,
//! side-by-side-with-etcd numbers come from `scripts/bench-vs-etcd.sh` (docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etcdshim::proto::{PutRequest, RangeRequest, WatchCreateRequest};
use etcdshim::store::watcher::WatchSession;
use etcdshim::store::{Store, StoreOptions};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A store on a fresh SQLite file; the folder lives as long as the benchmark.
fn open_store(rt: &Runtime) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("sqlite://{}/bench.db", dir.path().display());
    let store = rt
        .block_on(Store::open(&endpoint, &StoreOptions::default()))
        .expect("open store");
    (store, dir)
}

fn put(key: String) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: vec![b'v'; 256].into(),
        ..Default::default()
    }
}

/// N puts submitted at once: the sequencer commits them in one SQL transaction (or a few).
fn sequencer_batch_commit(c: &mut Criterion) {
    let rt = runtime();
    let (store, _dir) = open_store(&rt);
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("sequencer_batch_commit");
    group.sample_size(20);
    for batch in [1u64, 100, 1000] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.to_async(&rt).iter(|| {
                let (store, next) = (store.clone(), next.clone());
                async move {
                    let mut puts = JoinSet::new();
                    for _ in 0..batch {
                        let (store, n) = (store.clone(), next.fetch_add(1, Ordering::Relaxed));
                        puts.spawn(async move { store.put(put(format!("/seq/{n:012}"))).await });
                    }
                    while let Some(done) = puts.join_next().await {
                        done.expect("put task").expect("put");
                    }
                }
            })
        });
    }
    group.finish();
}

/// A page of 500 keys out of 10,000, at the head and at a revision before half of them were
/// overwritten (the read then combines `current` with the log).
fn range_page(c: &mut Criterion) {
    let rt = runtime();
    let (store, _dir) = open_store(&rt);
    let keys = 10_000u64;
    let write = |from: u64, to: u64, step: u64| {
        rt.block_on(async {
            let mut puts = JoinSet::new();
            for i in (from..to).step_by(step as usize) {
                let store = store.clone();
                puts.spawn(async move { store.put(put(format!("/range/{i:08}"))).await });
            }
            while let Some(done) = puts.join_next().await {
                done.expect("put task").expect("put");
            }
        })
    };
    write(0, keys, 1);
    let past = store.head();
    write(0, keys, 2);
    let page = |revision: i64| RangeRequest {
        key: "/range/".into(),
        range_end: "/range0".into(),
        limit: 500,
        revision,
        ..Default::default()
    };
    let mut group = c.benchmark_group("range_page_500_of_10k");
    group.throughput(Throughput::Elements(500));
    for (name, revision) in [("head", 0), ("past_revision", past)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                async move {
                    let resp = store.range(&page(revision)).await.expect("range");
                    assert_eq!(resp.kvs.len(), 500);
                }
            })
        });
    }
    group.finish();
}

/// One put watched by N watch streams: the time until every stream has its event.
fn watch_fanout(c: &mut Criterion) {
    let rt = runtime();
    let (store, _dir) = open_store(&rt);
    let mut group = c.benchmark_group("watch_fanout_one_event");
    group.sample_size(20);
    for watchers in [1usize, 100, 1000] {
        let (delivered, mut deliveries) = tokio::sync::mpsc::unbounded_channel();
        let mut streams = Vec::new();
        for _ in 0..watchers {
            let (store, delivered) = (store.clone(), delivered.clone());
            streams.push(rt.spawn(async move {
                let mut session = WatchSession::new(store, 1);
                let mut head = session.subscribe_head();
                session.create(WatchCreateRequest {
                    key: format!("/fan/{watchers}/").into(),
                    range_end: format!("/fan/{watchers}0").into(),
                    ..Default::default()
                });
                loop {
                    head.borrow_and_update();
                    let (responses, behind) = session.pump().await.expect("pump");
                    let events: usize = responses.iter().map(|r| r.events.len()).sum();
                    if events > 0 && delivered.send(events).is_err() {
                        return;
                    }
                    if !behind && head.changed().await.is_err() {
                        return;
                    }
                }
            }));
        }
        let next = AtomicU64::new(0);
        group.throughput(Throughput::Elements(watchers as u64));
        group.bench_function(BenchmarkId::from_parameter(watchers), |b| {
            b.iter(|| {
                let n = next.fetch_add(1, Ordering::Relaxed);
                rt.block_on(async {
                    store
                        .put(put(format!("/fan/{watchers}/{n}")))
                        .await
                        .expect("put");
                    let mut received = 0;
                    while received < watchers {
                        received += deliveries.recv().await.expect("a watcher stopped");
                    }
                })
            })
        });
        for stream in streams {
            stream.abort();
        }
    }
    group.finish();
}

criterion_group!(hot_paths, sequencer_batch_commit, range_page, watch_fanout);
criterion_main!(hot_paths);
