//! Write throughput with many concurrent clients, etcdshim (SQLite) side by side with a real etcd
//! started on loopback in the same run, reported as ratios.
//!
//! `cargo bench --bench write_throughput` (set ETCD_BIN to choose the etcd binary; default
//! `etcd` from PATH; BENCH_OPS to change the operations per workload; BENCH_ENDPOINT to run
//! etcdshim on another datastore, e.g. `postgres://postgres@127.0.0.1:5432/etcdshim_bench`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use etcdshim::{Listener, Server, ServerOptions};
use tokio::sync::Semaphore;

const CLIENTS: usize = 100;
const CONNECTIONS: usize = 10;
const VALUE_BYTES: usize = 256;

#[derive(Clone, Copy)]
enum Workload {
    /// Put of a fresh key.
    Put,
    /// kube-apiserver's create: if mod_revision(key) == 0 then put.
    TxnPut,
}

struct Outcome {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(endpoint: &str, workload: Workload, ops: usize, tag: &str) -> Outcome {
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(Client::connect([endpoint], None).await.expect("connect"));
    }
    let value = vec![b'x'; VALUE_BYTES];
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let mut client = connections[client_index % CONNECTIONS].clone();
        let (value, next, gate) = (value.clone(), next.clone(), gate.clone());
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let _ = gate.acquire().await;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ops {
                    return latencies;
                }
                let key = format!("/registry/bench/{tag}/{i:08}");
                let began = Instant::now();
                match workload {
                    Workload::Put => {
                        client.put(key, value.clone(), None).await.expect("put");
                    }
                    Workload::TxnPut => {
                        let txn = Txn::new()
                            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key, value.clone(), None)]);
                        assert!(client.txn(txn).await.expect("txn").succeeded());
                    }
                }
                latencies.push(began.elapsed());
            }
        }));
    }
    gate.add_permits(CLIENTS);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome {
        ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

#[tokio::main]
async fn main() {
    let ops: usize = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = std::env::var("BENCH_ENDPOINT")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("state.db").display()));
    println!("etcdshim on {}", etcdshim::server::redact(&endpoint));
    let server = Server::open(ServerOptions {
        endpoint,
        ..ServerOptions::default()
    })
    .await
    .expect("open etcdshim");
    let store = server.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shim = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(server.serve(Listener::Tcp(listener), std::future::pending()));

    let etcd = support::start_etcd().await;
    println!(
        "{CLIENTS} clients over {CONNECTIONS} connections, {ops} ops per workload, {VALUE_BYTES}-byte values"
    );
    println!(
        "{:<8} {:>14} {:>14} {:>8} {:>22} {:>22}",
        "workload", "etcdshim op/s", "etcd op/s", "ratio", "etcdshim p50/p99 ms", "etcd p50/p99 ms"
    );
    for (name, workload) in [("put", Workload::Put), ("txn-put", Workload::TxnPut)] {
        let before = store.writer_stats();
        // Keys of earlier runs on a reused database must not collide.
        let run_tag = format!("{name}-{}", std::process::id());
        let ours = run(&shim, workload, ops, &run_tag).await;
        let after = store.writer_stats();
        let theirs = match &etcd {
            Some(etcd) => Some(run(&etcd.endpoint, workload, ops, &run_tag).await),
            None => None,
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (their_rate, ratio, their_lat) = match &theirs {
            Some(t) => (
                format!("{:.0}", t.ops_per_sec),
                format!("{:.2}", ours.ops_per_sec / t.ops_per_sec),
                format!("{:.2}/{:.2}", ms(t.p50), ms(t.p99)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{name:<8} {:>14.0} {their_rate:>14} {ratio:>8} {:>22} {their_lat:>22}",
            ours.ops_per_sec,
            format!("{:.2}/{:.2}", ms(ours.p50), ms(ours.p99)),
        );
        let batches = after.batches - before.batches;
        let requests = after.requests - before.requests;
        println!(
            "         sequencer: {batches} transactions, {:.1} requests per transaction on average, largest so far {}",
            requests as f64 / batches.max(1) as f64,
            after.largest
        );
    }
}
