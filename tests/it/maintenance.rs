//! Maintenance.Status, Cluster.MemberList, and the connection-level promises (keepalive pings).

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::harness::TestServer;

#[tokio::test]
async fn serves_on_a_unix_socket() {
    use etcdshim::proto::kv_client::KvClient;
    use etcdshim::proto::{PutRequest, RangeRequest};
    use etcdshim::{Listener, Server, ServerOptions};
    use hyper_util::rt::TokioIo;
    use tonic::transport::Endpoint;

    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("etcdshim.sock");
    let server = Server::open(ServerOptions {
        endpoint: format!("sqlite://{}", dir.path().join("state.db").display()),
        ..ServerOptions::default()
    })
    .await
    .expect("open");
    let listener = Listener::bind(&format!("unix://{}", socket.display()))
        .await
        .expect("bind unix socket");
    assert_eq!(
        listener.client_url().expect("url"),
        format!("unix://{}", socket.display())
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let path = socket.clone();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect over the socket");
    let mut kv = KvClient::new(channel);
    kv.put(PutRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .expect("put");
    let resp = kv
        .range(RangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(resp.kvs[0].value.as_ref(), b"v");
    let _ = stop.send(());
    serving.await.expect("join").expect("clean stop");
}

crate::on_every_backend! {
    async fn status_reports_version_size_and_revision() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("k", "v", None).await.expect("put");
        let status = client.status().await.expect("status");
        assert_eq!(status.version(), etcdshim::server::DEFAULT_ETCD_VERSION);
        assert!(status.db_size() > 0);
        assert!(status.raft_index() >= 2);
        let header = status.header().expect("header");
        assert_eq!(header.revision(), 2);
        assert_eq!(status.leader(), header.member_id());
        assert_ne!(header.cluster_id(), 0);
    }

    async fn member_list_names_this_server() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let resp = client.member_list().await.expect("member list");
        let members = resp.members();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].client_urls(), [server.endpoint()]);
        assert_eq!(members[0].id(), resp.header().expect("header").member_id());
    }

    async fn frequent_client_keepalive_pings_are_accepted() {
        let server = TestServer::start().await;
        let options = ConnectOptions::new()
            .with_keep_alive(Duration::from_millis(500), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let mut client = Client::connect([server.endpoint()], Some(options))
            .await
            .expect("connect");
        client.put("k", "v", None).await.expect("put");
        // Idle long enough for several pings; a server that polices pings would send GOAWAY.
        tokio::time::sleep(Duration::from_secs(3)).await;
        client
            .get("k", None)
            .await
            .expect("the connection survived the pings");
    }

    async fn defragment_returns_space_and_alarms_are_empty() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..200 {
            client
                .put(format!("big/{i}"), vec![b'x'; 8192], None)
                .await
                .expect("put");
        }
        client
            .delete(
                "big/",
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await
            .expect("delete");
        let head = crate::harness::head_revision(&client).await;
        client
            .compact(
                head,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .expect("compact");
        let before = client.status().await.expect("status");
        assert!(before.raft_used_db_size() <= before.db_size());
        client.defragment().await.expect("defragment");
        let after = client.status().await.expect("status");
        // SQLite's VACUUM rewrites the file; PostgreSQL's plain VACUUM (which does not lock
        // writers out) and InnoDB keep freed space for reuse.
        if crate::harness::current_backend() == crate::harness::Backend::Sqlite {
            assert!(after.db_size() < before.db_size(), "{} -> {}", before.db_size(), after.db_size());
            // VACUUM wrote the new file through the WAL; none of that copy stays on disk.
            let wal = server
                .database_url()
                .trim_start_matches("sqlite://")
                .to_string()
                + "-wal";
            let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            assert!(
                wal_bytes < after.db_size() as u64 / 2,
                "{wal} holds {wal_bytes} bytes after a defragment of a {}-byte file",
                after.db_size()
            );
        }
        let alarms = client
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await
            .expect("alarm");
        assert!(alarms.alarms().is_empty());
    }
}

#[tokio::test]
async fn shutdown_ends_watch_and_keep_alive_streams() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let mut watch = crate::harness::RawWatch::watching(
        &server.endpoint(),
        etcdshim::proto::WatchCreateRequest {
            key: "k".into(),
            ..Default::default()
        },
    )
    .await;
    let lease = client.lease_grant(60, None).await.expect("grant").id();
    let (_keeper, mut keep_alive) = client.lease_keep_alive(lease).await.expect("keep alive");
    // A graceful stop would wait forever for these streams if they were not ended.
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stopped although streams were open");
    assert!(
        watch.maybe_next(Duration::from_secs(2)).await.is_none(),
        "the watch stream ended"
    );
    assert!(
        !matches!(keep_alive.message().await, Ok(Some(_))),
        "the keep-alive stream ended"
    );
}
