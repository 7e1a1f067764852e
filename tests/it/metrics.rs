//! The Prometheus endpoint, scraped after real traffic.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{RawWatch, TestServer};

async fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the first sample whose line starts with `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_requests_sql_sequencer_watches_compaction_and_leases() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut watch = RawWatch::watching(
        &server.endpoint(),
        etcdshim::proto::WatchCreateRequest {
            key: "m".into(),
            ..Default::default()
        },
    )
    .await;
    let lease = client.lease_grant(60, None).await.expect("grant").id();
    client
        .put(
            "m",
            "1",
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("put");
    assert_eq!(watch.next().await.events.len(), 1);
    client.get("m", None).await.expect("get");
    let _ = client.get("", None).await; // an InvalidArgument
    client.lease_revoke(lease).await.expect("revoke");
    client
        .compact(
            2,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(etcdshim::metrics::serve(listener, None, async {
        let _ = stopped.await;
    }));
    let text = scrape(address).await;
    assert!(
        value(
            &text,
            "etcdshim_grpc_requests_total{code=\"Ok\",method=\"etcdserverpb.KV/Put\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            "etcdshim_grpc_requests_total{code=\"InvalidArgument\",method=\"etcdserverpb.KV/Range\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            "etcdshim_grpc_request_duration_seconds_count{method=\"etcdserverpb.KV/Range\"}"
        ) >= 2.0
    );
    assert!(
        value(
            &text,
            "etcdshim_sql_statement_duration_seconds_count{statement=\"range\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &text,
            "etcdshim_sql_statement_duration_seconds_count{statement=\"commit\"}"
        ) >= 1.0
    );
    assert!(value(&text, "etcdshim_sequencer_batch_size_count") >= 1.0);
    assert!(text.contains("etcdshim_watchers "), "{text}");
    assert!(value(&text, "etcdshim_watch_events_sent_total") >= 1.0);
    assert!(value(&text, "etcdshim_compacted_revision") >= 2.0);
    assert!(value(&text, "etcdshim_compaction_progress_revision") >= 2.0);
    assert!(value(&text, "etcdshim_lease_grants_total") >= 1.0);
    assert!(
        value(
            &text,
            "etcdshim_lease_revocations_total{reason=\"revoked\"}"
        ) >= 1.0
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("metrics server stops")
        .expect("join")
        .expect("served");
}
