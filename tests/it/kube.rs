//! kube-apiserver's calls, replayed with their exact shapes (C1-C14 of the apiserver contract):
//! health and version checks, a lease shared by many keys, optimistic create/update/delete
//! txns, paged lists pinned to page 1's revision, count-only, prefix watches from the list
//! revision with prev_kv and progress requests on one stream, and the compaction election.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use etcdshim::proto::WatchCreateRequest;
use etcdshim::proto::mvccpb::event::EventType;

use crate::harness::{RawWatch, TestServer};

const PODS: &str = "/registry/pods/default/";
const PODS_END: &str = "/registry/pods/default0";

fn pod(i: usize) -> String {
    format!("{PODS}pod-{i:03}")
}

fn create(key: &str, value: &str, lease: i64) -> Txn {
    let options = (lease != 0).then(|| PutOptions::new().with_lease(lease));
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, options)])
}

fn update(key: &str, value: &str, revision: i64) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)])
}

fn delete(key: &str, revision: i64) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
        .and_then([TxnOp::delete(key, None)])
        .or_else([TxnOp::get(key, None)])
}

fn version_at_least(version: &str, wanted: (u64, u64, u64)) -> bool {
    let parts: Vec<u64> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.len() == 3 && (parts[0], parts[1], parts[2]) >= wanted
}

