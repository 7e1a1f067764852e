//! Compaction: recorded at once, enforced on reads, history removed in the background, and
//! every revision at or above the compacted one still a true snapshot.

use std::collections::BTreeMap;

use etcd_client::{CompactionOptions, GetOptions};
use etcdshim::ServerOptions;
use tonic::Code;

use crate::harness::{RawWatch, TestServer, status_of};

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// A watch of `h/` from `compact_at` gets every change of `model` from there, each with the
/// key's previous version. That version may be older than the compacted revision: the change
/// that made it is gone from the log, and its version must still be found. The change at the
/// compacted revision itself has no previous version to give, as in etcd (it would be read at
/// a compacted revision).
async fn watch_matches_the_model(
    server: &TestServer,
    model: &[BTreeMap<String, String>],
    compact_at: i64,
) {
    let head = (model.len() - 1) as i64;
    let mut watch = RawWatch::watching(
        &server.endpoint(),
        etcdshim::proto::WatchCreateRequest {
            key: "h/".into(),
            range_end: "h0".into(),
            start_revision: compact_at,
            prev_kv: true,
            ..Default::default()
        },
    )
    .await;
    let mut events = Vec::new();
    while (events.len() as i64) < head - compact_at + 1 {
        events.extend(watch.next().await.events);
    }
    for (event, revision) in events.iter().zip(compact_at..) {
        let (before, after) = (&model[revision as usize - 1], &model[revision as usize]);
        let kv = event.kv.as_ref().expect("kv");
        let key = String::from_utf8_lossy(&kv.key).into_owned();
        assert_eq!(kv.mod_revision, revision, "{event:?}");
        assert_eq!(
            after.get(&key).map(String::as_bytes).unwrap_or_default(),
            &kv.value[..],
            "revision {revision} after compacting at {compact_at}"
        );
        if revision > compact_at {
            let previous = event.prev_kv.as_ref().map(|p| p.value.to_vec());
            assert_eq!(
                previous,
                before.get(&key).map(|v| v.as_bytes().to_vec()),
                "previous version at revision {revision} after compacting at {compact_at}"
            );
        }
    }
    assert_eq!(events.len() as i64, head - compact_at + 1, "{events:?}");
}

const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

crate::on_every_backend! {
    async fn compaction_errors_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..10 {
            client.put("k", i.to_string(), None).await.expect("put"); // revisions 2..=11
        }
        client.compact(6, None).await.expect("compact");
        let reads = [
            (5, Err(COMPACTED)),
            (6, Ok("4")),
            (7, Ok("5")),
            (11, Ok("9")),
            (12, Err(FUTURE)),
        ];
        for (revision, expected) in reads {
            let result = client
                .get("k", Some(GetOptions::new().with_revision(revision)))
                .await;
            match expected {
                Ok(value) => assert_eq!(
                    result.expect("read").kvs()[0].value(),
                    value.as_bytes(),
                    "at {revision}"
                ),
                Err(message) => {
                    let (code, got) = status_of(result);
                    assert_eq!(
                        (code, got.as_str()),
                        (Code::OutOfRange, message),
                        "at {revision}"
                    );
                }
            }
        }
        let compacts = [(6, COMPACTED), (3, COMPACTED), (12, FUTURE)];
        for (revision, message) in compacts {
            let (code, got) = status_of(client.compact(revision, None).await);
            assert_eq!(
                (code, got.as_str()),
                (Code::OutOfRange, message),
                "compact {revision}"
            );
        }
        let resp = client
            .compact(11, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("compact to head");
        assert_eq!(resp.header().expect("header").revision(), 11);
        assert_eq!(
            client.get("k", None).await.expect("get").kvs()[0].value(),
            b"9"
        );
    }

    // Every read at or above the compacted revision matches a model of the history, while the
    // compactor removes what is below it.
    async fn history_at_or_above_the_compacted_revision_survives_compaction() {
        // A window of 10 events: watches from the compacted revisions read the log.
        let server = TestServer::start_with(ServerOptions {
            store: etcdshim::store::StoreOptions {
                watch_window_events: 10,
                ..Default::default()
            },
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        // model[revision] = the whole key space after that revision
        let mut model: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(), BTreeMap::new()];
        let mut state = BTreeMap::new();
        for step in 0..300u32 {
            let key = format!("h/{}", step * 7 % 13);
            if step % 5 == 3 {
                let resp = client.delete(key.clone(), None).await.expect("delete");
                if resp.deleted() == 0 {
                    continue;
                }
                state.remove(&key);
            } else {
                client
                    .put(key.clone(), step.to_string(), None)
                    .await
                    .expect("put");
                state.insert(key, step.to_string());
            }
            model.push(state.clone());
        }
        let head = (model.len() - 1) as i64;
        for compact_at in [50, 120, 200] {
            client
                .compact(compact_at, Some(CompactionOptions::new().with_physical()))
                .await
                .expect("compact");
            for revision in compact_at..=head {
                let resp = client
                    .get(
                        "h/",
                        Some(GetOptions::new().with_prefix().with_revision(revision)),
                    )
                    .await
                    .expect("read");
                let got: BTreeMap<String, String> = resp
                    .kvs()
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(kv.key()).into_owned(),
                            String::from_utf8_lossy(kv.value()).into_owned(),
                        )
                    })
                    .collect();
                assert_eq!(
                    got, model[revision as usize],
                    "revision {revision} after compacting at {compact_at}"
                );
                assert_eq!(resp.count() as usize, got.len());
            }
            watch_matches_the_model(&server, &model, compact_at).await;
        }
    }

    async fn revision_and_compaction_survive_a_restart() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..5 {
            client.put(format!("d/{i}"), "v", None).await.expect("put");
        }
        client.compact(4, None).await.expect("compact");
        let server = server.restart().await;
        let mut client = server.client().await;
        let resp = client
            .get("d/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert_eq!(
            (resp.count(), resp.header().expect("header").revision()),
            (5, 6)
        );
        let (code, message) = status_of(
            client
                .get("d/0", Some(GetOptions::new().with_revision(3)))
                .await,
        );
        assert_eq!((code, message.as_str()), (Code::OutOfRange, COMPACTED));
        let resp = client.put("d/5", "v", None).await.expect("put");
        assert_eq!(
            resp.header().expect("header").revision(),
            7,
            "revisions continue after a restart"
        );
    }
}
