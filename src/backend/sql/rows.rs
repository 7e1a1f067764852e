//! Rows as the store sees them: the columns every statement selects, decoded in one place.

use bytes::Bytes;

use super::driver::Driver;
use crate::backend::{KeyAtLatest, LeaseRecord};
use crate::error::Result;
use crate::proto::KeyValue;
use crate::proto::mvccpb::{Event, event::EventType};

/// `key, create_revision, mod_revision, version, lease, value`.
pub fn key_value<DB: Driver>(row: &DB::Row) -> Result<KeyValue> {
    Ok(KeyValue {
        key: Bytes::from(DB::bytes(row, 0)?),
        create_revision: DB::int(row, 1)?,
        mod_revision: DB::int(row, 2)?,
        version: DB::int(row, 3)?,
        lease: DB::int(row, 4)?,
        value: Bytes::from(DB::bytes(row, 5)?),
    })
}

/// `revision, compacted`, then `key`'s `create_revision, mod_revision, version, lease, value`
/// (NULL when it has no live version).
pub fn key_at_latest<DB: Driver>(row: &DB::Row, key: &[u8]) -> Result<KeyAtLatest> {
    let kv = match DB::maybe_int(row, 2)? {
        None => None,
        Some(create_revision) => Some(KeyValue {
            key: Bytes::copy_from_slice(key),
            create_revision,
            mod_revision: DB::int(row, 3)?,
            version: DB::int(row, 4)?,
            lease: DB::int(row, 5)?,
            value: Bytes::from(DB::bytes(row, 6)?),
        }),
    };
    Ok(KeyAtLatest {
        revision: DB::int(row, 0)?,
        compacted: DB::int(row, 1)?,
        kv,
    })
}

/// `id, ttl, expires_ms`.
pub fn lease<DB: Driver>(row: &DB::Row) -> Result<LeaseRecord> {
    Ok(LeaseRecord {
        id: DB::int(row, 0)?,
        ttl: DB::int(row, 1)?,
        expires_ms: DB::int(row, 2)?,
    })
}

/// A history row: the change (columns 0..=6: revision, key, deleted, create_revision, version,
/// lease, value) and the key's previous live version (columns 7..=11: create_revision,
/// revision, version, lease, value; NULL when there was none or it was not asked for).
pub fn event<DB: Driver>(row: &DB::Row) -> Result<Event> {
    let revision = DB::int(row, 0)?;
    let key = Bytes::from(DB::bytes(row, 1)?);
    let deleted = DB::flag(row, 2)?;
    let kv = if deleted {
        KeyValue {
            key: key.clone(),
            mod_revision: revision,
            ..Default::default()
        }
    } else {
        KeyValue {
            key: key.clone(),
            create_revision: DB::int(row, 3)?,
            mod_revision: revision,
            version: DB::int(row, 4)?,
            lease: DB::int(row, 5)?,
            value: Bytes::from(DB::bytes(row, 6)?),
        }
    };
    let prev_kv = match DB::maybe_int(row, 8)? {
        Some(prev_revision) => Some(KeyValue {
            key,
            create_revision: DB::maybe_int(row, 7)?.unwrap_or_default(),
            mod_revision: prev_revision,
            version: DB::maybe_int(row, 9)?.unwrap_or_default(),
            lease: DB::maybe_int(row, 10)?.unwrap_or_default(),
            value: Bytes::from(DB::maybe_bytes(row, 11)?.unwrap_or_default()),
        }),
        None => None,
    };
    Ok(Event {
        r#type: if deleted {
            EventType::Delete
        } else {
            EventType::Put
        } as i32,
        kv: Some(kv),
        prev_kv,
    })
}

/// `(name, value)` rows of the bookkeeping, as pairs.
pub fn named_values<DB: Driver>(rows: &[DB::Row]) -> Result<Vec<(String, i64)>> {
    rows.iter()
        .map(|row| Ok((DB::text(row, 0)?, DB::int(row, 1)?)))
        .collect()
}
