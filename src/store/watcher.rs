//! The watches of one client stream: etcd's watch semantics on top of the hub and the log.
//!
//! Each watcher remembers the next revision it needs. [`WatchSession::pump`] moves every
//! watcher forward from the hub's window, or from the log when the window no longer reaches
//! back far enough, so events arrive in revision order with no gap and no duplicate, and one
//! revision is never split across responses (unless the watcher asked for fragments). Progress
//! notifications for the whole stream wait until every watcher has sent everything up to the
//! revision they report.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message as _;

use crate::backend::{KeyEnd, KeyRange};
use crate::error::Result;
use crate::proto::mvccpb::{Event, event::EventType};
use crate::proto::watch_create_request::FilterType;
use crate::proto::{WatchCreateRequest, WatchResponse};
use crate::store::Store;
use crate::store::history::{read_page, revision_of};
use crate::store::watch_hub::Catchup;

/// Revisions taken from the window per watcher and pump.
const WINDOW_REVISIONS_PER_PUMP: usize = 1000;
/// Log rows read per watcher and pump when replaying history.
const LOG_ROWS_PER_PUMP: i64 = 1000;
/// Responses are cut before they grow past this (etcd's request size limit).
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024 / 2;
/// etcd's watch id for responses about the whole stream (progress requests).
pub const STREAM_WATCH_ID: i64 = -1;

struct Watcher {
    key: Bytes,
    end: KeyEnd,
    /// The next revision this watcher needs.
    next: i64,
    /// The revision the watcher started at.
    start: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
}

impl Watcher {
    /// The event as this watcher gets it, or nothing if it does not want it.
    fn wants(&self, event: &Event) -> Option<Event> {
        let kv = event.kv.as_ref()?;
        if !self.end.contains(&self.key, &kv.key) {
            return None;
        }
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return None;
        }
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }
}

pub struct WatchSession {
    store: Store,
    watchers: BTreeMap<i64, Watcher>,
    /// The most watches this stream may hold.
    max_watches: usize,
    next_id: i64,
    progress_requested: bool,
}

impl WatchSession {
    pub fn new(store: Store, max_watches: usize) -> WatchSession {
        WatchSession {
            store,
            watchers: BTreeMap::new(),
            max_watches,
            next_id: 0,
            progress_requested: false,
        }
    }

