//! Gets of one key at the head, which SQLite answers from the read cache once a key has been
//! read and PostgreSQL and MySQL batch into one statement while the database is busy: every
//! answer must be what the database holds, after every kind of write (puts, deletes, txns,
//! lease expiry and revocation, compaction, a restart), each get of a batch must get its own
//! key, and a get must see every write acknowledged before it started while writers and
//! readers race. Writes build on the cache too (the sequencer takes a cached key's version from
//! it on SQLite): their prev_kv, versions and compares must match the database's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};

use crate::harness::TestServer;

const KEYS: [&str; 4] = ["cache/a", "cache/b", "cache/c", "cache/d"];

/// Every key of `KEYS` read one by one (as the cache answers) and all at once (a range, which
/// the cache never answers), compared with `model` and with each other.
async fn check_against(
    client: &mut etcd_client::Client,
    model: &BTreeMap<String, String>,
    step: &str,
) {
    let listed = client
        .get("cache/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("list");
    for key in KEYS {
        // Twice: the first may fill the cache, the second is answered from it.
        for attempt in 0..2 {
            let got = client.get(key, None).await.expect("get");
            let value = got
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            assert_eq!(
                value.as_deref(),
                model.get(key).map(String::as_str),
                "{key} after {step} (read {attempt})"
            );
            assert_eq!(got.count(), i64::from(value.is_some()), "count of {key}");
            let from_list = listed.kvs().iter().find(|kv| kv.key() == key.as_bytes());
            match (got.kvs().first(), from_list) {
                (Some(one), Some(all)) => {
                    assert_eq!(one.mod_revision(), all.mod_revision(), "{key} after {step}");
                    assert_eq!(one.create_revision(), all.create_revision());
                    assert_eq!(one.version(), all.version());
                    assert_eq!(one.lease(), all.lease());
                }
                (None, None) => {}
                (one, all) => panic!("{key} after {step}: get {one:?}, list {all:?}"),
            }
            let header = got.header().expect("header").revision();
            assert!(header >= listed.header().expect("header").revision());
        }
        let keys_only = client
            .get(key, Some(GetOptions::new().with_keys_only()))
            .await
            .expect("keys-only get");
        assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
        let count_only = client
            .get(key, Some(GetOptions::new().with_count_only()))
            .await
            .expect("count-only get");
        assert!(count_only.kvs().is_empty());
        assert_eq!(count_only.count(), i64::from(model.contains_key(key)));
    }
}

/// A key's state as the model keeps it: value, create revision, mod revision, version.
type KeyState = (String, i64, i64, i64);

fn state_of(kv: &etcd_client::KeyValue) -> KeyState {
    (
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
    )
}

/// The state a put of `value` at `revision` leaves, after `before`.
fn written(before: Option<&KeyState>, value: String, revision: i64) -> KeyState {
    match before {
        Some((_, create, _, version)) => (value, *create, revision, version + 1),
        None => (value, revision, revision, 1),
    }
}

crate::on_every_backend! {
    async fn single_key_gets_follow_every_kind_of_write() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let mut model = BTreeMap::new();
        check_against(&mut client, &model, "nothing").await;

        for (round, key) in KEYS.iter().enumerate() {
            client.put(*key, format!("v{round}"), None).await.expect("put");
            model.insert(key.to_string(), format!("v{round}"));
        }
        check_against(&mut client, &model, "puts").await;

        client.put("cache/a", "replaced", None).await.expect("put");
        model.insert("cache/a".into(), "replaced".into());
        client.delete("cache/b", None).await.expect("delete");
        model.remove("cache/b");
        check_against(&mut client, &model, "a put over and a delete").await;

        // A txn that writes two keys and deletes one, and one whose compare fails.
        let txn = Txn::new()
            .when([Compare::version("cache/a", CompareOp::Greater, 0)])
            .and_then([
                TxnOp::put("cache/b", "back", None),
                TxnOp::put("cache/c", "txn", None),
                TxnOp::delete("cache/d", None),
            ]);
        assert!(client.txn(txn).await.expect("txn").succeeded());
        model.insert("cache/b".into(), "back".into());
        model.insert("cache/c".into(), "txn".into());
        model.remove("cache/d");
        let failed = Txn::new()
            .when([Compare::value("cache/a", CompareOp::Equal, "nope")])
            .and_then([TxnOp::put("cache/a", "must not", None)]);
        assert!(!client.txn(failed).await.expect("txn").succeeded());
        check_against(&mut client, &model, "txns").await;

        // A from-key delete takes every key at and after cache/c.
        client
            .delete("cache/c", Some(DeleteOptions::new().with_from_key()))
            .await
            .expect("delete from key");
        model.retain(|key, _| key.as_str() < "cache/c");
        check_against(&mut client, &model, "a from-key delete").await;

        // Keys of a revoked lease and of an expired one go.
        let revoked = client.lease_grant(60, None).await.expect("grant").id();
        let expiring = client.lease_grant(1, None).await.expect("grant").id();
        client
            .put("cache/c", "leased", Some(PutOptions::new().with_lease(revoked)))
            .await
            .expect("put");
        client
            .put("cache/d", "expiring", Some(PutOptions::new().with_lease(expiring)))
            .await
            .expect("put");
        model.insert("cache/c".into(), "leased".into());
        model.insert("cache/d".into(), "expiring".into());
        check_against(&mut client, &model, "leased puts").await;
        client.lease_revoke(revoked).await.expect("revoke");
        model.remove("cache/c");
        check_against(&mut client, &model, "a lease revoked").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client.get("cache/d", None).await.expect("get").count() == 1 {
            assert!(tokio::time::Instant::now() < deadline, "the lease never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        model.remove("cache/d");
        check_against(&mut client, &model, "a lease expired").await;

        // Compaction changes nothing at the head; a restart starts with nothing cached.
        let head = crate::harness::head_revision(&client).await;
        client.compact(head, None).await.expect("compact");
        check_against(&mut client, &model, "a compaction").await;
        let server = server.restart().await;
        let mut client = server.client().await;
        check_against(&mut client, &model, "a restart").await;
        client.put("cache/a", "after restart", None).await.expect("put");
        model.insert("cache/a".into(), "after restart".into());
        check_against(&mut client, &model, "a put after the restart").await;
    }

    async fn a_get_sees_every_write_acknowledged_before_it_started() {
        const WRITES: i64 = 400;
        const READERS: usize = 8;
        let server = TestServer::start().await;
        let client = server.client().await;
        // The newest value of each key whose put has been acknowledged.
        let acknowledged: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS.len()).map(|_| AtomicI64::new(-1)).collect());
        let writer = {
            let mut client = client.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for n in 0..WRITES {
                    let slot = (n as usize) % KEYS.len();
                    client.put(KEYS[slot], n.to_string(), None).await.expect("put");
                    acknowledged[slot].store(n, Ordering::SeqCst);
                }
            })
        };
        let mut readers = Vec::new();
        for reader in 0..READERS {
            let mut client = client.clone();
            let acknowledged = acknowledged.clone();
            readers.push(tokio::spawn(async move {
                let mut last_seen = vec![-1i64; KEYS.len()];
                let mut reads = 0;
                loop {
                    let slot = (reader + reads) % KEYS.len();
                    let floor = acknowledged[slot].load(Ordering::SeqCst);
                    let got = client.get(KEYS[slot], None).await.expect("get");
                    let seen = match got.kvs().first() {
                        Some(kv) => std::str::from_utf8(kv.value()).expect("utf8").parse().expect("number"),
                        None => -1,
                    };
                    assert!(seen >= floor, "{}: read {seen} after {floor} was acknowledged", KEYS[slot]);
                    assert!(seen >= last_seen[slot], "{}: read {seen} after reading {}", KEYS[slot], last_seen[slot]);
                    if let Some(kv) = got.kvs().first() {
                        assert!(kv.mod_revision() <= got.header().expect("header").revision());
                    }
                    last_seen[slot] = seen;
                    reads += 1;
                    if floor >= WRITES - KEYS.len() as i64 {
                        return reads;
                    }
                }
            }));
        }
        writer.await.expect("writer");
        let mut total = 0;
        for reader in readers {
            total += reader.await.expect("reader");
        }
        assert!(total >= READERS, "the readers read");
    }

    async fn many_gets_at_once_each_get_their_own_key() {
        const KEYS: usize = 100;
        const READERS: usize = 20;
        let server = TestServer::start().await;
        let mut client = server.client().await;
        // Even keys live with their own value, odd ones deleted (or never written).
        for n in 0..KEYS {
            client.put(format!("many/{n}"), format!("value {n}"), None).await.expect("put");
        }
        for n in (1..KEYS).step_by(2) {
            client.delete(format!("many/{n}"), None).await.expect("delete");
        }
        let written = crate::harness::head_revision(&client).await;
        let mut readers = Vec::new();
        for reader in 0..READERS {
            // A connection each, so the gets reach the server together.
            let mut client = server.client().await;
            readers.push(tokio::spawn(async move {
                for round in 0..KEYS {
                    let n = (reader * 7 + round) % KEYS;
                    let got = client.get(format!("many/{n}"), None).await.expect("get");
                    let header = got.header().expect("header").revision();
                    assert!(header >= written, "header {header} before the writes ({written})");
                    match got.kvs().first() {
                        Some(kv) => {
                            assert_eq!(n % 2, 0, "many/{n} was deleted");
                            assert_eq!(kv.key(), format!("many/{n}").as_bytes());
                            assert_eq!(kv.value(), format!("value {n}").as_bytes());
                            assert_eq!(kv.version(), 1);
                        }
                        None => assert_eq!(n % 2, 1, "many/{n} is live"),
                    }
                    assert_eq!(got.count(), i64::from(n.is_multiple_of(2)));
                }
            }));
        }
        for reader in readers {
            reader.await.expect("reader");
        }
    }

    async fn a_get_after_another_sees_the_whole_txn_the_first_saw() {
        const WRITES: i64 = 300;
        let server = TestServer::start().await;
        let client = server.client().await;
        let writer = {
            let mut client = client.clone();
            tokio::spawn(async move {
                for n in 0..WRITES {
                    let both = Txn::new().and_then([
                        TxnOp::put("pair/x", n.to_string(), None),
                        TxnOp::put("pair/y", n.to_string(), None),
                    ]);
                    client.txn(both).await.expect("txn");
                }
            })
        };
        let value = |got: &etcd_client::GetResponse| -> i64 {
            got.kvs().first().map_or(-1, |kv| {
                std::str::from_utf8(kv.value()).expect("utf8").parse().expect("number")
            })
        };
        let mut readers = Vec::new();
        for _ in 0..4 {
            let mut client = client.clone();
            readers.push(tokio::spawn(async move {
                loop {
                    let x = value(&client.get("pair/x", None).await.expect("get"));
                    let y = value(&client.get("pair/y", None).await.expect("get"));
                    assert!(y >= x, "pair/y read {y} after pair/x read {x} of the same txn");
                    if x == WRITES - 1 {
                        return;
                    }
                }
            }));
        }
        writer.await.expect("writer");
        for reader in readers {
            reader.await.expect("reader");
        }
    }

    async fn writes_build_on_the_versions_before_them() {
        // Each write's outcome (its prev_kv, the version and create revision it gives, whether
        // a compare holds) comes from the key's state before it: on SQLite from the read cache
        // when the key is there, so the cache must hold exactly what the database does, across
        // deletes, failed compares and a restart (which starts with nothing cached).
        use rand::{Rng, SeedableRng};
        const STEPS: usize = 300;
        let keys = ["built/a", "built/b", "built/c"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut server = TestServer::start().await;
        let mut client = server.client().await;
        // key -> (value, create revision, mod revision, version)
        let mut model: BTreeMap<&str, KeyState> = BTreeMap::new();
        for step in 0..STEPS {
            if step == STEPS / 2 {
                server = server.restart().await;
                client = server.client().await;
            }
            let key = keys[rng.random_range(0..keys.len())];
            let value = format!("v{step}");
            let before = model.get(key).cloned();
            let prev = match rng.random_range(0..4) {
                0 => {
                    let put = client
                        .put(key, value.clone(), Some(PutOptions::new().with_prev_key()))
                        .await
                        .expect("put");
                    let revision = put.header().expect("header").revision();
                    model.insert(key, written(before.as_ref(), value, revision));
                    Some(put.prev_key().map(state_of))
                }
                1 => {
                    let deleted = client
                        .delete(key, Some(DeleteOptions::new().with_prev_key()))
                        .await
                        .expect("delete");
                    assert_eq!(deleted.deleted(), i64::from(before.is_some()), "step {step}");
                    model.remove(key);
                    Some(deleted.prev_kvs().first().map(state_of))
                }
                _ => {
                    // A compare on the state the model says the key is in, true or made false.
                    let holds = rng.random_bool(0.5);
                    let (version, modified) = before.as_ref().map_or((0, 0), |b| (b.3, b.2));
                    let compare = if rng.random_bool(0.5) {
                        Compare::version(key, CompareOp::Equal, version + i64::from(!holds))
                    } else {
                        Compare::mod_revision(key, CompareOp::Equal, modified + i64::from(!holds))
                    };
                    let txn = Txn::new()
                        .when([compare])
                        .and_then([TxnOp::put(key, value.clone(), None)]);
                    let done = client.txn(txn).await.expect("txn");
                    assert_eq!(done.succeeded(), holds, "step {step}: compare on {key} {before:?}");
                    if holds {
                        let revision = done.header().expect("header").revision();
                        model.insert(key, written(before.as_ref(), value, revision));
                    }
                    None
                }
            };
            if let Some(prev) = prev {
                assert_eq!(prev, before, "step {step}: prev_kv of {key}");
            }
        }
        let listed = client
            .get("built/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("list");
        let stored: BTreeMap<String, KeyState> = listed
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), state_of(kv)))
            .collect();
        let expected: BTreeMap<String, KeyState> =
            model.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(stored, expected);

        // A version too large for the cache (1.2 MB, over a 16 MiB cache's 1 MiB shard) must
        // take its cached predecessor out, or the next write builds on that.
        client.put("built/large", "small", None).await.expect("put");
        client.put("built/large", "small again", None).await.expect("put");
        client.get("built/large", None).await.expect("get");
        let large = "x".repeat(1_200_000);
        client.put("built/large", large.clone(), None).await.expect("large put");
        let got = client.get("built/large", None).await.expect("get");
        assert_eq!(got.kvs().first().map(|kv| kv.value().len()), Some(large.len()));
        let put = client
            .put("built/large", "after", Some(PutOptions::new().with_prev_key()))
            .await
            .expect("put");
        let prev = put.prev_key().expect("prev_kv");
        assert_eq!((prev.value().len(), prev.version()), (large.len(), 3));
    }
}
