//! The database goes away under write load: stopped and started again (a private PostgreSQL
//! or MariaDB), its connections to etcdshim killed mid-transaction, or its statements timing
//! out behind a lock.

use std::time::Duration;

use etcdshim::ServerOptions;
use sqlx::Connection as _;

use super::WriteLoad;
use crate::harness::{Backend, TestServer, on_backend};
use crate::private_db::{PrivateMariadb, PrivatePostgres, Restartable, postgres_bin};

const WRITERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_no_acknowledged_write() {
    let Some(bin) = postgres_bin() else { return };
    outage(&mut PrivatePostgres::new(bin, None), "PostgreSQL stopped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_outage_loses_no_acknowledged_write() {
    let Some(mut mariadb) = PrivateMariadb::new() else {
        return;
    };
    outage(&mut mariadb, "MariaDB stopped").await;
}

async fn outage(database: &mut dyn Restartable, what: &str) {
    let server = TestServer::start_on(ServerOptions {
        endpoint: database.url("kubernetes"),
        ..ServerOptions::default()
    })
    .await;
    let client = server.client().await;
    let load = WriteLoad::start(&client, WRITERS, 16, PAUSE);
    load.wait_for_acknowledged(50, Duration::from_secs(10), "writes before the outage")
        .await;
    database.stop();
    // Longer than the pool's 5 s wait for a connection: requests during it must fail.
    tokio::time::sleep(Duration::from_secs(7)).await;
    database.start();
    load.wait_for_acknowledged(
        50,
        Duration::from_secs(30),
        "writes never resumed after the database came back",
    )
    .await;
    load.finish_and_check(&client, what).await;
}

/// Kills every connection etcdshim holds to its database under write load, until a write has
/// met a killed connection (a kill between two batches may cost nothing: the pool replaces an
/// idle connection it finds dead), and once more after that.
async fn killed_connections() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let load = WriteLoad::start(&client, WRITERS, 16, PAUSE);
    let mut kills = 0;
    while load.counts().await.1 == 0 {
        assert!(kills < 50, "no write ever met a killed connection");
        load.wait_for_acknowledged(20, Duration::from_secs(30), "writes resumed after a kill")
            .await;
        assert!(
            kill_connections(server.database_url()).await > 0,
            "etcdshim's connections were found"
        );
        kills += 1;
    }
    kill_connections(server.database_url()).await;
    load.wait_for_acknowledged(
        50,
        Duration::from_secs(30),
        "writes resumed after the kills",
    )
    .await;
    load.finish_and_check(&client, "connections killed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_killed_mid_transaction() {
    on_backend(Backend::Postgres, killed_connections()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connections_killed_mid_transaction() {
    on_backend(Backend::Mysql, killed_connections()).await;
}

/// Kills the other connections to the database at `url`; returns how many.
async fn kill_connections(url: &str) -> usize {
    if url.starts_with("postgres") {
        let mut admin = sqlx::PgConnection::connect(url).await.expect("connect");
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate backends");
        killed.len()
    } else {
        let mut admin = sqlx::MySqlConnection::connect(url).await.expect("connect");
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM information_schema.processlist \
             WHERE db = DATABASE() AND id <> CONNECTION_ID()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("list connections");
        for (id,) in &ids {
            // Gone already is fine: it may have closed meanwhile.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("KILL {id}")))
                .execute(&mut admin)
                .await;
        }
        ids.len()
    }
}

/// PostgreSQL with a 300 ms statement timeout while a lock holds every write and read of the
/// log: requests time out in the database, fail with `Unavailable`, and succeed once the lock
/// is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeouts() {
    on_backend(Backend::Postgres, async {
        let server = TestServer::start().await;
        let url = server.database_url().to_string();
        let mut setup = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = 300', current_database()); END $$")
            .execute(&mut setup)
            .await
            .expect("set the statement timeout");
        // New connections take the setting (this one goes too).
        kill_connections(&url).await;
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
        let client = server.client().await;
        let load = WriteLoad::start(&client, WRITERS, 16, PAUSE);
        load.wait_for_acknowledged(50, Duration::from_secs(30), "writes before the lock")
            .await;
        let mut lock = admin.begin().await.expect("begin");
        sqlx::query("LOCK TABLE log IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *lock)
            .await
            .expect("lock the log");
        load.wait_for_failed(4, Duration::from_secs(10), "writes timed out behind the lock")
            .await;
        lock.rollback().await.expect("release the lock");
        load.wait_for_acknowledged(50, Duration::from_secs(30), "writes resumed after the lock")
            .await;
        load.finish_and_check(&client, "statement timeouts").await;
    })
    .await;
}
