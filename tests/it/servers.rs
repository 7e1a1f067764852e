//! Several etcdshim servers on one PostgreSQL or MariaDB database, and a database outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use etcdshim::ServerOptions;
use etcdshim::proto::WatchCreateRequest;
use etcdshim::proto::mvccpb::event::EventType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::harness::{Backend, RawWatch, TestServer, on_backend};

const SERVERS: usize = 3;
const WRITERS_PER_SERVER: u64 = 2;
const OPS_PER_WRITER: usize = 120;

/// One line per event: what every server's watcher must agree on.
type Seen = Vec<(i64, bool, Vec<u8>, Vec<u8>)>;

async fn watch_everything(endpoint: String, until: Arc<Mutex<Option<i64>>>) -> Seen {
    let mut watch = RawWatch::watching(
        &endpoint,
        WatchCreateRequest {
            key: "s/".into(),
            range_end: "s0".into(),
            start_revision: 2,
            ..Default::default()
        },
    )
    .await;
    let mut seen: Seen = Vec::new();
    loop {
        if let Some(head) = *until.lock().await
            && seen.last().is_some_and(|e| e.0 >= head)
        {
            return seen;
        }
        let Some(response) = watch.maybe_next(Duration::from_millis(200)).await else {
            continue;
        };
        assert!(!response.canceled, "{response:?}");
        for event in response.events {
            let kv = event.kv.expect("kv");
            seen.push((
                kv.mod_revision,
                event.r#type == EventType::Put as i32,
                kv.key.to_vec(),
                kv.value.to_vec(),
            ));
        }
    }
}

async fn several_servers_share_one_database() {
    let first = TestServer::start().await;
    let mut servers = vec![first];
    for _ in 1..SERVERS {
        let next = servers[0].another().await;
        servers.push(next);
    }
    let until = Arc::new(Mutex::new(None));
    let watchers: Vec<_> = servers
        .iter()
        .map(|s| tokio::spawn(watch_everything(s.endpoint(), until.clone())))
        .collect();
    // Writers on every server; a short lease expires in the middle (every server runs expiry).
    let mut first_client = servers[0].client().await;
    let lease = first_client.lease_grant(1, None).await.expect("grant").id();
    first_client
        .put("s/leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put");
    let mut writers = Vec::new();
    for (index, server) in servers.iter().enumerate() {
        for w in 0..WRITERS_PER_SERVER {
            let mut client = server.client().await;
            let seed = index as u64 * 100 + w;
            writers.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut last_revision = 0;
                for _ in 0..OPS_PER_WRITER {
                    let key = format!("s/{}", rng.random_range(0..20));
                    let revision = if rng.random_bool(0.7) {
                        client
                            .put(key, seed.to_string(), None)
                            .await
                            .expect("put")
                            .header()
                            .expect("header")
                            .revision()
                    } else {
                        let txn = Txn::new()
                            .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                            .and_then([TxnOp::delete(key, None)]);
                        client
                            .txn(txn)
                            .await
                            .expect("txn")
                            .header()
                            .expect("header")
                            .revision()
                    };
                    assert!(
                        revision >= last_revision,
                        "a client's revisions never go back"
                    );
                    last_revision = revision;
                }
            }));
        }
    }
    // A compaction from one server while the others write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let head = crate::harness::head_revision(&first_client).await;
    first_client.compact(head / 2, None).await.expect("compact");
    for writer in writers {
        writer.await.expect("writer");
    }
    // Wait for the lease to expire, then note the final revision.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while first_client
        .get("s/leased", None)
        .await
        .expect("get")
        .count()
        == 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease expired nowhere"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let head = crate::harness::head_revision(&first_client).await;
    *until.lock().await = Some(head);
    let mut sequences = Vec::new();
    for watcher in watchers {
        sequences.push(
            tokio::time::timeout(Duration::from_secs(60), watcher)
                .await
                .expect("watchers catch up")
                .expect("watcher"),
        );
    }
    let revisions: Vec<i64> = {
        let mut r: Vec<i64> = sequences[0].iter().map(|e| e.0).collect();
        r.dedup();
        r
    };
    assert_eq!(
        revisions,
        (2..=head).collect::<Vec<_>>(),
        "every revision once, in order, no gap"
    );
    for (i, sequence) in sequences.iter().enumerate().skip(1) {
        assert_eq!(
            sequence, &sequences[0],
            "server {i}'s watcher saw another history"
        );
    }
    let mut states = Vec::new();
    for server in &servers {
        let mut client = server.client().await;
        let resp = client
            .get("s/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert_eq!(resp.header().expect("header").revision(), head);
        let state: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = resp
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
            .collect();
        states.push(state);
    }
    assert!(
        states.iter().all(|s| *s == states[0]),
        "every server serves the same state"
    );
    assert!(!states[0].contains_key(b"s/leased".as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_on_postgres() {
    on_backend(Backend::Postgres, several_servers_share_one_database()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_on_mariadb() {
    on_backend(Backend::Mysql, several_servers_share_one_database()).await;
}

/// On PostgreSQL a server learns of another's commit from its notification, not from polling:
/// with polling turned down to once an hour, a watcher on one server still gets a write made on
/// the other (and a read there sees it, as on any shared database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_servers_wake_each_other_on_commit() {
    on_backend(Backend::Postgres, async {
        let rarely = ServerOptions {
            store: etcdshim::store::StoreOptions {
                follow_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            ..ServerOptions::default()
        };
        let writer = TestServer::start_with(rarely).await;
        let watcher = writer.another().await;
        let mut watch = RawWatch::watching(
            &watcher.endpoint(),
            WatchCreateRequest {
                key: "n/".into(),
                range_end: "n0".into(),
                ..Default::default()
            },
        )
        .await;
        // The follower's first poll runs at start; give it time to pass before writing.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut client = writer.client().await;
        let revision = client
            .put("n/1", "from the other server", None)
            .await
            .expect("put")
            .header()
            .expect("header")
            .revision();
        let response = watch.next().await;
        let kv = response.events[0].kv.as_ref().expect("kv");
        assert_eq!(
            (kv.key.as_ref(), kv.mod_revision),
            (b"n/1".as_slice(), revision)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let first = TestServer::start().await;
    let second = etcdshim::Server::open(ServerOptions {
        endpoint: first.database_url().to_string(),
        ..ServerOptions::default()
    })
    .await;
    let Err(err) = second else {
        panic!("a second server opened the SQLite file the first serves");
    };
    let message = err.to_string();
    assert!(
        message.contains("is served by another etcdshim")
            && message.contains("run several on PostgreSQL or MySQL"),
        "{message}"
    );
    // The first goes on serving.
    let mut client = first.client().await;
    client.put("still", "here", None).await.expect("put");
}
