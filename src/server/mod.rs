//! The gRPC layer: one file per etcd service, request validation, and [`Server`], which serves
//! a store on a listener the caller binds, until a shutdown future completes.

mod authority;
mod cluster;
pub mod fuzz_input;
mod grpc_metrics;
mod kv;
mod lease;
mod maintenance;
pub mod validate;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::error::{Error, Result};
use crate::proto::cluster_server::ClusterServer;
use crate::proto::kv_server::KvServer;
use crate::proto::lease_server::LeaseServer;
use crate::proto::maintenance_server::MaintenanceServer;
use crate::proto::watch_server::WatchServer;
use crate::store::{Store, StoreOptions};
use authority::AuthorityRepair;
use cluster::ClusterService;
use kv::KvService;
use lease::LeaseService;
use maintenance::MaintenanceService;
use watch::WatchService;

/// Messages up to this size are decoded, so that etcd's own "request is too large" answers
/// requests over [`validate::MAX_REQUEST_BYTES`] (etcd allows the same overhead).
const MAX_DECODED_BYTES: usize = validate::MAX_REQUEST_BYTES + 512 * 1024;
/// An unpaged list is one message; etcd allows responses up to 2 GiB.
const MAX_ENCODED_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// The etcd version reported by default: a 3.6 release, so kube-apiserver enables its
/// progress-notification based features.
pub const DEFAULT_ETCD_VERSION: &str = "3.6.5";

/// Concurrent streams per client connection, by default (kube-apiserver multiplexes many
/// watches and requests over few connections).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 10_000;
/// Watches per watch stream, by default.
pub const DEFAULT_MAX_WATCHES_PER_STREAM: usize = 10_000;

/// After shutdown begins, requests still open after this long are cut off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often watchers that asked for progress notifications get one, by default.
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(5);

/// What a server needs besides its listener.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Kine-style datastore endpoint, e.g. `sqlite://./db/state.db`.
    pub endpoint: String,
    /// The etcd version reported by Maintenance.Status.
    pub emulated_etcd_version: String,
    /// How often watchers with `progress_notify` get a progress notification.
    pub watch_progress_notify_interval: Duration,
    /// The datastore's connections, the watch window, following other servers, compaction.
    pub store: StoreOptions,
    /// Serve clients over TLS (and with a CA, demand client certificates signed by it).
    pub tls: Option<TlsFiles>,
    /// The most concurrent gRPC streams (requests and watch/keep-alive streams) per client
    /// connection.
    pub max_concurrent_streams: u32,
    /// The most watches one watch stream may hold.
    pub max_watches_per_stream: usize,
}

/// PEM files for client-facing TLS (Kine's `--server-cert-file`, `--server-key-file`,
/// `--trusted-ca-file`).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, a client must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    async fn server_config(&self) -> Result<ServerTlsConfig> {
        let read = |path: &PathBuf| {
            let path = path.clone();
            async move {
                tokio::fs::read(&path).await.map_err(|err| {
                    Error::Io(std::io::Error::new(
                        err.kind(),
                        format!("{}: {err}", path.display()),
                    ))
                })
            }
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert).await?,
            read(&self.key).await?,
        ));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca).await?));
        }
        Ok(config)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            endpoint: "sqlite://./db/state.db".to_string(),
            emulated_etcd_version: DEFAULT_ETCD_VERSION.to_string(),
            watch_progress_notify_interval: DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
            store: StoreOptions::default(),
            tls: None,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_watches_per_stream: DEFAULT_MAX_WATCHES_PER_STREAM,
        }
    }
}

/// Where the server accepts clients.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `host:port` (an `http://` prefix is accepted) or `unix:///path`.
    pub async fn bind(address: &str) -> Result<Listener> {
        if let Some(path) = address.strip_prefix("unix://") {
            let path = PathBuf::from(path);
            // A socket file left by an earlier run would make bind fail.
            if tokio::fs::metadata(&path).await.is_ok() {
                tokio::fs::remove_file(&path).await?;
            }
            return Ok(Listener::Unix(UnixListener::bind(&path)?, path));
        }
        let address = bindable(address.strip_prefix("http://").unwrap_or(address));
        Ok(Listener::Tcp(TcpListener::bind(address).await?))
    }

    /// The URL clients use to reach this listener (without TLS).
    pub fn client_url(&self) -> Result<String> {
        Ok(match self {
            Listener::Tcp(listener) => format!("http://{}", listener.local_addr()?),
            Listener::Unix(_, path) => format!("unix://{}", path.display()),
        })
    }
}

