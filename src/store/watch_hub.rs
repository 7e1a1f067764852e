//! The watch hub: committed events, in memory, for every watcher of this process.
//!
//! The sequencer publishes each committed batch here; the hub keeps a bounded window of recent
//! revisions and announces the newest revision on a `watch` channel. Watchers pull: each reads
//! the revisions it still needs from the window, or from the log when it has fallen behind the
//! window. So the sequencer never waits for a watcher, a slow watcher never loses an event, and
//! the window's bound is the only memory the hub holds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::proto::mvccpb::Event;

/// The events of one revision, in the order the revision made them.
#[derive(Debug)]
pub struct Revision {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Events kept in memory by default; older revisions are read from the log.
pub const DEFAULT_WINDOW_EVENTS: usize = 100_000;
/// Bytes of keys and values kept in memory by default: with 1 KiB objects 100,000 events (and
/// their previous versions) would hold over 200 MiB.
pub const DEFAULT_WINDOW_BYTES: usize = 32 * 1024 * 1024;

pub struct WatchHub {
    window: Mutex<Window>,
    head: watch::Sender<i64>,
    /// Revisions are dropped from memory once the window holds more events than this...
    max_events: usize,
    /// ... or more bytes of keys and values than this.
    max_bytes: usize,
}

struct Window {
    revisions: VecDeque<Arc<Revision>>,
    events: usize,
    bytes: usize,
    /// The newest revision published (the `head` channel follows it).
    head: i64,
    /// Every revision from this one up to the head is in `revisions` (or made no event).
    complete_from: i64,
}

/// What the window holds for a watcher that needs revisions from some point on.
pub enum Catchup {
    /// These revisions, oldest first (possibly none yet).
    Window(Vec<Arc<Revision>>),
    /// The window no longer reaches back that far: read the log up to and including this
    /// revision first.
    ReadLogUpTo(i64),
}

impl WatchHub {
    pub fn new(head: i64, max_events: usize, max_bytes: usize) -> WatchHub {
        WatchHub {
            max_events,
            max_bytes,
            window: Mutex::new(Window {
                revisions: VecDeque::new(),
                events: 0,
                bytes: 0,
                head,
                complete_from: head + 1,
            }),
            head: watch::channel(head).0,
        }
    }

    /// The newest revision whose events are all published.
    pub fn head(&self) -> i64 {
        self.lock().head
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A std Mutex: held for a few pointer moves, never across an await.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// Adds the committed events of revisions `from..=head` (in revision order) and moves the
    /// head to `head`. Returns false, changing nothing, unless `from` is the revision right
    /// after the head: revisions from several processes reach the hub in order, or not at all
    /// (the follower then delivers them from the log).
    pub fn publish(&self, from: i64, events: Vec<Event>, head: i64) -> bool {
        {
            let mut window = self.lock();
            if from != window.head + 1 || head < window.head {
                return false;
            }
            for (revision, events) in group_by_revision(events) {
                window.events += events.len();
                window.bytes += events.iter().map(held_bytes).sum::<usize>();
                window
                    .revisions
                    .push_back(Arc::new(Revision { revision, events }));
            }
            window.head = head;
            while window.events > self.max_events || window.bytes > self.max_bytes {
                let Some(oldest) = window.revisions.pop_front() else {
                    break;
                };
                window.events -= oldest.events.len();
                window.bytes -= oldest.events.iter().map(held_bytes).sum::<usize>();
                window.complete_from = oldest.revision + 1;
            }
        }
        crate::store::raise(&self.head, head);
        true
    }

    /// Forgets every revision up to `revision`: the log no longer holds them all (a follower
    /// that fell behind a compaction), so watchers that need them are canceled as compacted.
    pub fn skip_to(&self, revision: i64) {
        let mut window = self.lock();
        if revision > window.head {
            window.revisions.clear();
            window.events = 0;
            window.bytes = 0;
            window.head = revision;
            window.complete_from = revision + 1;
        }
    }

    /// The revisions from `from` on that the window holds, at most `max_revisions` of them.
    pub fn catch_up(&self, from: i64, max_revisions: usize) -> Catchup {
        let window = self.lock();
        if from < window.complete_from {
            return Catchup::ReadLogUpTo(window.complete_from - 1);
        }
        let start = window.revisions.partition_point(|r| r.revision < from);
        Catchup::Window(
            window
                .revisions
                .range(start..)
                .take(max_revisions)
                .cloned()
                .collect(),
        )
    }
}

/// The bytes of keys and values an event keeps in memory.
fn held_bytes(event: &Event) -> usize {
    [&event.kv, &event.prev_kv]
        .into_iter()
        .flatten()
        .map(|kv| kv.key.len() + kv.value.len())
        .sum()
}

fn group_by_revision(events: Vec<Event>) -> Vec<(i64, Vec<Event>)> {
    let mut grouped: Vec<(i64, Vec<Event>)> = Vec::new();
    for event in events {
        let revision = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        match grouped.last_mut() {
            Some((last, events)) if *last == revision => events.push(event),
            _ => grouped.push((revision, vec![event])),
        }
    }
    grouped
}
