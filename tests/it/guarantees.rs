//! etcd's watch guarantees, checked over a concurrent workload with compaction running:
//! ordered, unique, atomic, reliable (every acknowledged write is seen), resumable,
//! bookmarkable, prev_kv equal to the state at rev-1, and the create flag right.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use etcdshim::ServerOptions;
use etcdshim::proto::WatchCreateRequest;
use etcdshim::proto::mvccpb::Event;
use etcdshim::proto::mvccpb::event::EventType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::harness::{RawWatch, TestServer};

const KEYS: usize = 30;
const WRITERS: u64 = 4;
const OPS_PER_WRITER: usize = 400;

fn watch_all(start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: "w/".into(),
        range_end: "w0".into(),
        start_revision,
        prev_kv: true,
        ..Default::default()
    }
}

/// (revision, key) of every write the server acknowledged.
type Acknowledged = Arc<Mutex<Vec<(i64, String)>>>;

async fn writer(mut client: etcd_client::Client, seed: u64, acknowledged: Acknowledged) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..OPS_PER_WRITER {
        let key = format!("w/{}", rng.random_range(0..KEYS));
        let (revision, keys) = match rng.random_range(0..10) {
            0..5 => {
                let resp = client
                    .put(key.clone(), rng.random::<u32>().to_string(), None)
                    .await
                    .expect("put");
                (resp.header().expect("header").revision(), vec![key])
            }
            5..7 => {
                let resp = client.delete(key.clone(), None).await.expect("delete");
                if resp.deleted() == 0 {
                    continue;
                }
                (resp.header().expect("header").revision(), vec![key])
            }
            _ => {
                let other = format!("w/{}", rng.random_range(0..KEYS));
                if other == key {
                    continue;
                }
                let txn = Txn::new()
                    .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                    .and_then([
                        TxnOp::put(key.clone(), "txn", None),
                        TxnOp::put(other.clone(), "txn", None),
                    ]);
                let resp = client.txn(txn).await.expect("txn");
                if !resp.succeeded() {
                    continue;
                }
                (resp.header().expect("header").revision(), vec![key, other])
            }
        };
        let mut acknowledged = acknowledged.lock().await;
        for key in keys {
            acknowledged.push((revision, key));
        }
    }
}

/// Checks every response of one watcher as it arrives and keeps a model of the key space.
#[derive(Default)]
struct Checker {
    model: BTreeMap<Vec<u8>, etcdshim::proto::KeyValue>,
    last_revision: i64,
    progress_floor: i64,
    seen: HashSet<(i64, Vec<u8>)>,
    revisions: Vec<i64>,
}

impl Checker {
    fn events(&mut self, events: &[Event]) {
        let first = events[0].kv.as_ref().expect("kv").mod_revision;
        assert!(
            first > self.last_revision,
            "ordered and atomic: revision {first} after {}",
            self.last_revision
        );
        assert!(
            first > self.progress_floor,
            "bookmarkable: {first} arrived after progress {}",
            self.progress_floor
        );
        for event in events {
            let kv = event.kv.as_ref().expect("kv");
            assert!(kv.mod_revision >= self.last_revision, "ordered");
            assert!(
                self.seen.insert((kv.mod_revision, kv.key.to_vec())),
                "unique: {kv:?} twice"
            );
            if self.revisions.last() != Some(&kv.mod_revision) {
                self.revisions.push(kv.mod_revision);
            }
            self.last_revision = kv.mod_revision;
            let before = self.model.get(kv.key.as_ref());
            assert_eq!(
                event.prev_kv.as_ref(),
                before,
                "prev_kv is the state at rev-1 for {kv:?}"
            );
            if event.r#type == EventType::Put as i32 {
                match before {
                    None => assert!(
                        kv.create_revision == kv.mod_revision && kv.version == 1,
                        "create flag: {kv:?}"
                    ),
                    Some(prev) => assert!(
                        kv.create_revision == prev.create_revision
                            && kv.version == prev.version + 1,
                        "update: {kv:?}"
                    ),
                }
                self.model.insert(kv.key.to_vec(), kv.clone());
            } else {
                assert!(before.is_some(), "a delete of a live key");
                self.model.remove(kv.key.as_ref());
            }
        }
    }
}

