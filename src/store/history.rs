//! Reading the log in pages that never end in the middle of a revision, for watchers replaying
//! history and for followers of other processes' writes: a revision's events are delivered
//! together or not at all, however many rows it holds.

use crate::backend::{Backend, Changes, KeyRange};
use crate::error::Result;
use crate::metrics::timed;
use crate::proto::mvccpb::Event;

/// The revision of an event (0 for one without a key-value, which the log never yields).
pub(crate) fn revision_of(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// The changes of `range` in revisions `from..=to`, about `page` rows at most but always whole
/// revisions, and the revision to read from next (`to + 1` once everything up to `to` is read).
pub(crate) async fn read_page(
    backend: &dyn Backend,
    range: KeyRange<'_>,
    (from, to): (i64, i64),
    page: i64,
    with_prev: bool,
) -> Result<(Vec<Event>, i64)> {
    let changes = Changes {
        from,
        to,
        limit: page,
        with_prev,
    };
    let mut events = timed("history", backend.history(range, changes)).await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok((events, to.saturating_add(1)));
    };
    let (first, last) = (revision_of(first), revision_of(last));
    if (events.len() as i64) < page {
        return Ok((events, to.saturating_add(1)));
    }
    if first == last {
        // One revision fills the page: read that revision whole.
        let whole = Changes {
            from: last,
            to: last,
            limit: 0,
            with_prev,
        };
        events = timed("history", backend.history(range, whole)).await?;
        return Ok((events, last + 1));
    }
    // The last revision may go on past the page: leave it for the next one.
    events.retain(|e| revision_of(e) < last);
    Ok((events, last))
}
