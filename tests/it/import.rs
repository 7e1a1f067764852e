//! `etcdshim import`: a Kine database laid out exactly as Kine lays it out (its schema and row
//! conventions from k3s-io/kine `pkg/drivers` and `pkg/logstructured/sqllog`), on every
//! database, and a real etcd read at one revision, copied into an empty datastore that then
//! serves every key at its revisions and goes on from the source's head.

use std::process::{Command, Output};

use etcd_client::{GetOptions, LeaseGrantOptions, PutOptions, Txn, TxnOp, WatchOptions};
use etcdshim::ServerOptions;
use tonic::Code;

use crate::harness::{
    Backend, RealEtcd, TestServer, current_backend, fresh_endpoint, require_tool, status_of,
};

/// Kine's schema (`pkg/drivers/{sqlite,pgsql,mysql}`), for the current backend.
fn kine_schema() -> Vec<&'static str> {
    let table = match current_backend() {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name INTEGER, \
             created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, \
             lease INTEGER, value BLOB, old_value BLOB)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS kine (id SERIAL PRIMARY KEY, name VARCHAR(630), \
             created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, \
             lease INTEGER, value bytea, old_value bytea)"
        }
        Backend::Mysql => {
            "CREATE TABLE IF NOT EXISTS kine (id INTEGER AUTO_INCREMENT, name VARCHAR(630) \
             CHARACTER SET ascii, created INTEGER, deleted INTEGER, create_revision INTEGER, \
             prev_revision INTEGER, lease INTEGER, value MEDIUMBLOB, old_value MEDIUMBLOB, \
             PRIMARY KEY (id))"
        }
    };
    vec![
        table,
        "CREATE INDEX kine_name_index ON kine (name)",
        "CREATE INDEX kine_name_id_index ON kine (name,id)",
        "CREATE INDEX kine_id_deleted_index ON kine (id,deleted)",
        "CREATE INDEX kine_prev_revision_index ON kine (prev_revision)",
        "CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision)",
    ]
}

