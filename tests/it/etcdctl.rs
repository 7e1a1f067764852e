//! The real `etcdctl` (Debian's etcd-client) against etcdshim: what an operator types works.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{TestServer, require_tool};

fn etcdctl(binary: &Path, endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(binary)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().expect("etcdctl output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

crate::on_every_backend! {
    async fn etcdctl_put_get_del_txn_compaction_status_members() {
        let Some(binary) = require_tool("etcdctl") else {
            return;
        };
        let server = TestServer::start().await;
        let endpoint = server.endpoint();
        // etcdctl 3.4's `endpoint status` sends the URL scheme inside the HTTP/2 :authority, which
        // only grpc-go servers tolerate; a bare host:port works for every command.
        let bare = server.addr.to_string();
        let run = |args: &[&str]| etcdctl(&binary, &endpoint, args, None);

        assert_eq!(run(&["put", "/app/a", "1"]), "OK\n");
        assert_eq!(run(&["put", "/app/b", "2"]), "OK\n");
        assert_eq!(run(&["put", "/app/a", "3"]), "OK\n");
        assert_eq!(run(&["get", "/app/", "--prefix"]), "/app/a\n3\n/app/b\n2\n");
        assert_eq!(
            run(&["get", "/app/a", "--rev=2", "--print-value-only"]),
            "1\n"
        );
        assert!(run(&["get", "/app/", "--prefix", "-w", "fields"]).contains("\"Count\" : 2"));
        assert_eq!(run(&["del", "/app/b"]), "1\n");
        assert_eq!(
            run(&["get", "/app/", "--prefix", "--keys-only"]),
            "/app/a\n\n"
        );

        let txn = "value(\"/app/a\") = \"3\"\n\nput /app/c yes\nget /app/a\n\nput /app/c no\n\n";
        let out = etcdctl(&binary, &endpoint, &["txn"], Some(txn));
        assert_eq!(out, "SUCCESS\n\nOK\n\n/app/a\n3\n");
        assert_eq!(run(&["get", "/app/c", "--print-value-only"]), "yes\n");

        assert_eq!(run(&["compaction", "3"]), "compacted revision 3\n");
        let failed = Command::new(&binary)
            .args([
                format!("--endpoints={endpoint}").as_str(),
                "get",
                "/app/a",
                "--rev=2",
            ])
            .output()
            .expect("etcdctl");
        assert!(!failed.status.success());
        assert!(
            String::from_utf8_lossy(&failed.stderr).contains("required revision has been compacted")
        );

        let status = etcdctl(&binary, &bare, &["endpoint", "status", "-w", "json"], None);
        assert!(
            status.contains(&format!(
                "\"version\":\"{}\"",
                etcdshim::server::DEFAULT_ETCD_VERSION
            )),
            "{status}"
        );
        assert!(status.contains("\"revision\":6"), "{status}");
        // etcdctl prints health to stderr.
        let health = Command::new(&binary)
            .args([
                format!("--endpoints={endpoint}").as_str(),
                "endpoint",
                "health",
            ])
            .output()
            .expect("etcdctl");
        let health_text = String::from_utf8_lossy(&health.stderr);
        assert!(
            health.status.success() && health_text.contains("is healthy"),
            "{health_text}"
        );
        let members = run(&["member", "list"]);
        assert!(
            members.contains(&format!(", started, etcdshim, , {endpoint}, false")),
            "{members}"
        );

        // Watch: history from the compacted revision (3), then the live stream.
        let mut watcher = Command::new(&binary)
            .args([
                format!("--endpoints={endpoint}").as_str(),
                "watch",
                "/app/",
                "--prefix",
                "--rev=3",
                "--prev-kv",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch");
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(run(&["put", "/app/live", "now"]), "OK\n");
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let _ = watcher.kill();
        let watched =
            String::from_utf8_lossy(&watcher.wait_with_output().expect("watch output").stdout)
                .into_owned();
        assert!(
            watched.starts_with("PUT\n/app/b\n2\nPUT\n/app/a\n1\n/app/a\n3\nDELETE\n/app/b\n2\n/app/b\n\nPUT\n/app/c\nyes\n"),
            "{watched}"
        );
        assert!(watched.ends_with("PUT\n/app/live\nnow\n"), "{watched}");

        // Lease: grant, attach, inspect, keep alive once, revoke.
        let granted = run(&["lease", "grant", "60"]);
        let id = granted
            .split_whitespace()
            .nth(1)
            .expect("lease id")
            .to_string();
        assert!(granted.ends_with("granted with TTL(60s)\n"), "{granted}");
        assert_eq!(
            run(&["put", "/app/leased", "v", &format!("--lease={id}")]),
            "OK\n"
        );
        let ttl = run(&["lease", "timetolive", &id, "--keys"]);
        assert!(
            ttl.contains("granted with TTL(60s)") && ttl.contains("attached keys([/app/leased])"),
            "{ttl}"
        );
        assert!(run(&["lease", "list"]).contains(&id));
        assert!(run(&["lease", "keep-alive", "--once", &id]).contains("keepalived with TTL(60)"));
        assert_eq!(
            run(&["lease", "revoke", &id]),
            format!("lease {id} revoked\n")
        );
        assert_eq!(run(&["get", "/app/leased"]), "");

        // Maintenance: defragment (per-endpoint, so the bare address) and alarms.
        let defrag = etcdctl(&binary, &bare, &["defrag"], None);
        assert!(
            defrag.starts_with("Finished defragmenting etcd member"),
            "{defrag}"
        );
        assert_eq!(run(&["alarm", "list"]), "");
    }
}
