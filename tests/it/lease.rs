//! Leases: grant, attach, keep alive, revoke, expire (keys deleted at one revision, seen by
//! watchers as DELETE events with prev_kv), and leases surviving a restart.

use std::time::Duration;

use etcd_client::{LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use etcdshim::proto::WatchCreateRequest;
use etcdshim::proto::mvccpb::event::EventType;
use tonic::Code;

use crate::harness::{RawWatch, TestServer, status_of};

fn watch_prefix(key: &str) -> WatchCreateRequest {
    let mut end = key.as_bytes().to_vec();
    *end.last_mut().expect("prefix") += 1;
    WatchCreateRequest {
        key: key.to_string().into(),
        range_end: end.into(),
        prev_kv: true,
        ..Default::default()
    }
}

crate::on_every_backend! {
    async fn grant_list_time_to_live_and_duplicate_ids() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let chosen = client.lease_grant(60, None).await.expect("grant");
        assert!(chosen.id() > 0);
        assert_eq!(chosen.ttl(), 60);
        let mine = client
            .lease_grant(30, Some(LeaseGrantOptions::new().with_id(7)))
            .await
            .expect("grant with id");
        assert_eq!((mine.id(), mine.ttl()), (7, 30));
        let (code, message) = status_of(
            client
                .lease_grant(30, Some(LeaseGrantOptions::new().with_id(7)))
                .await,
        );
        assert_eq!(
            (code, message.as_str()),
            (Code::FailedPrecondition, "etcdserver: lease already exists")
        );
        let (code, message) = status_of(client.lease_grant(9_000_000_001, None).await);
        assert_eq!(
            (code, message.as_str()),
            (Code::OutOfRange, "etcdserver: too large lease TTL")
        );

        client
            .put("l/a", "1", Some(PutOptions::new().with_lease(7)))
            .await
            .expect("attach");
        client
            .put("l/b", "1", Some(PutOptions::new().with_lease(7)))
            .await
            .expect("attach");
        let ttl = client
            .lease_time_to_live(7, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("ttl");
        assert_eq!(ttl.granted_ttl(), 30);
        assert!((28..=30).contains(&ttl.ttl()), "{}", ttl.ttl());
        assert_eq!(ttl.keys(), [b"l/a".to_vec(), b"l/b".to_vec()]);
        assert_eq!(
            client.get("l/a", None).await.expect("get").kvs()[0].lease(),
            7
        );
        let mut ids: Vec<i64> = client
            .leases()
            .await
            .expect("leases")
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        ids.sort();
        let mut expected = vec![7, chosen.id()];
        expected.sort();
        assert_eq!(ids, expected);
        let unknown = client
            .lease_time_to_live(99, None)
            .await
            .expect("unknown lease ttl");
        assert_eq!(unknown.ttl(), -1);
        let (code, message) = status_of(client.lease_revoke(99).await);
        assert_eq!(
            (code, message.as_str()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
    }

    async fn revoke_deletes_the_keys_at_one_revision_and_put_with_lease_zero_detaches() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let lease = client.lease_grant(60, None).await.expect("grant").id();
        for key in ["r/a", "r/b", "r/c"] {
            client
                .put(key, "v", Some(PutOptions::new().with_lease(lease)))
                .await
                .expect("attach");
        }
        client
            .put("r/c", "kept", None)
            .await
            .expect("detach with lease 0");
        let mut watch = RawWatch::watching(&server.endpoint(), watch_prefix("r/")).await;
        let revoked = client.lease_revoke(lease).await.expect("revoke");
        assert_eq!(revoked.header().expect("header").revision(), 6);
        let response = watch.next().await;
        assert_eq!(
            response.events.len(),
            2,
            "both keys in one response: {response:?}"
        );
        for event in &response.events {
            assert_eq!(event.r#type, EventType::Delete as i32);
            assert_eq!(event.kv.as_ref().expect("kv").mod_revision, 6);
            assert_eq!(event.prev_kv.as_ref().expect("prev").lease, lease);
        }
        assert_eq!(
            client.get("r/c", None).await.expect("get").kvs()[0].value(),
            b"kept"
        );
        assert_eq!(
            client
                .get("r/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .expect("get")
                .count(),
            1
        );
        assert!(client.leases().await.expect("leases").leases().is_empty());
    }

    async fn keep_alive_restarts_the_ttl() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let lease = client.lease_grant(2, None).await.expect("grant").id();
        client
            .put("ka", "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("attach");
        let (mut keeper, mut stream) = client
            .lease_keep_alive(lease)
            .await
            .expect("keep alive stream");
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            keeper.keep_alive().await.expect("send keep alive");
            let answer = stream.message().await.expect("stream").expect("answer");
            assert_eq!((answer.id(), answer.ttl()), (lease, 2));
        }
        assert_eq!(
            client.get("ka", None).await.expect("get").count(),
            1,
            "kept alive past its TTL"
        );
        // etcd answers a keep-alive of an unknown lease with TTL 0, which the client reports.
        match client.lease_keep_alive(12345).await {
            Err(etcd_client::Error::LeaseKeepAliveError(message)) => {
                assert!(message.contains("not found"), "{message}")
            }
            other => panic!("expected lease not found, got {other:?}"),
        }
    }

    async fn expiry_deletes_each_leases_keys_at_one_revision_with_delete_events() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut watch = RawWatch::watching(&server.endpoint(), watch_prefix("e/")).await;
        let short = client.lease_grant(1, None).await.expect("grant").id();
        let long = client.lease_grant(600, None).await.expect("grant").id();
        for i in 0..5 {
            client
                .put(
                    format!("e/short/{i}"),
                    "v",
                    Some(PutOptions::new().with_lease(short)),
                )
                .await
                .expect("attach");
        }
        client
            .put("e/long", "v", Some(PutOptions::new().with_lease(long)))
            .await
            .expect("attach");
        let mut put_events = 0;
        while put_events < 6 {
            put_events += watch.next().await.events.len();
        }
        let expired = watch.next().await;
        assert_eq!(expired.events.len(), 5, "{expired:?}");
        let revision = expired.events[0].kv.as_ref().expect("kv").mod_revision;
        for event in &expired.events {
            assert_eq!(event.r#type, EventType::Delete as i32);
            assert_eq!(
                event.kv.as_ref().expect("kv").mod_revision,
                revision,
                "one revision for the lease"
            );
            assert_eq!(event.prev_kv.as_ref().expect("prev_kv").lease, short);
        }
        let left = client
            .get("e/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert_eq!(left.count(), 1);
        assert_eq!(
            client
                .lease_time_to_live(short, None)
                .await
                .expect("ttl")
                .ttl(),
            -1,
            "the lease is gone"
        );
    }

    async fn leases_survive_a_restart_without_a_fresh_ttl() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let lease = client.lease_grant(4, None).await.expect("grant").id();
        client
            .put("rs/k", "v", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("attach");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let server = server.restart().await;
        let mut client = server.client().await;
        let ttl = client
            .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("ttl");
        assert_eq!(ttl.granted_ttl(), 4);
        assert!(
            ttl.ttl() <= 2,
            "time kept counting across the restart: {} s left",
            ttl.ttl()
        );
        assert_eq!(ttl.keys(), [b"rs/k".to_vec()]);
        // And it still expires, deleting its key.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.get("rs/k", None).await.expect("get").count() == 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease never expired after the restart"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
