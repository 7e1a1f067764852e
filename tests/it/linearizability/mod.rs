//! Linearizability of three servers on one database (one on SQLite, which takes one server per
//! file), as etcd's robustness tests define it:
//! concurrent clients spread over the servers record a history (history.rs), and the checker
//! (checker.rs) must find an order of it that etcd's key-value model accepts. Also while one
//! server is killed with SIGKILL and started again, and while the database restarts; and the
//! checker is shown to reject the same history with a stale read or a lost write put in.

mod checker;
mod history;

use std::time::Duration;

use etcdshim::ServerOptions;

use checker::{Input, Operation, Output, Verdict, check};

use crate::crash::{Process, connect, spawn};
use crate::harness::{Backend, TestServer, current_backend, free_port, fresh_endpoint};
use crate::private_db::{PrivateMariadb, PrivatePostgres, Restartable, postgres_bin};

const SERVERS: usize = 3;
const CLIENTS: usize = 12;

/// Checks a recording; `faulted`: a fault struck while it ran, so some requests must have
/// failed (a fault test that cannot show its fault asserts nothing about it).
fn assert_linearizable(recorded: &history::Recorded, faulted: bool, what: &str) {
    let history = &recorded.history;
    assert!(
        !faulted || recorded.failed > 0,
        "{what}: no request failed, so the fault was not seen"
    );
    let answered = history.iter().filter(|o| o.answer.is_some()).count();
    let unanswered = history.len() - answered;
    assert!(
        answered >= 200,
        "{what}: the clients got work done ({answered} answered)"
    );
    let verdict = check(history);
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "{what}: {answered} answered and {unanswered} unanswered operations"
    );
    eprintln!(
        "{what}: linearizable, {answered} answered and {unanswered} unanswered operations ({} requests failed)",
        recorded.failed
    );
}

/// `history` with one read answered from the past: a read that began after a put to its key
/// had been answered now reports the key and revision an earlier read saw before that put.
fn with_stale_read(history: &[Operation]) -> Option<Vec<Operation>> {
    let reads: Vec<(usize, &String, u64, u64, &Output)> = history
        .iter()
        .enumerate()
        .filter_map(
            |(index, operation)| match (&operation.input, &operation.answer) {
                (Input::Get { key }, Some((returned, output))) => {
                    Some((index, key, operation.call, *returned, output))
                }
                _ => None,
            },
        )
        .collect();
    for put in history {
        let (Input::Put { key, .. }, Some((put_returned, Output::Put { revision }))) =
            (&put.input, &put.answer)
        else {
            continue;
        };
        let before = reads.iter().find(|(_, k, _, returned, output)| {
            *k == key && *returned < put.call && revision_of(output) < *revision
        });
        let after = reads
            .iter()
            .find(|(_, k, call, _, _)| *k == key && *call > *put_returned);
        if let (Some(before), Some(after)) = (before, after) {
            let mut broken = history.to_vec();
            let answer = broken[after.0].answer.as_mut().expect("answered");
            answer.1 = before.4.clone();
            return Some(broken);
        }
    }
    None
}

/// `history` with one acknowledged put lost: the first read begun after the put was answered
/// that saw its value now reports the key's value from before it, at the same revision.
fn with_lost_write(history: &[Operation]) -> Option<Vec<Operation>> {
    for (index, put) in history.iter().enumerate() {
        let (Input::Put { key, value }, Some((answered, Output::Put { .. }))) =
            (&put.input, &put.answer)
        else {
            continue;
        };
        let seen = history.iter().position(|operation| {
            operation.call > *answered
                && matches!(
                    (&operation.input, &operation.answer),
                    (Input::Get { key: k }, Some((_, Output::Get { value: Some(v), .. })))
                        if k == key && v == value
                )
        });
        let Some(seen) = seen else { continue };
        // What the key held before: the value of the last answered put to it before this one.
        let previous = history[..index].iter().rev().find_map(|operation| {
            match (&operation.input, &operation.answer) {
                (Input::Put { key: k, value }, Some(_)) if k == key => Some(value.clone()),
                _ => None,
            }
        });
        // Not absence: an unanswered delete could explain that one.
        let Some(previous) = previous else { continue };
        let mut broken = history.to_vec();
        if let Some((_, Output::Get { value, .. })) = broken[seen].answer.as_mut() {
            *value = Some(previous);
        }
        return Some(broken);
    }
    None
}

