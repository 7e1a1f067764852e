//! etcd's Range semantics on top of a backend read: limit and `more`, exact counts, filters,
//! sorting and keys-only, applied exactly as etcd's apply layer applies them.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::backend::{KeyEnd, KeyRange, KvRead};
use crate::error::Result;
use crate::proto::range_request::{SortOrder, SortTarget};
use crate::proto::{KeyValue, RangeRequest, RangeResponse};
use crate::store::read_cache::Cached;

/// Where the count of a range comes from, when a page does not hold all of it.
pub(crate) enum RangeCount<'a> {
    /// The number of keys in the range at the revision, told by the page before.
    Known(i64),
    /// Counted by the same reader after the page.
    After,
    /// Being counted on a second reader while the page is read: a first page then costs the
    /// longer of the two reads, not their sum.
    Ahead(Pin<Box<dyn Future<Output = Result<i64>> + Send + 'a>>),
}

/// Answers `req` as of `revision` (already checked against the compacted and head revisions),
/// taking its count from `count`. The caller sets the header.
pub(crate) async fn read_range(
    reader: &mut dyn KvRead,
    req: &RangeRequest,
    revision: i64,
    count: RangeCount<'_>,
) -> Result<RangeResponse> {
    let end = KeyEnd::from_range_end(&req.range_end);
    let range = KeyRange::new(&req.key, &end);
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
        let count = match count {
            RangeCount::Known(count) => count,
            RangeCount::After => reader.count(range, revision).await?,
            RangeCount::Ahead(counting) => counting.await?,
        };
        (Vec::new(), count)
    } else {
        let (kvs, known_count) = match count {
            RangeCount::Known(count) => (
                reader.range(range, revision, fetch_limit).await?,
                Some(count),
            ),
            RangeCount::After => (reader.range(range, revision, fetch_limit).await?, None),
            RangeCount::Ahead(counting) => {
                let (kvs, counted) =
                    tokio::join!(reader.range(range, revision, fetch_limit), counting);
                (kvs?, Some(counted?))
            }
        };
        let complete = fetch_limit == 0 || (kvs.len() as i64) < fetch_limit;
        let count = match known_count {
            _ if complete => kvs.len() as i64,
            Some(count) => count,
            None => reader.count(range, revision).await?,
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

/// Whether `req` reads one key with nothing that needs more than its latest version: the
/// requests the read cache may answer.
pub(crate) fn single_key_unfiltered(req: &RangeRequest) -> bool {
    req.range_end.is_empty()
        && req.min_mod_revision == 0
        && req.max_mod_revision == 0
        && req.min_create_revision == 0
        && req.max_create_revision == 0
}

/// The answer to a single-key `req` (see [`single_key_unfiltered`]) from the key's cached
/// state, as [`read_range`] would give it. The caller sets the header.
pub(crate) fn answer_from(req: &RangeRequest, cached: Cached) -> RangeResponse {
    let mut kvs: Vec<_> = cached.into_live().into_iter().collect();
    let count = kvs.len() as i64;
    if req.count_only {
        kvs.clear();
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Default::default();
        }
    }
    RangeResponse {
        header: None,
        kvs,
        more: false,
        count,
    }
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

/// Counts of paged lists at pinned revisions, so that each page after the first costs the page
/// and not a count of everything after it (design.md). A snapshot at a revision never changes,
/// so the page after one that returned `n` of `count` keys of `[start, end)` (in key order,
/// unfiltered) holds `count - n` keys of `[next start, end)`.
///
/// It also remembers which ranges a first page did not hold whole (`more`), so that the first
/// page of the next list of one counts on a second reader while the page is read.
#[derive(Default)]
pub(crate) struct PageCounts {
    counts: std::sync::Mutex<std::collections::HashMap<PageKey, i64>>,
    spanning: std::sync::Mutex<std::collections::HashSet<(Bytes, Bytes)>>,
}

/// (start key, range end, revision)
type PageKey = (Bytes, Bytes, i64);

/// Pages of lists in flight remembered at most; the cache starts over beyond it.
const MAX_PAGE_COUNTS: usize = 4096;

impl PageCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<PageKey, i64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The count for this request, if an earlier page told it.
    pub fn take(&self, req: &RangeRequest, revision: i64) -> Option<i64> {
        if !Self::pages_in_key_order(req) {
            return None;
        }
        self.lock()
            .remove(&(req.key.clone(), req.range_end.clone(), revision))
    }

    /// Remembers the count of the page after `resp`.
    pub fn remember(&self, req: &RangeRequest, revision: i64, resp: &RangeResponse) {
        let Some(last) = resp.kvs.last() else {
            return;
        };
        if !resp.more || !Self::pages_in_key_order(req) {
            return;
        }
        let mut next = last.key.to_vec();
        next.push(0);
        let mut counts = self.lock();
        if counts.len() >= MAX_PAGE_COUNTS {
            counts.clear();
        }
        // Copied: the request's bytes are a slice of the gRPC receive buffer, which the cache
        // would otherwise keep alive (see `Apply::write_put`).
        counts.insert(
            (
                next.into(),
                Bytes::copy_from_slice(&req.range_end),
                revision,
            ),
            resp.count - resp.kvs.len() as i64,
        );
    }

    /// Whether `req`'s range (from its start) took more than one page before.
    pub fn spans_pages(&self, req: &RangeRequest) -> bool {
        Self::pages_in_key_order(req)
            && self
                .spanning()
                .contains(&(req.key.clone(), req.range_end.clone()))
    }

    /// Remembers that the range of `req`, a first page answered by `resp`, spans pages.
    pub fn remember_spanning(&self, req: &RangeRequest, resp: &RangeResponse) {
        if !resp.more || !Self::pages_in_key_order(req) {
            return;
        }
        let mut spanning = self.spanning();
        if spanning.len() >= MAX_PAGE_COUNTS {
            spanning.clear();
        }
        spanning.insert((
            Bytes::copy_from_slice(&req.key),
            Bytes::copy_from_slice(&req.range_end),
        ));
    }

    fn spanning(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(Bytes, Bytes)>> {
        self.spanning.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pages that return the first keys of their range, in key order.
    fn pages_in_key_order(req: &RangeRequest) -> bool {
        req.limit > 0
            && !req.count_only
            && req.sort_target == SortTarget::Key as i32
            && (req.sort_order == SortOrder::None as i32
                || req.sort_order == SortOrder::Ascend as i32)
            && req.min_mod_revision == 0
            && req.max_mod_revision == 0
            && req.min_create_revision == 0
            && req.max_create_revision == 0
    }
}
