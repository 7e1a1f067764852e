//! Txn: every compare target and result, ranges in compares, kube-apiserver's txn shapes,
//! nested txns, and etcd's rejection of a key written twice.

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

use crate::harness::{TestServer, status_of};

crate::on_every_backend! {
    async fn compare_targets_and_results_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("k", "m", None).await.expect("put"); // rev 2
        client.put("k", "m", None).await.expect("put"); // rev 3: create 2, mod 3, version 2
        use CompareOp::{Equal, Greater, Less, NotEqual};
        // (name, compare, expected outcome)
        let cases: Vec<(&str, Compare, bool)> = vec![
            ("value equal", Compare::value("k", Equal, "m"), true),
            ("value greater", Compare::value("k", Greater, "a"), true),
            ("value less", Compare::value("k", Less, "a"), false),
            ("value not equal", Compare::value("k", NotEqual, "m"), false),
            ("version equal", Compare::version("k", Equal, 2), true),
            ("version greater", Compare::version("k", Greater, 1), true),
            ("version less", Compare::version("k", Less, 2), false),
            (
                "version not equal",
                Compare::version("k", NotEqual, 1),
                true,
            ),
            (
                "create equal",
                Compare::create_revision("k", Equal, 2),
                true,
            ),
            (
                "create greater",
                Compare::create_revision("k", Greater, 2),
                false,
            ),
            ("create less", Compare::create_revision("k", Less, 3), true),
            (
                "create not equal",
                Compare::create_revision("k", NotEqual, 2),
                false,
            ),
            ("mod equal", Compare::mod_revision("k", Equal, 3), true),
            ("mod greater", Compare::mod_revision("k", Greater, 2), true),
            ("mod less", Compare::mod_revision("k", Less, 3), false),
            (
                "mod not equal",
                Compare::mod_revision("k", NotEqual, 3),
                false,
            ),
            ("lease equal", Compare::lease("k", Equal, 0), true),
            ("lease greater", Compare::lease("k", Greater, 0), false),
            ("lease less", Compare::lease("k", Less, 1), true),
            ("lease not equal", Compare::lease("k", NotEqual, 0), false),
            (
                "missing key: mod is zero",
                Compare::mod_revision("nope", Equal, 0),
                true,
            ),
            (
                "missing key: version is zero",
                Compare::version("nope", Equal, 0),
                true,
            ),
            (
                "missing key: create is zero",
                Compare::create_revision("nope", Equal, 0),
                true,
            ),
            (
                "missing key: lease is zero",
                Compare::lease("nope", Equal, 0),
                true,
            ),
            (
                "missing key: any value compare fails",
                Compare::value("nope", NotEqual, "x"),
                false,
            ),
        ];
        for (name, compare, expected) in cases {
            let resp = client
                .txn(Txn::new().when([compare]))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.succeeded(), expected, "{name}");
            assert_eq!(
                resp.header().expect("header").revision(),
                3,
                "{name}: compares take no revision"
            );
        }
    }

    async fn compares_over_ranges_need_every_key() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        for (key, value) in [("r/a", "1"), ("r/b", "1"), ("r/c", "2")] {
            client.put(key, value, None).await.expect("put");
        }
        let cases = [
            (
                "all keys of the prefix",
                Compare::version("r/", CompareOp::Equal, 1).with_prefix(),
                true,
            ),
            (
                "one key differs",
                Compare::value("r/", CompareOp::Equal, "1").with_prefix(),
                false,
            ),
            (
                "sub-range",
                Compare::value("r/a", CompareOp::Equal, "1").with_range("r/c"),
                true,
            ),
            (
                "empty range, revision target",
                Compare::mod_revision("x/", CompareOp::Equal, 0).with_prefix(),
                true,
            ),
            (
                "empty range, value target",
                Compare::value("x/", CompareOp::Equal, "").with_prefix(),
                false,
            ),
        ];
        for (name, compare, expected) in cases {
            let resp = client.txn(Txn::new().when([compare])).await.expect("txn");
            assert_eq!(resp.succeeded(), expected, "{name}");
        }
    }

    async fn kube_apiserver_create_update_delete_shapes() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let key = "/registry/pods/default/p";
        let create = |value: &str| {
            Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)])
        };
        let resp = client.txn(create("v1")).await.expect("create");
        assert!(resp.succeeded());
        let created_at = resp.header().expect("header").revision();
        assert_eq!(created_at, 2);
        assert!(
            !client
                .txn(create("again"))
                .await
                .expect("second create")
                .succeeded(),
            "create of an existing key fails"
        );

        let update = |rev: i64, value: &str| {
            Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key, value, None)])
                .or_else([TxnOp::get(key, None)])
        };
        let resp = client.txn(update(created_at, "v2")).await.expect("update");
        assert!(resp.succeeded());
        let updated_at = resp.header().expect("header").revision();
        assert_eq!(updated_at, 3);
        // A stale update fails and reads the current object in the same round trip.
        let resp = client
            .txn(update(created_at, "stale"))
            .await
            .expect("stale update");
        assert!(!resp.succeeded());
        assert_eq!(resp.header().expect("header").revision(), 3);
        match &resp.op_responses()[0] {
            TxnOpResponse::Get(get) => {
                let kv = &get.kvs()[0];
                assert_eq!(
                    (kv.value(), kv.mod_revision(), kv.version()),
                    (&b"v2"[..], 3, 2)
                );
            }
            other => panic!("expected a range response, got {other:?}"),
        }
        let delete = |rev: i64| {
            Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
                .and_then([TxnOp::delete(key, None)])
                .or_else([TxnOp::get(key, None)])
        };
        assert!(
            !client
                .txn(delete(created_at))
                .await
                .expect("stale delete")
                .succeeded()
        );
        let resp = client.txn(delete(updated_at)).await.expect("delete");
        assert!(resp.succeeded());
        assert_eq!(resp.header().expect("header").revision(), 4);
        match &resp.op_responses()[0] {
            TxnOpResponse::Delete(del) => assert_eq!(del.deleted(), 1),
            other => panic!("expected a delete response, got {other:?}"),
        }
        assert_eq!(client.get(key, None).await.expect("get").count(), 0);

        // Compaction election: the version compare on compact_rev_key picks one winner.
        let elect = |version: i64, rev: i64| {
            Txn::new()
                .when([Compare::version(
                    "compact_rev_key",
                    CompareOp::Equal,
                    version,
                )])
                .and_then([TxnOp::put("compact_rev_key", rev.to_string(), None)])
                .or_else([TxnOp::get("compact_rev_key", None)])
        };
        assert!(client.txn(elect(0, 4)).await.expect("elect").succeeded());
        assert!(
            !client
                .txn(elect(0, 4))
                .await
                .expect("lost election")
                .succeeded()
        );
        assert!(
            client
                .txn(elect(1, 5))
                .await
                .expect("next election")
                .succeeded()
        );
    }

    async fn one_txn_writes_at_one_revision_and_reads_its_own_writes() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("old", "x", None).await.expect("put"); // rev 2
        let txn = Txn::new().and_then([
            TxnOp::put("t/a", "1", None),
            TxnOp::put("t/b", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::delete("old", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::get("t/", Some(GetOptions::new().with_prefix())),
            TxnOp::get("old", Some(GetOptions::new().with_revision(2))),
        ]);
        let resp = client.txn(txn).await.expect("txn");
        assert!(resp.succeeded(), "no compares means success");
        assert_eq!(resp.header().expect("header").revision(), 3);
        let responses = resp.op_responses();
        match &responses[2] {
            TxnOpResponse::Delete(del) => {
                assert_eq!(del.deleted(), 1);
                assert_eq!(del.prev_kvs()[0].value(), b"x");
            }
            other => panic!("expected delete, got {other:?}"),
        }
        match &responses[3] {
            TxnOpResponse::Get(get) => {
                assert_eq!(get.count(), 2);
                assert!(
                    get.kvs()
                        .iter()
                        .all(|kv| kv.mod_revision() == 3 && kv.create_revision() == 3)
                );
            }
            other => panic!("expected get, got {other:?}"),
        }
        match &responses[4] {
            TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"x"),
            other => panic!("expected get, got {other:?}"),
        }
        // A txn that only reads, or changes nothing, takes no revision.
        let resp = client
            .txn(Txn::new().and_then([TxnOp::get("t/a", None), TxnOp::delete("missing", None)]))
            .await
            .expect("read-only txn");
        assert_eq!(resp.header().expect("header").revision(), 3);
    }

    async fn nested_txns_choose_by_their_own_compares() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("flag", "on", None).await.expect("put");
        let inner = Txn::new()
            .when([Compare::value("flag", CompareOp::Equal, "off")])
            .and_then([TxnOp::put("n/x", "then", None)])
            .or_else([TxnOp::put("n/x", "else", None), TxnOp::get("flag", None)]);
        let outer = Txn::new()
            .when([Compare::value("flag", CompareOp::Equal, "on")])
            .and_then([TxnOp::put("n/y", "outer", None), TxnOp::txn(inner)]);
        let resp = client.txn(outer).await.expect("nested txn");
        assert!(resp.succeeded());
        assert_eq!(resp.header().expect("header").revision(), 3);
        match &resp.op_responses()[1] {
            TxnOpResponse::Txn(nested) => {
                assert!(!nested.succeeded());
                assert_eq!(nested.op_responses().len(), 2);
            }
            other => panic!("expected a nested txn, got {other:?}"),
        }
        let x = client.get("n/x", None).await.expect("get");
        assert_eq!(
            (x.kvs()[0].value(), x.kvs()[0].mod_revision()),
            (&b"else"[..], 3)
        );
    }

    async fn a_key_written_twice_in_one_txn_is_rejected() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let nested = |then: Vec<TxnOp>, otherwise: Vec<TxnOp>| {
            TxnOp::txn(Txn::new().and_then(then).or_else(otherwise))
        };
        let put = |key: &str| TxnOp::put(key, "v", None);
        // (name, ops of the success branch, rejected)
        let cases: Vec<(&str, Vec<TxnOp>, bool)> = vec![
            ("two puts of one key", vec![put("a"), put("a")], true),
            (
                "put inside a deleted range",
                vec![
                    TxnOp::delete("a", Some(DeleteOptions::new().with_prefix())),
                    put("ab"),
                ],
                true,
            ),
            (
                "put of a deleted key",
                vec![put("a"), TxnOp::delete("a", None)],
                true,
            ),
            (
                "put outside the deleted range",
                vec![
                    TxnOp::delete("a", Some(DeleteOptions::new().with_range("b"))),
                    put("b"),
                ],
                false,
            ),
            (
                "two deletes of one key",
                vec![TxnOp::delete("a", None), TxnOp::delete("a", None)],
                false,
            ),
            (
                "nested branches may share a key",
                vec![nested(vec![put("a")], vec![put("a")])],
                false,
            ),
            (
                "nested put and outer put",
                vec![put("a"), nested(vec![put("a")], vec![])],
                true,
            ),
            (
                "nested delete and outer put",
                vec![put("a"), nested(vec![TxnOp::delete("a", None)], vec![])],
                true,
            ),
            (
                "reads never conflict",
                vec![put("a"), TxnOp::get("a", None)],
                false,
            ),
        ];
        for (name, ops, rejected) in cases {
            let result = client.txn(Txn::new().and_then(ops)).await;
            if rejected {
                let (code, message) = status_of(result);
                assert_eq!(
                    (code, message.as_str()),
                    (
                        Code::InvalidArgument,
                        "etcdserver: duplicate key given in txn request"
                    ),
                    "{name}"
                );
            } else {
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    async fn txn_errors_table() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        client.put("k", "v", None).await.expect("put");
        let too_many: Vec<TxnOp> = (0..129)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect();
        let cases: Vec<(&str, Txn, Code, &str)> = vec![
            (
                "too many ops",
                Txn::new().and_then(too_many),
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                "empty compare key",
                Txn::new().when([Compare::version("", CompareOp::Equal, 0)]),
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                "empty put key",
                Txn::new().and_then([TxnOp::put("", "v", None)]),
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                "unknown lease",
                Txn::new().and_then([TxnOp::put("x", "v", Some(PutOptions::new().with_lease(99)))]),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                "future revision read",
                Txn::new().and_then([TxnOp::get("k", Some(GetOptions::new().with_revision(100)))]),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                "ignore value of a missing key",
                Txn::new().and_then([TxnOp::put(
                    "missing",
                    "",
                    Some(PutOptions::new().with_ignore_value()),
                )]),
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
        ];
        for (name, txn, code, message) in cases {
            let (got_code, got_message) = status_of(client.txn(txn).await);
            assert_eq!((got_code, got_message.as_str()), (code, message), "{name}");
        }
        // A failing txn wrote nothing, not even its earlier ops.
        let resp = client.get("x", None).await.expect("get");
        assert_eq!(
            (resp.count(), resp.header().expect("header").revision()),
            (0, 2)
        );
    }
}
