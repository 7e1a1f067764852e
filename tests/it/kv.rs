//! Range, Put and DeleteRange semantics, table-driven where the cases share a shape.

use etcd_client::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget};
use tonic::Code;

use crate::harness::{TestServer, status_of};

fn keys(resp: &etcd_client::GetResponse) -> Vec<String> {
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// Keys a..f, written in the order below, so create and mod revisions differ from key order.
async fn fixture(client: &mut etcd_client::Client) {
    for (key, value) in [
        ("c", "3"),
        ("a", "1"),
        ("e", "5"),
        ("b", "2"),
        ("f", "6"),
        ("d", "4"),
        ("ab", "x"),
    ] {
        client.put(key, value, None).await.expect("put");
    }
    // Revision 9: "a" updated, so its mod revision is the newest.
    client.put("a", "11", None).await.expect("put");
}

crate::on_every_backend! {
    async fn a_fresh_store_is_at_revision_one() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let resp = client.get("anything", None).await.expect("get");
        assert_eq!(resp.header().expect("header").revision(), 1);
        assert_eq!(resp.count(), 0);
        assert!(resp.kvs().is_empty());
    }

    async fn revisions_and_versions_across_put_delete_and_recreate() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        // (operation, header revision, expected (create, mod, version) of "k" afterwards)
        let put = |v: &'static str| (Some(v), None::<()>);
        let steps = [
            (put("v1"), 2, Some((2, 2, 1))),
            (put("v2"), 3, Some((2, 3, 2))),
            (put("v3"), 4, Some((2, 4, 3))),
            ((None, Some(())), 5, None),
            (put("v4"), 6, Some((6, 6, 1))),
            (put("v5"), 7, Some((6, 7, 2))),
        ];
        for ((value, _), revision, expected) in steps {
            let header_revision = match value {
                Some(value) => client
                    .put("k", value, None)
                    .await
                    .expect("put")
                    .header()
                    .expect("header")
                    .revision(),
                None => {
                    let resp = client.delete("k", None).await.expect("delete");
                    assert_eq!(resp.deleted(), 1);
                    resp.header().expect("header").revision()
                }
            };
            assert_eq!(header_revision, revision);
            let resp = client.get("k", None).await.expect("get");
            assert_eq!(resp.header().expect("header").revision(), revision);
            let got = resp
                .kvs()
                .first()
                .map(|kv| (kv.create_revision(), kv.mod_revision(), kv.version()));
            assert_eq!(got, expected, "after revision {revision}");
        }
        // Every past revision is a true snapshot.
        let history = [
            (2, Some("v1")),
            (3, Some("v2")),
            (4, Some("v3")),
            (5, None),
            (6, Some("v4")),
            (7, Some("v5")),
        ];
        for (revision, value) in history {
            let resp = client
                .get("k", Some(GetOptions::new().with_revision(revision)))
                .await
                .expect("get at revision");
            assert_eq!(
                resp.header().expect("header").revision(),
                7,
                "header is the current revision"
            );
            let got = resp
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            assert_eq!(got.as_deref(), value, "at revision {revision}");
        }
        let (code, message) = status_of(
            client
                .get("k", Some(GetOptions::new().with_revision(8)))
                .await,
        );
        assert_eq!(
            (code, message.as_str()),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision"
            )
        );
    }

    async fn range_options_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        fixture(&mut client).await;
        let all = || GetOptions::new().with_all_keys();
        // (name, key, options, expected keys, count, more)
        type Case = (
            &'static str,
            &'static str,
            Option<GetOptions>,
            Vec<&'static str>,
            i64,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("single key", "b", None, vec!["b"], 1, false),
            ("missing key", "zz", None, vec![], 0, false),
            (
                "prefix",
                "a",
                Some(GetOptions::new().with_prefix()),
                vec!["a", "ab"],
                2,
                false,
            ),
            (
                "range",
                "b",
                Some(GetOptions::new().with_range("e")),
                vec!["b", "c", "d"],
                3,
                false,
            ),
            (
                "range end below key",
                "e",
                Some(GetOptions::new().with_range("b")),
                vec![],
                0,
                false,
            ),
            (
                "from key",
                "d",
                Some(GetOptions::new().with_from_key()),
                vec!["d", "e", "f"],
                3,
                false,
            ),
            (
                "all keys",
                "",
                Some(all()),
                vec!["a", "ab", "b", "c", "d", "e", "f"],
                7,
                false,
            ),
            (
                "limit",
                "",
                Some(all().with_limit(3)),
                vec!["a", "ab", "b"],
                7,
                true,
            ),
            (
                "limit equal to count",
                "",
                Some(all().with_limit(7)),
                vec!["a", "ab", "b", "c", "d", "e", "f"],
                7,
                false,
            ),
            (
                "count only",
                "",
                Some(all().with_count_only()),
                vec![],
                7,
                false,
            ),
            (
                "count only with limit",
                "",
                Some(all().with_count_only().with_limit(2)),
                vec![],
                7,
                false,
            ),
            (
                "descending keys",
                "",
                Some(
                    all()
                        .with_sort(SortTarget::Key, SortOrder::Descend)
                        .with_limit(2),
                ),
                vec!["f", "e"],
                7,
                true,
            ),
            (
                "by create revision",
                "",
                Some(all().with_sort(SortTarget::Create, SortOrder::Ascend)),
                vec!["c", "a", "e", "b", "f", "d", "ab"],
                7,
                false,
            ),
            (
                "by mod revision, newest first",
                "",
                Some(
                    all()
                        .with_sort(SortTarget::Mod, SortOrder::Descend)
                        .with_limit(2),
                ),
                vec!["a", "ab"],
                7,
                true,
            ),
            (
                "by value",
                "",
                Some(all().with_sort(SortTarget::Value, SortOrder::Ascend)),
                vec!["a", "b", "c", "d", "e", "f", "ab"],
                7,
                false,
            ),
            (
                "a target without an order sorts the first page only, as etcd does",
                "",
                Some(
                    all()
                        .with_sort(SortTarget::Create, SortOrder::None)
                        .with_limit(2),
                ),
                vec!["a", "b"],
                7,
                true,
            ),
            (
                "a target without an order sorts ascending",
                "",
                Some(all().with_sort(SortTarget::Create, SortOrder::None)),
                vec!["c", "a", "e", "b", "f", "d", "ab"],
                7,
                false,
            ),
            (
                "min mod revision",
                "",
                Some(all().with_min_mod_revision(7)),
                vec!["a", "ab", "d"],
                7,
                false,
            ),
            (
                "max mod revision",
                "",
                Some(all().with_max_mod_revision(4)),
                vec!["c", "e"],
                7,
                false,
            ),
            (
                "min create revision",
                "",
                Some(all().with_min_create_revision(7)),
                vec!["ab", "d"],
                7,
                false,
            ),
            (
                "max create revision",
                "",
                Some(all().with_max_create_revision(3)),
                vec!["a", "c"],
                7,
                false,
            ),
            (
                "filter then limit",
                "",
                Some(all().with_min_create_revision(4).with_limit(2)),
                vec!["ab", "b"],
                7,
                true,
            ),
            (
                "past revision",
                "",
                Some(all().with_revision(4)),
                vec!["a", "c", "e"],
                3,
                false,
            ),
            (
                "past revision with limit",
                "",
                Some(all().with_revision(6).with_limit(2)),
                vec!["a", "b"],
                5,
                true,
            ),
            (
                "serializable",
                "b",
                Some(GetOptions::new().with_serializable()),
                vec!["b"],
                1,
                false,
            ),
        ];
        for (name, key, options, expected, count, more) in cases {
            let resp = client
                .get(key, options)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(keys(&resp), expected, "{name}: keys");
            assert_eq!(resp.count(), count, "{name}: count");
            assert_eq!(resp.more(), more, "{name}: more");
            assert_eq!(
                resp.header().expect("header").revision(),
                9,
                "{name}: header revision"
            );
        }
        let resp = client
            .get("", Some(all().with_keys_only()))
            .await
            .expect("keys only");
        assert_eq!(resp.kvs().len(), 7);
        assert!(
            resp.kvs()
                .iter()
                .all(|kv| kv.value().is_empty() && kv.mod_revision() > 0)
        );
        let resp = client.get("a", None).await.expect("get a");
        let kv = &resp.kvs()[0];
        assert_eq!(
            (
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            ),
            (&b"11"[..], 3, 9, 2)
        );
    }

    async fn past_revision_reads_see_deleted_updated_and_recreated_keys() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for i in 0..10 {
            client
                .put(format!("p/{i}"), format!("v{i}"), None)
                .await
                .expect("put");
        }
        let pinned = client
            .get("p/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("list");
        let pinned_revision = pinned.header().expect("header").revision();
        // Change the range in every way after the pinned revision.
        client.put("p/1", "changed", None).await.expect("update");
        client.delete("p/2", None).await.expect("delete");
        client.delete("p/3", None).await.expect("delete");
        client
            .put("p/3", "recreated", None)
            .await
            .expect("recreate");
        client.put("p/99", "new", None).await.expect("create");
        client
            .delete("p/5", Some(DeleteOptions::new().with_range("p/7")))
            .await
            .expect("delete range");
        // Page through the pinned revision the way kube-apiserver does.
        let mut seen = Vec::new();
        let mut start = b"p/".to_vec();
        loop {
            let resp = client
                .get(
                    start.clone(),
                    Some(
                        GetOptions::new()
                            .with_range("p0")
                            .with_limit(3)
                            .with_revision(pinned_revision),
                    ),
                )
                .await
                .expect("page");
            assert_eq!(
                resp.count() as usize,
                10 - seen.len(),
                "count covers [start, end) at the pinned revision"
            );
            for kv in resp.kvs() {
                seen.push((kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()));
            }
            if !resp.more() {
                break;
            }
            start = seen.last().expect("a page").0.clone();
            start.push(0);
        }
        let expected: Vec<(Vec<u8>, Vec<u8>, i64)> = pinned
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            .collect();
        assert_eq!(seen, expected);
    }

    async fn put_options_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("k", "v1", None).await.expect("put");
        let resp = client
            .put("k", "v2", Some(PutOptions::new().with_prev_key()))
            .await
            .expect("put prev");
        let prev = resp.prev_key().expect("prev kv");
        assert_eq!(
            (prev.value(), prev.mod_revision(), prev.version()),
            (&b"v1"[..], 2, 1)
        );
        let resp = client
            .put("new", "x", Some(PutOptions::new().with_prev_key()))
            .await
            .expect("put new");
        assert!(resp.prev_key().is_none());
        let resp = client
            .put("k", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .expect("ignore value");
        assert_eq!(resp.header().expect("header").revision(), 5);
        let kv = client.get("k", None).await.expect("get").kvs()[0].clone();
        assert_eq!(
            (kv.value(), kv.version(), kv.mod_revision()),
            (&b"v2"[..], 3, 5)
        );
        client
            .put("k", "v3", Some(PutOptions::new().with_ignore_lease()))
            .await
            .expect("ignore lease");

        let errors: Vec<(&str, &str, PutOptions, Code, &str)> = vec![
            (
                "unknown lease",
                "k",
                PutOptions::new().with_lease(12345),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                "ignore value on a missing key",
                "missing",
                PutOptions::new().with_ignore_value(),
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                "ignore lease on a missing key",
                "missing",
                PutOptions::new().with_ignore_lease(),
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                "ignore lease with a lease",
                "k",
                PutOptions::new().with_ignore_lease().with_lease(5),
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                "empty key",
                "",
                PutOptions::new(),
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
        ];
        let before = crate::harness::head_revision(&client).await;
        for (name, key, options, code, message) in errors {
            let (got_code, got_message) = status_of(client.put(key, "", Some(options)).await);
            assert_eq!((got_code, got_message.as_str()), (code, message), "{name}");
        }
        let (code, message) = status_of(
            client
                .put("k", "value", Some(PutOptions::new().with_ignore_value()))
                .await,
        );
        assert_eq!(
            (code, message.as_str()),
            (Code::InvalidArgument, "etcdserver: value is provided")
        );
        let after = crate::harness::head_revision(&client).await;
        assert_eq!(before, after, "failed puts take no revision");
    }

    async fn delete_range_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        // (name, key, options, deleted keys)
        let cases: Vec<(&str, &str, Option<DeleteOptions>, Vec<&str>)> = vec![
            ("one key", "b", None, vec!["b"]),
            ("missing key", "zz", None, vec![]),
            (
                "range",
                "b",
                Some(DeleteOptions::new().with_range("d")),
                vec!["b", "c"],
            ),
            (
                "prefix",
                "a",
                Some(DeleteOptions::new().with_prefix()),
                vec!["a", "ab"],
            ),
            (
                "from key",
                "d",
                Some(DeleteOptions::new().with_from_key()),
                vec!["d", "e", "f"],
            ),
            (
                "all keys",
                "",
                Some(DeleteOptions::new().with_all_keys()),
                vec!["a", "ab", "b", "c", "d", "e", "f"],
            ),
        ];
        for (name, key, options, deleted) in cases {
            client
                .delete("", Some(DeleteOptions::new().with_all_keys()))
                .await
                .expect("clear");
            fixture(&mut client).await;
            let before = crate::harness::head_revision(&client).await;
            let options = options.unwrap_or_default().with_prev_key();
            let resp = client
                .delete(key, Some(options))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.deleted() as usize, deleted.len(), "{name}: deleted");
            let prev: Vec<String> = resp
                .prev_kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect();
            assert_eq!(prev, deleted, "{name}: prev kvs");
            let expected_revision = if deleted.is_empty() {
                before
            } else {
                before + 1
            };
            assert_eq!(
                resp.header().expect("header").revision(),
                expected_revision,
                "{name}: one revision for the whole range"
            );
            for key in deleted {
                assert_eq!(
                    client.get(key, None).await.expect("get").count(),
                    0,
                    "{name}: {key} is gone"
                );
            }
        }
        let (code, message) = status_of(client.delete("", None).await);
        assert_eq!(
            (code, message.as_str()),
            (Code::InvalidArgument, "etcdserver: key is not provided")
        );
        let (code, message) = status_of(client.get("", None).await);
        assert_eq!(
            (code, message.as_str()),
            (Code::InvalidArgument, "etcdserver: key is not provided")
        );
    }

    async fn requests_over_the_limit_are_too_large_and_large_responses_pass() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let (code, message) = status_of(client.put("big", vec![7u8; 1_600_000], None).await);
        assert_eq!(
            (code, message.as_str()),
            (Code::InvalidArgument, "etcdserver: request is too large")
        );
        // Five values of 1.2 MiB make one 6 MiB response, above gRPC's usual 4 MiB default.
        for i in 0..5 {
            client
                .put(format!("large/{i}"), vec![i as u8; 1_258_291], None)
                .await
                .expect("put under the limit");
        }
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(64 * 1024 * 1024);
        let resp = kv
            .get("large/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("large response");
        assert_eq!(resp.kvs().len(), 5);
        assert!(
            resp.kvs()
                .iter()
                .enumerate()
                .all(|(i, kv)| kv.value().len() == 1_258_291 && kv.value()[0] == i as u8)
        );
    }

    async fn keys_order_bytewise_on_every_backend() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let keys: Vec<Vec<u8>> = vec![
            b"b\xff".to_vec(),
            b"b".to_vec(),
            b"b\x80".to_vec(),
            b"b\x00".to_vec(),
            b"B".to_vec(),
            b"b\x7f".to_vec(),
            b"ba".to_vec(),
        ];
        // Values come back byte for byte too: an empty one, and ones with NUL and 0xff bytes.
        let value_of = |key: &[u8]| match key {
            b"b" => Vec::new(),
            key => [key, b"\x00\xff".as_slice()].concat(),
        };
        for key in &keys {
            client.put(key.clone(), value_of(key), None).await.expect("put");
        }
        let mut expected = keys.clone();
        expected.sort();
        let got = client.get(vec![0u8], Some(GetOptions::new().with_from_key())).await.expect("get");
        let got: Vec<Vec<u8>> = got.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        assert_eq!(got, expected, "bytewise ascending, as etcd");
        let prefix = client.get("b", Some(GetOptions::new().with_prefix())).await.expect("prefix");
        assert_eq!(prefix.count(), 6, "the prefix b covers b, b\\x00, b\\x7f, b\\x80, b\\xff and ba");
        for kv in prefix.kvs() {
            assert_eq!(kv.value(), value_of(kv.key()).as_slice(), "the value of {:?}", kv.key());
        }
    }
}