crate::on_every_backend! {
    async fn kube_apiserver_call_shapes() {
        let server = TestServer::start().await;
        let mut client = server.client().await;

        // C12, C13: version gate and health probe (a missing key is a healthy answer).
        let status = client.status().await.expect("status");
        assert!(
            version_at_least(status.version(), (3, 5, 13)),
            "{}",
            status.version()
        );
        assert!(status.db_size() > 0);
        assert_eq!(
            client
                .get("/registry/health", None)
                .await
                .expect("health")
                .count(),
            0
        );

        // C11: one lease for many event objects; C4: creates.
        let lease = client.lease_grant(3600, None).await.expect("grant").id();
        let mut revisions = BTreeMap::new();
        for i in 0..30 {
            let resp = client
                .txn(create(&pod(i), &format!("pod {i} v1"), 0))
                .await
                .expect("create");
            assert!(resp.succeeded());
            revisions.insert(pod(i), resp.header().expect("header").revision());
            let event = format!("/registry/events/default/pod-{i:03}.1");
            assert!(
                client
                    .txn(create(&event, "scheduled", lease))
                    .await
                    .expect("event")
                    .succeeded()
            );
        }
        assert!(
            !client
                .txn(create(&pod(0), "again", 0))
                .await
                .expect("create")
                .succeeded(),
            "already exists"
        );

        // C1: get one object, limit 1, at the head and at a revision.
        let one = client
            .get(pod(3), Some(GetOptions::new().with_limit(1)))
            .await
            .expect("get");
        assert_eq!(one.kvs()[0].mod_revision(), revisions[&pod(3)]);
        let at = client
            .get(
                pod(3),
                Some(
                    GetOptions::new()
                        .with_limit(1)
                        .with_revision(revisions[&pod(3)]),
                ),
            )
            .await
            .expect("get at");
        assert_eq!(at.kvs()[0].value(), b"pod 3 v1");

        // C2: a paged list; pages after the first pin page 1's revision while writes go on.
        let page_size = 7;
        let mut listed = Vec::new();
        let mut start = PODS.as_bytes().to_vec();
        let mut list_revision = 0;
        loop {
            let options = GetOptions::new()
                .with_range(PODS_END)
                .with_limit(page_size)
                .with_revision(list_revision);
            let page = client
                .get(start.clone(), Some(options))
                .await
                .expect("page");
            if list_revision == 0 {
                list_revision = page.header().expect("header").revision();
                // Writes after page 1 must not show in later pages.
                let p5 = pod(5);
                assert!(
                    client
                        .txn(update(&p5, "pod 5 v2", revisions[&p5]))
                        .await
                        .expect("update")
                        .succeeded()
                );
                assert!(
                    client
                        .txn(delete(&pod(20), revisions[&pod(20)]))
                        .await
                        .expect("delete")
                        .succeeded()
                );
                assert!(
                    client
                        .txn(create(&pod(99), "late", 0))
                        .await
                        .expect("create")
                        .succeeded()
                );
            }
            let remaining = 30 - listed.len() as i64;
            assert_eq!(
                page.count(),
                remaining,
                "count is exact for [start, end) at the pinned revision"
            );
            // kube-apiserver 1.34 derives hasMore from len(kvs) < count.
            assert_eq!(page.more(), (page.kvs().len() as i64) < page.count());
            for kv in page.kvs() {
                listed.push((
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ));
            }
            if !page.more() {
                break;
            }
            start = page.kvs().last().expect("page").key().to_vec();
            start.push(0);
        }
        let expected: Vec<(String, String)> =
            (0..30).map(|i| (pod(i), format!("pod {i} v1"))).collect();
        assert_eq!(
            listed, expected,
            "the list is the snapshot at page 1's revision"
        );

        // C3: count only.
        let count = client
            .get(
                PODS,
                Some(GetOptions::new().with_range(PODS_END).with_count_only()),
            )
            .await
            .expect("count");
        assert_eq!(
            (count.count(), count.kvs().len()),
            (30, 0),
            "one deleted, one created"
        );

        // C9: watches from the list revision + 1 with prev_kv and progress_notify, sharing a stream.
        let mut watch = RawWatch::open(&server.endpoint()).await;
        let watch_from = |key: &str, end: &str| WatchCreateRequest {
            key: key.to_string().into(),
            range_end: end.to_string().into(),
            start_revision: list_revision + 1,
            prev_kv: true,
            progress_notify: true,
            ..Default::default()
        };
        watch.create(watch_from(PODS, PODS_END)).await;
        watch
            .create(watch_from("/registry/events/", "/registry/events0"))
            .await;
        // Created answers come in request order; the first watch's events may come between them.
        let mut seen = Vec::new();
        let mut created = 0;
        while seen.len() < 3 || created < 2 {
            let response = watch.next().await;
            if response.created {
                assert_eq!(response.watch_id, created);
                created += 1;
                continue;
            }
            assert_eq!(response.watch_id, 0);
            for event in response.events {
                let kv = event.kv.expect("kv");
                let kind = if event.r#type == EventType::Put as i32 {
                    "PUT"
                } else {
                    "DELETE"
                };
                let prev = event
                    .prev_kv
                    .map(|p| String::from_utf8_lossy(&p.value).into_owned());
                seen.push((kind, String::from_utf8_lossy(&kv.key).into_owned(), prev));
            }
        }
        assert_eq!(
            seen,
            [
                ("PUT", pod(5), Some("pod 5 v1".to_string())),
                ("DELETE", pod(20), Some("pod 20 v1".to_string())),
                ("PUT", pod(99), None),
            ]
        );

        // C5, C6 with a stale revision: the failure branch reads the current object.
        let stale = client
            .txn(update(&pod(5), "lost", revisions[&pod(5)]))
            .await
            .expect("stale update");
        assert!(!stale.succeeded());
        match &stale.op_responses()[0] {
            TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"pod 5 v2"),
            other => panic!("expected the current object, got {other:?}"),
        }

        // C10: progress requests interleaved with writes on the same stream.
        let mut outstanding = 0usize;
        for i in 0..15 {
            let key = pod(i);
            let current = client.get(key.clone(), None).await.expect("get").kvs()[0].mod_revision();
            let resp = client
                .txn(update(&key, &format!("pod {i} v3"), current))
                .await
                .expect("update");
            assert!(resp.succeeded());
            let written = resp.header().expect("header").revision();
            outstanding += 1;
            watch.request_progress().await;
            loop {
                let response = watch.next().await;
                if response.watch_id == -1 {
                    let revision = response.header.expect("header").revision;
                    assert!(
                        revision >= written,
                        "progress {revision} below a committed write {written}"
                    );
                    assert_eq!(
                        outstanding, 0,
                        "an event at or below the progress revision came after it"
                    );
                    break;
                }
                outstanding -= response.events.len();
            }
        }

        // C7: the compaction election, then Compact; C8: read compact_rev_key and watch it.
        let head = crate::harness::head_revision(&client).await;
        let elect = |version: i64, revision: i64| {
            Txn::new()
                .when([Compare::version(
                    "compact_rev_key",
                    CompareOp::Equal,
                    version,
                )])
                .and_then([TxnOp::put("compact_rev_key", revision.to_string(), None)])
                .or_else([TxnOp::get("compact_rev_key", None)])
        };
        assert!(client.txn(elect(0, head)).await.expect("elect").succeeded());
        let lost = client.txn(elect(0, head)).await.expect("second apiserver");
        assert!(
            !lost.succeeded(),
            "the version compare elects one apiserver"
        );
        client.compact(head, None).await.expect("compact");
        let key = client
            .get("compact_rev_key", None)
            .await
            .expect("read compact_rev_key");
        let key_revision = key.header().expect("header").revision();
        watch
            .create(WatchCreateRequest {
                key: "compact_rev_key".into(),
                start_revision: key_revision,
                ..Default::default()
            })
            .await;
        let created = watch.next().await;
        assert!(created.created && !created.canceled, "{created:?}");
        // Watching from the header revision includes the election's write at that revision.
        let elected = watch.next().await;
        assert_eq!(elected.watch_id, created.watch_id);
        assert_eq!(
            elected.events[0].kv.as_ref().expect("kv").mod_revision,
            key_revision
        );

        // A watch from below the compaction (a stale cache) is created, then canceled.
        watch.create(watch_from(PODS, PODS_END)).await;
        let created = watch.next().await;
        assert!(created.created, "{created:?}");
        let canceled = watch.next().await;
        assert!(
            canceled.canceled && canceled.compact_revision == head,
            "{canceled:?}"
        );
    }
}
