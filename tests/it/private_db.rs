//! Database servers of a test's own, in a temporary folder on a free port, that the test may
//! stop and start: PostgreSQL (Debian's initdb and pg_ctl) and MariaDB (mariadb-install-db and
//! mariadbd). The machine's shared servers are never stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::require_tool;

/// A database server a test can take away and bring back.
pub(crate) trait Restartable {
    /// The URL of a database `name` on it (created by whoever opens it first).
    fn url(&self, name: &str) -> String;
    fn stop(&mut self);
    fn start(&mut self);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// A PostgreSQL server of this test's own, in a temporary folder, on a free port.
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// Extra server settings (`-c name=value ...`).
    settings: String,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// A fresh server; with `tls` (certificate and key, PEM) it also serves TLS.
    pub(crate) fn new(bin: PathBuf, tls: Option<(&str, &str)>) -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        // PostgreSQL refuses to run as root: the folder belongs to the postgres user.
        run_as_postgres(
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()),
        );
        let port = free_port();
        run_as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
        );
        let mut settings = String::new();
        if let Some((cert, key)) = tls {
            std::fs::write(data.join("server.crt"), cert).expect("write certificate");
            std::fs::write(data.join("server.key"), key).expect("write key");
            run_as_postgres(
                Command::new("chown")
                    .args(["postgres", "server.crt", "server.key"])
                    .current_dir(&data),
            );
            run_as_postgres(
                Command::new("chmod")
                    .args(["600", "server.key"])
                    .current_dir(&data),
            );
            settings = "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".into();
        }
        let mut postgres = PrivatePostgres {
            bin,
            data,
            port,
            settings,
            _dir: dir,
        };
        postgres.start();
        postgres
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.data.display(),
            self.settings
        );
        // The server's output goes to a log file: a pipe it inherited would never close.
        let log = self.data.with_file_name("postgres.log");
        run_as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options, "-w", "-m", "fast", action]),
        );
    }
}

impl Restartable for PrivatePostgres {
    fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn stop(&mut self) {
        self.pg_ctl("stop");
    }

    fn start(&mut self) {
        self.pg_ctl("start");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn run_as_postgres(command: &mut Command) {
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run a PostgreSQL tool");
    assert!(status.success(), "{command:?} failed");
}

pub(crate) fn postgres_bin() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
                .find(|bin| Path::new(&bin.join("initdb")).is_file())
        });
    if found.is_none() {
        // Under CI=true this fails the run instead of skipping.
        require_tool("initdb");
    }
    found
}

/// A MariaDB server of this test's own (as root, which mariadbd allows with `--user=root`).
pub(crate) struct PrivateMariadb {
    mariadbd: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
}

impl PrivateMariadb {
    /// A fresh server, or `None` (said loudly; fatal under CI=true) without MariaDB's tools.
    pub(crate) fn new() -> Option<PrivateMariadb> {
        let install = require_tool("mariadb-install-db")?;
        let mariadbd = require_tool("mariadbd")?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let status = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run mariadb-install-db");
        assert!(status.success(), "mariadb-install-db failed");
        let mut mariadb = PrivateMariadb {
            mariadbd,
            dir,
            port: free_port(),
            server: None,
        };
        mariadb.start();
        Some(mariadb)
    }
}

impl Restartable for PrivateMariadb {
    fn url(&self, name: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{name}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGTERM: a clean shutdown, as an operator's restart does.
            let _ = Command::new("kill").arg(server.id().to_string()).status();
            let _ = server.wait();
        }
    }

    fn start(&mut self) {
        let base = self.dir.path();
        let server = Command::new(&self.mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", base.join("data").display()))
            .arg(format!("--socket={}", base.join("socket").display()))
            .arg(format!("--pid-file={}", base.join("pid").display()))
            .arg(format!("--log-error={}", base.join("error.log").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
