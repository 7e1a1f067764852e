//! A database written by an older etcdshim (values in the log and in `current`, no counters)
//! keeps every revision readable after the upgrade: its migration moves replaced versions to
//! the history and the counters are rebuilt from the live keys.

use std::path::Path;

use etcd_client::{GetOptions, WatchOptions};
use etcdshim::ServerOptions;

use crate::harness::{Backend, TestServer, current_backend, fresh_endpoint};

/// The migrations an older etcdshim had applied, per database folder.
const BEFORE: [(&str, &[&str]); 3] = [
    ("sqlite", &["0001_init.sql", "0002_tombstones.sql"]),
    (
        "postgres",
        &["0001_init.sql", "0002_tombstones.sql", "0003_notify.sql"],
    ),
    ("mysql", &["0001_init.sql", "0002_tombstones.sql"]),
];

/// (revision, sub, key, deleted, create_revision, version, value) as the old log held them:
/// a put, an update, another key, a deletion, a re-creation in a txn with a third key (both
/// with sub 0, as an older import wrote the keys of one etcd transaction), and an update of the
/// second.
const LOG: [(i64, i64, &str, bool, i64, i64, &str); 8] = [
    (2, 0, "/u/a", false, 2, 1, "a1"),
    (3, 0, "/u/a", false, 2, 2, "a2"),
    (4, 0, "/u/b", false, 4, 1, "b1"),
    (5, 0, "/u/a", true, 0, 0, ""),
    (6, 0, "/u/a", false, 6, 1, "a3"),
    (6, 0, "/u/c", false, 6, 1, "c1"),
    (7, 0, "/u/b", false, 4, 2, "b2"),
    (7, 1, "/v/", false, 7, 1, "v"),
];

/// What a read of `/u/` sees at each revision: (key, create, mod, version, value).
fn expected_at(revision: i64) -> Vec<(&'static str, i64, i64, i64, &'static str)> {
    let mut live: Vec<(&str, i64, i64, i64, &str)> = Vec::new();
    for (rev, _, key, deleted, create, version, value) in LOG {
        if rev > revision || !key.starts_with("/u/") {
            continue;
        }
        live.retain(|kv| kv.0 != key);
        if !deleted {
            live.push((key, create, rev, version, value));
        }
    }
    live.sort();
    live
}

fn hex(bytes: &str) -> String {
    bytes.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The old rows, as statements for the current backend.
fn old_rows() -> Vec<String> {
    let backend = current_backend();
    let blob = |text: &str| match backend {
        Backend::Postgres => format!("'\\x{}'::bytea", hex(text)),
        _ => format!("X'{}'", hex(text)),
    };
    let key = if backend == Backend::Mysql {
        "`key`"
    } else {
        "key"
    };
    let mut statements = Vec::new();
    for (rev, sub, k, deleted, create, version, value) in LOG {
        statements.push(format!(
            "INSERT INTO log (revision, sub, {key}, deleted, create_revision, version, lease, value) \
             VALUES ({rev}, {sub}, {}, {}, {create}, {version}, 0, {})",
            blob(k),
            i64::from(deleted),
            blob(value)
        ));
    }
    for (k, create, rev, version, value) in [
        ("/u/a", 6, 6, 1, "a3"),
        ("/u/b", 4, 7, 2, "b2"),
        ("/u/c", 6, 6, 1, "c1"),
        ("/v/", 7, 7, 1, "v"),
    ] {
        statements.push(format!(
            "INSERT INTO current ({key}, create_revision, mod_revision, version, lease, value) \
             VALUES ({}, {create}, {rev}, {version}, 0, {})",
            blob(k),
            blob(value)
        ));
    }
    statements.push("UPDATE meta SET value = 7 WHERE name = 'revision'".into());
    statements
}

/// Applies the old migrations and rows to the database `url` names (creating it).
async fn write_old_database<DB>(url: &str, folder: &str, files: &[&str])
where
    DB: sqlx::Database + sqlx::migrate::MigrateDatabase,
    DB::Connection: sqlx::migrate::Migrate,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    if !DB::database_exists(url).await.expect("database exists?") {
        DB::create_database(url).await.expect("create database");
    }
    let migrations = tempfile::tempdir().expect("dir");
    for file in files {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder)
            .join(file);
        std::fs::copy(from, migrations.path().join(file)).expect("copy migration");
    }
    let migrator = sqlx::migrate::Migrator::new(migrations.path())
        .await
        .expect("old migrations");
    let pool = sqlx::Pool::<DB>::connect(url).await.expect("connect");
    migrator.run(&pool).await.expect("apply old migrations");
    let mut conn = pool.acquire().await.expect("connection");
    for statement in old_rows() {
        sqlx::query::<DB>(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .expect("old row");
    }
    drop(conn);
    pool.close().await;
}

