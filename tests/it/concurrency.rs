//! Many writers at once: the sequencer batches them, and no update is lost.

use std::collections::HashSet;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use crate::harness::TestServer;

async fn read_counter(client: &mut etcd_client::Client) -> (i64, i64) {
    let resp = client.get("counter", None).await.expect("get");
    let kv = &resp.kvs()[0];
    (
        std::str::from_utf8(kv.value())
            .expect("utf8")
            .parse()
            .expect("number"),
        kv.mod_revision(),
    )
}

crate::on_every_backend! {
    async fn concurrent_compare_and_swap_loses_no_update() {
        const TASKS: usize = 50;
        const TXNS_PER_TASK: usize = 200;
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("counter", "0", None).await.expect("init");
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let (mut value, mut modified) = read_counter(&mut client).await;
                for _ in 0..TXNS_PER_TASK {
                    let txn = Txn::new()
                        .when([Compare::mod_revision("counter", CompareOp::Equal, modified)])
                        .and_then([TxnOp::put("counter", (value + 1).to_string(), None)])
                        .or_else([TxnOp::get("counter", None)]);
                    let resp = client.txn(txn).await.expect("txn");
                    let revision = resp.header().expect("header").revision();
                    if resp.succeeded() {
                        mine.push((revision, value + 1));
                        value += 1;
                        modified = revision;
                    } else if let TxnOpResponse::Get(get) = &resp.op_responses()[0] {
                        let kv = &get.kvs()[0];
                        value = std::str::from_utf8(kv.value())
                            .expect("utf8")
                            .parse()
                            .expect("number");
                        modified = kv.mod_revision();
                    }
                }
                mine
            }));
        }
        let mut successes = Vec::new();
        for task in tasks {
            successes.extend(task.await.expect("task"));
        }
        successes.sort();
        let revisions: HashSet<i64> = successes.iter().map(|(revision, _)| *revision).collect();
        assert_eq!(
            revisions.len(),
            successes.len(),
            "every successful txn has its own revision"
        );
        // In revision order, the counter went up by exactly one each time: no lost update.
        for (i, (revision, value)) in successes.iter().enumerate() {
            assert_eq!(*value, i as i64 + 1, "at revision {revision}");
            assert_eq!(
                *revision,
                i as i64 + 3,
                "successful txns take consecutive revisions"
            );
        }
        let (value, modified) = read_counter(&mut client).await;
        assert_eq!(value as usize, successes.len());
        assert_eq!(modified, successes.last().expect("some success").0);
        let stats = server.store.writer_stats();
        assert!(stats.requests >= (TASKS * TXNS_PER_TASK) as u64);
        assert!(
            stats.largest > 1,
            "concurrent writers share transactions: {stats:?}"
        );
    }
}
