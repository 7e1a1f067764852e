//! MySQL and MariaDB: the connection pool, creating the database, and the MySQL spellings.
//!
//! Several etcdshim processes may share one database, as on PostgreSQL: each write transaction
//! first locks the revision row. Connections run at READ COMMITTED, so statements inside a
//! write transaction see what other processes committed before it took that lock (InnoDB's
//! default, REPEATABLE READ, would keep reading the snapshot of the transaction's first read).
//! MySQL sends no notifications; the other processes find new revisions at their next poll.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

use super::DatastoreOptions;
use super::endpoint::{NetworkEndpoint, TlsModes};
use super::sql::template::Placeholders;
use super::sql::{Dialect, SqlBackend};
use crate::error::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

pub struct Mysql;

impl Dialect for Mysql {
    type Db = sqlx::MySql;
    const PLACEHOLDERS: Placeholders = Placeholders::Question;
    const KEY: &'static str = "`key`";
    const SHARED: bool = true;
    const DELETE_SUPERSEDED: &'static str = "DELETE o FROM {table} o JOIN log n \
        ON o.`key` = n.`key` AND o.revision < n.revision \
        WHERE n.revision > :from AND n.revision <= :to";
    // The sizes are unsigned: subtracting in unsigned arithmetic can underflow.
    const DB_SIZE: &'static str = "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED), \
        GREATEST(CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
          - CAST(COALESCE(SUM(data_free), 0) AS SIGNED), 0) \
        FROM information_schema.tables WHERE table_schema = DATABASE()";
    const DEFRAGMENT: &'static str = "OPTIMIZE TABLE log, current, leases";

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
    let modes = TlsModes {
        verify: "ssl-mode=VERIFY_IDENTITY",
        plain: "ssl-mode=DISABLED",
    };
    let endpoint = NetworkEndpoint::parse(endpoint, "", &options.tls, modes)?;
    create_database(&endpoint).await?;
    let pool = MySqlPoolOptions::new()
        .max_connections(options.max_open.max(2))
        .min_connections(options.max_idle.min(options.max_open))
        .max_lifetime(options.max_lifetime)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect_with(
            MySqlConnectOptions::from_str(&endpoint.url)?
                .log_statements(tracing::log::LevelFilter::Trace)
                .log_slow_statements(tracing::log::LevelFilter::Warn, options.slow_sql_threshold),
        )
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(SqlBackend::new(pool.clone(), pool, None))
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
