//! Counts without scanning: every count (count_only, and the exact count a limited page
//! carries) equals what a scan of the same range at the same revision finds, across puts,
//! deletes, txns, leases that expire, compaction and restarts, for ranges that have a live-key
//! counter (every key under a `/`-ending prefix) and ranges that do not. Counter rows start at
//! 3 keys here, so prefixes with a row, without one, and gaining one as keys come all occur.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use etcdshim::ServerOptions;

use crate::harness::{TestServer, head_revision};

fn small_counters() -> ServerOptions {
    let mut options = ServerOptions::default();
    options.store.datastore.counted_prefix_min_keys = 3;
    options
}

/// `(key, range_end)` pairs; an empty end is the key alone, `"\0"` every key from it on.
const RANGES: [(&str, &str); 9] = [
    ("/", "0"),
    ("/c/", "/c0"),
    ("/c/a/", "/c/a0"),
    ("/c/a/x/", "/c/a/x0"),
    ("/c/b/y/", "/c/b/y0"),
    ("/c/a", "/c/b"),
    ("/c/a/x/1", "/c/b/y/2"),
    ("/c/b/", "\0"),
    ("/c/a/x/2", ""),
];

const OPERATIONS: usize = 160;

fn keys() -> Vec<String> {
    let mut keys = vec!["/c/a/".to_string(), "/c/ab".into(), "/d/1".into()];
    for a in ["a", "b"] {
        for b in ["x", "y"] {
            keys.push(format!("/c/{a}/{b}/"));
            for i in 0..4 {
                keys.push(format!("/c/{a}/{b}/{i}"));
            }
        }
    }
    keys
}

fn options(end: &str, revision: i64) -> GetOptions {
    let mut options = GetOptions::new().with_revision(revision);
    if !end.is_empty() {
        options = options.with_range(end);
    }
    options
}

/// Compares every way of counting `range` at `revision` with a scan of it.
async fn check(client: &mut etcd_client::Client, (key, end): (&str, &str), revision: i64) {
    let scan = client
        .get(key, Some(options(end, revision).with_keys_only()))
        .await
        .expect("scan");
    let scanned = scan.kvs().len() as i64;
    let counted = client
        .get(key, Some(options(end, revision).with_count_only()))
        .await
        .expect("count");
    assert_eq!(
        counted.count(),
        scanned,
        "count_only of [{key}, {end}) at {revision}: {:?}",
        scan.kvs()
            .iter()
            .map(|kv| (
                kv.key_str().unwrap_or_default().to_string(),
                kv.mod_revision()
            ))
            .collect::<Vec<_>>()
    );
    let page = client
        .get(key, Some(options(end, revision).with_limit(2)))
        .await
        .expect("page");
    assert_eq!(
        page.count(),
        scanned,
        "a page's count of [{key}, {end}) at {revision}"
    );
    // A page that starts inside the range (a continuation) counts the rest.
    if let Some(second) = scan.kvs().get(1).filter(|_| !end.is_empty()) {
        let rest = client
            .get(second.key(), Some(options(end, revision).with_limit(1)))
            .await
            .expect("continuation");
        assert_eq!(
            rest.count(),
            scanned - 1,
            "a continuation's count of [{key}, {end}) at {revision}"
        );
    }
}

