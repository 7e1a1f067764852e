//! Importing from an etcd v3 endpoint (etcd itself, or another shim): every key alive at the
//! endpoint's current revision, read in pages pinned to that revision, so the copy is one
//! snapshot however long it takes, with its create and mod revisions, version and lease. Each
//! lease keeps its id and the TTL it has left (a lease already gone becomes one that expires at
//! once, so its keys go as they would have in etcd).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::backend::LeaseRecord;
use crate::bench::client;
use crate::error::{Error, Result};
use crate::importer::{Imported, KEYS_PER_BATCH, Target};
use crate::proto::{LeaseTimeToLiveRequest, RangeRequest};
use crate::store::now_ms;

pub async fn copy(from: &str, target: &Target) -> Result<Imported> {
    let failed = |what: &str, status: client::Status| {
        Error::Import(format!("{what} {from} failed: {}", status.message()))
    };
    let channel = client::connect_to(from).await.map_err(Error::Import)?;
    let mut kv = client::kv(channel.clone());
    let mut leases_client = client::lease(channel);
    let everything = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        count_only: true,
        ..Default::default()
    };
    let counted = kv
        .range(everything.clone())
        .await
        .map_err(|s| failed("reading", s))?
        .into_inner();
    let head = counted.header.map_or(0, |h| h.revision);
    tracing::info!(
        head,
        keys = counted.count,
        "importing from an etcd endpoint"
    );
    let bar = crate::progress::bar("import", Some(counted.count.max(0) as u64));
    let mut imported = Imported {
        head,
        ..Imported::default()
    };
    let mut leases: BTreeMap<i64, ()> = BTreeMap::new();
    let mut start = Bytes::from_static(b"\0");
    loop {
        let page = kv
            .range(RangeRequest {
                key: start.clone(),
                limit: KEYS_PER_BATCH as i64,
                revision: head,
                count_only: false,
                ..everything.clone()
            })
            .await
            .map_err(|s| failed("reading", s))?
            .into_inner();
        let mut fresh = Vec::new();
        for lease in page.kvs.iter().map(|kv| kv.lease).filter(|l| *l != 0) {
            if leases.insert(lease, ()).is_some() {
                continue;
            }
            let left = leases_client
                .lease_time_to_live(LeaseTimeToLiveRequest {
                    id: lease,
                    keys: false,
                })
                .await
                .map_err(|s| failed("reading a lease of", s))?
                .into_inner();
            fresh.push(LeaseRecord {
                id: lease,
                ttl: left.granted_ttl.max(1),
                expires_ms: now_ms().saturating_add(left.ttl.max(0).saturating_mul(1000)),
            });
        }
        target.write(&page.kvs, &fresh).await?;
        imported.keys += page.kvs.len() as u64;
        imported.leases += fresh.len() as u64;
        bar.inc(page.kvs.len() as u64);
        match page.kvs.last() {
            Some(last) if page.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                start = next.into();
            }
            _ => break,
        }
    }
    bar.finish_and_clear();
    Ok(imported)
}