fn revision_of(output: &Output) -> i64 {
    match output {
        Output::Get { revision, .. }
        | Output::Put { revision }
        | Output::Delete { revision, .. }
        | Output::CompareAndSwap { revision, .. } => *revision,
    }
}

/// Three servers on PostgreSQL and MySQL; one on SQLite, which takes one server per file.
fn servers() -> usize {
    if current_backend() == Backend::Sqlite {
        1
    } else {
        SERVERS
    }
}

crate::on_every_backend! {
    async fn servers_on_one_database_are_linearizable() {
        let first = TestServer::start().await;
        let mut others = Vec::new();
        for _ in 1..servers() {
            others.push(first.another().await);
        }
        let endpoints: Vec<String> = std::iter::once(&first)
            .chain(&others)
            .map(TestServer::endpoint)
            .collect();
        let recorded = history::record(&endpoints, CLIENTS, Duration::from_secs(4), 1).await;
        assert_linearizable(&recorded, false, "servers on one database");
        let history = &recorded.history;

        // The checker is not blind: the same history, broken on purpose, is rejected.
        let stale = with_stale_read(history).expect("a read after a put to its key");
        assert!(
            matches!(check(&stale), Verdict::Violation { .. }),
            "a stale read was not caught"
        );
        let lost = with_lost_write(history).expect("a read that saw a put");
        assert!(
            matches!(check(&lost), Verdict::Violation { .. }),
            "a lost write was not caught"
        );
    }

    async fn linearizable_while_a_server_is_killed_and_restarted() {
        let dir = tempfile::tempdir().expect("dir");
        let endpoint = fresh_endpoint(dir.path());
        let addresses: Vec<String> =
            (0..servers()).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let mut processes: Vec<Process> =
            addresses.iter().map(|address| spawn(&endpoint, address)).collect();
        let endpoints: Vec<String> =
            addresses.iter().map(|address| format!("http://{address}")).collect();
        for server in &endpoints {
            connect(server).await;
        }
        let recording = tokio::spawn({
            let endpoints = endpoints.clone();
            async move { history::record(&endpoints, CLIENTS, Duration::from_secs(6), 2).await }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = processes.remove(0);
        processes.insert(0, spawn_after_kill(victim, &endpoint, &addresses[0]).await);
        let recorded = recording.await.expect("recording");
        assert_linearizable(&recorded, true, "one server killed");
        drop(processes);
    }
}

/// Kills `process` with SIGKILL mid-traffic and, a second later, starts it again.
async fn spawn_after_kill(process: Process, endpoint: &str, address: &str) -> Process {
    drop(process);
    tokio::time::sleep(Duration::from_secs(1)).await;
    spawn(endpoint, address)
}

/// Three servers on `database` while it is stopped for three seconds and started again.
async fn linearizable_while_the_database_restarts(database: &mut dyn Restartable, what: &str) {
    let options = ServerOptions {
        endpoint: database.url("kubernetes"),
        ..ServerOptions::default()
    };
    let first = TestServer::start_on(options).await;
    let second = first.another().await;
    let third = first.another().await;
    let endpoints = vec![first.endpoint(), second.endpoint(), third.endpoint()];
    let recording = tokio::spawn({
        let endpoints = endpoints.clone();
        async move { history::record(&endpoints, CLIENTS, Duration::from_secs(12), 3).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    database.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    database.start();
    let recorded = recording.await.expect("recording");
    assert_linearizable(&recorded, true, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_postgres_restarts() {
    let Some(bin) = postgres_bin() else { return };
    let mut postgres = PrivatePostgres::new(bin, None);
    linearizable_while_the_database_restarts(&mut postgres, "PostgreSQL restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_while_mariadb_restarts() {
    let Some(mut mariadb) = PrivateMariadb::new() else {
        return;
    };
    linearizable_while_the_database_restarts(&mut mariadb, "MariaDB restarted").await;
}
