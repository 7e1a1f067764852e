//! Importing a Kine database (see `backend/sql/kine.rs` for how Kine lays out its rows).
//!
//! Every key whose latest row is not a deletion is copied: its create revision (the creating
//! row's id), its mod revision (the latest row's id), its version (the rows of its current life
//! that Kine's compaction left, so a key updated before the last compaction counts fewer
//! versions than etcd would), and its lease. Kine's leases are their TTL in seconds, and Kine
//! keeps no time of grant, so each becomes a lease of that id and TTL, granted now. Kine's
//! bookkeeping is not copied: the `compact_rev_key` row, the `gap-N` rows that fill lost
//! revisions, and the `/registry/health` key Kine writes at start.

use crate::backend::{KineRow, LeaseRecord, open_kine};
use crate::error::Result;
use crate::importer::{Imported, KEYS_PER_BATCH, Target};
use crate::proto::KeyValue;
use crate::store::{DatastoreOptions, now_ms};

/// The value Kine writes to `/registry/health` when it starts.
const KINE_HEALTH: &[u8] = br#"{"health":"true"}"#;

/// Whether a Kine row is one of Kine's own, not a client's key.
fn is_bookkeeping(row: &KineRow) -> bool {
    row.name == "compact_rev_key"
        || row.name.starts_with("gap-")
        || (row.name == "/registry/health" && row.value == KINE_HEALTH)
}

/// The key a live Kine row holds.
fn key_value(row: KineRow) -> KeyValue {
    KeyValue {
        key: row.name.into_bytes().into(),
        create_revision: if row.created {
            row.id
        } else {
            row.create_revision
        },
        mod_revision: row.id,
        version: row.rows_alive.max(1),
        lease: row.lease,
        value: row.value.into(),
    }
}

pub async fn copy(
    from: &str,
    table: &str,
    options: &DatastoreOptions,
    target: &Target,
) -> Result<Imported> {
    let mut source = open_kine(from, options, table).await?;
    let (head, compacted) = source.revisions().await?;
    let total = source.live_keys().await?;
    tracing::info!(head, compacted, keys = total, "importing a Kine database");
    let bar = crate::progress::bar("import", Some(total.max(0) as u64));
    let mut imported = Imported {
        head,
        ..Imported::default()
    };
    let mut leases = std::collections::BTreeSet::new();
    let mut after = String::new();
    loop {
        let rows = source.page(&after, KEYS_PER_BATCH as i64).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.name.clone();
        let kvs: Vec<KeyValue> = rows
            .into_iter()
            .filter(|row| !row.deleted && !is_bookkeeping(row))
            .map(key_value)
            .collect();
        let fresh: Vec<LeaseRecord> = kvs
            .iter()
            .filter(|kv| kv.lease > 0 && leases.insert(kv.lease))
            .map(|kv| LeaseRecord {
                id: kv.lease,
                ttl: kv.lease,
                expires_ms: now_ms().saturating_add(kv.lease.saturating_mul(1000)),
            })
            .collect();
        target.write(&kvs, &fresh).await?;
        imported.keys += kvs.len() as u64;
        imported.leases += fresh.len() as u64;
        bar.inc(kvs.len() as u64);
    }
    bar.finish_and_clear();
    Ok(imported)
}
