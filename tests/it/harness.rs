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

/// An etcdshim server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<etcdshim::Result<()>>>,
    db_path: PathBuf,
    dir: Option<TempDir>,
}

impl TestServer {
    /// A server over a fresh database.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db_path = dir.path().join("state.db");
        let mut server = TestServer::start_at(&db_path).await;
        server.dir = Some(dir);
        server
    }

    /// A server over the database file at `db_path` (kept when the server stops).
    pub async fn start_at(db_path: &Path) -> TestServer {
        let options = ServerOptions {
            endpoint: format!("sqlite://{}", db_path.display()),
            ..ServerOptions::default()
        };
        let server = Server::open(options).await.expect("open server");
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
            stop: Some(stop),
            task: Some(task),
            db_path: db_path.to_path_buf(),
            dir: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> etcd_client::Client {
        connect(&self.endpoint()).await
    }

    /// Stops the server (finishing in-flight requests) and starts a new one on the same file.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let mut next = TestServer::start_at(&self.db_path).await;
        next.dir = self.dir.take();
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
            "{name} is not installed (apt-get install etcd-server etcd-client); CI requires it"
        );
        eprintln!(
            "SKIPPED: {name} is not installed; install etcd-server and etcd-client to run this test"
        );
    }
    found
}

fn free_port() -> u16 {
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
