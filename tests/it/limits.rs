//! Bad input and limits: etcd's codes and messages for invalid requests, the bound on watches
//! per stream, and the concurrent-stream bound advertised to clients.

use bytes::Bytes;
use etcdshim::ServerOptions;
use etcdshim::proto::kv_client::KvClient;
use etcdshim::proto::request_op::Request;
use etcdshim::proto::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest,
};
use tonic::Code;

use crate::harness::{RawWatch, TestServer};

crate::on_every_backend! {
    async fn bad_input_table() {
        let server = TestServer::start().await;
        let mut kv = KvClient::connect(server.endpoint()).await.expect("connect");
        kv.put(PutRequest { key: "k".into(), value: "v".into(), ..Default::default() }).await.expect("put");
        let put = |key: &'static str| RequestOp { request: Some(Request::RequestPut(PutRequest { key: key.into(), ..Default::default() })) };
        let txn = |ops: Vec<RequestOp>| TxnRequest { success: ops, ..Default::default() };
        let cases: Vec<(&str, Expected, Op)> = vec![
            ("range: empty key", Err((Code::InvalidArgument, "etcdserver: key is not provided")), Op::Range(RangeRequest::default())),
            ("put: empty key", Err((Code::InvalidArgument, "etcdserver: key is not provided")), Op::Put(PutRequest::default())),
            ("delete: empty key", Err((Code::InvalidArgument, "etcdserver: key is not provided")), Op::Delete(DeleteRangeRequest::default())),
            ("txn: compare on an empty key", Err((Code::InvalidArgument, "etcdserver: key is not provided")), Op::Txn(TxnRequest { compare: vec![Compare::default()], ..Default::default() })),
            ("txn: an op with no request", Err((Code::InvalidArgument, "etcdserver: key not found")), Op::Txn(txn(vec![RequestOp { request: None }]))),
            ("txn: one key twice", Err((Code::InvalidArgument, "etcdserver: duplicate key given in txn request")), Op::Txn(txn(vec![put("a"), put("a")]))),
            ("put: unknown lease", Err((Code::NotFound, "etcdserver: requested lease not found")), Op::Put(PutRequest { key: "k".into(), lease: 77, ..Default::default() })),
            ("put: over 1.5 MiB", Err((Code::InvalidArgument, "etcdserver: request is too large")), Op::Put(PutRequest { key: "k".into(), value: Bytes::from(vec![0u8; 1_700_000]), ..Default::default() })),
            // etcd accepts these: a negative limit means none, a negative revision the newest,
            // and a range end below the key an empty range.
            ("range: negative limit", Ok(()), Op::Range(RangeRequest { key: "k".into(), limit: -5, ..Default::default() })),
            ("range: negative revision", Ok(()), Op::Range(RangeRequest { key: "k".into(), revision: -1, ..Default::default() })),
            ("range: end below key", Ok(()), Op::Range(RangeRequest { key: "z".into(), range_end: "a".into(), ..Default::default() })),
        ];
        for (name, expected, op) in cases {
            let got = match op {
                Op::Range(r) => kv.range(r).await.map(drop),
                Op::Put(r) => kv.put(r).await.map(drop),
                Op::Delete(r) => kv.delete_range(r).await.map(drop),
                Op::Txn(r) => kv.txn(r).await.map(drop),
            };
            let got = got.map_err(|status| (status.code(), status.message().to_string()));
            let expected = expected.map_err(|(code, message)| (code, message.to_string()));
            assert_eq!(got, expected, "{name}");
        }
        let resp = kv.range(RangeRequest { key: "k".into(), limit: -5, revision: -1, ..Default::default() }).await.expect("range").into_inner();
        assert_eq!((resp.kvs.len(), resp.count), (1, 1));
    }
}

/// What a request should get: success, or etcd's code and message.
type Expected = Result<(), (Code, &'static str)>;

enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[tokio::test]
async fn watches_per_stream_are_bounded() {
    let server = TestServer::start_with(ServerOptions {
        max_watches_per_stream: 3,
        ..ServerOptions::default()
    })
    .await;
    let mut watch = RawWatch::open(&server.endpoint()).await;
    for i in 0..4 {
        watch
            .create(WatchCreateRequest {
                key: format!("w{i}").into(),
                ..Default::default()
            })
            .await;
    }
    for _ in 0..3 {
        let created = watch.next().await;
        assert!(created.created && !created.canceled, "{created:?}");
    }
    let refused = watch.next().await;
    assert!(refused.created && refused.canceled, "{refused:?}");
    assert_eq!(
        refused.cancel_reason,
        "etcdshim: this stream already holds 3 watches, the most allowed"
    );
    // A cancel makes room again.
    watch.cancel(0).await;
    assert!(watch.next().await.canceled);
    watch
        .create(WatchCreateRequest {
            key: "again".into(),
            ..Default::default()
        })
        .await;
    let created = watch.next().await;
    assert!(created.created && !created.canceled, "{created:?}");
}
