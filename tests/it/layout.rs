//! How rows lie in the database. SQLite's `current` table keeps each resource's rows together
//! (rowids in per-resource ranges), whatever order resources are written in, across updates,
//! deletes and restarts, and with every value read back as written. PostgreSQL stores a
//! version's create revision, version and lease as NULL where they are their defaults, and
//! every read gives the numbers back. On every database the log lists deletions and the changes
//! of revisions with more than one; a revision's only put is replayed from its version.

use std::collections::BTreeMap;

use etcd_client::{
    CompactionOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use sqlx::Connection as _;

use crate::harness::{Backend, TestServer, current_backend, on_backend};

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

/// `(create_revision, version, lease)` of `key`'s row in `table` at `revision`, as stored.
async fn stored_numbers(
    url: &str,
    table: &str,
    key: &str,
    revision: i64,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the server's database");
    let revision_column = if table == "current" {
        "mod_revision"
    } else {
        "revision"
    };
    let statement = format!(
        "SELECT create_revision, version, lease FROM {table} \
         WHERE key = $1 AND {revision_column} = $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(key.as_bytes())
        .bind(revision)
        .fetch_one(&mut conn)
        .await
        .expect("the row")
}

/// (create_revision, mod_revision, version, lease, value) of a key-value.
fn numbers(kv: &etcd_client::KeyValue) -> (i64, i64, i64, i64, String) {
    (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
        kv.value_str().expect("value").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_default_numbers_as_null_and_reads_them_back() {
    on_backend(Backend::Postgres, async {
        let server = TestServer::start().await;
        let url = server.database_url().to_string();
        let mut client = server.client().await;
        let created = client.put("/n/a", "1", None).await.expect("put");
        let first = created.header().expect("header").revision();
        let updated = client.put("/n/a", "2", None).await.expect("update");
        let second = updated.header().expect("header").revision();
        let lease = client.lease_grant(600, None).await.expect("grant").id();
        let leased = client
            .put("/n/b", "3", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put with a lease");
        let third = leased.header().expect("header").revision();

        // As stored: NULL wherever the number is its default, the number elsewhere.
        assert_eq!(
            stored_numbers(&url, "history", "/n/a", first).await,
            (None, None, None),
            "a created version without a lease"
        );
        assert_eq!(
            stored_numbers(&url, "current", "/n/a", second).await,
            (Some(first), Some(2), None),
            "an updated version"
        );
        assert_eq!(
            stored_numbers(&url, "current", "/n/b", third).await,
            (None, None, Some(lease)),
            "a created version with a lease"
        );

        // Read back: at the head, at a past revision, in a list, and in watch events.
        let response = client.get("/n/a", None).await.expect("get");
        assert_eq!(
            numbers(&response.kvs()[0]),
            (first, second, 2, 0, "2".to_string())
        );
        let response = client
            .get("/n/a", Some(GetOptions::new().with_revision(first)))
            .await
            .expect("get at the first revision");
        assert_eq!(
            numbers(&response.kvs()[0]),
            (first, first, 1, 0, "1".to_string())
        );
        let response = client
            .get("/n/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("list");
        let listed: Vec<_> = response.kvs().iter().map(numbers).collect();
        assert_eq!(
            listed,
            [
                (first, second, 2, 0, "2".to_string()),
                (third, third, 1, lease, "3".to_string())
            ]
        );
        let response = client
            .get(
                "/n/",
                Some(GetOptions::new().with_prefix().with_revision(second)),
            )
            .await
            .expect("list at the second revision");
        let listed: Vec<_> = response.kvs().iter().map(numbers).collect();
        assert_eq!(listed, [(first, second, 2, 0, "2".to_string())]);

        let mut events = client
            .watch(
                "/n/",
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(first)
                        .with_prev_key(),
                ),
            )
            .await
            .expect("watch from the first revision");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let response = events.message().await.expect("watch").expect("events");
            for event in response.events() {
                assert_eq!(event.event_type(), EventType::Put);
                let kv = event.kv().expect("kv");
                let prev = event.prev_kv().map(numbers);
                seen.push((numbers(kv), prev));
            }
        }
        assert_eq!(
            seen,
            [
                ((first, first, 1, 0, "1".to_string()), None),
                (
                    (first, second, 2, 0, "2".to_string()),
                    Some((first, first, 1, 0, "1".to_string()))
                ),
                ((third, third, 1, lease, "3".to_string()), None),
            ]
        );
    })
    .await;
}

/// The log's rows `(revision, sub, key, deleted)` in order, read from the server's database.
async fn log_rows(url: &str) -> Vec<(i64, i64, String, i16)> {
    const LOG: &str = "SELECT revision, sub, key, deleted FROM log ORDER BY revision, sub";
    const LOG_MYSQL: &str = "SELECT revision, sub, `key`, deleted FROM log ORDER BY revision, sub";
    let rows: Vec<(i64, i64, Vec<u8>, i16)> = match current_backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=ro"))
                .await
                .expect("open the database file");
            sqlx::query_as(LOG).fetch_all(&mut conn).await
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_as(LOG).fetch_all(&mut conn).await
        }
        Backend::Mysql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
            sqlx::query_as(LOG_MYSQL).fetch_all(&mut conn).await
        }
    }
    .expect("read the log");
    rows.into_iter()
        .map(|(revision, sub, key, deleted)| {
            (
                revision,
                sub,
                String::from_utf8(key).expect("utf-8"),
                deleted,
            )
        })
        .collect()
}

/// Each event of a watch of `/l/` from `start` as `(deleted, key, mod_revision, the previous
/// version's mod_revision)`, until `count` have come.
async fn replayed(
    client: &mut etcd_client::Client,
    start: i64,
    count: usize,
) -> Vec<(bool, String, i64, Option<i64>)> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_prev_key();
    let mut events = client.watch("/l/", Some(options)).await.expect("watch");
    let mut seen = Vec::new();
    while seen.len() < count {
        let response = events.message().await.expect("watch").expect("events");
        for event in response.events() {
            let kv = event.kv().expect("kv");
            seen.push((
                event.event_type() == EventType::Delete,
                kv.key_str().expect("key").to_string(),
                kv.mod_revision(),
                event.prev_kv().map(|prev| prev.mod_revision()),
            ));
        }
    }
    seen
}

