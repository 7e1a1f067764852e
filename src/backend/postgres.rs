//! PostgreSQL: the connection pool, creating the database, and notifications of other
//! servers' commits.
//!
//! Several etcdshim processes may share one database. Each write transaction first locks the
//! `meta` row that holds the revision (`SELECT ... FOR UPDATE`), so transactions from every
//! process commit one after another in revision order, and a revision is visible only after
//! every lower one: no gaps, no fill rows. Every commit of `meta` notifies the channel
//! [`CHANGES_CHANNEL`] (a trigger, migrations/postgres/0003_notify.sql) with the committing
//! connection's `application_name`, which names the process; so the other processes read the
//! new revisions at once instead of at their next poll, and a process ignores its own commits.
//!
//! Every connection runs with `jit = off`. PostgreSQL compiles a statement to machine code when
//! its estimated cost passes `jit_above_cost` (100,000), and before the first ANALYZE of a large
//! table (right after a bulk load) it estimates our key-range statements far above that: the
//! count of a 1M-key prefix, 0.6 ms to run, spent 31 ms in the compiler (47 ms in all), and the
//! first page of a list 59 ms against 3.4 ms for a middle one. Our statements read a few index
//! entries each; none runs long enough for compiled code to win back its compile time.
//!
//! Serving connections also run with sequential and bitmap scans off ([`INDEX_SCANS_ONLY`]):
//! every statement of ours reads a key or revision range in an index's order and stops at its
//! limit, and those two plans read the whole range before they stop. Before the first ANALYZE
//! PostgreSQL takes any key range to hold 0.5% of the table, so for a page of 10,000 at 200,000
//! keys it expected fewer rows than the page asks for and planned to read the rest of the range
//! through a bitmap and sort it (an external sort of 106 MB for each page, 450 to 760 ms against
//! 5 ms for a page of 500). The settings add a penalty to such plans rather than forbid them,
//! so a statement without an index to follow still runs. Write transactions turn bitmap scans
//! back on (`Postgres::BEGIN`: their lookups of a batch's scattered keys want them). Migrations
//! run on a connection of their own with the planner's defaults: a migration may copy a whole
//! table.

use std::str::FromStr as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener};
use tokio::sync::Notify;

use super::DatastoreOptions;
use super::endpoint::{NetworkEndpoint, TlsModes};
use super::sql::connections::Connections;
use super::sql::template::Placeholders;
use super::sql::{Dialect, SqlBackend};
use crate::error::Result;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// `sslmode` as the TLS options ask for it, unless the endpoint names one.
pub const TLS_MODES: TlsModes = TlsModes {
    verify: "sslmode=verify-full",
    plain: "sslmode=disable",
    unverified: "sslmode=require",
};

/// The channel every commit that moves the revision notifies.
const CHANGES_CHANNEL: &str = "etcdshim_changes";

pub struct Postgres;

impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    type Writer = ();
    const PLACEHOLDERS: Placeholders = Placeholders::Dollar;
    const KEY: &'static str = "key";
    const SHARED: bool = true;
    const NULL_DEFAULTS: bool = true;
    // A prepared statement's generic plan is made once, from the statistics of that moment, and
    // kept: the write path's `key IN (...)` lookups planned while `current` was nearly empty
    // kept a sequential scan as it grew (13 ms a batch at 30,000 keys, before any ANALYZE;
    // which of the multi-row sizes caught it varied from run to run, and with it the put rate,
    // 2,300 to 5,600 per s). Every statement of the write path finds its rows through an index,
    // so its transaction rules sequential scans out, and plans stay cached. Planning every
    // statement for its arguments instead (`plan_cache_mode = force_custom_plan`) cured the
    // scans too, but cost a plan per statement: 50 writers with one watcher made 4,159 puts/s
    // against 4,909 this way (medians of 3 alternating runs; 4,758 before the one backend).
    // Bitmap scans stay allowed here, unlike on the rest of a serving connection (module docs):
    // the batch's `key IN (...)` lookups read scattered keys, and without them 100 clients' puts
    // ran at 10,257 and 10,326/s against 11,516 and 12,574 (two alternating rounds each).
    const BEGIN: &'static str =
        "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = on";
    fn delete_superseded(changes: &str) -> Option<String> {
        Some(format!(
            "DELETE FROM history o USING {changes} n \
             WHERE o.@key = n.@key AND o.revision < n.revision"
        ))
    }
    const DB_SIZE: &'static str =
        "SELECT pg_database_size(current_database()), pg_database_size(current_database())";
    const DEFRAGMENT: &'static str = "VACUUM";

    /// An untyped parameter in `:p AND ...` would be taken for text.
    fn boolean(parameter: &str) -> String {
        format!("{parameter}::boolean")
    }

    /// Without statistics (right after a bulk load, before any ANALYZE) PostgreSQL rates a key
    /// range and a revision range as equally selective and may scan the whole key range for
    /// the few keys changed since a revision. A key compared through an expression
    /// (`key || ''`) cannot lead an index scan.
    fn filter_only(column: &str) -> String {
        format!("({column} || ''::bytea)")
    }

    /// A lateral subquery (its `LIMIT` keeps the planner from flattening it into a join), so
    /// the join is a nested loop over `current` in key order. As a plain join, a range the
    /// statistics put at a few rows (the end of a resource's keys, within one histogram bucket)
    /// was hash-joined and sorted: every remaining key of the range read for a page of 500 (at
    /// 10M objects, 79,500 rows and 141 ms for one page; 0.74 ms this way).
    fn page_history_join(condition: &dyn Fn(&str) -> String) -> String {
        format!(
            "LEFT JOIN LATERAL (SELECT v.create_revision, v.revision, v.version, v.lease, \
               v.value FROM history v WHERE {} LIMIT 1) h ON TRUE",
            condition("v")
        )
    }
}

