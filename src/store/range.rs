//! etcd's Range semantics on top of a backend read: limit and `more`, exact counts, filters,
//! sorting and keys-only, applied exactly as etcd's apply layer applies them.

use crate::backend::{KeyEnd, KvRead};
use crate::error::Result;
use crate::proto::range_request::{SortOrder, SortTarget};
use crate::proto::{KeyValue, RangeRequest, RangeResponse};

/// Answers `req` as of `revision` (already checked against the compacted and head revisions).
/// The caller sets the header.
pub(crate) async fn read_range(
    reader: &mut dyn KvRead,
    req: &RangeRequest,
    revision: i64,
) -> Result<RangeResponse> {
    let end = KeyEnd::from_range_end(&req.range_end);
    let requested_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    // etcd sorts ascending when a non-key target comes without an order.
    let order = match (requested_order, target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Backends return keys in ascending order; other orders are sorted here.
    let sorts =
        order != SortOrder::None && !(order == SortOrder::Ascend && target == SortTarget::Key);
    // Like etcd, fetch the whole range only for an explicit order or a filter; a target
    // without an order sorts just the first page (etcd's behaviour, kept for compatibility).
    let fetch_limit = if filtered || (requested_order != SortOrder::None && sorts) || req.limit <= 0
    {
        0
    } else {
        // One extra row tells whether there is `more`.
        req.limit + 1
    };

    let (mut kvs, count) = if req.count_only {
        (Vec::new(), reader.count(&req.key, &end, revision).await?)
    } else {
        let kvs = reader.range(&req.key, &end, revision, fetch_limit).await?;
        let complete = fetch_limit == 0 || (kvs.len() as i64) < fetch_limit;
        let count = if complete {
            kvs.len() as i64
        } else {
            reader.count(&req.key, &end, revision).await?
        };
        (kvs, count)
    };

    if filtered {
        kvs.retain(|kv| passes_filters(req, kv));
    }
    if sorts {
        sort(&mut kvs, target, order == SortOrder::Descend);
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse {
        header: None,
        kvs,
        more,
        count,
    })
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
        || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
        || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
        || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
}

/// A stable sort, as etcd's sort is for the small result sets whose ties it could reorder.
fn sort(kvs: &mut [KeyValue], target: SortTarget, descending: bool) {
    kvs.sort_by(|a, b| {
        let ordering = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
}