    fn response(&self, watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(self.store.header(revision)),
            watch_id,
            ..Default::default()
        }
    }

    /// Creates a watcher; answers with `created` (and at once `canceled` for a start revision
    /// already compacted, or an id already in use).
    pub fn create(&mut self, req: WatchCreateRequest) -> Vec<WatchResponse> {
        let head = self.store.head();
        let id = if req.watch_id != 0 {
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let mut created = self.response(id, head);
        created.created = true;
        if req.watch_id != 0 && self.watchers.contains_key(&req.watch_id) {
            created.canceled = true;
            created.cancel_reason = "mvcc: duplicate watch ID provided on the WatchStream".into();
            return vec![created];
        }
        if self.watchers.len() >= self.max_watches {
            created.canceled = true;
            created.cancel_reason = format!(
                "etcdshim: this stream already holds {} watches, the most allowed",
                self.max_watches
            );
            return vec![created];
        }
        if req.watch_id == 0 {
            self.next_id += 1;
        }
        // etcd watches from "\0" when no key is given.
        let key = if req.key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            req.key.clone()
        };
        let start = if req.start_revision > 0 {
            req.start_revision
        } else {
            head + 1
        };
        let compacted = self.store.compacted();
        if start < compacted {
            let mut canceled = self.response(id, head);
            canceled.canceled = true;
            canceled.compact_revision = compacted;
            return vec![created, canceled];
        }
        crate::metrics::metrics().watchers.inc();
        self.watchers.insert(
            id,
            Watcher {
                key,
                end: KeyEnd::from_range_end(&req.range_end),
                next: start,
                start,
                prev_kv: req.prev_kv,
                no_put: req.filters.contains(&(FilterType::Noput as i32)),
                no_delete: req.filters.contains(&(FilterType::Nodelete as i32)),
                fragment: req.fragment,
                progress_notify: req.progress_notify,
            },
        );
        vec![created]
    }

    /// Cancels a watcher; unknown ids get no answer, as in etcd.
    pub fn cancel(&mut self, watch_id: i64) -> Option<WatchResponse> {
        self.watchers.remove(&watch_id)?;
        crate::metrics::metrics().watchers.dec();
        let mut canceled = self.response(watch_id, self.store.head());
        canceled.canceled = true;
        Some(canceled)
    }

    /// Asks for a progress notification once every watcher has caught up.
    pub fn request_progress(&mut self) {
        self.progress_requested = true;
    }

    /// Wakes when the hub has published a newer revision.
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.store.subscribe_head()
    }

    /// Moves every watcher forward by one step. Returns the responses to send, in order, and
    /// whether some watcher still has events to catch up on.
    pub async fn pump(&mut self) -> Result<(Vec<WatchResponse>, bool)> {
        let store = self.store.clone();
        let hub = store.hub();
        let head = hub.head();
        let compacted = store.compacted();
        let mut out = Vec::new();
        let mut behind = false;
        let mut canceled = Vec::new();
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(watcher) = self.watchers.get(&id) else {
                continue;
            };
            if watcher.next > head {
                continue;
            }
            let revisions: Vec<(i64, Vec<Event>)> =
                match hub.catch_up(watcher.next, WINDOW_REVISIONS_PER_PUMP) {
                    Catchup::Window(revisions) => {
                        let complete = revisions.len() < WINDOW_REVISIONS_PER_PUMP;
                        let newest = revisions.last().map_or(0, |r| r.revision);
                        let picked = revisions
                            .iter()
                            .map(|r| {
                                let events = r.events.iter().filter_map(|e| watcher.wants(e));
                                (r.revision, events.collect())
                            })
                            .collect();
                        let next = if complete {
                            head.max(newest) + 1
                        } else {
                            newest + 1
                        };
                        behind |= !complete;
                        self.set_next(id, next);
                        picked
                    }
                    Catchup::ReadLogUpTo(up_to) => {
                        if compacted > 0 && watcher.next < compacted {
                            let mut response = self.response(id, head);
                            response.canceled = true;
                            response.compact_revision = compacted;
                            out.push(response);
                            canceled.push(id);
                            continue;
                        }
                        let (picked, next) = self.replay(id, up_to).await?;
                        behind = true;
                        self.set_next(id, next);
                        picked
                    }
                };
            if let Some(watcher) = self.watchers.get(&id) {
                out.extend(self.event_responses(id, watcher.fragment, revisions));
            }
        }
        for id in canceled {
            if self.watchers.remove(&id).is_some() {
                crate::metrics::metrics().watchers.dec();
            }
        }
        if self.progress_requested && self.watchers.values().all(|w| w.next > head) {
            self.progress_requested = false;
            out.push(self.response(STREAM_WATCH_ID, head));
        }
        Ok((out, behind))
    }

    fn set_next(&mut self, id: i64, next: i64) {
        if let Some(watcher) = self.watchers.get_mut(&id) {
            watcher.next = next;
        }
    }

    /// Reads the next page of a watcher's history from the log, never ending mid-revision.
    /// Returns the events by revision and the next revision the watcher needs.
    async fn replay(&self, id: i64, up_to: i64) -> Result<(Vec<(i64, Vec<Event>)>, i64)> {
        let Some(watcher) = self.watchers.get(&id) else {
            return Ok((Vec::new(), up_to + 1));
        };
        let range = KeyRange::new(&watcher.key, &watcher.end);
        let (events, next) = read_page(
            &**self.store.backend(),
            range,
            (watcher.next, up_to),
            LOG_ROWS_PER_PUMP,
            watcher.prev_kv,
        )
        .await?;
        let mut by_revision: Vec<(i64, Vec<Event>)> = Vec::new();
        for event in events.into_iter().filter_map(|e| watcher.wants(&e)) {
            let revision = revision_of(&event);
            match by_revision.last_mut() {
                Some((r, list)) if *r == revision => list.push(event),
                _ => by_revision.push((revision, vec![event])),
            }
        }
        Ok((by_revision, next))
    }

    /// Packs a watcher's events into responses: whole revisions, cut before a response grows
    /// past the size limit; a revision larger than that alone is split only for watchers that
    /// asked for fragments.
    fn event_responses(
        &self,
        id: i64,
        fragment: bool,
        revisions: Vec<(i64, Vec<Event>)>,
    ) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut size = 0;
        let mut last_revision = 0;
        for (revision, revision_events) in revisions {
            if revision_events.is_empty() {
                continue;
            }
            let revision_size: usize = revision_events.iter().map(|e| e.encoded_len()).sum();
            if !events.is_empty() && size + revision_size > MAX_RESPONSE_BYTES {
                out.push(self.events_response(id, last_revision, std::mem::take(&mut events)));
                size = 0;
            }
            if fragment && revision_size > MAX_RESPONSE_BYTES {
                let mut chunk = Vec::new();
                let mut chunk_size = 0;
                for event in revision_events {
                    let event_size = event.encoded_len();
                    if !chunk.is_empty() && chunk_size + event_size > MAX_RESPONSE_BYTES {
                        let mut response =
                            self.events_response(id, revision, std::mem::take(&mut chunk));
                        response.fragment = true;
                        out.push(response);
                        chunk_size = 0;
                    }
                    chunk_size += event_size;
                    chunk.push(event);
                }
                out.push(self.events_response(id, revision, chunk));
                continue;
            }
            size += revision_size;
            last_revision = revision;
            events.extend(revision_events);
        }
        if !events.is_empty() {
            out.push(self.events_response(id, last_revision, events));
        }
        out
    }

    fn events_response(&self, id: i64, revision: i64, events: Vec<Event>) -> WatchResponse {
        crate::metrics::metrics()
            .events_sent
            .inc_by(events.len() as u64);
        let mut response = self.response(id, revision);
        response.events = events;
        response
    }

    /// Periodic progress for watchers that asked for it: only when they have sent everything
    /// up to the head, and never for a revision below their start.
    pub fn progress_notifications(&self) -> Vec<WatchResponse> {
        let head = self.store.hub().head();
        self.watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && w.next > head && head >= w.start - 1)
            .map(|(id, _)| self.response(*id, head))
            .collect()
    }
}

impl Drop for WatchSession {
    /// The stream ended: its watches are gone.
    fn drop(&mut self) {
        crate::metrics::metrics()
            .watchers
            .sub(self.watchers.len() as i64);
    }
}
