//! etcdshim in Kine's place: Kine's command line, automatic compaction, several servers
//! started side by side as the README shows, and clients that send an `:authority` only
//! grpc-go servers used to accept.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use etcdshim::store::{CompactionOptions, StoreOptions};
use etcdshim::{Listener, Server, ServerOptions};
use tonic::Code;

use crate::harness::{
    Backend, TestServer, current_backend, fresh_endpoint, on_backend, require_tool, status_of,
};

/// The etcdshim binary, killed when dropped.
struct Process {
    child: Child,
    log: std::path::PathBuf,
}

impl Process {
    fn spawn(args: &[String], log: &Path) -> Process {
        // Logs go to standard output, failures to start to both.
        let file = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_etcdshim"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start etcdshim");
        Process {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client once the server answers, or a failure with the server's log.
    async fn client(&mut self, endpoint: &str) -> Client {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcdshim exited ({status}):\n{}", self.log());
            }
            let options = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(2));
            if let Ok(mut client) = Client::connect([endpoint], Some(options)).await
                && client.get("probe", None).await.is_ok()
            {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("etcdshim did not come up at {endpoint}:\n{}", self.log());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    listener.local_addr().expect("address").to_string()
}

/// A unit file written for Kine starts etcdshim: every flag of Kine's command line, with
/// Kine's spellings (Go durations, `--log-format plain`), and one line of warning for the flag
/// that cannot apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kines_command_line_starts_a_server() {
    let dir = tempfile::tempdir().expect("dir");
    let address = free_address();
    let args: Vec<String> = [
        format!("--listen-address={address}"),
        format!("--endpoint=sqlite://{}/state.db", dir.path().display()),
        "--metrics-bind-address=0".into(),
        "--log-format=plain".into(),
        "--compact-interval=5m".into(),
        "--compact-interval-jitter=10".into(),
        "--compact-timeout=5s".into(),
        "--compact-min-retain=1000".into(),
        "--compact-batch-size=1000".into(),
        "--poll-batch-size=500".into(),
        "--skip-verify".into(),
        "--slow-sql-threshold=1s".into(),
        "--slow-sql-warning-threshold=5s".into(),
        "--metrics-enable-profiling".into(),
        "--metrics-ignore-tls-config".into(),
        "--datastore-max-idle-connections=0".into(),
        "--datastore-max-open-connections=0".into(),
        "--datastore-connection-max-lifetime=0s".into(),
        "--watch-progress-notify-interval=5s".into(),
        "--emulated-etcd-version=3.5.13".into(),
        "--debug".into(),
    ]
    .into();
    let mut process = Process::spawn(&args, &dir.path().join("log"));
    let mut client = process.client(&format!("http://{address}")).await;
    client.put("/kine", "drop-in", None).await.expect("put");
    let status = client.status().await.expect("status");
    assert_eq!(status.version(), "3.5.13");
    let log = process.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("--metrics-enable-profiling has no effect"),
        "{log}"
    );
    assert!(log.contains("TRACE"), "--debug logs at trace level:\n{log}");

    // `text` is `plain`; JSON logs are one object per line.
    for (format, json) in [("text", false), ("json", true)] {
        let address = free_address();
        let args = vec![
            format!("--listen-address={address}"),
            format!("--endpoint=sqlite://{}/{format}.db", dir.path().display()),
            "--metrics-bind-address=0".into(),
            format!("--log-format={format}"),
        ];
        let mut process = Process::spawn(&args, &dir.path().join(format!("{format}.log")));
        process.client(&format!("http://{address}")).await;
        let first = process.log().lines().next().unwrap_or_default().to_string();
        assert_eq!(first.starts_with('{'), json, "{format}: {first}");
    }
}

