//! Crash safety: the etcdshim binary is killed with SIGKILL again and again under concurrent
//! writers; every acknowledged write must be there afterwards, and the revision must never go
//! backwards.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

/// An etcdshim process, killed with SIGKILL when dropped.
pub(crate) struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The etcdshim binary serving `endpoint` on `address`.
pub(crate) fn spawn(endpoint: &str, address: &str) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_etcdshim"))
            .arg(format!("--endpoint={endpoint}"))
            .arg(format!("--listen-address={address}"))
            .arg("--metrics-bind-address=0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcdshim"),
    )
}

/// A client of the server at `endpoint`, once it answers.
pub(crate) async fn connect(endpoint: &str) -> Client {
    for _ in 0..100 {
        let options = ConnectOptions::new().with_timeout(Duration::from_secs(2));
        if let Ok(mut client) = Client::connect([endpoint], Some(options)).await
            && client.get("probe", None).await.is_ok()
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("etcdshim did not come up at {endpoint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let endpoint = format!("http://{address}");
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let mut highest_seen = 0;
    for round in 0..5 {
        let process = spawn(&db, &address);
        let client = connect(&endpoint).await;
        let head = crate::harness::head_revision(&client).await;
        assert!(
            head >= highest_seen,
            "round {round}: revision went back from {highest_seen} to {head}"
        );
        let mut writers = Vec::new();
        for w in 0..8 {
            let mut client = client.clone();
            writers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0.. {
                    let key = format!("c/{round}/{w}/{i}");
                    match client.put(key.clone(), "v", None).await {
                        Ok(resp) => mine.push((key, resp.header().expect("header").revision())),
                        // The server died under us: what was not acknowledged may be lost.
                        Err(_) => return mine,
                    }
                }
                mine
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        drop(process); // SIGKILL
        for writer in writers {
            for (key, revision) in writer.await.expect("writer") {
                highest_seen = highest_seen.max(revision);
                acknowledged.insert(key, revision);
            }
        }
    }
    let _process = spawn(&db, &address);
    let mut client = connect(&endpoint).await;
    let all = client
        .get("c/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    let head = all.header().expect("header").revision();
    assert!(
        head >= highest_seen,
        "the revision went back from {highest_seen} to {head}"
    );
    let stored = crate::harness::mod_revisions(&all);
    assert!(
        acknowledged.len() > 100,
        "the writers got work done: {}",
        acknowledged.len()
    );
    for (key, revision) in &acknowledged {
        assert_eq!(
            stored.get(key),
            Some(revision),
            "acknowledged {key}@{revision} lost in a crash"
        );
    }
}