crate::on_every_backend! {
    async fn a_database_of_the_old_layout_keeps_every_revision() {
        let dir = tempfile::tempdir().expect("dir");
        let endpoint = fresh_endpoint(dir.path());
        let (folder, files) = BEFORE[current_backend() as usize];
        match current_backend() {
            Backend::Sqlite => {
                let url = format!("{endpoint}?mode=rwc");
                write_old_database::<sqlx::Sqlite>(&url, folder, files).await
            }
            Backend::Postgres => write_old_database::<sqlx::Postgres>(&endpoint, folder, files).await,
            Backend::Mysql => write_old_database::<sqlx::MySql>(&endpoint, folder, files).await,
        }
        let server = TestServer::start_on(ServerOptions {
            endpoint,
            ..ServerOptions::default()
        })
        .await;
        let mut client = server.client().await;
        for revision in 1..=7 {
            let read = client
                .get("/u/", Some(GetOptions::new().with_prefix().with_revision(revision)))
                .await
                .expect("read");
            let got: Vec<_> = read
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().expect("utf-8"),
                        kv.create_revision(),
                        kv.mod_revision(),
                        kv.version(),
                        kv.value_str().expect("utf-8"),
                    )
                })
                .collect();
            assert_eq!(got, expected_at(revision), "at {revision}");
            for prefix in ["/u/", "/"] {
                let count = client
                    .get(prefix, Some(GetOptions::new().with_prefix().with_count_only().with_revision(revision)))
                    .await
                    .expect("count")
                    .count();
                let live = expected_at(revision).len() as i64 + i64::from(prefix == "/" && revision >= 7);
                assert_eq!(count, live, "count of {prefix} at {revision}");
            }
        }
        // The history replays with every previous version.
        let mut stream = client
            .watch("/u/", Some(WatchOptions::new().with_prefix().with_start_revision(2).with_prev_key()))
            .await
            .expect("watch");
        let mut events = Vec::new();
        while events.len() < 7 {
            let response = stream.message().await.expect("watch").expect("response");
            for event in response.events() {
                let kv = event.kv().expect("kv");
                events.push((
                    kv.mod_revision(),
                    kv.key_str().expect("utf-8").to_string(),
                    kv.value_str().expect("utf-8").to_string(),
                    event.prev_kv().map(|p| p.value_str().expect("utf-8").to_string()),
                ));
            }
        }
        let owned = |r: i64, k: &str, v: &str, p: Option<&str>| (r, k.to_string(), v.to_string(), p.map(str::to_string));
        assert_eq!(
            events,
            [
                owned(2, "/u/a", "a1", None),
                owned(3, "/u/a", "a2", Some("a1")),
                owned(4, "/u/b", "b1", None),
                owned(5, "/u/a", "", Some("a2")),
                owned(6, "/u/a", "a3", None),
                owned(6, "/u/c", "c1", None),
                owned(7, "/u/b", "b2", Some("b1")),
            ]
        );
        // Writes go on from the old head, and the rebuilt counters keep counting.
        let put = client.put("/u/d", "d1", None).await.expect("put");
        assert_eq!(put.header().expect("header").revision(), 8);
        let count = client
            .get("/u/", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .expect("count")
            .count();
        assert_eq!(count, 4);
    }
}