/// Two servers started at the same moment with nothing but --listen-address and --endpoint,
/// as the README's example runs them on one machine, on a database neither has created yet:
/// both serve (the default metrics address can be taken only once), and each sees the other's
/// writes.
async fn readme_servers_come_up_together() {
    let dir = tempfile::tempdir().expect("dir");
    let endpoint = fresh_endpoint(dir.path());
    let addresses = [free_address(), free_address()];
    let mut processes: Vec<Process> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            let args = vec![
                format!("--listen-address={address}"),
                format!("--endpoint={endpoint}"),
            ];
            Process::spawn(&args, &dir.path().join(format!("server-{i}.log")))
        })
        .collect();
    let mut first = processes[0]
        .client(&format!("http://{}", addresses[0]))
        .await;
    let mut second = processes[1]
        .client(&format!("http://{}", addresses[1]))
        .await;
    first
        .put("/readme/a", "1", None)
        .await
        .expect("put on the first");
    second
        .put("/readme/b", "2", None)
        .await
        .expect("put on the second");
    let on_second = second.get("/readme/a", None).await.expect("get");
    assert_eq!(on_second.kvs()[0].value(), b"1");
    let on_first = first.get("/readme/b", None).await.expect("get");
    assert_eq!(on_first.kvs()[0].value(), b"2");
    let logs: String = processes.iter().map(Process::log).collect();
    let serving_metrics = logs.matches("serving metrics at /metrics").count();
    let warned = logs.matches("the default metrics address is taken").count();
    assert_eq!(
        serving_metrics + warned,
        2,
        "each server either serves metrics or says why not:\n{logs}"
    );
    assert!(
        warned >= 1,
        "two servers cannot both have 127.0.0.1:8080:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_servers_come_up_together_on_postgres() {
    on_backend(Backend::Postgres, readme_servers_come_up_together()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_servers_come_up_together_on_mariadb() {
    on_backend(Backend::Mysql, readme_servers_come_up_together()).await;
}

/// An explicitly given metrics address that cannot be bound stops the start with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_address_that_was_asked_for_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_address = taken.local_addr().expect("address").to_string();
    let args = vec![
        format!("--listen-address={}", free_address()),
        format!("--endpoint=sqlite://{}/state.db", dir.path().display()),
        format!("--metrics-bind-address={taken_address}"),
    ];
    let mut process = Process::spawn(&args, &dir.path().join("log"));
    let status = tokio::task::spawn_blocking(move || process.child.wait().map(|s| (s, process)))
        .await
        .expect("join")
        .expect("wait");
    assert!(!status.0.success());
    let log = status.1.log();
    assert!(
        log.contains(&format!("--metrics-bind-address {taken_address}")) && log.contains("in use"),
        "{log}"
    );
}

// Compaction every interval to the head minus the revisions to retain, once per interval however
// many servers share the database, and beside a client that compacts too (as kube-apiserver
// does).
crate::on_every_backend! {
    async fn automatic_compaction_runs_once_per_interval() {
        let interval = Duration::from_millis(500);
        let options = ServerOptions {
            store: StoreOptions {
                compaction: CompactionOptions {
                    interval,
                    min_retain: 5,
                    ..CompactionOptions::default()
                },
                ..StoreOptions::default()
            },
            ..ServerOptions::default()
        };
        let first = TestServer::start_with(options).await;
        let mut servers = vec![first];
        if current_backend() != Backend::Sqlite {
            for _ in 0..2 {
                let another = servers[0].another().await;
                servers.push(another);
            }
        }
        let mut client = servers[0].client().await;
        let started = std::time::Instant::now();
        let mut kube_compactions = 0;
        let mut i = 0;
        // Six intervals, and enough writes that every interval has history to compact even on
        // a loaded machine.
        while started.elapsed() < interval * 6 || i < 300 {
            client.put(format!("/auto/{}", i % 7), i.to_string(), None).await.expect("put");
            i += 1;
            if i % 50 == 0 {
                // kube-apiserver's compaction: elect itself by compact_rev_key's version, then
                // compact an older revision; auto compaction may have passed it already.
                let head = crate::harness::head_revision(&client).await;
                let elect = Txn::new()
                    .when([Compare::version("compact_rev_key", CompareOp::Equal, kube_compactions)])
                    .and_then([TxnOp::put("compact_rev_key", head.to_string(), None)])
                    .or_else([TxnOp::get("compact_rev_key", None)]);
                if client.txn(elect).await.expect("elect").succeeded() {
                    kube_compactions += 1;
                    match client.compact(head - 20, None).await {
                        Ok(_) => {}
                        Err(err) => {
                            let (code, message) = status_of::<()>(Err(err));
                            assert_eq!(code, Code::OutOfRange, "{message}");
                            assert!(message.contains("has been compacted"), "{message}");
                        }
                    }
                }
            }
        }
        tokio::time::sleep(interval * 2).await;
        let head = crate::harness::head_revision(&client).await;
        let compacted = servers[0].store.compacted();
        assert!(compacted > 1 && head - compacted >= 5, "head {head}, compacted {compacted}");
        let (code, _) = status_of(client.get("/auto/0", Some(GetOptions::new().with_revision(1))).await);
        assert_eq!(code, Code::OutOfRange);
        let automatic: u64 = servers.iter().map(|s| s.store.auto_compactions()).sum();
        // One compaction per interval that passed (about eight), not one per server and
        // interval.
        let intervals = (started.elapsed().as_millis() / interval.as_millis()) as u64;
        assert!(
            (2..=intervals + 1).contains(&automatic),
            "{automatic} automatic compactions in {intervals} intervals"
        );
        let latest = client.get("/auto/", Some(GetOptions::new().with_prefix())).await.expect("read");
        assert_eq!(latest.kvs().len(), 7, "history went, the live keys stayed");
    }
}

/// etcdctl 3.4 over a unix socket, and for `endpoint status` and `defrag` with an `http://`
/// endpoint, and Python's grpcio over a unix socket: the `:authority` they send (a path, a URL,
/// a percent-encoded path) is served as grpc-go servers serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_odd_authorities_are_served() {
    let Some(etcdctl) = require_tool("etcdctl") else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("etcd.sock");
    let options = ServerOptions {
        endpoint: format!("sqlite://{}/state.db", dir.path().display()),
        ..ServerOptions::default()
    };
    let unix = format!("unix://{}", socket.display());
    let server = Server::open(options.clone()).await.expect("open");
    let listener = Listener::bind(&unix).await.expect("bind the socket");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let run = |endpoint: &str, args: &[&str]| {
        let output = Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .output()
            .expect("etcdctl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    assert_eq!(run(&unix, &["put", "/sock/a", "over a socket"]), "OK\n");
    assert_eq!(
        run(&unix, &["get", "/sock/a", "--print-value-only"]),
        "over a socket\n"
    );
    assert!(run(&unix, &["endpoint", "status"]).contains("3.6.5"));

    // Python's grpcio: a Range of /sock/a as raw protobuf bytes over the socket.
    let script = format!(
        "import grpc\n\
         channel = grpc.insecure_channel('{unix}')\n\
         print(channel.unary_unary('/etcdserverpb.KV/Range')(b'\\x0a\\x07/sock/a', timeout=10).hex())\n"
    );
    match Command::new("python3").arg("-c").arg(&script).output() {
        Ok(output) if output.status.success() => {
            let hex = String::from_utf8_lossy(&output.stdout);
            let value: String = b"over a socket"
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(hex.contains(&value), "the reply holds the value: {hex}");
        }
        outcome => {
            let detail = match outcome {
                Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                Err(err) => err.to_string(),
            };
            let missing =
                detail.contains("No module named 'grpc'") || detail.contains("No such file");
            assert!(
                missing && std::env::var("CI").as_deref() != Ok("true"),
                "python3 with grpcio failed: {detail}"
            );
            eprintln!("SKIPPED the grpcio client: pip install grpcio to run it");
        }
    }
    let _ = stop.send(());
    serving.await.expect("join").expect("served");

    // `endpoint status` and `defrag` of etcdctl 3.4 put the URL into the :authority.
    let tcp = TestServer::start().await;
    let endpoint = tcp.endpoint();
    assert!(run(&endpoint, &["endpoint", "status"]).contains(&endpoint));
    assert!(run(&endpoint, &["defrag"]).starts_with("Finished defragmenting etcd member"));
}
