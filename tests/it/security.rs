//! Client-facing TLS and client-certificate authentication, the health service, reflection.

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use etcdshim::{ServerOptions, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::harness::TestServer;

/// A CA and a certificate it signed, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn issue(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> Pki {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let cert = params.signed_by(&key, ca).expect("sign");
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

async fn tls_server(dir: &Path, server: &Pki, client_ca: Option<&str>) -> TestServer {
    let tls = TlsFiles {
        cert: write(dir, "server.pem", &server.cert),
        key: write(dir, "server-key.pem", &server.key),
        client_ca: client_ca.map(|ca| write(dir, "client-ca.pem", ca)),
    };
    TestServer::start_with(ServerOptions {
        tls: Some(tls),
        ..ServerOptions::default()
    })
    .await
}

async fn try_put(
    server: &TestServer,
    server_ca: &str,
    identity: Option<&Pki>,
) -> Result<(), String> {
    let mut tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost");
    if let Some(client) = identity {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(std::time::Duration::from_secs(5));
    let endpoint = format!("https://{}", server.addr);
    let mut client = Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| e.to_string())?;
    client
        .put("tls", "ok", None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test]
async fn client_certificates_signed_by_the_trusted_ca_are_required() {
    let dir = tempfile::tempdir().expect("dir");
    let server_ca = ca();
    let clients_ca = ca();
    let stranger_ca = ca();
    let server_pki = issue(&server_ca, &["localhost"]);
    let trusted = issue(&clients_ca, &["client"]);
    let stranger = issue(&stranger_ca, &["client"]);
    let server = tls_server(dir.path(), &server_pki, Some(&clients_ca.pem())).await;
    try_put(&server, &server_pki.ca, Some(&trusted))
        .await
        .expect("a trusted client certificate is accepted");
    assert!(
        try_put(&server, &server_pki.ca, None).await.is_err(),
        "no client certificate is refused"
    );
    assert!(
        try_put(&server, &server_pki.ca, Some(&stranger))
            .await
            .is_err(),
        "a certificate from another CA is refused"
    );
    // Plain HTTP/2 does not reach a TLS server.
    let plain = Client::connect(
        [format!("http://{}", server.addr)],
        Some(ConnectOptions::new().with_timeout(std::time::Duration::from_secs(3))),
    )
    .await;
    if let Ok(mut plain) = plain {
        assert!(plain.put("x", "y", None).await.is_err());
    }
}

#[tokio::test]
async fn tls_without_a_trusted_ca_accepts_any_client() {
    let dir = tempfile::tempdir().expect("dir");
    let server_ca = ca();
    let server_pki = issue(&server_ca, &["localhost"]);
    let server = tls_server(dir.path(), &server_pki, None).await;
    try_put(&server, &server_pki.ca, None)
        .await
        .expect("TLS without client authentication");
}

#[tokio::test]
async fn health_and_reflection_services() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(server.endpoint())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.message().await.expect("stream").expect("answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "etcdserverpb.KV",
        "etcdserverpb.Watch",
        "etcdserverpb.Lease",
        "etcdserverpb.Maintenance",
        "etcdserverpb.Cluster",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_verifies_the_database_certificate() {
    use crate::private_db::{PrivatePostgres, postgres_bin};
    use etcdshim::store::{DatabaseTls, DatastoreOptions, StoreOptions};

    let Some(bin) = postgres_bin() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let database_ca = ca();
    let database = issue(&database_ca, &["localhost"]);
    let postgres = PrivatePostgres::new(bin, Some((&database.cert, &database.key)));
    let options = |ca: &str, name: &str| ServerOptions {
        endpoint: format!("postgres://postgres@localhost:{}/kubernetes", postgres.port),
        store: StoreOptions {
            datastore: DatastoreOptions {
                tls: DatabaseTls {
                    ca_file: Some(write(dir.path(), name, ca)),
                    ..DatabaseTls::default()
                },
                ..DatastoreOptions::default()
            },
            ..StoreOptions::default()
        },
        ..ServerOptions::default()
    };
    // The right CA: the server starts (with sslmode=verify-full) and works.
    let server = TestServer::start_on(options(&database.ca, "db-ca.pem")).await;
    let mut client = server.client().await;
    client
        .put("over", "tls", None)
        .await
        .expect("put over a verified TLS connection");
    // Another CA: the database's certificate is refused, and nothing starts.
    let stranger = ca();
    let refused = etcdshim::Server::open(options(&stranger.pem(), "other-ca.pem")).await;
    assert!(
        refused.is_err(),
        "a database certificate from an unknown CA was accepted"
    );
}

/// With the API served over TLS, metrics are served over HTTPS with the same certificate (and,
/// with a client CA, only to clients it signed), as Kine serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_tls_with_the_api_certificate() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let dir = tempfile::tempdir().expect("dir");
    let authority = ca();
    let server = issue(&authority, &["localhost"]);
    let client = issue(&authority, &["client"]);
    let files = TlsFiles {
        cert: write(dir.path(), "server.pem", &server.cert),
        key: write(dir.path(), "server-key.pem", &server.key),
        client_ca: Some(write(dir.path(), "client-ca.pem", &server.ca)),
    };
    let config = etcdshim::metrics::tls_config(&files)
        .await
        .expect("TLS config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(etcdshim::metrics::serve(listener, Some(config), async {
        let _ = stopped.await;
    }));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let scrape = |identity: Option<&Pki>| {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(server.ca.as_bytes()).expect("CA"))
            .expect("root");
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(pki) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(pki.cert.as_bytes()).expect("cert")],
                    PrivateKeyDer::from_pem_slice(pki.key.as_bytes()).expect("key"),
                )
                .expect("client identity"),
            None => builder.with_no_client_auth(),
        };
        async move {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            let mut reply = String::new();
            tls.read_to_string(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<String, String>(reply)
        }
    };
    let reply = scrape(Some(&client))
        .await
        .expect("a scrape with a client certificate");
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("etcdshim_"),
        "{reply}"
    );
    assert!(
        scrape(None).await.is_err(),
        "a client without a certificate was served"
    );
    let _ = stop.send(());
    serving.await.expect("join").expect("served");
}
