//! A linearizability checker: Wing and Gong's search with Lowe's memoization, the algorithm of
//! Porcupine and Knossos, over a model of etcd's key-value store.
//!
//! A history is a set of operations, each an interval from the moment its client sent it to the
//! moment the answer arrived. It is linearizable when every operation can be given one instant
//! inside its interval such that, replayed in that order against the model, each produces the
//! answer the client saw. The search walks a list of call and return entries in time order:
//! at a call it tries to linearize that operation next (the model must accept its answer), and
//! lifts it out of the list; at a return whose operation is not yet linearized it has run out
//! of candidates and backtracks. Lowe's memoization cuts the search: a configuration (the set of
//! operations linearized, the model state) that was explored once is never explored again.
//!
//! An operation whose answer never came (a timeout, a connection that died, an error that does
//! not say whether it was applied) returns at infinity and has two ways to be linearized: it
//! took effect at some instant after its call, with whatever answer, or it never took effect.
//!
//! The model is etcd's, one key at a time (linearizability is local, so each key's operations
//! are checked on their own, as Porcupine partitions them): a key's value and the revision of
//! its last change. Every change must take a revision above the last, every answer's header
//! must be at or above the last change it could have seen, and a read of a present key must
//! report that change's revision. So a stale read (the value or revision from before a write
//! that finished before the read began) or a lost write (a later read without its value) has
//! no place to go.

use std::collections::{BTreeMap, HashSet};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// A Txn: if the key's value is `expected` (`None`: the key does not exist), put `value`;
    /// otherwise read the key.
    CompareAndSwap {
        key: String,
        expected: Option<String>,
        value: String,
    },
}

/// What the server answered; every answer carries its header's revision, and a read of a
/// present key the key's `mod_revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Get {
        value: Option<String>,
        mod_revision: i64,
        revision: i64,
    },
    Put {
        revision: i64,
    },
    Delete {
        deleted: i64,
        revision: i64,
    },
    CompareAndSwap {
        succeeded: bool,
        revision: i64,
    },
}

/// One operation of a history; times are nanoseconds from a common start.
#[derive(Clone, Debug)]
pub struct Operation {
    pub call: u64,
    /// `None`: the answer never came, or did not say what happened.
    pub answer: Option<(u64, Output)>,
    pub input: Input,
}

impl Input {
    fn key(&self) -> &str {
        match self {
            Input::Get { key }
            | Input::Put { key, .. }
            | Input::Delete { key }
            | Input::CompareAndSwap { key, .. } => key,
        }
    }
}

/// The revision of a key's last change: known, or (after a write whose answer was lost) only
/// bounded below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Changed {
    At(i64),
    AtLeast(i64),
}

impl Changed {
    fn bound(self) -> i64 {
        match self {
            Changed::At(revision) | Changed::AtLeast(revision) => revision,
        }
    }

    /// A later change: a revision above this one.
    fn precedes(self, revision: i64) -> bool {
        revision > self.bound()
    }

    /// A header seen after this change: at or above it.
    fn seen_by(self, revision: i64) -> bool {
        revision >= self.bound()
    }

    /// A present key's `mod_revision`, which pins an unknown revision.
    fn is(self, mod_revision: i64) -> bool {
        match self {
            Changed::At(revision) => mod_revision == revision,
            Changed::AtLeast(revision) => mod_revision >= revision,
        }
    }
}

/// The model's state of one key: its value, and the revision of its last change. Linearizability
/// is local (Herlihy and Wing): a history is linearizable if and only if each key's part is, so
/// each key is checked on its own, as Porcupine partitions; the revisions still tie each key's
/// answers to the store's one order (every change a higher revision than the one before, every
/// header at or above the last change it could have seen).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    value: Option<String>,
    changed: Changed,
}

impl State {
    /// A key that does not exist.
    pub fn absent() -> State {
        State {
            value: None,
            changed: Changed::At(0),
        }
    }

    fn with(&self, value: Option<String>, changed: Changed) -> State {
        State { value, changed }
    }

