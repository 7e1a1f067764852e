//! The real `etcdctl` against etcdshim, Debian 12's 3.4.23 and Debian 13's 3.5.16: what an
//! operator types works.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{TestServer, require_tool};

/// Runs etcdctl against `endpoint` with `stdin` (if any) as its input.
fn etcdctl_output(
    binary: &Path,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
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
    child.wait_with_output().expect("etcdctl output")
}

/// etcdctl's standard output; the command must succeed.
fn etcdctl(binary: &Path, endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let output = etcdctl_output(binary, endpoint, args, stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "etcdctl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Whether etcdctl succeeded, and all it said (standard output, then standard error).
fn etcdctl_said(binary: &Path, endpoint: &str, args: &[&str]) -> (bool, String) {
    let output = etcdctl_output(binary, endpoint, args, None);
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

crate::on_every_backend! {
    async fn etcdctl_3_4_puts_gets_deletes_compacts_and_inspects() {
        if let Some(binary) = require_tool("etcdctl") {
            every_command(&binary).await;
        }
    }

    async fn etcdctl_3_5_puts_gets_deletes_compacts_and_inspects() {
        if let Some(binary) = crate::harness::require_etcd35("etcdctl") {
            every_command(&binary).await;
            checks_and_snapshots(&binary).await;
        }
    }
}

/// What etcdctl 3.5 adds: `check perf`, a watch from before the compacted revision, and
/// `snapshot save`, which names the datastore's own backup tools instead.
async fn checks_and_snapshots(binary: &Path) {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let run = |args: &[&str]| etcdctl(binary, &endpoint, args, None);
    // etcdctl's verdicts on throughput and latency are timings of this machine, not of
    // etcdshim's correctness: the check must run every write it plans, and none may fail.
    let (_, perf) = etcdctl_said(binary, &endpoint, &["check", "perf", "--load=s"]);
    assert!(
        perf.contains("60 / 60"),
        "check perf did not finish: {perf}"
    );
    assert!(
        perf.contains("Throughput is") || perf.contains("Throughput too low"),
        "{perf}"
    );
    assert!(
        !perf.contains("too many errors"),
        "check perf saw errors: {perf}"
    );
    assert!(!perf.contains("Error:"), "{perf}");
    for i in 0..4 {
        run(&["put", "/w/k", &i.to_string()]);
    }
    let head: i64 = run(&["get", "/w/k", "-w", "json"])
        .split("\"revision\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .expect("a header revision");
    run(&["compaction", &(head - 1).to_string()]);
    let (_, said) = etcdctl_said(
        binary,
        &endpoint,
        &["watch", "/w/", "--prefix", &format!("--rev={}", head - 2)],
    );
    assert!(
        said.contains("required revision has been compacted"),
        "{said}"
    );
    let dir = tempfile::tempdir().expect("dir");
    let snapshot = dir.path().join("snapshot.db").display().to_string();
    let (saved, said) = etcdctl_said(binary, &endpoint, &["snapshot", "save", &snapshot]);
    assert!(!saved, "{said}");
    assert!(
        said.contains("Unimplemented") && said.contains("back up the"),
        "{said}"
    );
}

async fn every_command(binary: &Path) {
    let server = TestServer::start().await;
    let endpoint = server.endpoint();
    let binary = binary.to_path_buf();
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
    let (succeeded, said) = etcdctl_said(&binary, &endpoint, &["get", "/app/a", "--rev=2"]);
    assert!(!succeeded);
    assert!(
        said.contains("required revision has been compacted"),
        "{said}"
    );

    let status = run(&["endpoint", "status", "-w", "json"]);
    assert!(
        status.contains(&format!(
            "\"version\":\"{}\"",
            etcdshim::server::DEFAULT_ETCD_VERSION
        )),
        "{status}"
    );
    assert!(status.contains("\"revision\":6"), "{status}");
    // etcdctl 3.4 prints health to standard error, 3.5 to standard output.
    let (healthy, health_text) = etcdctl_said(&binary, &endpoint, &["endpoint", "health"]);
    assert!(
        healthy && health_text.contains("is healthy"),
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

    // Maintenance: defragment and alarms.
    let defrag = run(&["defrag"]);
    assert!(
        defrag.starts_with("Finished defragmenting etcd member"),
        "{defrag}"
    );
    assert_eq!(run(&["alarm", "list"]), "");
}
