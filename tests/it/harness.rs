//! Test servers: etcdshim in-process on 127.0.0.1:0 over a temporary SQLite file, and real etcd
//! (Debian's etcd-server) on free loopback ports, plus helpers shared by the test modules.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcdshim::store::Store;
use etcdshim::{Listener, Server, ServerOptions};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The databases the suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    /// The environment variable with the server's base URL (no database), e.g.
    /// `postgres://postgres@127.0.0.1:5432` or `mysql://root@127.0.0.1:3306`.
    fn variable(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("ETCDSHIM_TEST_POSTGRES"),
            Backend::Mysql => Some("ETCDSHIM_TEST_MYSQL"),
        }
    }

    /// The base URL of this backend's test server, or `None` (said loudly; fatal under CI=true).
    pub fn base_url(self) -> Option<String> {
        let variable = self.variable()?;
        match std::env::var(variable) {
            Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{variable} is not set; CI runs every test on {self:?} too"
                );
                eprintln!("SKIPPED on {self:?}: set {variable} to run it there");
                None
            }
        }
    }
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// The backend the running test is on.
pub fn current_backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// Runs a test body on `backend`, or skips it (loudly; fatal under CI=true) when that
/// backend's database is not configured.
pub async fn on_backend(backend: Backend, body: impl std::future::Future<Output = ()>) {
    if backend != Backend::Sqlite && backend.base_url().is_none() {
        return;
    }
    BACKEND.scope(backend, body).await;
}

/// Declares each test once per backend: `mod name { fn sqlite, fn postgres, fn mysql }`.
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident() $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::on_backend($crate::harness::Backend::Sqlite, body()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::harness::on_backend($crate::harness::Backend::Postgres, body()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                $crate::harness::on_backend($crate::harness::Backend::Mysql, body()).await
            }
        }
    )*};
}

/// Drops the databases of earlier test runs whose process is gone (their names carry its pid),
/// once per backend and test process, so test databases do not pile up on a developer's server.
async fn drop_stale_databases(backend: Backend) {
    static POSTGRES: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    static MYSQL: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let (once, list, drop) = match backend {
        Backend::Sqlite => return,
        Backend::Postgres => (
            &POSTGRES,
            "SELECT datname FROM pg_database WHERE datname LIKE 'etcdshim_test_%'",
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
        ),
        Backend::Mysql => (
            &MYSQL,
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'etcdshim_test_%'",
            "DROP DATABASE IF EXISTS `{}`",
        ),
    };
    once.get_or_init(|| async {
        let Some(base) = backend.base_url() else {
            return;
        };
        match backend {
            Backend::Postgres => {
                drop_dead::<sqlx::Postgres>(&format!("{base}/postgres"), list, drop).await
            }
            _ => drop_dead::<sqlx::MySql>(&format!("{base}/"), list, drop).await,
        }
    })
    .await;
}

/// Drops the databases that `list` names whose test process is gone, with `drop` ("{}" is the
/// name).
async fn drop_dead<DB>(admin: &str, list: &str, drop: &str)
where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::{Connection as _, Row as _};
    let Ok(mut conn) = DB::Connection::connect(admin).await else {
        return;
    };
    let names: Vec<String> = match sqlx::query::<DB>(sqlx::AssertSqlSafe(list.to_string()))
        .fetch_all(&mut conn)
        .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|row| row.try_get::<String, _>(0).ok())
            .collect(),
        Err(_) => return,
    };
    for name in names {
        let pid = name
            .trim_start_matches("etcdshim_test_")
            .split('_')
            .next()
            .unwrap_or_default();
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let statement = drop.replace("{}", &name);
            let _ = sqlx::query::<DB>(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await;
        }
    }
    let _ = conn.close().await;
}

/// A fresh endpoint on the current backend: a temporary SQLite file in `dir`, or a new
/// database (created by whoever opens it first).
pub fn fresh_endpoint(dir: &Path) -> String {
    let unique = format!(
        "etcdshim_test_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    match current_backend() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("state.db").display()),
        backend => format!(
            "{}/{unique}",
            backend.base_url().expect("configured backend")
        ),
    }
}

/// An etcdshim server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    options: ServerOptions,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<etcdshim::Result<()>>>,
    dir: Option<TempDir>,
}

impl TestServer {
    /// A server over a fresh database.
    pub async fn start() -> TestServer {
        TestServer::start_with(ServerOptions::default()).await
    }

    /// A server over a fresh database of the current backend with these options (the
    /// endpoint is replaced).
    pub async fn start_with(options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        drop_stale_databases(current_backend()).await;
        let options = ServerOptions {
            endpoint: fresh_endpoint(dir.path()),
            ..options
        };
        let mut server = TestServer::start_on(options).await;
        server.dir = Some(dir);
        server
    }

