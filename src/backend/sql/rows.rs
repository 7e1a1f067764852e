//! Rows as the store sees them: the columns every statement selects, decoded in one place.

use bytes::Bytes;

use super::driver::Driver;
use crate::backend::LeaseRecord;
use crate::error::Result;
use crate::proto::KeyValue;
use crate::proto::mvccpb::{Event, event::EventType};

/// A version's create revision, version and lease from their columns, given its mod revision.
/// NULL stands for what most versions hold ([`super::Dialect::NULL_DEFAULTS`]): the mod
/// revision and 1 where the version's change created the key, 0 where it has no lease.
pub fn with_defaults(mod_revision: i64, stored: [Option<i64>; 3]) -> [i64; 3] {
    let [create_revision, version, lease] = stored;
    [
        create_revision.unwrap_or(mod_revision),
        version.unwrap_or(1),
        lease.unwrap_or(0),
    ]
}

/// A version from its columns in `row`: `numbers` are the positions of its create revision,
/// version and lease ([`with_defaults`]).
fn version_in<DB: Driver>(
    row: &DB::Row,
    key: Bytes,
    mod_revision: i64,
    numbers: [usize; 3],
    value: Bytes,
) -> Result<KeyValue, sqlx::Error> {
    let mut stored = [None; 3];
    for (number, column) in stored.iter_mut().zip(numbers) {
        *number = DB::maybe_int(row, column)?;
    }
    let [create_revision, version, lease] = with_defaults(mod_revision, stored);
    Ok(KeyValue {
        key,
        create_revision,
        mod_revision,
        version,
        lease,
        value,
    })
}

/// `key, create_revision, mod_revision, version, lease, value`.
pub fn key_value<DB: Driver>(row: &DB::Row) -> Result<KeyValue, sqlx::Error> {
    let key = Bytes::from(DB::bytes(row, 0)?);
    let value = Bytes::from(DB::bytes(row, 5)?);
    version_in::<DB>(row, key, DB::int(row, 2)?, [1, 3, 4], value)
}

/// The rows of `keys_at_latest`: the snapshot's revision and compacted revision (on every
/// row), and the live versions of the keys asked for (a row with a NULL key when none is live).
pub fn keys_at_latest<DB: Driver>(rows: &[DB::Row]) -> Result<LatestKeys> {
    let first = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    let mut latest = LatestKeys {
        revision: DB::int(first, 0)?,
        compacted: DB::int(first, 1)?,
        live: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let Some(key) = DB::maybe_bytes(row, 2)? else {
            continue;
        };
        let value = Bytes::from(DB::bytes(row, 7)?);
        let kv = version_in::<DB>(row, Bytes::from(key), DB::int(row, 4)?, [3, 5, 6], value)?;
        latest.live.push(kv);
    }
    Ok(latest)
}

/// Keys at the head, read in one snapshot.
pub struct LatestKeys {
    pub revision: i64,
    pub compacted: i64,
    /// The live ones among the keys asked for (a key asked for twice may appear twice).
    pub live: Vec<KeyValue>,
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
        let value = Bytes::from(DB::bytes(row, 6)?);
        version_in::<DB>(row, key.clone(), revision, [3, 4, 5], value)?
    };
    let prev_kv = match DB::maybe_int(row, 8)? {
        Some(prev_revision) => {
            let value = Bytes::from(DB::maybe_bytes(row, 11)?.unwrap_or_default());
            Some(version_in::<DB>(
                row,
                key,
                prev_revision,
                [7, 9, 10],
                value,
            )?)
        }
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
