//! Watch delivery: events per second received by 1 and by 1,000 watchers of one prefix while
//! 50 clients write, etcdshim (SQLite) side by side with a real etcd started on loopback in the
//! same run, reported as ratios.
//!
//! `cargo bench --bench watch_fanout` (ETCD_BIN chooses the etcd binary; default `etcd`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcdshim::proto::kv_client::KvClient;
use etcdshim::proto::watch_client::WatchClient;
use etcdshim::proto::watch_request::RequestUnion;
use etcdshim::proto::{PutRequest, WatchCreateRequest, WatchRequest};
use etcdshim::{Listener, Server, ServerOptions};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const WRITERS: usize = 50;
const CONNECTIONS: usize = 10;

/// Runs one round: `watchers` watches of the prefix, `events` puts; returns (events received
/// per second over all watchers, puts per second).
async fn round(endpoint: &str, watchers: usize, events: usize, tag: &str) -> (f64, f64) {
    let prefix = format!("/fanout/{tag}/");
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            Channel::from_shared(endpoint.to_string())
                .expect("url")
                .connect()
                .await
                .expect("connect"),
        );
    }
    let received = Arc::new(AtomicUsize::new(0));
    let mut ready = Vec::new();
    let mut streams = Vec::new();
    for w in 0..watchers {
        let mut client =
            WatchClient::new(channels[w % CONNECTIONS].clone()).max_decoding_message_size(64 << 20);
        let (requests, outbound) = tokio::sync::mpsc::channel(4);
        let mut end = prefix.clone().into_bytes();
        *end.last_mut().expect("prefix") += 1;
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: prefix.clone().into(),
                    range_end: end.into(),
                    ..Default::default()
                })),
            })
            .await
            .expect("create");
        let mut responses = client
            .watch(ReceiverStream::new(outbound))
            .await
            .expect("watch")
            .into_inner();
        let received = received.clone();
        let (created, is_created) = tokio::sync::oneshot::channel();
        ready.push(is_created);
        streams.push(tokio::spawn(async move {
            let _keep_open = requests;
            let mut created = Some(created);
            let mut mine = 0;
            while mine < events {
                let Ok(Some(response)) = responses.message().await else {
                    break;
                };
                if response.created
                    && let Some(c) = created.take()
                {
                    let _ = c.send(());
                }
                mine += response.events.len();
                received.fetch_add(response.events.len(), Ordering::Relaxed);
            }
        }));
    }
    for r in ready {
        r.await.expect("watch created");
    }
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut kv = KvClient::new(channels[w % CONNECTIONS].clone());
        let (next, prefix) = (next.clone(), prefix.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return;
                }
                kv.put(PutRequest {
                    key: format!("{prefix}{}", i % 1000).into(),
                    value: vec![b'v'; 128].into(),
                    ..Default::default()
                })
                .await
                .expect("put");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let writes_done = started.elapsed();
    for s in streams {
        tokio::time::timeout(Duration::from_secs(300), s)
            .await
            .expect("watchers finish")
            .expect("watcher");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        received.load(Ordering::Relaxed),
        watchers * events,
        "every watcher got every event"
    );
    (
        (watchers * events) as f64 / elapsed.as_secs_f64(),
        events as f64 / writes_done.as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::open(ServerOptions {
        endpoint: format!("sqlite://{}", dir.path().join("state.db").display()),
        ..ServerOptions::default()
    })
    .await
    .expect("open etcdshim");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shim = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(server.serve(Listener::Tcp(listener), std::future::pending()));
    let etcd = support::start_etcd().await;
    println!(
        "{WRITERS} writers, {CONNECTIONS} connections, one watch stream per watcher, 128-byte values"
    );
    println!(
        "{:<10} {:>8} {:>20} {:>20} {:>8}",
        "watchers", "events", "etcdshim events/s", "etcd events/s", "ratio"
    );
    for (watchers, events) in [(1, 20_000), (1000, 2_000)] {
        let (ours, our_writes) = round(&shim, watchers, events, &format!("w{watchers}")).await;
        let theirs = match &etcd {
            Some(etcd) => {
                Some(round(&etcd.endpoint, watchers, events, &format!("w{watchers}")).await)
            }
            None => None,
        };
        let (their_rate, ratio) = match theirs {
            Some((rate, _)) => (format!("{rate:.0}"), format!("{:.2}", ours / rate)),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{watchers:<10} {events:>8} {ours:>20.0} {their_rate:>20} {ratio:>8}   (etcdshim took {our_writes:.0} puts/s meanwhile)"
        );
    }
}