/// Connects to the database `endpoint` names (creating it if it is missing) and applies the
/// migrations.
pub async fn open(endpoint: &str, options: &DatastoreOptions) -> Result<SqlBackend<Postgres>> {
    let endpoint = NetworkEndpoint::parse(endpoint, "postgres", &options.tls, TLS_MODES)?;
    create_database(&endpoint).await?;
    // Names this process's connections, and so its notifications.
    let name = format!("etcdshim-{:016x}", rand::random::<u64>());
    let connect = connect_options(&endpoint.url, &name)?;
    migrate(&connect).await?;
    let connections = Connections::<sqlx::Postgres>::open(
        options.logged(serving(connect)),
        options.limits(Vec::new()),
    )
    .await?;
    let changes = Arc::new(Notify::new());
    tokio::spawn(listen_for_changes(
        endpoint.url,
        name,
        Arc::downgrade(&changes),
    ));
    Ok(SqlBackend::new(
        connections.clone(),
        connections,
        Some(changes),
        None,
        options.counted_prefix_min_keys,
    ))
}

/// The options of this process's connections: named `name`, without JIT compilation (module
/// docs), and with whatever else the endpoint's URL sets.
fn connect_options(url: &str, name: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name(name)
        .options([("jit", "off")]))
}

/// The planner settings of serving connections (module docs).
const INDEX_SCANS_ONLY: [(&str, &str); 2] =
    [("enable_seqscan", "off"), ("enable_bitmapscan", "off")];

/// The options of a serving connection: `connect`'s, with index scans only (module docs).
fn serving(connect: PgConnectOptions) -> PgConnectOptions {
    connect.options(INDEX_SCANS_ONLY)
}

/// Applies the migrations on a connection of their own, with the planner's default settings.
async fn migrate(connect: &PgConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut conn = connect.connect().await?;
    MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// A pool on the existing database `endpoint` names (a Kine database to import).
pub async fn existing(endpoint: &str, options: &DatastoreOptions) -> Result<sqlx::PgPool> {
    let endpoint = NetworkEndpoint::parse(endpoint, "postgres", &options.tls, TLS_MODES)?;
    Ok(options
        .pool::<sqlx::Postgres>()
        .connect_with(PgConnectOptions::from_str(&endpoint.url)?)
        .await?)
}

async fn create_database(endpoint: &NetworkEndpoint) -> Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&endpoint.admin_url).await?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&endpoint.database)
        .fetch_optional(&mut conn)
        .await?
        .is_some();
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", endpoint.database);
        if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
        {
            // Another process may have created it meanwhile: PostgreSQL then answers
            // duplicate_database, or, when both creations ran at once, a unique violation of
            // pg_database's name index.
            let code = err.as_database_error().and_then(|e| e.code());
            if !matches!(code.as_deref(), Some("42P04") | Some("23505")) {
                return Err(err.into());
            }
        }
    }
    conn.close().await?;
    Ok(())
}

/// Relays notifications on [`CHANGES_CHANNEL`] from other processes than `own` to `changes`
/// until it is dropped, reconnecting after failures.
async fn listen_for_changes(url: String, own: String, changes: Weak<Notify>) {
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if listener.listen(CHANGES_CHANNEL).await.is_ok() {
                    while let Ok(notification) = listener.recv().await {
                        if notification.payload() == own {
                            continue;
                        }
                        match changes.upgrade() {
                            Some(changes) => changes.notify_one(),
                            None => return,
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for other servers' writes failed; retrying")
            }
        }
        if changes.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{connect_options, serving};

    #[test]
    fn connections_run_without_jit_beside_the_endpoints_own_options() {
        let url = "postgres://u@127.0.0.1:5432/db?options=-c%20statement_timeout%3D5s";
        let options = connect_options(url, "etcdshim-test").expect("options");
        assert_eq!(
            options.get_options(),
            Some("-c statement_timeout=5s -c jit=off")
        );
        assert_eq!(options.get_application_name(), Some("etcdshim-test"));
    }

    #[test]
    fn serving_connections_read_through_indexes_only() {
        let url = "postgres://u@127.0.0.1:5432/db?options=-c%20statement_timeout%3D5s";
        let options = serving(connect_options(url, "etcdshim-test").expect("options"));
        assert_eq!(
            options.get_options(),
            Some(
                "-c statement_timeout=5s -c jit=off -c enable_seqscan=off -c enable_bitmapscan=off"
            )
        );
    }
}