    /// The state after `input` answered with `output`, if the model allows that answer now.
    fn answered(&self, input: &Input, output: &Output) -> Option<State> {
        let changed = self.changed;
        match (input, output) {
            (
                Input::Get { .. },
                Output::Get {
                    value,
                    mod_revision,
                    revision,
                },
            ) => {
                let ok = *value == self.value
                    && changed.seen_by(*revision)
                    && (value.is_none() || changed.is(*mod_revision));
                ok.then(|| match value {
                    Some(_) => self.with(self.value.clone(), Changed::At(*mod_revision)),
                    None => self.clone(),
                })
            }
            (Input::Put { value, .. }, Output::Put { revision }) => changed
                .precedes(*revision)
                .then(|| self.with(Some(value.clone()), Changed::At(*revision))),
            (Input::Delete { .. }, Output::Delete { deleted, revision }) => match deleted {
                1 if self.value.is_some() && changed.precedes(*revision) => {
                    Some(self.with(None, Changed::At(*revision)))
                }
                0 if self.value.is_none() && changed.seen_by(*revision) => Some(self.clone()),
                _ => None,
            },
            (
                Input::CompareAndSwap {
                    expected, value, ..
                },
                Output::CompareAndSwap {
                    succeeded,
                    revision,
                },
            ) => {
                let matches = self.value == *expected;
                if *succeeded && matches && changed.precedes(*revision) {
                    Some(self.with(Some(value.clone()), Changed::At(*revision)))
                } else if !*succeeded && !matches && changed.seen_by(*revision) {
                    Some(self.clone())
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The state after `input` took effect with an answer nobody saw.
    fn unanswered(&self, input: &Input) -> State {
        let later = Changed::AtLeast(self.changed.bound() + 1);
        match input {
            Input::Get { .. } => self.clone(),
            Input::Put { value, .. } => self.with(Some(value.clone()), later),
            Input::Delete { .. } if self.value.is_some() => self.with(None, later),
            Input::Delete { .. } => self.clone(),
            Input::CompareAndSwap {
                expected, value, ..
            } if self.value == *expected => self.with(Some(value.clone()), later),
            Input::CompareAndSwap { .. } => self.clone(),
        }
    }

    /// The states `operation` may leave when linearized now: none if the model does not allow
    /// its answer; with no answer, the state without it and the state with it.
    fn successors(&self, operation: &Operation) -> Vec<State> {
        match &operation.answer {
            Some((_, output)) => self
                .answered(&operation.input, output)
                .into_iter()
                .collect(),
            None => {
                let applied = self.unanswered(&operation.input);
                // Not applied first: most requests left unanswered by a fault never ran.
                if applied == *self {
                    vec![applied]
                } else {
                    vec![self.clone(), applied]
                }
            }
        }
    }
}

/// The verdict of [`check`].
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; `longest` operations were the most the search could linearize.
    Violation {
        longest: usize,
    },
    /// The search explored [`BUDGET`] configurations without an answer.
    GaveUp,
}

/// The most configurations one check explores (each a few hundred bytes in the memo).
pub const BUDGET: usize = 2_000_000;

/// One node of the doubly linked list of entries the search walks.
#[derive(Clone, Copy)]
struct Entry {
    operation: usize,
    is_call: bool,
    /// Index of the other entry of the same operation.
    partner: usize,
    prev: usize,
    next: usize,
}

/// The entries in time order between a head sentinel (index 0) and a tail sentinel (last);
/// answers that never came sort after every answer that did.
struct Entries {
    nodes: Vec<Entry>,
}

const NONE: usize = usize::MAX;

impl Entries {
    fn new(history: &[Operation]) -> Entries {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
        for (index, operation) in history.iter().enumerate() {
            events.push((operation.call, true, index));
            // After its own call, even if the clock read the same nanosecond twice.
            let returned = operation
                .answer
                .as_ref()
                .map_or(u64::MAX, |(at, _)| (*at).max(operation.call + 1));
            events.push((returned, false, index));
        }
        // At equal times a return goes first: the two operations did not overlap.
        events.sort_by_key(|&(at, is_call, index)| (at, is_call, index));
        let count = events.len();
        let mut nodes = Vec::with_capacity(count + 2);
        let sentinel = |prev, next| Entry {
            operation: NONE,
            is_call: false,
            partner: NONE,
            prev,
            next,
        };
        nodes.push(sentinel(NONE, 1));
        let mut call_of = vec![NONE; history.len()];
        for (position, &(_, is_call, operation)) in events.iter().enumerate() {
            let index = position + 1;
            let mut entry = Entry {
                operation,
                is_call,
                partner: NONE,
                prev: index - 1,
                next: index + 1,
            };
            if is_call {
                call_of[operation] = index;
            } else {
                entry.partner = call_of[operation];
                nodes[call_of[operation]].partner = index;
            }
            nodes.push(entry);
        }
        nodes.push(sentinel(count, NONE));
        Entries { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }

    fn is_tail(&self, index: usize) -> bool {
        self.nodes[index].next == NONE
    }

    fn unlink(&mut self, index: usize) {
        let Entry { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = next;
        self.nodes[next].prev = prev;
    }

    fn relink(&mut self, index: usize) {
        let Entry { prev, next, .. } = self.nodes[index];
        self.nodes[prev].next = index;
        self.nodes[next].prev = index;
    }

    /// Takes a call entry and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].partner);
    }

    /// Puts back what [`Entries::lift`] took, in reverse order.
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].partner);
        self.relink(call);
    }
}

/// A choice the search made and may take back.
struct Choice {
    call: usize,
    before: State,
    /// Other states the operation could have left, not yet tried.
    untried: Vec<State>,
}

/// Whether `history`, on keys that did not exist when it began, is linearizable: each key's
/// operations checked on their own.
pub fn check(history: &[Operation]) -> Verdict {
    let mut keys: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for operation in history {
        keys.entry(operation.input.key())
            .or_default()
            .push(operation.clone());
    }
    for operations in keys.values() {
        match check_one_key(State::absent(), operations) {
            Verdict::Linearizable => {}
            other => return other,
        }
    }
    Verdict::Linearizable
}

/// Wing and Gong's search with Lowe's memoization over the operations of one key.
fn check_one_key(initial: State, history: &[Operation]) -> Verdict {
    let mut entries = Entries::new(history);
    let mut linearized = vec![0u64; history.len().div_ceil(64)];
    let mut explored: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut choices: Vec<Choice> = Vec::new();
    let mut state = initial;
    let mut longest = 0;
    let mut cursor = entries.first();
    // Tries the candidate states of the operation at `call` in turn; true when one led to a
    // configuration not explored before, which is then the current one.
    let mut advance = |entries: &mut Entries,
                       linearized: &mut Vec<u64>,
                       state: &mut State,
                       choices: &mut Vec<Choice>,
                       call: usize,
                       before: State,
                       mut candidates: Vec<State>|
     -> bool {
        let operation = entries.nodes[call].operation;
        linearized[operation / 64] |= 1 << (operation % 64);
        while let Some(candidate) = candidates.pop() {
            if explored.len() < BUDGET && explored.insert((linearized.clone(), candidate.clone())) {
                *state = candidate;
                entries.lift(call);
                choices.push(Choice {
                    call,
                    before,
                    untried: candidates,
                });
                return true;
            }
        }
        linearized[operation / 64] &= !(1 << (operation % 64));
        false
    };
    while !entries.is_tail(entries.first()) {
        let entry = entries.nodes[cursor];
        if entry.is_call {
            let mut candidates = state.successors(&history[entry.operation]);
            // Tried in order (`advance` pops from the end).
            candidates.reverse();
            let before = state.clone();
            if advance(
                &mut entries,
                &mut linearized,
                &mut state,
                &mut choices,
                cursor,
                before,
                candidates,
            ) {
                longest = longest.max(choices.len());
                cursor = entries.first();
            } else {
                cursor = entry.next;
            }
            continue;
        }
        // A return whose operation found no place: take back the latest choice, and try its
        // operation's other states or the entries after it.
        let Some(choice) = choices.pop() else {
            if explored.len() >= BUDGET {
                return Verdict::GaveUp;
            }
            return Verdict::Violation { longest };
        };
        entries.unlift(choice.call);
        let operation = entries.nodes[choice.call].operation;
        linearized[operation / 64] &= !(1 << (operation % 64));
        state = choice.before.clone();
        cursor = if advance(
            &mut entries,
            &mut linearized,
            &mut state,
            &mut choices,
            choice.call,
            choice.before,
            choice.untried,
        ) {
            entries.first()
        } else {
            entries.nodes[choice.call].next
        };
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, answer: Option<(u64, Output)>, input: Input) -> Operation {
        Operation {
            call,
            answer,
            input,
        }
    }

    fn put(key: &str, value: &str) -> Input {
        Input::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn get(key: &str) -> Input {
        Input::Get { key: key.into() }
    }

    /// A read at `revision`, of the value its key got at that revision.
    fn read(value: Option<&str>, revision: i64) -> Output {
        Output::Get {
            value: value.map(String::from),
            mod_revision: if value.is_some() { revision } else { 0 },
            revision,
        }
    }

    #[test]
    fn overlapping_writes_may_be_seen_in_either_order() {
        let history = [
            op(0, Some((10, Output::Put { revision: 3 })), put("k", "a")),
            op(1, Some((9, Output::Put { revision: 2 })), put("k", "b")),
            op(11, Some((12, read(Some("a"), 3))), get("k")),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_state_older_than_a_finished_write_is_a_violation() {
        let history = [
            op(0, Some((1, Output::Put { revision: 2 })), put("k", "a")),
            op(2, Some((3, Output::Put { revision: 3 })), put("k", "b")),
            op(4, Some((5, read(Some("a"), 2))), get("k")),
        ];
        assert!(matches!(check(&history), Verdict::Violation { .. }));
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let lost = op(0, None, put("k", "a"));
        let applied = [lost.clone(), op(5, Some((6, read(Some("a"), 2))), get("k"))];
        let not_applied = [lost.clone(), op(5, Some((6, read(None, 1))), get("k"))];
        assert_eq!(check(&applied), Verdict::Linearizable);
        assert_eq!(check(&not_applied), Verdict::Linearizable);
        // But not both: once seen, it cannot vanish.
        let both = [
            lost,
            op(5, Some((6, read(Some("a"), 2))), get("k")),
            op(7, Some((8, read(None, 2))), get("k")),
        ];
        assert!(matches!(check(&both), Verdict::Violation { .. }));
    }

    #[test]
    fn compare_and_swap_follows_the_value() {
        let cas = |expected: Option<&str>, value: &str| Input::CompareAndSwap {
            key: "k".into(),
            expected: expected.map(String::from),
            value: value.into(),
        };
        let history = [
            op(
                0,
                Some((
                    1,
                    Output::CompareAndSwap {
                        succeeded: true,
                        revision: 2,
                    },
                )),
                cas(None, "a"),
            ),
            op(
                2,
                Some((
                    3,
                    Output::CompareAndSwap {
                        succeeded: false,
                        revision: 2,
                    },
                )),
                cas(None, "b"),
            ),
            op(
                4,
                Some((
                    5,
                    Output::Delete {
                        deleted: 1,
                        revision: 3,
                    },
                )),
                Input::Delete { key: "k".into() },
            ),
        ];
        assert_eq!(check(&history), Verdict::Linearizable);
        let mut wrong = history.clone();
        wrong[1].answer = Some((
            3,
            Output::CompareAndSwap {
                succeeded: true,
                revision: 3,
            },
        ));
        assert!(matches!(check(&wrong), Verdict::Violation { .. }));
    }
}
