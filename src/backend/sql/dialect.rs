//! What differs between the databases in the statements themselves. Each database's file
//! (`backend/sqlite.rs`, `postgres.rs`, `mysql.rs`) implements this; everything else about SQL
//! is written once in [`super::statements`].

use std::future::Future;
use std::pin::Pin;

use sqlx::Database;

use super::driver::{Driver, Value};
use super::rows;
use super::template::{Placeholders, Sql};
use crate::proto::KeyValue;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Dialect: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Driver;

    /// What the sequencer's write transaction keeps besides its connection: SQLite's handle,
    /// so that its statements run on the sequencer's thread (`backend/sqlite_pages.rs`);
    /// nothing for the network databases, whose statements are round trips anyway.
    type Writer: Send + Sync + Default + Clone;

    const PLACEHOLDERS: Placeholders;

    /// The key column as statements write it (quoted where `key` is a reserved word).
    const KEY: &'static str;

    /// Several processes may share the database: each write transaction then locks the
    /// revision row first, and readers ask the database for its newest revision.
    const SHARED: bool;

    /// Opens the sequencer's write transaction.
    const BEGIN: &'static str = "BEGIN";

    /// The driver runs several statements sent as one query, binding each one's parameters
    /// from the arguments in order (sqlx's SQLite driver; PostgreSQL's extended protocol and
    /// MySQL's prepared statements take one statement at a time).
    const JOINED_STATEMENTS: bool = false;

    /// New rows of `current` get rowids in their resource's range, so that a resource's rows
    /// share pages (SQLite, whose rowid tables keep rows in rowid order; see
    /// [`super::rowid_ranges`]). PostgreSQL's heap and InnoDB's clustered key need no rowid.
    const ROWID_RANGES: bool = false;

    /// A version's create revision, version and lease are written as NULL where they hold
    /// what most versions hold: its mod revision and 1 where its change created the key, 0
    /// where it has no lease. Every read takes NULL as those ([`super::rows::with_defaults`]).
    /// PostgreSQL: a `current` row of a 1 KiB object with a key of 80 to 100 bytes then takes
    /// at most 1,160 bytes instead of 1,176 to 1,192, and seven fit an 8 KiB heap page instead
    /// of six (migrations/postgres/0006_null_defaults.sql). SQLite stores such small integers
    /// in a byte or none anyway, and cannot drop its columns' NOT NULL without copying the
    /// tables; InnoDB's 16 KiB pages lose little to the last row that does not fit.
    const NULL_DEFAULTS: bool = false;

    /// One statement deleting the `history` versions that a change in `(:from, :to]`
    /// superseded (the key's older ones), `changes` being a subquery of those changes'
    /// `(@key, revision)`; or `None` where such a statement would lock what its join reads, and
    /// compaction names the versions with a plain read first (`Statements::superseded`).
    fn delete_superseded(changes: &str) -> Option<String>;

    /// The database's size on disk and the part of it in use, in bytes.
    const DB_SIZE: &'static str;

    /// Returns unused space to the file system.
    const DEFRAGMENT: &'static str;

    /// Joins on the key repeat the range's bounds on the joined table, although the key
    /// equality implies them. Without them PostgreSQL may merge-join against the whole table
    /// from its first key, so each page of a paged list costs a scan of every key before it
    /// (0.56 s per page of 500 at 1M keys, against 4 ms with the bounds). SQLite does the
    /// opposite: given the bounds, it scans the joined table's whole range as the outer loop
    /// (SQLite 3.51: 24 ms a page of 500 at 100k keys, against 1 ms without).
    const BOUNDED_JOINS: bool = true;

    /// The type a `CAST(x AS ...)` to a 64-bit integer names.
    const INTEGER_CAST: &'static str = "BIGINT";
    /// The type a `CAST(x AS ...)` to text names.
    const TEXT_CAST: &'static str = "TEXT";

    /// The larger of two numbers.
    const GREATEST: &'static str = "GREATEST";

    /// What to do when an insert meets an existing row of the unique key `conflict`: take the
    /// new row's `columns`, or keep the old row when `columns` is empty.
    fn on_conflict(conflict: &str, columns: &[&str]) -> String {
        if columns.is_empty() {
            return format!("ON CONFLICT ({conflict}) DO NOTHING");
        }
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!("ON CONFLICT ({conflict}) DO UPDATE SET {}", sets.join(", "))
    }

    /// Adds the new row's `column` to the existing row's on a conflict over `conflict`.
    fn on_conflict_add(table: &str, conflict: &str, column: &str) -> String {
        format!(
            "ON CONFLICT ({conflict}) DO UPDATE SET {column} = {table}.{column} + excluded.{column}"
        )
    }

    /// `table` under `alias`, told to use `index` where the planner would not pick it.
    fn table_via(table: &str, alias: &str, _index: &str) -> String {
        format!("{table} {alias}")
    }

    /// `column` as a condition compares it to filter the rows another index found, written so
    /// that the planner does not take the column's own index instead.
    fn filter_only(column: &str) -> String {
        column.to_string()
    }

    /// How a page joins each `current c` row to its key's version in `history` at `:rev` (for
    /// the keys changed since), as `h` with `create_revision, revision, version, lease, value`;
    /// `condition` gives the join's condition on a `history` alias. The join must keep the
    /// order in which `current` is read, so that the page's `LIMIT` stops the scan.
    fn page_history_join(condition: &dyn Fn(&str) -> String) -> String {
        format!("LEFT JOIN history h ON {}", condition("h"))
    }

    /// Runs a statement that selects a page of a range (`key, create_revision, mod_revision,
    /// version, lease, value`) and returns its rows in order. SQLite reads them through its C
    /// API instead (`backend/sqlite_pages.rs`).
    fn page<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, Result<Vec<KeyValue>, sqlx::Error>> {
        Box::pin(async move {
            let fetched = Self::Db::fetch_all(conn, sql, arguments).await?;
            fetched.iter().map(rows::key_value::<Self::Db>).collect()
        })
    }

    /// Begins the sequencer's write transaction with [`Dialect::BEGIN`] on `conn`, keeping in
    /// `writer` what its later statements need besides the connection. `writer` is what the
    /// last write transaction on this same connection kept, or the default.
    fn begin_write<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        _writer: &'c mut Self::Writer,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Self::Db::run_plain(conn, Self::BEGIN)
    }

    /// Commits the sequencer's transaction.
    fn commit_write<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        _writer: &'c Self::Writer,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Self::Db::run_plain(conn, "COMMIT")
    }

    /// Runs one write statement (or several joined) of the sequencer's transaction, returning
    /// the rows changed.
    fn write<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        _writer: &'c Self::Writer,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
        Self::Db::execute(conn, sql, arguments)
    }

    /// Reads the live versions of a batch's keys in the sequencer's transaction.
    fn live_versions<'c>(
        conn: &'c mut <Self::Db as Database>::Connection,
        _writer: &'c Self::Writer,
        sql: &'c Sql,
        arguments: &'c [Value<'c>],
    ) -> BoxFuture<'c, Result<Vec<KeyValue>, sqlx::Error>> {
        Self::page(conn, sql, arguments)
    }

    /// A boolean parameter in an expression.
    fn boolean(parameter: &str) -> String {
        parameter.to_string()
    }
}
