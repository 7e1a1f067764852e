//! SQLite's `current` table keeps each resource's rows together (rowids in per-resource
//! ranges), whatever order resources are written in, across updates, deletes and restarts,
//! and with every value read back as written.

use std::collections::BTreeMap;

use etcd_client::{GetOptions, Txn, TxnOp};
use sqlx::Connection as _;

use crate::harness::TestServer;

const RESOURCES: [&str; 3] = [
    "/registry/pods/",
    "/registry/fleet.cattle.io/clusters/",
    "/registry/secrets/",
];

/// The keys of `current` in rowid order, read from the server's database file.
async fn keys_in_rowid_order(url: &str) -> Vec<String> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
        .await
        .expect("open the database file");
    let keys: Vec<Vec<u8>> = sqlx::query_scalar("SELECT key FROM current ORDER BY rowid")
        .fetch_all(&mut conn)
        .await
        .expect("read current");
    keys.into_iter()
        .map(|key| String::from_utf8(key).expect("utf-8 key"))
        .collect()
}

/// Asserts that each resource's keys form one run in rowid order.
fn assert_grouped(keys: &[String]) {
    let mut runs: Vec<&str> = Vec::new();
    for key in keys {
        let resource = RESOURCES
            .iter()
            .find(|resource| key.starts_with(*resource))
            .expect("a key of a known resource");
        if runs.last() != Some(resource) {
            assert!(
                !runs.contains(resource),
                "{resource} is split in rowid order: {keys:?}"
            );
            runs.push(resource);
        }
    }
    assert_eq!(runs.len(), RESOURCES.len(), "every resource has rows");
}

/// Writes round `round`'s objects as a cluster's are written: one of each resource per txn,
/// then updates some, deletes some, and writes some deleted ones again.
async fn write_round(
    client: &mut etcd_client::Client,
    round: u32,
    expected: &mut BTreeMap<String, String>,
) {
    for i in 0..40 {
        let ops: Vec<TxnOp> = RESOURCES
            .iter()
            .map(|resource| {
                let key = format!("{resource}ns-{round}/object-{i}");
                let value = format!("{round}-{i}");
                expected.insert(key.clone(), value.clone());
                TxnOp::put(key, value, None)
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.expect("txn");
    }
    for i in (0..40).step_by(3) {
        for resource in RESOURCES {
            let key = format!("{resource}ns-{round}/object-{i}");
            client
                .put(key.clone(), "updated", None)
                .await
                .expect("update");
            expected.insert(key, "updated".into());
        }
    }
    for i in (0..40).step_by(5) {
        let key = format!("{}ns-{round}/object-{i}", RESOURCES[1]);
        client.delete(key.clone(), None).await.expect("delete");
        expected.remove(&key);
        if i % 10 == 0 {
            client
                .put(key.clone(), "again", None)
                .await
                .expect("put again");
            expected.insert(key, "again".into());
        }
    }
}

async fn assert_reads(client: &mut etcd_client::Client, expected: &BTreeMap<String, String>) {
    let all = client
        .get("/registry/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("list");
    let found: BTreeMap<String, String> = all
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().expect("key").to_string(),
                kv.value_str().expect("value").to_string(),
            )
        })
        .collect();
    assert_eq!(&found, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_each_resources_rows_together_across_restarts() {
    let server = TestServer::start().await;
    let url = server.database_url().to_string();
    let mut client = server.client().await;
    let mut expected = BTreeMap::new();
    write_round(&mut client, 0, &mut expected).await;
    assert_reads(&mut client, &expected).await;
    assert_grouped(&keys_in_rowid_order(&url).await);

    // A restarted server finds where each range ends: new rows follow on, none collide.
    let server = server.restart().await;
    let mut client = server.client().await;
    write_round(&mut client, 1, &mut expected).await;
    assert_reads(&mut client, &expected).await;
    let keys = keys_in_rowid_order(&url).await;
    assert_eq!(keys.len(), expected.len());
    assert_grouped(&keys);
}