    /// A server over `options.endpoint` (kept when the server stops).
    pub async fn start_on(options: ServerOptions) -> TestServer {
        // Server logs show in the output of a failed test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let server = Server::open(options.clone()).await.expect("open server");
        let store = server.store().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(Listener::Tcp(listener), async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            store,
            options,
            stop: Some(stop),
            task: Some(task),
            dir: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The database URL (or SQLite file) the server stores into.
    pub fn database_url(&self) -> &str {
        &self.options.endpoint
    }

    pub async fn client(&self) -> etcd_client::Client {
        connect(&self.endpoint()).await
    }

    /// Another server on the same database (for tests of several servers sharing one).
    pub async fn another(&self) -> TestServer {
        TestServer::start_on(self.options.clone()).await
    }

    /// Stops the server (finishing in-flight requests) and starts a new one on the same
    /// database.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        // The old store's lease expiry would otherwise go on writing beside the new one.
        let stopped = self.store.stopped();
        let (options, dir) = (self.options.clone(), self.dir.take());
        drop(self);
        stopped.await;
        let mut next = TestServer::start_on(options).await;
        next.dir = dir;
        next
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn connect(endpoint: &str) -> etcd_client::Client {
    etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect")
}

/// The store's current revision, from the header of a read.
pub async fn head_revision(client: &etcd_client::Client) -> i64 {
    client
        .clone()
        .get("/head-probe", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision()
}

/// Each key of a range response with its `mod_revision`.
pub fn mod_revisions(
    response: &etcd_client::GetResponse,
) -> std::collections::BTreeMap<String, i64> {
    response
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect()
}

/// The gRPC code and message of a failed call.
pub fn status_of<T: std::fmt::Debug>(
    result: Result<T, etcd_client::Error>,
) -> (tonic::Code, String) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => {
            (status.code(), status.message().to_string())
        }
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

/// A tool the tests need from Debian's etcd packages. Under CI=true its absence fails the run;
/// elsewhere the test says loudly that it did not run.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed (apt-get install etcd-server etcd-client postgresql); CI requires it"
        );
        eprintln!(
            "SKIPPED: {name} is not installed; install etcd-server, etcd-client and postgresql to run this test"
        );
    }
    found
}

/// A tool of etcd 3.5.16 (`scripts/etcd35.sh` puts them in a folder; ETCDSHIM_TEST_ETCD35 names
/// it). Under CI=true its absence fails the run; elsewhere the test says loudly that it did not
/// run.
pub fn require_etcd35(name: &str) -> Option<PathBuf> {
    let folder = std::env::var_os("ETCDSHIM_TEST_ETCD35").map(PathBuf::from);
    let found = folder.map(|f| f.join(name)).filter(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd 3.5.16's {name} is missing: run scripts/etcd35.sh and set ETCDSHIM_TEST_ETCD35 to the folder it prints; CI requires it"
        );
        eprintln!(
            "SKIPPED: etcd 3.5.16's {name}: run scripts/etcd35.sh and set ETCDSHIM_TEST_ETCD35 to the folder it prints"
        );
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real etcd server on loopback, killed on drop.
pub struct RealEtcd {
    pub endpoint: String,
    child: Child,
    _dir: TempDir,
}

impl RealEtcd {
    pub async fn start(binary: &Path) -> RealEtcd {
        let dir = tempfile::tempdir().expect("temporary directory");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "reference"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("reference={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let etcd = RealEtcd {
            endpoint: client,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = etcd_client::Client::connect([&etcd.endpoint], None).await
                && c.status().await.is_ok()
            {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw watch stream: every response as the server sent it.
pub struct RawWatch {
    requests: tokio::sync::mpsc::Sender<etcdshim::proto::WatchRequest>,
    responses: tonic::Streaming<etcdshim::proto::WatchResponse>,
}

impl RawWatch {
    pub async fn open(endpoint: &str) -> RawWatch {
        let mut client = etcdshim::proto::watch_client::WatchClient::connect(endpoint.to_string())
            .await
            .expect("connect")
            .max_decoding_message_size(64 * 1024 * 1024);
        let (requests, outbound) = tokio::sync::mpsc::channel(64);
        let responses = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await
            .expect("watch stream")
            .into_inner();
        RawWatch {
            requests,
            responses,
        }
    }

    /// A stream with one watch, created (the creation answer is checked and consumed).
    pub async fn watching(endpoint: &str, create: etcdshim::proto::WatchCreateRequest) -> RawWatch {
        let mut watch = RawWatch::open(endpoint).await;
        watch.create(create).await;
        assert!(watch.next().await.created, "the watch was created");
        watch
    }

    pub async fn send(&self, request: etcdshim::proto::watch_request::RequestUnion) {
        self.requests
            .send(etcdshim::proto::WatchRequest {
                request_union: Some(request),
            })
            .await
            .expect("send watch request");
    }

    pub async fn create(&self, create: etcdshim::proto::WatchCreateRequest) {
        self.send(etcdshim::proto::watch_request::RequestUnion::CreateRequest(
            create,
        ))
        .await;
    }

    pub async fn request_progress(&self) {
        self.send(
            etcdshim::proto::watch_request::RequestUnion::ProgressRequest(
                etcdshim::proto::WatchProgressRequest {},
            ),
        )
        .await;
    }

    pub async fn cancel(&self, watch_id: i64) {
        self.send(etcdshim::proto::watch_request::RequestUnion::CancelRequest(
            etcdshim::proto::WatchCancelRequest { watch_id },
        ))
        .await;
    }

    /// The next response, failing the test after 10 s.
    pub async fn next(&mut self) -> etcdshim::proto::WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("a watch response within 10 s")
            .expect("watch stream healthy")
            .expect("watch stream open")
    }

    /// The next response if one comes within `wait`.
    pub async fn maybe_next(&mut self, wait: Duration) -> Option<etcdshim::proto::WatchResponse> {
        tokio::time::timeout(wait, self.responses.message())
            .await
            .ok()
            .and_then(|r| r.ok().flatten())
    }
}
