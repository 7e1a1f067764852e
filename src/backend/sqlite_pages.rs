//! Pages of keys read from SQLite through its C API, on the calling thread.
//!
//! sqlx's SQLite driver runs each connection on a worker thread of its own and hands the caller
//! every row through a channel, each value first copied out of SQLite into a row of its own
//! allocation. A page of 10,000 objects of 1 KiB was 10,000 handoffs between threads and three
//! copies of 10 MB before the response was encoded, and it cost 20 to 27 pages of 500 (see
//! docs/benchmarks.md, issue 11). Here the connection's handle is borrowed from its worker for
//! the one statement (a single handoff), the statement is stepped on this thread, and each row
//! becomes a `KeyValue` as SQLite returns it: one copy of each key and value.
//!
//! Only pages of ranges come here: a range of one key reads at most one row, and there sqlx's
//! cache of prepared statements saves more than the handoffs cost.
//!
//! The crate's only `unsafe` code: each block calls SQLite's C API on a handle this thread has
//! borrowed, and says why that call is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::ptr::{self, NonNull};

use bytes::Bytes;
use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

use super::sql::Value;
use super::sql::template::Sql;
use crate::proto::KeyValue;

/// Runs `sql` (which selects `key, create_revision, mod_revision, version, lease, value`) with
/// `arguments` on `conn`, returning its rows in order.
pub async fn key_values(
    conn: &mut SqliteConnection,
    sql: &Sql,
    arguments: &[Value<'_>],
) -> Result<Vec<KeyValue>, sqlx::Error> {
    let mut locked = conn.lock_handle().await?;
    let db = locked.as_raw_handle();
    // SQLite works synchronously (reading pages, from the OS cache or the disk); on a runtime
    // with several workers the others take this one's tasks meanwhile.
    let read = || read(db, sql, arguments);
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(read),
        _ => read(),
    }
}

fn read(
    db: NonNull<ffi::sqlite3>,
    sql: &Sql,
    arguments: &[Value<'_>],
) -> Result<Vec<KeyValue>, sqlx::Error> {
    let statement = Statement::prepare(db, &sql.text)?;
    for (position, &index) in sql.binds.iter().enumerate() {
        let Some(argument) = arguments.get(index) else {
            return Err(sqlx::Error::Protocol(format!(
                "statement binds argument {index} of {}: {}",
                arguments.len(),
                sql.text
            )));
        };
        statement.bind(position as c_int + 1, argument)?;
    }
    let mut rows = Vec::new();
    while statement.step()? {
        rows.push(KeyValue {
            key: statement.bytes(0)?,
            create_revision: statement.int(1),
            mod_revision: statement.int(2),
            version: statement.int(3),
            lease: statement.int(4),
            value: statement.bytes(5)?,
        });
    }
    Ok(rows)
}

/// A prepared statement, finalized when dropped (before the handle goes back to its worker).
struct Statement<'a> {
    db: NonNull<ffi::sqlite3>,
    raw: NonNull<ffi::sqlite3_stmt>,
    /// The arguments are bound without copies: they must outlive the statement.
    arguments: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Statement<'a> {
    fn prepare(db: NonNull<ffi::sqlite3>, text: &str) -> Result<Statement<'a>, sqlx::Error> {
        let length = c_int::try_from(text.len())
            .map_err(|_| sqlx::Error::Protocol("statement too long".into()))?;
        let mut raw = ptr::null_mut();
        // SAFETY: `db` is an open connection this thread holds; the text outlives the call,
        // and its length is given, so it needs no terminating NUL.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                text.as_ptr().cast(),
                length,
                &mut raw,
                ptr::null_mut(),
            )
        };
        match NonNull::new(raw) {
            Some(raw) if code == ffi::SQLITE_OK => Ok(Statement {
                db,
                raw,
                arguments: std::marker::PhantomData,
            }),
            _ => Err(failure(db, code)),
        }
    }

    fn bind(&self, position: c_int, argument: &Value<'a>) -> Result<(), sqlx::Error> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live statement; borrowed bytes are bound SQLITE_STATIC, and
        // `Statement<'a>` does not outlive the arguments they come from.
        let code = unsafe {
            match *argument {
                Value::Int(value) => ffi::sqlite3_bind_int64(raw, position, value),
                Value::Bool(value) => ffi::sqlite3_bind_int64(raw, position, i64::from(value)),
                Value::Bytes(value) => ffi::sqlite3_bind_blob(
                    raw,
                    position,
                    value.as_ptr().cast(),
                    length_of(value)?,
                    ffi::SQLITE_STATIC(),
                ),
                Value::Text(value) => ffi::sqlite3_bind_text(
                    raw,
                    position,
                    value.as_ptr().cast(),
                    length_of(value.as_bytes())?,
                    ffi::SQLITE_STATIC(),
                ),
            }
        };
        match code {
            ffi::SQLITE_OK => Ok(()),
            code => Err(failure(self.db, code)),
        }
    }

    /// Steps to the next row: false when there is none.
    fn step(&self) -> Result<bool, sqlx::Error> {
        // SAFETY: a live statement of a connection this thread holds.
        match unsafe { ffi::sqlite3_step(self.raw.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            code => Err(failure(self.db, code)),
        }
    }

    fn int(&self, column: c_int) -> i64 {
        // SAFETY: the statement is on a row; a column out of range reads as 0.
        unsafe { ffi::sqlite3_column_int64(self.raw.as_ptr(), column) }
    }

    /// A BLOB column, copied. NULL is an error: the statements read NOT NULL columns.
    fn bytes(&self, column: c_int) -> Result<Bytes, sqlx::Error> {
        let raw = self.raw.as_ptr();
        // SAFETY: the statement is on a row. `sqlite3_column_blob` comes before
        // `sqlite3_column_bytes`, as SQLite asks, and the pointer is read before the next step.
        unsafe {
            if ffi::sqlite3_column_type(raw, column) == ffi::SQLITE_NULL {
                return Err(sqlx::Error::Protocol(format!(
                    "column {column} of a page is NULL"
                )));
            }
            let data = ffi::sqlite3_column_blob(raw, column);
            let length = usize::try_from(ffi::sqlite3_column_bytes(raw, column)).unwrap_or(0);
            if data.is_null() || length == 0 {
                return Ok(Bytes::new());
            }
            Ok(Bytes::copy_from_slice(std::slice::from_raw_parts(
                data.cast::<u8>(),
                length,
            )))
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here; nothing reads from it afterwards.
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}

fn length_of(bytes: &[u8]) -> Result<c_int, sqlx::Error> {
    c_int::try_from(bytes.len()).map_err(|_| sqlx::Error::Protocol("argument too long".into()))
}

/// SQLite's error for `code`, with its message (for the server log; clients see a generic one).
fn failure(db: NonNull<ffi::sqlite3>, code: c_int) -> sqlx::Error {
    // SAFETY: `sqlite3_errmsg` returns a NUL-terminated string owned by the connection, valid
    // until its next call; it is copied at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db.as_ptr());
        if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        }
    };
    sqlx::Error::Protocol(format!("SQLite error {code}: {message}"))
}