/// (id, name, created, deleted, create_revision, prev_revision, lease, value, old_value), as
/// Kine writes them: its compact_rev_key row and health key, a key updated, deleted and created
/// again, a gap-fill row, a key on a lease (Kine's lease is the TTL), a key updated twice, a
/// key deleted for good.
type KineRow = (
    i64,
    &'static str,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<&'static str>,
    Option<&'static str>,
);
const KINE_ROWS: [KineRow; 12] = [
    (1, "compact_rev_key", 1, 0, 0, 0, 0, Some(""), Some("")),
    (
        2,
        "/registry/health",
        1,
        0,
        0,
        0,
        0,
        Some(r#"{"health":"true"}"#),
        None,
    ),
    (3, "/registry/a", 1, 0, 0, 0, 0, Some("a1"), None),
    (4, "/registry/a", 0, 0, 3, 3, 0, Some("a2"), Some("a1")),
    (5, "/registry/b", 1, 0, 0, 0, 30, Some("b1"), None),
    (6, "/registry/a", 0, 1, 3, 4, 0, Some("a2"), Some("a2")),
    (7, "gap-7", 0, 1, 0, 0, 0, None, None),
    (8, "/registry/a", 1, 0, 0, 6, 0, Some("a3"), None),
    (9, "/registry/c", 1, 0, 0, 0, 0, Some("c1"), None),
    (10, "/registry/c", 0, 0, 9, 9, 0, Some("c2"), Some("c1")),
    (11, "/registry/gone", 1, 0, 0, 0, 0, Some("x"), None),
    (12, "/registry/gone", 0, 1, 11, 11, 0, Some("x"), Some("x")),
];

fn kine_statements() -> Vec<String> {
    let blob = |text: Option<&str>| match (text, current_backend()) {
        (None, _) => "NULL".to_string(),
        (Some(text), Backend::Postgres) => {
            let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
            format!("'\\x{hex}'::bytea")
        }
        (Some(text), _) => {
            let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
            format!("X'{hex}'")
        }
    };
    let mut statements: Vec<String> = kine_schema().into_iter().map(String::from).collect();
    for (id, name, created, deleted, create, prev, lease, value, old) in KINE_ROWS {
        statements.push(format!(
            "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, lease, \
             value, old_value) VALUES ({id}, '{name}', {created}, {deleted}, {create}, {prev}, \
             {lease}, {}, {})",
            blob(value),
            blob(old)
        ));
    }
    // Kine's compaction to 5: the rows that rows up to 5 replaced, and its record of it.
    statements.push("DELETE FROM kine WHERE id = 3".into());
    statements.push("UPDATE kine SET prev_revision = 5 WHERE name = 'compact_rev_key'".into());
    statements
}

async fn write_kine<DB>(url: &str)
where
    DB: sqlx::Database + sqlx::migrate::MigrateDatabase,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    if !DB::database_exists(url).await.expect("database exists?") {
        DB::create_database(url).await.expect("create database");
    }
    let pool = sqlx::Pool::<DB>::connect(url).await.expect("connect");
    let mut conn = pool.acquire().await.expect("connection");
    for statement in kine_statements() {
        sqlx::query::<DB>(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .expect("Kine's rows");
    }
    drop(conn);
    pool.close().await;
}

fn import(source: &[&str], target: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etcdshim"))
        .arg("import")
        .args(source)
        .arg(format!("--endpoint={target}"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run etcdshim import")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `(key, create, mod, version, lease, value)` of every key under `/registry/`.
async fn keys(client: &mut etcd_client::Client) -> Vec<(String, i64, i64, i64, i64, String)> {
    let read = client
        .get("/registry/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read");
    read.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().expect("utf-8").to_string(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease(),
                kv.value_str().expect("utf-8").to_string(),
            )
        })
        .collect()
}

crate::on_every_backend! {
    async fn kine_databases_import_with_their_revisions() {
        let (source_dir, target_dir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let source = fresh_endpoint(source_dir.path());
        match current_backend() {
            Backend::Sqlite => write_kine::<sqlx::Sqlite>(&format!("{source}?mode=rwc")).await,
            Backend::Postgres => write_kine::<sqlx::Postgres>(&source).await,
            Backend::Mysql => write_kine::<sqlx::MySql>(&source).await,
        }
        let target = fresh_endpoint(target_dir.path());
        let imported = import(&["kine", &format!("--from={source}")], &target);
        assert!(imported.status.success(), "{}", said(&imported));
        assert!(said(&imported).contains("keys=3") && said(&imported).contains("revision=12"), "{}", said(&imported));

        let server = TestServer::start_on(ServerOptions {
            endpoint: target.clone(),
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        let owned = |k: &str, c, m, v, l, value: &str| (k.to_string(), c, m, v, l, value.to_string());
        assert_eq!(
            keys(&mut client).await,
            [
                owned("/registry/a", 8, 8, 1, 0, "a3"),
                owned("/registry/b", 5, 5, 1, 30, "b1"),
                owned("/registry/c", 9, 10, 2, 0, "c2"),
            ],
            "Kine's bookkeeping (compact_rev_key, gap-7, /registry/health) and deleted keys are not keys"
        );
        assert!(client.get("compact_rev_key", None).await.expect("get").kvs().is_empty());
        let lease = client.lease_time_to_live(30, None).await.expect("the lease Kine kept as TTL 30");
        assert!(lease.granted_ttl() == 30 && lease.ttl() > 0 && lease.ttl() <= 30, "{lease:?}");
        let counted = client
            .get("/registry/", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .expect("count");
        assert_eq!(counted.count(), 3);
        // kube-apiserver's resourceVersions go on: the next write is revision 13, the history
        // before the import is compacted.
        let put = client.put("/registry/c", "c3", None).await.expect("put");
        assert_eq!(put.header().expect("header").revision(), 13);
        let (code, _) = status_of(client.get("/registry/c", Some(GetOptions::new().with_revision(11))).await);
        assert_eq!(code, Code::OutOfRange);
        let at_head = client.get("/registry/c", Some(GetOptions::new().with_revision(12))).await.expect("at 12");
        assert_eq!(at_head.kvs()[0].value(), b"c2");

        // A second import into the same datastore refuses, and changes nothing: on SQLite
        // already because the server holds the file, elsewhere because it is not empty.
        let again = import(&["kine", &format!("--from={source}")], &target);
        assert!(!again.status.success());
        let refusal = match current_backend() {
            Backend::Sqlite => "is served by another etcdshim",
            _ => "the target datastore is not empty",
        };
        assert!(said(&again).contains(refusal), "{}", said(&again));
        assert_eq!(keys(&mut client).await.len(), 3);
    }

    async fn etcd_endpoints_import_at_one_revision() {
        let Some(binary) = require_tool("etcd") else {
            return;
        };
        let etcd = RealEtcd::start(&binary).await;
        let mut source = etcd_client::Client::connect([&etcd.endpoint], None).await.expect("connect");
        let lease = source
            .lease_grant(120, Some(LeaseGrantOptions::new().with_id(7777)))
            .await
            .expect("grant")
            .id();
        for i in 0..30 {
            source.put(format!("/registry/k{:02}", i % 12), i.to_string(), None).await.expect("put");
        }
        source.delete("/registry/k03", None).await.expect("delete");
        source
            .put("/registry/leased", "l", Some(PutOptions::new().with_lease(lease)))
            .await
            .expect("put");
        // Two keys of one revision: each is a change of its own in the copy's log.
        let together = source
            .txn(Txn::new().and_then([
                TxnOp::put("/registry/t1", "a", None),
                TxnOp::put("/registry/t2", "b", None),
            ]))
            .await
            .expect("txn")
            .header()
            .expect("header")
            .revision();
        let expected = keys(&mut source).await;
        let head = crate::harness::head_revision(&source).await;

        let dir = tempfile::tempdir().expect("dir");
        let target = fresh_endpoint(dir.path());
        let imported = import(&["etcd", &format!("--from={}", etcd.endpoint)], &target);
        assert!(imported.status.success(), "{}", said(&imported));
        let server = TestServer::start_on(ServerOptions {
            endpoint: target,
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        assert_eq!(keys(&mut client).await, expected, "every key at its revisions, version and lease");
        assert_eq!(crate::harness::head_revision(&client).await, head);
        let left = client.lease_time_to_live(lease, None).await.expect("the lease");
        assert!(left.granted_ttl() == 120 && left.ttl() > 100, "{left:?}");
        let mut stream = client
            .watch("/registry/t", Some(WatchOptions::new().with_prefix().with_start_revision(together)))
            .await
            .expect("watch");
        let mut replayed = Vec::new();
        while replayed.len() < 2 {
            let response = stream.message().await.expect("watch").expect("response");
            for event in response.events() {
                let kv = event.kv().expect("kv");
                replayed.push((kv.key_str().expect("utf-8").to_string(), kv.mod_revision()));
            }
        }
        assert_eq!(
            replayed,
            [("/registry/t1".to_string(), together), ("/registry/t2".to_string(), together)],
            "both changes of the transaction's revision replay from the copy's log"
        );
    }
}
