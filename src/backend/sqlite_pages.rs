//! Pages of keys read from SQLite through its C API, on the calling thread; and the sequencer's
//! write transaction run the same way ([`WriterHandle`]).
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
use super::sql::rows;
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
    // SQLite works synchronously (reading pages, from the OS cache or the disk).
    blocking(|| read(db, sql, arguments))
}

/// Runs `work`, which waits on the disk, so that on a runtime with several workers the others
/// take this one's tasks meanwhile.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// SQLite's handle of the connection the sequencer's write transactions run on, taken from
/// sqlx's worker thread once per connection (the backend keeps it with the connection's serial
/// number). The transaction's statements (`BEGIN IMMEDIATE`, the look-up of the batch's live
/// versions, its writes, the revision, `COMMIT`) run through it on the sequencer's own thread:
/// on a busy 2-core machine each round trip to the worker thread and back cost 0.3 to 0.6 ms
/// (`begin`, which does nothing, took that long), five of them a batch (docs/benchmarks.md,
/// "The sequencer's statements on its own thread"). The rarer ones (a new prefix's count, a
/// rowid range's last rowid) still go through sqlx.
///
/// Sound because sqlx's worker touches the handle only while it runs a command: between
/// commands it holds the connection's lock and waits. The handle is used only by whoever holds
/// the connection exclusively (`Held`, with that serial number), between that holder's sqlx
/// calls on it, each awaited to its end, so the worker and this thread never use the connection
/// at once, and each command's channel orders its work after ours and ours after it.
/// Statements are finalized before they return, so none is left open when sqlx closes the
/// handle (which panics if one is).
#[derive(Clone, Copy)]
pub struct WriterHandle(NonNull<ffi::sqlite3>);

// SAFETY: SQLite's handles may move between threads (it is built thread-safe); see above for
// why this one is never used from two threads at once.
unsafe impl Send for WriterHandle {}
// SAFETY: shared references to it only copy the pointer; it is used as above.
unsafe impl Sync for WriterHandle {}

impl WriterHandle {
    /// Takes the handle of `conn` from its worker thread (one round trip).
    pub async fn of(conn: &mut SqliteConnection) -> Result<WriterHandle, sqlx::Error> {
        let mut locked = conn.lock_handle().await?;
        Ok(WriterHandle(locked.as_raw_handle()))
    }

    /// Runs `text` (one statement, or several joined by `;`) with `arguments`. `binds` names the
    /// argument of each `?` in order, across the statements. Returns the rows they changed.
    pub fn execute(
        self,
        text: &str,
        binds: &[usize],
        arguments: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        let db = self.0;
        let mut rest = text;
        let mut binds = binds.iter();
        let mut changed = 0;
        while !rest.trim().is_empty() {
            let (statement, tail) = Statement::prepare_next(db, rest)?;
            rest = tail;
            let Some(statement) = statement else {
                continue;
            };
            for position in 1..=statement.parameters() {
                let argument = binds.next().and_then(|&index| arguments.get(index));
                let Some(argument) = argument else {
                    return Err(sqlx::Error::Protocol(format!(
                        "statement has more parameters than arguments: {text}"
                    )));
                };
                statement.bind(position, argument)?;
            }
            while statement.step()? {}
            // SAFETY: an open connection this thread may use (see the type's docs).
            let count = unsafe { ffi::sqlite3_changes64(db.as_ptr()) };
            changed += u64::try_from(count).unwrap_or(0);
        }
        Ok(changed)
    }

    /// Runs `sql`, which selects `key, create_revision, mod_revision, version, lease, value`.
    pub fn key_values(
        self,
        sql: &Sql,
        arguments: &[Value<'_>],
    ) -> Result<Vec<KeyValue>, sqlx::Error> {
        read(self.0, sql, arguments)
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
        let mod_revision = statement.int(2);
        let [create_revision, version, lease] = rows::with_defaults(
            mod_revision,
            [1, 3, 4].map(|column| statement.maybe_int(column)),
        );
        rows.push(KeyValue {
            key: statement.bytes(0)?,
            create_revision,
            mod_revision,
            version,
            lease,
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
    fn prepare(db: NonNull<ffi::sqlite3>, text: &'a str) -> Result<Statement<'a>, sqlx::Error> {
        match Statement::prepare_next(db, text)? {
            (Some(statement), _) => Ok(statement),
            (None, _) => Err(sqlx::Error::Protocol(format!("no statement in: {text}"))),
        }
    }

    /// Prepares the first statement of `text`, returning it (`None` if that part held only
    /// whitespace or a comment) and the text after it.
    fn prepare_next(
        db: NonNull<ffi::sqlite3>,
        text: &'a str,
    ) -> Result<(Option<Statement<'a>>, &'a str), sqlx::Error> {
        let length = c_int::try_from(text.len())
            .map_err(|_| sqlx::Error::Protocol("statement too long".into()))?;
        let mut raw = ptr::null_mut();
        let mut tail: *const std::ffi::c_char = ptr::null();
        // SAFETY: `db` is an open connection this thread holds; the text outlives the call,
        // and its length is given, so it needs no terminating NUL. SQLite sets `tail` to a
        // point within `text` (or its end).
        let code = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                text.as_ptr().cast(),
                length,
                &mut raw,
                &mut tail,
            )
        };
        if code != ffi::SQLITE_OK {
            if let Some(raw) = NonNull::new(raw) {
                // SAFETY: a statement SQLite returned; finalized once.
                unsafe { ffi::sqlite3_finalize(raw.as_ptr()) };
            }
            return Err(failure(db, code));
        }
        let consumed = if tail.is_null() {
            text.len()
        } else {
            // SAFETY: `tail` points into `text` or one past its end.
            let offset = unsafe { tail.cast::<u8>().offset_from(text.as_ptr()) };
            usize::try_from(offset)
                .unwrap_or(text.len())
                .min(text.len())
        };
        let rest = text.get(consumed..).unwrap_or("");
        let statement = NonNull::new(raw).map(|raw| Statement {
            db,
            raw,
            arguments: std::marker::PhantomData,
        });
        Ok((statement, rest))
    }

    /// How many parameters the statement takes.
    fn parameters(&self) -> c_int {
        // SAFETY: a live statement.
        unsafe { ffi::sqlite3_bind_parameter_count(self.raw.as_ptr()) }
    }

    fn bind(&self, position: c_int, argument: &Value<'a>) -> Result<(), sqlx::Error> {
        let raw = self.raw.as_ptr();
        // SAFETY: `raw` is a live statement; borrowed bytes are bound SQLITE_STATIC, and
        // `Statement<'a>` does not outlive the arguments they come from.
        let code = unsafe {
            match *argument {
                Value::Int(value) => ffi::sqlite3_bind_int64(raw, position, value),
                Value::Null => ffi::sqlite3_bind_null(raw, position),
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

    /// An INTEGER column that may be NULL.
    fn maybe_int(&self, column: c_int) -> Option<i64> {
        // SAFETY: the statement is on a row.
        let null =
            unsafe { ffi::sqlite3_column_type(self.raw.as_ptr(), column) } == ffi::SQLITE_NULL;
        (!null).then(|| self.int(column))
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
