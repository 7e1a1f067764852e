//! What the SQL backend asks of a sqlx driver, stated once.
//!
//! The backend is generic over sqlx's typed drivers (`sqlx::Sqlite`, `sqlx::Postgres`,
//! `sqlx::MySql`). Written directly, every generic function would repeat a dozen bounds
//! (`for<'c> &'c mut Connection: Executor<'c>`, `i64: Encode + Decode + Type`, ...), because
//! Rust does not carry such bounds from a trait to its users. Here they are written once, on the
//! blanket implementation of [`Driver`], and the rest of the backend calls its few methods:
//! run a statement with arguments, read a column.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row as _, Type};

use super::template::Sql;

use super::dialect::BoxFuture;

/// An argument of a statement.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Int(i64),
    /// SQL's NULL, for an integer column.
    Null,
    Bytes(&'a [u8]),
    Bool(bool),
    Text(&'a str),
}

pub trait Driver: Database {
    /// Runs `sql` with `arguments` and returns every row.
    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>;

    /// Runs `sql` with `arguments` and returns how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;

    /// Runs a statement without arguments and unprepared (`BEGIN`, `COMMIT`, a session
    /// setting).
    fn run_plain<'c>(
        conn: &'c mut Self::Connection,
        statement: &'static str,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;

    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error>;
    fn maybe_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error>;
    /// An integer used as a flag (non-zero is true), read as a 64-bit one: a statement that
    /// merges a flag column with a constant casts both to the dialect's integer.
    fn flag(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error>;
    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error>;
    fn maybe_bytes(row: &Self::Row, column: usize) -> Result<Option<Vec<u8>>, sqlx::Error>;
    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error>;
}

/// `sql` with its arguments bound in placeholder order.
fn query<DB>(
    sql: &Sql,
    arguments: &[Value<'_>],
) -> Result<sqlx::query::Query<'static, DB, DB::Arguments>, sqlx::Error>
where
    DB: Database,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for &index in &sql.binds {
        let Some(argument) = arguments.get(index) else {
            return Err(sqlx::Error::Protocol(format!(
                "statement binds argument {index} of {}: {}",
                arguments.len(),
                sql.text
            )));
        };
        query = match *argument {
            Value::Int(value) => query.bind(value),
            Value::Null => query.bind(None::<i64>),
            Value::Bytes(value) => query.bind(value),
            Value::Bool(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
        };
    }
    Ok(query)
}

impl<DB> Driver for DB
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> i16: Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    DB::QueryResult: RowsAffected,
{
    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>> {
        match query::<DB>(sql, arguments) {
            Ok(query) => conn.fetch_all(query),
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }

    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
        match query::<DB>(sql, arguments) {
            Ok(query) => {
                let running = conn.execute(query);
                Box::pin(async move { Ok(running.await?.rows_affected()) })
            }
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }

    fn run_plain<'c>(
        conn: &'c mut Self::Connection,
        statement: &'static str,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        Box::pin(async move {
            conn.execute(sqlx::raw_sql(statement)).await?;
            Ok(())
        })
    }

    fn int(row: &Self::Row, column: usize) -> Result<i64, sqlx::Error> {
        row.try_get(column)
    }

    fn maybe_int(row: &Self::Row, column: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(column)
    }

    fn flag(row: &Self::Row, column: usize) -> Result<bool, sqlx::Error> {
        Ok(row.try_get::<i64, _>(column)? != 0)
    }

    fn bytes(row: &Self::Row, column: usize) -> Result<Vec<u8>, sqlx::Error> {
        row.try_get(column)
    }

    fn maybe_bytes(row: &Self::Row, column: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        row.try_get(column)
    }

    fn text(row: &Self::Row, column: usize) -> Result<String, sqlx::Error> {
        row.try_get(column)
    }
}

/// The one thing read from a statement's result, which sqlx's drivers give by inherent methods.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

macro_rules! rows_affected {
    ($($result:ty),*) => {$(
        impl RowsAffected for $result {
            fn rows_affected(&self) -> u64 {
                <$result>::rows_affected(self)
            }
        }
    )*};
}

rows_affected!(
    sqlx::sqlite::SqliteQueryResult,
    sqlx::postgres::PgQueryResult,
    sqlx::mysql::MySqlQueryResult
);