crate::on_every_backend! {
    async fn the_log_lists_deletions_and_shared_revisions_and_replays_every_change() {
        let server = TestServer::start().await;
        let url = server.database_url().to_string();
        let mut client = server.client().await;
        let revision = |header: Option<&etcd_client::ResponseHeader>| {
            header.expect("header").revision()
        };
        let r1 = revision(client.put("/l/a", "1", None).await.expect("put").header());
        let r2 = revision(client.put("/l/b", "2", None).await.expect("put").header());
        // A revision of several changes, its first written before the others (the range in the
        // middle has the sequencer write what it holds): the log lists all three after all.
        let txn = Txn::new().and_then([
            TxnOp::put("/l/c", "3", None),
            TxnOp::get("/l/", Some(GetOptions::new().with_prefix())),
            TxnOp::put("/l/a", "4", None),
            TxnOp::delete("/l/b", None),
        ]);
        let r3 = revision(client.txn(txn).await.expect("txn").header());
        let r4 = revision(client.put("/l/d", "5", None).await.expect("put").header());
        let r5 = revision(client.delete("/l/a", None).await.expect("delete").header());
        let txn = Txn::new().and_then([TxnOp::put("/l/e", "6", None)]);
        let r6 = revision(client.txn(txn).await.expect("txn").header());
        // A key deleted (by a from-key delete, which etcd's duplicate-key check lets through)
        // and put again in one revision, the deletion written before the put replaces it: the
        // log's row of the key becomes the put.
        let txn = Txn::new().and_then([
            TxnOp::delete("/l/e", Some(DeleteOptions::new().with_from_key())),
            TxnOp::put("/l/g", "7", None),
            TxnOp::get("/l/", Some(GetOptions::new().with_prefix())),
            TxnOp::put("/l/e", "8", None),
        ]);
        let r7 = revision(client.txn(txn).await.expect("txn").header());

        let key = |k: &str| k.to_string();
        assert_eq!(
            log_rows(&url).await,
            [
                (r3, 0, key("/l/c"), 0),
                (r3, 1, key("/l/a"), 0),
                (r3, 2, key("/l/b"), 1),
                (r5, 0, key("/l/a"), 1),
                (r7, 0, key("/l/e"), 0),
                (r7, 1, key("/l/g"), 0),
            ],
            "a revision's only put is not in the log"
        );

        // Replayed from the database by a restarted server: every change, in order.
        let server = server.restart().await;
        let mut client = server.client().await;
        let every_change = [
            (false, key("/l/a"), r1, None),
            (false, key("/l/b"), r2, None),
            (false, key("/l/c"), r3, None),
            (false, key("/l/a"), r3, Some(r1)),
            (true, key("/l/b"), r3, Some(r2)),
            (false, key("/l/d"), r4, None),
            (true, key("/l/a"), r5, Some(r3)),
            (false, key("/l/e"), r6, None),
            (false, key("/l/e"), r7, Some(r6)),
            (false, key("/l/g"), r7, None),
        ];
        assert_eq!(replayed(&mut client, r1, 10).await, every_change);

        // Compacted at r4: the changes from r4 on are still replayed, and reads at r4 find
        // the versions alive then.
        client
            .compact(r4, Some(CompactionOptions::new().with_physical()))
            .await
            .expect("compact");
        assert_eq!(replayed(&mut client, r4, 5).await, every_change[5..]);
        let at_r4 = client
            .get("/l/", Some(GetOptions::new().with_prefix().with_revision(r4)))
            .await
            .expect("list at r4");
        let listed: Vec<_> = at_r4
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().expect("key").to_string(), kv.mod_revision()))
            .collect();
        assert_eq!(listed, [(key("/l/a"), r3), (key("/l/c"), r3), (key("/l/d"), r4)]);
        assert_eq!(
            log_rows(&url).await,
            [
                (r5, 0, key("/l/a"), 1),
                (r7, 0, key("/l/e"), 0),
                (r7, 1, key("/l/g"), 0)
            ],
            "compaction removes the log's rows below the compacted revision"
        );
    }
}