crate::on_every_backend! {
    async fn counts_match_a_scan_at_every_revision() {
        let mut server = TestServer::start_with(small_counters()).await;
        let mut client = server.client().await;
        let keys = keys();
        let mut rng = StdRng::seed_from_u64(11);
        let mut compacted = 0;
        for step in 0..OPERATIONS {
            let key = keys[rng.random_range(0..keys.len())].clone();
            let op = rng.random_range(0..20);
            match op {
                0..=5 => {
                    client.put(key, step.to_string(), None).await.expect("put");
                }
                6 | 7 => {
                    // Four keys of one prefix in one revision: the prefix may pass the counter
                    // row's threshold by more than one key at once.
                    let group = format!(
                        "/c/{}/{}/",
                        ["a", "b"][rng.random_range(0..2)],
                        ["x", "y"][rng.random_range(0..2)]
                    );
                    let puts = (0..4).map(|i| TxnOp::put(format!("{group}{i}"), "many", None));
                    client.txn(Txn::new().and_then(puts.collect::<Vec<_>>())).await.expect("txn");
                }
                8 | 9 => {
                    client.delete(key, None).await.expect("delete");
                }
                10 => {
                    let prefix = ["/c/a/x/", "/c/b/", "/c/a/"][rng.random_range(0..3)];
                    client
                        .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                        .await
                        .expect("delete prefix");
                }
                11 => {
                    // A put and a from-key delete of the same key in one txn (etcd's
                    // duplicate-key check does not see from-key deletes): the key is created
                    // and deleted at one revision, with every key after it.
                    let txn = Txn::new().and_then([
                        TxnOp::put(key.clone(), "gone", None),
                        TxnOp::delete(key, Some(DeleteOptions::new().with_from_key())),
                    ]);
                    client.txn(txn).await.expect("txn");
                }
                12 | 13 => {
                    let mut other = key.clone();
                    while other == key {
                        other = keys[rng.random_range(0..keys.len())].clone();
                    }
                    let txn = Txn::new()
                        .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                        .and_then([TxnOp::delete(key.clone(), None), TxnOp::put(other, "t", None)])
                        .or_else([TxnOp::put(key, "t", None)]);
                    client.txn(txn).await.expect("txn");
                }
                14 | 15 => {
                    // Keys on a lease that runs out while the test goes on.
                    let lease = client.lease_grant(1, None).await.expect("grant").id();
                    for key in [&key, &keys[rng.random_range(0..keys.len())]] {
                        let attached = PutOptions::new().with_lease(lease);
                        client.put(key.clone(), "leased", Some(attached)).await.expect("put");
                    }
                }
                16 => {
                    let head = head_revision(&client).await;
                    let target = head - rng.random_range(5..20);
                    if target > compacted {
                        client.compact(target, None).await.expect("compact");
                        compacted = target;
                    }
                }
                _ => {
                    let attached = PutOptions::new().with_prev_key();
                    client.put(key, "again", Some(attached)).await.expect("put");
                }
            }
            if step % 60 == 59 {
                server = server.restart().await;
                client = server.client().await;
            }
            let head = head_revision(&client).await;
            for range in RANGES {
                check(&mut client, range, head).await;
            }
        }
        // Let the last leases expire (their deletions are revisions too), then look back at
        // every revision not compacted.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let head = head_revision(&client).await;
        for revision in compacted.max(1)..=head {
            for range in RANGES {
                check(&mut client, range, revision).await;
            }
        }
    }
}

/// Lists `/ahead/` whole in pages of 7 and returns the first page's count and the keys listed.
async fn list_in_pages(client: &mut etcd_client::Client) -> (i64, usize) {
    let mut start = "/ahead/".to_string();
    let mut first_count = None;
    let mut listed = 0;
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new().with_range("/ahead0").with_limit(7);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = client
            .get(start.clone(), Some(options))
            .await
            .expect("page");
        if revision == 0 {
            revision = page.header().expect("header").revision();
        }
        first_count.get_or_insert(page.count());
        listed += page.kvs().len();
        match page.kvs().last() {
            Some(last) if page.more() => {
                start = format!("{}\0", last.key_str().expect("key"));
            }
            _ => return (first_count.unwrap_or_default(), listed),
        }
    }
}

crate::on_every_backend! {
    async fn first_pages_counted_ahead_are_exact_under_concurrent_lists() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..60 {
            client.put(format!("/ahead/{i:02}"), "v", None).await.expect("put");
        }
        // The first list teaches the store that the range spans pages; the others' first pages
        // count on a second reader when one is free. More lists at once than there are readers:
        // none may wait for a second one while holding the first.
        let (count, listed) = list_in_pages(&mut client).await;
        assert_eq!((count, listed), (60, 60));
        let mut lists = Vec::new();
        for _ in 0..40 {
            let mut client = client.clone();
            lists.push(tokio::spawn(async move {
                let mut results = Vec::new();
                for _ in 0..3 {
                    results.push(list_in_pages(&mut client).await);
                }
                results
            }));
        }
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            let mut all = Vec::new();
            for list in lists {
                all.extend(list.await.expect("list task"));
            }
            all
        })
        .await
        .expect("concurrent lists finish without waiting on each other");
        assert!(all.iter().all(|&result| result == (60, 60)), "{all:?}");
    }
}
