//! MySQL and MariaDB: the connection pool, creating the database, and the MySQL spellings.
//!
//! Several etcdshim processes may share one database, as on PostgreSQL: each write transaction
//! first locks the revision row. Connections run at READ COMMITTED, so statements inside a
//! write transaction see what other processes committed before it took that lock (InnoDB's
//! default, REPEATABLE READ, would keep reading the snapshot of the transaction's first read).
//! MySQL sends no notifications; the other processes find new revisions at their next poll.

use std::str::FromStr as _;

use sqlx::mysql::MySqlConnectOptions;

use super::DatastoreOptions;
use super::endpoint::{NetworkEndpoint, TlsModes};
use super::sql::connections::Connections;
use super::sql::template::Placeholders;
use super::sql::{Dialect, SqlBackend};
use crate::error::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// `ssl-mode` as the TLS options ask for it, unless the endpoint names one.
pub const TLS_MODES: TlsModes = TlsModes {
    verify: "ssl-mode=VERIFY_IDENTITY",
    plain: "ssl-mode=DISABLED",
    unverified: "ssl-mode=REQUIRED",
};

pub struct Mysql;

impl Dialect for Mysql {
    type Db = sqlx::MySql;
    type Writer = ();
    const PLACEHOLDERS: Placeholders = Placeholders::Question;
    const KEY: &'static str = "`key`";
    const SHARED: bool = true;
    // InnoDB locks the rows a DELETE's join reads, at any isolation level: joined to `current`,
    // compaction deadlocked with a write batch updating one of those rows while inserting into
    // `history` (kine::automatic_compaction_runs_once_per_interval, on MariaDB 10.11).
    fn delete_superseded(_changes: &str) -> Option<String> {
        None
    }
    // The sizes are unsigned: subtracting in unsigned arithmetic can underflow.
    const DB_SIZE: &'static str = "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED), \
        GREATEST(CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
          - CAST(COALESCE(SUM(data_free), 0) AS SIGNED), 0) \
        FROM information_schema.tables WHERE table_schema = DATABASE()";
    const DEFRAGMENT: &'static str = "OPTIMIZE TABLE log, current, leases";

    const INTEGER_CAST: &'static str = "SIGNED";
    const TEXT_CAST: &'static str = "CHAR";

    fn on_conflict(conflict: &str, columns: &[&str]) -> String {
        if columns.is_empty() {
            // Keep the row: a no-op update (INSERT IGNORE would also hide other errors).
            let first = conflict.split(',').next().unwrap_or(conflict).trim();
            return format!("ON DUPLICATE KEY UPDATE {first} = {first}");
        }
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = VALUES({c})"))
            .collect();
        format!("ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    }

    fn on_conflict_add(_table: &str, _conflict: &str, column: &str) -> String {
        format!("ON DUPLICATE KEY UPDATE {column} = {column} + VALUES({column})")
    }
}

/// Connects to the database `endpoint` names (creating it if it is missing) and applies the
/// migrations.
pub async fn open(endpoint: &str, options: &DatastoreOptions) -> Result<SqlBackend<Mysql>> {
    let endpoint = NetworkEndpoint::parse(endpoint, "", &options.tls, TLS_MODES)?;
    create_database(&endpoint).await?;
    let connections = Connections::<sqlx::MySql>::open(
        options.logged(MySqlConnectOptions::from_str(&endpoint.url)?),
        options.limits(vec![
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        ]),
    )
    .await?;
    migrate(&connections, &endpoint.database).await?;
    Ok(SqlBackend::new(
        connections.clone(),
        connections,
        None,
        None,
        options.counted_prefix_min_keys,
    ))
}

/// A pool on the existing database `endpoint` names (a Kine database to import).
pub async fn existing(endpoint: &str, options: &DatastoreOptions) -> Result<sqlx::MySqlPool> {
    let endpoint = NetworkEndpoint::parse(endpoint, "", &options.tls, TLS_MODES)?;
    Ok(options
        .pool::<sqlx::MySql>()
        .connect_with(MySqlConnectOptions::from_str(&endpoint.url)?)
        .await?)
}

/// How long a server waits for another one's migrations of the same database.
const MIGRATION_WAIT_SECONDS: i64 = 3600;

/// Applies the migrations, one server at a time. sqlx's own lock for this waits with
/// `GET_LOCK(name, -1)`, which MariaDB answers with NULL at once instead of waiting: two servers
/// started together on a new database then both applied the first migration, and one failed
/// ("migration 1 is partially applied"). So a lock with a positive timeout is held around it.
async fn migrate(connections: &Connections<sqlx::MySql>, database: &str) -> Result<()> {
    let name = format!("etcdshim-migrations-{database}");
    let mut holder = connections.acquire().await?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(&name)
        .bind(MIGRATION_WAIT_SECONDS)
        .fetch_one(holder.raw())
        .await?;
    if locked != Some(1) {
        return Err(sqlx::Error::Protocol(format!(
            "another server kept the migrations lock of {database} for {MIGRATION_WAIT_SECONDS} s"
        ))
        .into());
    }
    let migrated = MIGRATOR.run(connections.acquire().await?.raw()).await;
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&name)
        .execute(holder.raw())
        .await?;
    Ok(migrated?)
}

async fn create_database(endpoint: &NetworkEndpoint) -> Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::MySqlConnection::connect(&endpoint.admin_url).await?;
    let statement = format!("CREATE DATABASE IF NOT EXISTS `{}`", endpoint.database);
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