crate::on_every_backend! {
    async fn watch_guarantees_under_concurrent_writes_and_compaction() {
        // A small window makes watchers read the log while compaction removes history under it.
        let server = TestServer::start_with(ServerOptions {
            store: etcdshim::store::StoreOptions {
                watch_window_events: 200,
                ..Default::default()
            },
            ..ServerOptions::default()
        })
        .await;
        let client = server.client().await;
        let acknowledged: Acknowledged = Arc::default();
        let mut watch = RawWatch::watching(&server.endpoint(), watch_all(2)).await;

        let mut writers = Vec::new();
        for seed in 0..WRITERS {
            writers.push(tokio::spawn(writer(
                client.clone(),
                seed,
                acknowledged.clone(),
            )));
        }
        let compactor = {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut compacted = 0;
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let head = crate::harness::head_revision(&client).await;
                    if head - 300 > compacted {
                        compacted = head - 300;
                        client.compact(compacted, None).await.expect("compact");
                    }
                }
            })
        };

        // The watcher reads while writes and compactions go on, asking for progress now and then.
        let mut checker = Checker::default();
        // A second watcher that disconnects and resumes from the last revision it saw.
        let mut resumed = Checker::default();
        let mut resumable = RawWatch::watching(&server.endpoint(), watch_all(2)).await;
        let mut requests = 0;
        let mut reconnects = 0;
        let mut resumable_active = true;
        loop {
            let done = writers.iter().all(|w| w.is_finished());
            if done && checker.last_revision >= server.store.head() {
                break;
            }
            if requests % 10 == 0 {
                watch.request_progress().await;
            }
            requests += 1;
            let Some(response) = watch.maybe_next(Duration::from_millis(100)).await else {
                continue;
            };
            assert!(
                !response.canceled,
                "the watcher kept up and was not canceled: {response:?}"
            );
            if response.watch_id == -1 {
                let revision = response.header.expect("header").revision;
                assert!(revision >= checker.progress_floor);
                checker.progress_floor = revision;
            } else if !response.events.is_empty() {
                checker.events(&response.events);
            }
            if !resumable_active {
                continue;
            }
            if let Some(r) = resumable.maybe_next(Duration::from_millis(1)).await {
                if r.canceled {
                    // Fell behind a compaction: etcd's answer, with the revision to relist from.
                    assert!(r.compact_revision > resumed.last_revision, "{r:?}");
                    resumable_active = false;
                    continue;
                }
                if !r.events.is_empty() {
                    resumed.events(&r.events);
                    if resumed.revisions.len() % 50 == 0 && reconnects < 5 {
                        reconnects += 1;
                        resumable = RawWatch::watching(
                            &server.endpoint(),
                            watch_all(resumed.last_revision + 1),
                        )
                        .await;
                    }
                }
            }
        }
        for w in writers {
            w.await.expect("writer");
        }
        compactor.await.expect("compactor");

        // Reliable: every revision from 2 to the head, and every acknowledged write, was seen.
        let head = server.store.head();
        assert_eq!(
            checker.revisions,
            (2..=head).collect::<Vec<_>>(),
            "no revision missing"
        );
        for (revision, key) in acknowledged.lock().await.iter() {
            assert!(
                checker.seen.contains(&(*revision, key.as_bytes().to_vec())),
                "acknowledged {key}@{revision} not seen"
            );
        }
        // The model built from events is the key space.
        let mut client = client;
        let live = client
            .get("w/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        let actual: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64)> = live
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    (
                        kv.value().to_vec(),
                        kv.create_revision(),
                        kv.mod_revision(),
                        kv.version(),
                    ),
                )
            })
            .collect();
        let modeled: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64)> = checker
            .model
            .iter()
            .map(|(k, kv)| {
                (
                    k.clone(),
                    (
                        kv.value.to_vec(),
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                    ),
                )
            })
            .collect();
        assert_eq!(modeled, actual);
        // Resumable: what the reconnecting watcher saw is a prefix of the same history.
        assert_eq!(
            resumed.revisions[..],
            checker.revisions[..resumed.revisions.len()]
        );
        assert!(
            reconnects > 0 || resumed.revisions.len() < 50,
            "the resumable watcher reconnected"
        );
    }
}
