//! Watch semantics, one test per promise, on raw watch streams so every field is checked.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use etcdshim::ServerOptions;
use etcdshim::proto::WatchCreateRequest;
use etcdshim::proto::mvccpb::Event;
use etcdshim::proto::mvccpb::event::EventType;
use etcdshim::proto::watch_create_request::FilterType;

use crate::harness::{RawWatch, TestServer};

fn prefix(key: &str) -> WatchCreateRequest {
    let mut end = key.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    WatchCreateRequest {
        key: Bytes::from(key.to_string()),
        range_end: Bytes::from(end),
        ..Default::default()
    }
}

fn describe(events: &[Event]) -> Vec<(String, String, i64)> {
    events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().expect("kv");
            let kind = if e.r#type == EventType::Put as i32 {
                "PUT"
            } else {
                "DELETE"
            };
            (
                kind.to_string(),
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

/// Collects events of `watch_id` until `count` arrived.
async fn events(watch: &mut RawWatch, watch_id: i64, count: usize) -> Vec<Event> {
    let mut got = Vec::new();
    while got.len() < count {
        let response = watch.next().await;
        assert_eq!(
            response.watch_id, watch_id,
            "unexpected response {response:?}"
        );
        assert!(
            !response.events.is_empty(),
            "unexpected response {response:?}"
        );
        got.extend(response.events);
    }
    assert_eq!(got.len(), count, "more events than expected: {got:?}");
    got
}

crate::on_every_backend! {
    async fn created_in_request_order_and_canceled_on_request() {
        let server = TestServer::start().await;
        let mut watch = RawWatch::open(&server.endpoint()).await;
        for key in ["a", "b", "c"] {
            watch
                .create(WatchCreateRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await;
        }
        for id in 0..3 {
            let created = watch.next().await;
            assert!(created.created, "{created:?}");
            assert_eq!(
                created.watch_id, id,
                "server ids count from 0 in request order"
            );
            assert_eq!(created.header.expect("header").revision, 1);
        }
        watch.cancel(1).await;
        let canceled = watch.next().await;
        assert!(canceled.canceled && canceled.watch_id == 1, "{canceled:?}");
        // A client-chosen id in use is refused on the spot.
        watch
            .create(WatchCreateRequest {
                key: "d".into(),
                watch_id: 2,
                ..Default::default()
            })
            .await;
        let refused = watch.next().await;
        assert!(
            refused.created && refused.canceled && refused.watch_id == 2,
            "{refused:?}"
        );
        assert_eq!(
            refused.cancel_reason,
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
        watch
            .create(WatchCreateRequest {
                key: "e".into(),
                watch_id: 42,
                ..Default::default()
            })
            .await;
        assert_eq!(watch.next().await.watch_id, 42);
        let mut client = server.client().await;
        client.put("b", "1", None).await.expect("put");
        client.put("c", "1", None).await.expect("put");
        let event = watch.next().await;
        assert_eq!(
            (event.watch_id, describe(&event.events)),
            (2, vec![("PUT".into(), "c".into(), 3)]),
            "the canceled watch sent nothing"
        );
    }

    async fn ranges_prefixes_and_from_key_see_only_their_keys() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::open(&server.endpoint()).await;
        let cases = [
            WatchCreateRequest {
                key: "k/b".into(),
                ..Default::default()
            },
            prefix("k/"),
            WatchCreateRequest {
                key: "k/b".into(),
                range_end: "k/d".into(),
                ..Default::default()
            },
            WatchCreateRequest {
                key: "k/c".into(),
                range_end: Bytes::from_static(b"\0"),
                ..Default::default()
            },
        ];
        for create in cases {
            watch.create(create).await;
            assert!(watch.next().await.created);
        }
        for key in ["k/a", "k/b", "k/c", "k/d", "z"] {
            client.put(key, "v", None).await.expect("put");
        }
        let mut seen: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for _ in 0..(1 + 4 + 2 + 3) {
            let response = watch.next().await;
            for (_, key, _) in describe(&response.events) {
                seen.entry(response.watch_id).or_default().push(key);
            }
            if seen.values().map(Vec::len).sum::<usize>() == 10 {
                break;
            }
        }
        assert_eq!(seen[&0], ["k/b"]);
        assert_eq!(seen[&1], ["k/a", "k/b", "k/c", "k/d"]);
        assert_eq!(seen[&2], ["k/b", "k/c"]);
        assert_eq!(seen[&3], ["k/c", "k/d", "z"]);
    }

    async fn prev_kv_create_and_delete_events() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            prev_kv: true,
            ..prefix("p/")
        }).await;
        client.put("p/x", "1", None).await.expect("create");
        client.put("p/x", "2", None).await.expect("update");
        client.delete("p/x", None).await.expect("delete");
        let got = events(&mut watch, 0, 3).await;
        let created = got[0].kv.as_ref().expect("kv");
        assert_eq!(
            (
                created.create_revision,
                created.mod_revision,
                created.version
            ),
            (2, 2, 1)
        );
        assert!(got[0].prev_kv.is_none(), "a create has no previous version");
        assert_eq!(got[1].prev_kv.as_ref().expect("prev").value.as_ref(), b"1");
        assert_eq!(got[2].r#type, EventType::Delete as i32);
        let deleted = got[2].kv.as_ref().expect("kv");
        assert_eq!(
            (
                deleted.key.as_ref(),
                deleted.mod_revision,
                deleted.version,
                deleted.value.is_empty()
            ),
            (&b"p/x"[..], 4, 0, true)
        );
        let prev = got[2].prev_kv.as_ref().expect("prev of delete");
        assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"2"[..], 3));
    }

    async fn filters_drop_puts_or_deletes() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::open(&server.endpoint()).await;
        watch
            .create(WatchCreateRequest {
                filters: vec![FilterType::Noput as i32],
                ..prefix("f/")
            })
            .await;
        watch
            .create(WatchCreateRequest {
                filters: vec![FilterType::Nodelete as i32],
                ..prefix("f/")
            })
            .await;
        assert!(watch.next().await.created && watch.next().await.created);
        client.put("f/1", "v", None).await.expect("put");
        client.delete("f/1", None).await.expect("delete");
        let mut by_watch = std::collections::BTreeMap::new();
        for _ in 0..2 {
            let r = watch.next().await;
            by_watch.insert(r.watch_id, describe(&r.events));
        }
        assert_eq!(by_watch[&0], [("DELETE".to_string(), "f/1".to_string(), 3)]);
        assert_eq!(by_watch[&1], [("PUT".to_string(), "f/1".to_string(), 2)]);
    }

    async fn one_revision_arrives_in_one_response() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::watching(&server.endpoint(), prefix("t/")).await;
        let txn = Txn::new().and_then(
            (0..50)
                .map(|i| TxnOp::put(format!("t/{i:02}"), "v", None))
                .collect::<Vec<_>>(),
        );
        client.txn(txn).await.expect("txn");
        let response = watch.next().await;
        assert_eq!(
            response.events.len(),
            50,
            "all 50 events of revision 2 in one response"
        );
        assert!(
            response
                .events
                .iter()
                .all(|e| e.kv.as_ref().map(|kv| kv.mod_revision) == Some(2))
        );
        let keys: Vec<String> = describe(&response.events)
            .into_iter()
            .map(|(_, k, _)| k)
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("t/{i:02}")).collect();
        assert_eq!(keys, expected, "in the txn's order");
    }

    async fn past_start_revisions_replay_history_then_follow_live() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..20 {
            client
                .put(format!("h/{}", i % 4), i.to_string(), None)
                .await
                .expect("put");
        }
        // After a restart the in-memory window is empty: history comes from the log.
        let server = server.restart().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            start_revision: 5,
            prev_kv: true,
            ..prefix("h/")
        }).await;
        let mut got = events(&mut watch, 0, 17).await;
        for i in 20..25 {
            client
                .put(format!("h/{}", i % 4), i.to_string(), None)
                .await
                .expect("put");
        }
        got.extend(events(&mut watch, 0, 5).await);
        let revisions: Vec<i64> = got
            .iter()
            .map(|e| e.kv.as_ref().expect("kv").mod_revision)
            .collect();
        assert_eq!(
            revisions,
            (5..=26).collect::<Vec<_>>(),
            "no gap, no duplicate"
        );
        // The replayed prev_kv is the key's version before each event (none for a create).
        assert!(got[0].prev_kv.is_none(), "revision 5 created h/3");
        assert_eq!(
            got[1].prev_kv.as_ref().expect("prev").mod_revision,
            2,
            "h/0 was last written at 2"
        );
    }

    async fn a_key_changed_twice_in_one_revision_replays_its_last_change() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("m/a", "old", None).await.expect("put");
        // The from-key delete reads a range, so the put's change is written before the
        // deletion's: the deletion's row must take its place, not sit beside it.
        let txn = Txn::new().and_then([
            TxnOp::put("m/a", "never seen", None),
            TxnOp::delete("m/a", Some(etcd_client::DeleteOptions::new().with_from_key())),
        ]);
        client.txn(txn).await.expect("txn");
        client.put("m/z", "after", None).await.expect("put");
        let server = server.restart().await;
        let mut watch = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            start_revision: 2,
            prev_kv: true,
            ..prefix("m/")
        }).await;
        let got = events(&mut watch, 0, 3).await;
        assert_eq!(
            describe(&got),
            [
                ("PUT".to_string(), "m/a".to_string(), 2),
                ("DELETE".to_string(), "m/a".to_string(), 3),
                ("PUT".to_string(), "m/z".to_string(), 4),
            ]
        );
        let prev = got[1].prev_kv.as_ref().expect("the deletion's prev_kv");
        assert_eq!(prev.value, Bytes::from("old"), "the version before revision 3");
    }

    async fn future_start_revision_waits_for_it() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            start_revision: 4,
            ..prefix("u/")
        }).await;
        for i in 0..4 {
            client.put("u/k", i.to_string(), None).await.expect("put");
        }
        let got = events(&mut watch, 0, 2).await;
        assert_eq!(
            describe(&got).iter().map(|e| e.2).collect::<Vec<_>>(),
            [4, 5]
        );
    }

    async fn a_compacted_start_is_created_then_canceled() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..5 {
            client.put("c/k", i.to_string(), None).await.expect("put");
        }
        client.compact(4, None).await.expect("compact");
        let mut watch = RawWatch::open(&server.endpoint()).await;
        watch
            .create(WatchCreateRequest {
                start_revision: 2,
                ..prefix("c/")
            })
            .await;
        let created = watch.next().await;
        assert!(created.created && !created.canceled, "{created:?}");
        let canceled = watch.next().await;
        assert!(canceled.canceled, "{canceled:?}");
        assert_eq!((canceled.watch_id, canceled.compact_revision), (0, 4));
        // The stream is still usable, and a watch from the compacted revision itself works.
        watch
            .create(WatchCreateRequest {
                start_revision: 4,
                ..prefix("c/")
            })
            .await;
        assert!(watch.next().await.created);
        let got = events(&mut watch, 1, 3).await;
        assert_eq!(
            describe(&got).iter().map(|e| e.2).collect::<Vec<_>>(),
            [4, 5, 6]
        );
    }

    async fn progress_requests_come_after_every_earlier_event() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::open(&server.endpoint()).await;
        watch.create(prefix("g/")).await;
        watch.create(prefix("other/")).await;
        assert!(watch.next().await.created && watch.next().await.created);
        watch.request_progress().await;
        let progress = watch.next().await;
        assert_eq!(
            (
                progress.watch_id,
                progress.events.len(),
                progress.header.expect("header").revision
            ),
            (-1, 0, 1)
        );
        let mut expected_events = 0;
        for round in 0..20 {
            client
                .put(format!("g/{round}"), "v", None)
                .await
                .expect("put");
            expected_events += 1;
            watch.request_progress().await;
            // Everything up to the progress revision arrives before it, and nothing at or below it
            // after it.
            loop {
                let r = watch.next().await;
                if r.watch_id == -1 {
                    let revision = r.header.expect("header").revision;
                    assert_eq!(revision, round + 2, "progress reports the current revision");
                    assert_eq!(
                        expected_events, 0,
                        "progress arrived before an event at or below it"
                    );
                    break;
                }
                expected_events -= r.events.len() as i64;
            }
        }
    }

    async fn periodic_progress_only_when_synced_and_not_below_the_start() {
        let server = TestServer::start_with(ServerOptions {
            watch_progress_notify_interval: Duration::from_millis(200),
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        client.put("n/a", "v", None).await.expect("put");
        let mut watch = RawWatch::open(&server.endpoint()).await;
        watch
            .create(WatchCreateRequest {
                progress_notify: true,
                ..prefix("n/")
            })
            .await;
        watch
            .create(WatchCreateRequest {
                progress_notify: true,
                start_revision: 10,
                ..prefix("n/")
            })
            .await;
        assert!(watch.next().await.created && watch.next().await.created);
        let notification = watch.next().await;
        assert_eq!(
            (
                notification.watch_id,
                notification.events.len(),
                notification.header.expect("header").revision
            ),
            (0, 0, 2)
        );
        // Watch 1 starts at 10: no notification for revision 2 reaches it.
        for _ in 0..3 {
            let r = watch.next().await;
            assert_eq!(r.watch_id, 0, "{r:?}");
        }
    }

    async fn large_revisions_are_fragmented_only_when_asked() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::open(&server.endpoint()).await;
        watch
            .create(WatchCreateRequest {
                fragment: true,
                prev_kv: true,
                ..prefix("big/")
            })
            .await;
        watch
            .create(WatchCreateRequest {
                prev_kv: true,
                ..prefix("big/")
            })
            .await;
        assert!(watch.next().await.created && watch.next().await.created);
        let value = vec![b'x'; 700 * 1024];
        for i in 0..4 {
            client
                .put(format!("big/{i}"), value.clone(), None)
                .await
                .expect("put");
        }
        let mut put_events = 0;
        while put_events < 8 {
            put_events += watch.next().await.events.len();
        }
        // One delete of 2.8 MB of previous values: a single revision over the response limit.
        client
            .delete(
                "big/",
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .expect("delete");
        let mut fragments = Vec::new();
        let mut whole = None;
        while whole.is_none()
            || fragments
                .last()
                .is_none_or(|r: &etcdshim::proto::WatchResponse| r.fragment)
        {
            let r = watch.next().await;
            if r.watch_id == 0 {
                fragments.push(r);
            } else {
                whole = Some(r);
            }
        }
        assert!(fragments.len() >= 2, "split into fragments");
        assert!(fragments[..fragments.len() - 1].iter().all(|r| r.fragment));
        assert_eq!(fragments.iter().map(|r| r.events.len()).sum::<usize>(), 4);
        assert_eq!(
            whole.expect("unfragmented").events.len(),
            4,
            "one response for the whole revision"
        );
    }

    async fn a_slow_watcher_falls_behind_and_catches_up_from_the_log() {
        // A window of 100 events: the watcher that does not read soon needs the log.
        let server = TestServer::start_with(ServerOptions {
            store: etcdshim::store::StoreOptions {
                watch_window_events: 100,
                ..Default::default()
            },
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        let mut slow = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            prev_kv: true,
            ..prefix("s/")
        }).await;
        // Writers finish while the watcher reads nothing.
        let writes = 3000;
        let mut tasks = Vec::new();
        for t in 0..10 {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..writes / 10 {
                    client
                        .put(format!("s/{}", (t * 7 + i) % 50), format!("{t}-{i}"), None)
                        .await
                        .expect("put");
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("writers are never blocked by a watcher")
                .expect("writer");
        }
        client.put("s/last", "done", None).await.expect("put");
        let got = events(&mut slow, 0, writes + 1).await;
        let revisions: Vec<i64> = got
            .iter()
            .map(|e| e.kv.as_ref().expect("kv").mod_revision)
            .collect();
        assert_eq!(
            revisions,
            (2..=(writes as i64 + 2)).collect::<Vec<_>>(),
            "every event, in order, once"
        );
        assert!(
            got[1..]
                .iter()
                .filter(|e| e.kv.as_ref().expect("kv").version > 1)
                .all(|e| e.prev_kv.is_some())
        );
    }

    async fn a_departed_client_ends_its_watches_and_the_server_goes_on() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        {
            let _watch = RawWatch::watching(&server.endpoint(), prefix("d/")).await;
        }
        for i in 0..100 {
            client
                .put(format!("d/{i}"), "v", None)
                .await
                .expect("writes go on after the watcher left");
        }
        let mut watch = RawWatch::watching(&server.endpoint(), WatchCreateRequest {
            start_revision: 2,
            ..prefix("d/")
        }).await;
        assert_eq!(events(&mut watch, 0, 100).await.len(), 100);
        let _ = Compare::version("x", CompareOp::Equal, 0);
    }
}
