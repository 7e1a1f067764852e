//! What the side-by-side benchmarks share: a real etcd started on free loopback ports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running etcd and its data folder, both gone on drop.
pub struct Etcd {
    child: Child,
    _data: tempfile::TempDir,
    pub endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `ETCD_BIN` (default `etcd` from PATH) on loopback; `None` when there is none.
pub async fn start_etcd() -> Option<Etcd> {
    let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let Ok(child) = Command::new(&binary)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("(no etcd at '{binary}': etcdshim numbers only)");
        return None;
    };
    let etcd = Etcd {
        child,
        _data: dir,
        endpoint: client,
    };
    for _ in 0..300 {
        if let Ok(mut c) = etcd_client::Client::connect([&etcd.endpoint], None).await
            && c.status().await.is_ok()
        {
            return Some(etcd);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("(etcd at '{binary}' did not start: etcdshim numbers only)");
    None
}