/// An etcd server over one store.
pub struct Server {
    store: Store,
    options: ServerOptions,
}

impl Server {
    /// Opens the datastore named by `options.endpoint` (creating and migrating it as needed).
    pub async fn open(options: ServerOptions) -> Result<Server> {
        let store = Store::open(&options.endpoint, &options.store).await?;
        Ok(Server { store, options })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves clients on `listener` until `shutdown` completes; then ends watch and keep-alive
    /// streams, finishes in-flight requests (cutting off any still open after
    /// [`SHUTDOWN_GRACE`]) and returns.
    pub async fn serve(
        self,
        listener: Listener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let (closing, closed) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            // Streams that never end on their own would hold the graceful shutdown forever.
            let _ = closing.send(true);
        };
        let mut client_url = listener.client_url()?;
        if self.options.tls.is_some() {
            client_url = client_url.replacen("http://", "https://", 1);
        }
        tracing::info!(%client_url, endpoint = %redact(&self.options.endpoint), "serving etcd v3 API");
        let store = self.store;
        let kv = KvServer::new(KvService {
            store: store.clone(),
        })
        .max_decoding_message_size(MAX_DECODED_BYTES)
        .max_encoding_message_size(MAX_ENCODED_BYTES);
        let maintenance = MaintenanceServer::new(MaintenanceService {
            store: store.clone(),
            version: self.options.emulated_etcd_version.clone(),
            endpoint: self.options.endpoint.clone(),
        });
        let watch = WatchServer::new(WatchService {
            store: store.clone(),
            progress_interval: self.options.watch_progress_notify_interval,
            max_watches: self.options.max_watches_per_stream,
            closing: closed.clone(),
        })
        .max_decoding_message_size(MAX_DECODED_BYTES)
        .max_encoding_message_size(MAX_ENCODED_BYTES);
        let lease = LeaseServer::new(LeaseService {
            store: store.clone(),
            closing: closed.clone(),
        });
        let cluster = ClusterServer::new(ClusterService {
            store: store.clone(),
            client_url,
            name: "etcdshim".to_string(),
        });
        // etcd's keepalive policy: clients may ping as often as every 5 s (hyper accepts any
        // ping rate); the server pings idle connections every 2 h and drops dead ones.
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|err| Error::Io(std::io::Error::other(err)))?;
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(2 * 60 * 60)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(self.options.max_concurrent_streams));
        if let Some(tls) = &self.options.tls {
            builder = builder
                .tls_config(tls.server_config().await?)
                .map_err(|err| Error::Io(std::io::Error::other(err)))?;
        }
        let router = builder
            .layer(grpc_metrics::GrpcMetricsLayer)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(maintenance)
            .add_service(cluster);
        let serving = async move {
            match listener {
                Listener::Tcp(listener) => {
                    // Connections we accept ourselves do not get the builder's TCP_NODELAY:
                    // without it, Nagle's algorithm holds small responses back ~40 ms.
                    let incoming = TcpListenerStream::new(listener).map(|stream| {
                        stream.and_then(|stream| {
                            stream.set_nodelay(true)?;
                            Ok(AuthorityRepair::new(stream))
                        })
                    });
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
                Listener::Unix(listener, _) => {
                    let incoming = UnixListenerStream::new(listener)
                        .map(|stream| stream.map(AuthorityRepair::new));
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }
            }
        };
        let mut closed = closed;
        let deadline = async move {
            self::closed(&mut closed).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = serving => served.map_err(|err| Error::Io(std::io::Error::other(err))),
            () = deadline => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the shutdown grace period were cut off");
                Ok(())
            }
        }
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityRepair<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// Go's `:PORT` (every interface, as Kine's flags write it) as an address Rust binds.
pub fn bindable(address: &str) -> String {
    match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_string(),
    }
}

/// Completes once the server is shutting down.
async fn closed(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// The endpoint without a password, for logs.
pub fn redact(endpoint: &str) -> String {
    match (endpoint.find("://"), endpoint.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &endpoint[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => format!(
                    "{}{user}:***{}",
                    &endpoint[..scheme_end + 3],
                    &endpoint[at..]
                ),
                None => endpoint.to_string(),
            }
        }
        _ => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("mysql://root:p@ss@tcp(h:3306)/db"),
            "mysql://root:***@tcp(h:3306)/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./db/state.db"), "sqlite://./db/state.db");
    }
}
