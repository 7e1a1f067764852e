//! `etcdshim bench`: every workload runs briefly against a test server, and the counts it
//! reports match what it did.

use clap::Parser as _;
use etcd_client::GetOptions;
use etcdshim::config::{Cli, Command};

use crate::harness::TestServer;

/// Runs a single-report workload.
async fn bench(server: &TestServer, args: &str) -> etcdshim::bench::Report {
    let mut reports = bench_reports(server, args).await;
    assert_eq!(reports.len(), 1, "one report: {reports:?}");
    reports.remove(0)
}

/// Parses a command line as the binary would and runs its bench workload.
async fn bench_reports(server: &TestServer, args: &str) -> Vec<etcdshim::bench::Report> {
    let endpoint = server.endpoint();
    let prefix = if args.contains("--prefix") {
        ""
    } else {
        "--prefix /b/"
    };
    let line =
        format!("etcdshim bench --endpoints {endpoint} --clients 8 --conns 2 {prefix} {args}");
    let cli = Cli::try_parse_from(line.split_whitespace()).expect("valid command line");
    let Some(Command::Bench(args)) = cli.command else {
        panic!("not a bench command")
    };
    etcdshim::bench::run(&args).await.expect("bench ran")
}

crate::on_every_backend! {
    async fn every_workload_reports_what_it_did() {
        let server = TestServer::start().await;
        let mut client = server.client().await;
        let count = |client: &mut etcd_client::Client| {
            let mut client = client.clone();
            async move {
                client.get("/b/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count").count()
            }
        };

        let put = bench(&server, "--total 40 --key-size 24 --val-size 10 put").await;
        assert_eq!((put.workload.as_str(), put.operations, put.errors), ("put", 40, 0));
        assert_eq!(count(&mut client).await, 40, "40 fresh keys");
        let keys = client.get("/b/", Some(GetOptions::new().with_prefix())).await.expect("get");
        assert!(keys.kvs().iter().all(|kv| kv.key().len() == 24 && kv.value().len() == 10));

        let txn = bench(&server, "--total 30 txn-put").await;
        assert_eq!((txn.operations, txn.errors), (30, 0));
        assert_eq!(count(&mut client).await, 70);

        let range = bench(&server, "--total 25 range --keys 10").await;
        assert_eq!((range.workload.as_str(), range.operations, range.errors), ("range", 25, 0));
        assert_eq!(count(&mut client).await, 80, "10 keys prefilled");

        let list = bench(&server, "--total 3 list --keys 23 --page-size 5").await;
        assert_eq!((list.workload.as_str(), list.operations, list.errors), ("list", 3, 0));
        assert_eq!(count(&mut client).await, 103);
        assert_eq!(list.extra["keys_listed"], 23.0, "{list:?}");
        assert!(list.extra["first_page_ms"] > 0.0 && list.extra["last_page_ms"] > 0.0, "{list:?}");
        assert!(list.extra["middle_page_ms"] > 0.0, "{list:?}");
        // The median of three times is at most 1.5 times their mean.
        for mark in ["first_page", "middle_page", "last_page"] {
            let (median, mean) = (list.extra[&format!("{mark}_p50_ms")], list.extra[&format!("{mark}_ms")]);
            assert!(median > 0.0 && median <= 1.5 * mean + 0.002, "{mark}: {list:?}");
        }
        assert!(list.extra["page_p50_ms"] > 0.0 && list.extra["page_p50_ms"] <= list.extra["page_p999_ms"], "{list:?}");

        let counted = bench(&server, "--total 4 count").await;
        assert_eq!((counted.workload.as_str(), counted.operations, counted.errors), ("count", 4, 0));
        assert_eq!(counted.extra["keys_counted"], 103.0);
        let first_pages = bench(&server, "--total 3 count --limit 1").await;
        assert_eq!((first_pages.operations, first_pages.errors, first_pages.extra["limit"]), (3, 0, 1.0), "{first_pages:?}");

        let watch = bench(&server, "--total 12 --val-size 64 watch --watchers 3").await;
        assert_eq!((watch.workload.as_str(), watch.operations, watch.errors), ("watch", 36, 0), "3 watchers x 12 events");

        let load = bench(&server, "--val-size 600 load --objects 45").await;
        assert_eq!((load.workload.as_str(), load.operations, load.errors), ("load", 45, 0));
        let objects = client.get("/registry/", Some(GetOptions::new().with_prefix())).await.expect("objects");
        assert_eq!(objects.count(), 45, "45 Kubernetes-shaped objects");
        let clusters = client
            .get("/registry/fleet.cattle.io/clusters/", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .expect("clusters");
        assert_eq!(clusters.count(), 5, "one cluster record per 10 objects");
        assert!(objects.kvs().iter().all(|kv| kv.value().len() == 600 && kv.version() == 1));
        let existing = bench(&server, "--total 2 --prefix /registry/ list --keys 0 --page-size 7").await;
        assert_eq!((existing.operations, existing.errors), (2, 0), "listed what load wrote");

        let updates = bench(&server, "--total 30 --prefix /u/ txn-put --shape update --keys 5").await;
        assert_eq!((updates.workload.as_str(), updates.operations, updates.errors), ("txn-put", 30, 0), "{updates:?}");
        let updated = client.get("/u/", Some(GetOptions::new().with_prefix())).await.expect("updated keys");
        assert_eq!(updated.kvs().len(), 5, "5 keys created");
        let versions: i64 = updated.kvs().iter().map(|kv| kv.version()).sum();
        assert_eq!(versions, 5 + 30, "each create, then 30 updates in all");
        assert!(updates.extra["conflicts"] >= 0.0);

        let fleet = bench_reports(&server, "fleet --clusters 12 --updates 3 --page-size 4 --reload-every 50ms").await;
        let by_name = |name: &str| fleet.iter().find(|r| r.workload == name).unwrap_or_else(|| panic!("no {name} in {fleet:?}")).clone();
        let expected = [("fleet-clusters", 12), ("fleet-register", 120), ("fleet-read", 12), ("fleet-status", 36)];
        for (name, operations) in expected {
            let report = by_name(name);
            assert_eq!((report.operations, report.errors), (operations, 0), "{report:?}");
        }
        let (lists, reloads) = (by_name("fleet-list"), by_name("fleet-reload"));
        assert!(lists.operations >= 1 && lists.errors == 0, "{lists:?}");
        let pages = by_name("fleet-page");
        assert!(pages.operations >= 2 * lists.operations && pages.errors == 0, "at least 5 records, in pages of 4: {pages:?}");
        assert!(reloads.operations >= 1 && reloads.operations <= lists.operations, "{reloads:?}");
        assert_eq!(reloads.extra["clusters_cached"], 17.0, "5 loaded and 12 simulated cluster records");
        assert!(reloads.extra["watch_events"] >= 1.0, "{reloads:?}");
        let objects = client.get("/registry/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("objects");
        assert_eq!(objects.count(), 45 + 120, "ten objects per simulated cluster");
        let records = client
            .get("/registry/fleet.cattle.io/clusters/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("records");
        let updated = records.kvs().iter().filter(|kv| kv.version() == 4).count();
        assert_eq!(updated, 12, "each simulated cluster record: created, then 3 status updates");

        let plot = tempfile::NamedTempFile::new().expect("temp file");
        let plotted = bench(&server, &format!("--total 20 --plot {} put", plot.path().display())).await;
        assert_eq!(plotted.operations, 20);
        let svg = std::fs::read_to_string(plot.path()).expect("the plot was written");
        assert!(svg.starts_with("<svg") && svg.contains("Throughput") && svg.contains("Latency histogram") && svg.contains(">\nput\n<"), "{svg}");

        let paced = bench(&server, "--total 1000 --duration 300ms --rate 50 put").await;
        assert!(paced.operations < 1000, "the duration ended the run: {paced:?}");
        assert!(paced.operations >= 1 && paced.operations <= 30, "paced to 50/s for 0.3 s: {paced:?}");
        assert!(paced.p50_ms > 0.0 && paced.p50_ms <= paced.p99_ms && paced.p99_ms <= paced.max_ms);
    }
}
