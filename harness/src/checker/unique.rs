//! A polynomial check for keys whose observed values each have one producer.
//!
//! When every value a read (or a cas, or an append) observed can have been
//! made by exactly one op — Jepsen's practice of writing unique values —
//! linearizability needs no search (Gibbons & Korach 1997: a register with a
//! known reads-from mapping is decidable in polynomial time). This module
//! extends their construction to cas and to appends of unique strings:
//!
//! 1. **Reads-from.** For each observed value find its producer: the op that
//!    wrote it (`write`/`put` v, `cas [_ v]`, `delete` for `nil`), the initial
//!    state, or the `append` whose string is a suffix of it (then the rest of
//!    the string is observed too: a read of `"x1;x2;x3;"` reveals the order of
//!    three appends, Elle's insight). No producer: not linearizable (a value
//!    nobody wrote). Several possible producers (`nil` after several deletes,
//!    a value written twice): not applicable, the key goes to the WGL search.
//! 2. **Chains.** A cas or an append needs its predecessor value, which
//!    exists once: it must be the very next change after that value's
//!    producer. Following these links from each blind write (and from the
//!    initial state) gives *blocks*, whose order of changes is fixed. Two ops
//!    needing the same predecessor: not linearizable.
//! 3. **Zones.** A block started at point `x` (its head's linearization point)
//!    places each change as early as the reads and calls allow; it is feasible
//!    iff `x < S` (the earliest deadline among its changes and the reads of
//!    its values) and it holds the state until `X` (the latest call among its
//!    changes and reads). So a block with `S <= X` certainly spans
//!    `[S - 1, X]` (a *forward zone*), and one with `X < S` can shrink to a
//!    point anywhere in `[X, S - 1]` (a *backward zone*). The history is
//!    linearizable iff no two forward zones overlap and no backward zone lies
//!    inside a forward zone. Changes nobody observed (a write whose value no
//!    read saw, an append no read contains) are backward zones of their own.
//!
//! Times are history positions; a linearization point "at slot `x`" lies just
//! after position `x`, so `x >= call` and `x < return` place it inside an op.
//! Ops of unknown outcome have no return; those whose value nobody observed
//! may not have taken effect and are left out. The result is checked against
//! the WGL search and a brute force on random histories
//! (`tests/brute_force.rs`).

use rustc_hash::FxHashMap;

use super::linearizable::Stuck;
use super::model::{Model, SearchOp, NIL};
use crate::history::{Str, Value};

/// An op as this check sees it (a `delete` is a write of `nil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueOp {
    Read(u32),
    Write(u32),
    Cas {
        old: u32,
        new: u32,
    },
    Append(u32),
    /// Left out of the check (a `nil` read or a delete, in the first stage
    /// of [`check`] for keys with deletes); models never return it.
    Skip,
}

/// A model whose ops and values this check understands.
pub trait UniqueValues: Model<State = u32> {
    fn view(&self, op: &Self::Op) -> UniqueOp;
    fn value(&self, id: u32) -> &Value;
    /// The id of a value the check computed (a prefix of an appended string).
    fn intern_computed(&mut self, value: Value) -> u32;
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Linearizable,
    /// Not linearizable: the ops that cannot all take effect, and why.
    NotLinearizable {
        stuck: Stuck<u32>,
        reason: String,
    },
    /// The key's values are not unique enough; use the search.
    NotApplicable(String),
}

const INIT: usize = usize::MAX;
/// "No return": an op of unknown outcome.
const NEVER: i64 = i64::MAX;

/// What is known about one observed value (as made by one producer).
///
/// Stored as `u32`s (24 bytes; positions and op indices of a
/// [`SearchOp`] fit one): a million-op key has one per producer, and these
/// were the biggest part of its check's memory. Read through the methods.
#[derive(Debug, Clone, Copy)]
struct Observed {
    /// The value, [`ABSENT`] in an unused slot of [`ObservedTable`].
    value: u32,
    /// Earliest return among its reads ([`NO_TIME`] if none) and that read.
    first_return: u32,
    first_reader: u32,
    /// Latest call among its reads plus one (0 if none) and that read.
    last_call: u32,
    last_reader: u32,
    /// The cas or append that changed it next ([`NO_OP`] if none).
    successor: u32,
}

/// [`Observed::value`] of an unused slot.
const ABSENT: u32 = u32::MAX;
/// No time (the `NEVER` of a first return) in an [`Observed`].
const NO_TIME: u32 = u32::MAX;
/// No op (`usize::MAX`, as [`INIT`]) in an [`Observed`].
const NO_OP: u32 = u32::MAX;

fn op_of(stored: u32) -> usize {
    if stored == NO_OP {
        usize::MAX
    } else {
        stored as usize
    }
}

impl Observed {
    /// A value seen by no read yet.
    fn unseen() -> Self {
        Observed {
            value: ABSENT,
            first_return: NO_TIME,
            first_reader: NO_OP,
            last_call: 0,
            last_reader: NO_OP,
            successor: NO_OP,
        }
    }

    /// Earliest return among its reads (`NEVER` if none), and that read.
    fn first_return(&self) -> (i64, usize) {
        let time = if self.first_return == NO_TIME {
            NEVER
        } else {
            self.first_return as i64
        };
        (time, op_of(self.first_reader))
    }

    /// Latest call among its reads (`-1` if none), and that read.
    fn last_call(&self) -> (i64, usize) {
        (self.last_call as i64 - 1, op_of(self.last_reader))
    }

    /// The cas or append that changed it next, if any.
    fn successor(&self) -> Option<usize> {
        (self.successor != NO_OP).then_some(self.successor as usize)
    }

    fn set_successor(&mut self, op: usize) {
        self.successor = op as u32;
    }

    /// Records a read by `reader` (call and return as positions, the return
    /// `NEVER` if none).
    fn note(&mut self, reader: usize, call: i64, ret: i64) {
        if ret < self.first_return().0 {
            self.first_return = ret as u32;
            self.first_reader = reader as u32;
        }
        if call > self.last_call().0 {
            self.last_call = call as u32 + 1;
            self.last_reader = reader as u32;
        }
    }
}

/// What each state (value, producer) was seen doing, by producer.
///
/// A producer makes one value (a write or cas its own; an append one, else
/// the check stops), so the table is a vector with a slot per op and one
/// for [`INIT`], holding the value to compare with: a hash map keyed by
/// `(value, producer)` took 65 bytes a slot, at twice the entries.
#[derive(Default)]
struct ObservedTable {
    /// [`INIT`] at 0, op `i` at `i + 1`.
    slots: Vec<Observed>,
}

impl ObservedTable {
    /// A table for the producers among `ops` ops.
    fn for_ops(ops: usize) -> Self {
        ObservedTable {
            slots: vec![Observed::unseen(); ops + 1],
        }
    }

    fn slot(producer: usize) -> usize {
        // INIT is usize::MAX: slot 0.
        producer.wrapping_add(1)
    }

    fn get(&self, &(value, producer): &State) -> Option<&Observed> {
        self.slots
            .get(Self::slot(producer))
            .filter(|o| o.value == value && value != ABSENT)
    }

    fn get_mut(&mut self, &(value, producer): &State) -> Option<&mut Observed> {
        self.slots
            .get_mut(Self::slot(producer))
            .filter(|o| o.value == value && value != ABSENT)
    }

    fn contains_key(&self, state: &State) -> bool {
        self.get(state).is_some()
    }

    /// Sets what `state` was seen doing (replacing what its producer had).
    fn insert(&mut self, (value, producer): State, mut seen: Observed) {
        seen.value = value;
        let slot = Self::slot(producer);
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, Observed::unseen());
        }
        self.slots[slot] = seen;
    }
}

/// Decides linearizability of one key's ops when its values allow it.
///
/// A key with deletes (or other writes of `nil`) has a value with many
/// producers, so its reads of `nil` do not say which delete they saw. It is
/// checked in two stages first: without the deletes and the reads of `nil`
/// (a cas from `nil` and an append to a missing key counted as blind
/// writes), which is a relaxation, so "not linearizable" there is final;
/// then a witness is built from the blocks of that check: a sweep over time
/// slots fixes the forward blocks at their zones and places the backward
/// blocks, the deletes and the reads of `nil` slot by slot
/// ([`Checker::sweep`]), and the sequence is replayed on the model and
/// against real time: if it replays, it is a linearization. If not (no case
/// is known where a linearizable key fails it: `tests/brute_force.rs`, but
/// no proof either), the refutations of [`Checker::refute`] are tried (each
/// a necessary condition, so a failed one is a final "not linearizable"),
/// then an older witness and the guesses of producers, and the search
/// after them.
pub fn check<M: UniqueValues>(model: &mut M, ops: &[SearchOp<M::Op>]) -> Decision {
    if ops
        .iter()
        .any(|o| model.view(&o.op) == UniqueOp::Write(NIL))
    {
        let mut checker = Checker::new(model, ops, Guess::LastInvoked);
        checker.relax_nil();
        match checker.run() {
            Decision::NotApplicable(_) => {}
            d => return d,
        }
    }
    let first = Checker::new(model, ops, Guess::LastInvoked).run();
    match first {
        // A guess did not fit: try the other rule once.
        Decision::NotApplicable(why) if why == GUESS_FAILED => {
            match Checker::new(model, ops, Guess::LastCompleted).run() {
                Decision::NotApplicable(why) if why == GUESS_FAILED => {
                    Checker::new(model, ops, Guess::ChangesCompleted).run()
                }
                d => d,
            }
        }
        d => d,
    }
}

/// How to guess the producer of a value several ops wrote, for one observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guess {
    /// The one invoked last before the observer returned.
    LastInvoked,
    /// The one that completed last before the observer was invoked (else
    /// the one invoked last before it returned).
    LastCompleted,
    /// For a cas or append: as `LastCompleted`; for a read: as `LastInvoked`.
    ChangesCompleted,
}

/// With more deletes than this, the producer of a `nil` is guessed among
/// the this many invoked last before the observer's deadline.
const NIL_WINDOW: usize = 64;

const GUESS_FAILED: &str =
    "some values have several possible producers, and no guess of who made each fit";

struct Checker<'a, M: UniqueValues> {
    model: &'a mut M,
    ops: &'a [SearchOp<M::Op>],
    view: Vec<UniqueOp>,
    init: u32,
    /// value → ops writing it (write, delete, cas new).
    writers: Writers,
    /// appended string → ops appending it.
    tokens: FxHashMap<Str, Vec<usize>>,
    token_lengths: Vec<usize>,
    /// What each (value, its producer) was seen doing.
    observed: ObservedTable,
    /// For each append op resolved as a producer: the value it made.
    append_states: FxHashMap<usize, u32>,
    /// For each cas and resolved append: the state it changed.
    consumed: FxHashMap<usize, State>,
    /// Ops whose effect some read depends on (optional ones must then be placed).
    needed: Vec<bool>,
    /// Some value had several possible producers and one was guessed (the
    /// one invoked last before the observer returned). A linearization then
    /// still proves the key linearizable; a failure proves nothing.
    guessed: bool,
    guess: Guess,
    /// The first stage for keys with deletes (see [`check`]).
    relaxed: bool,
    /// Ops that need `nil` just before them (relaxed: a cas from `nil`, an
    /// append to a missing key), checked as blind writes.
    nil_heads: Vec<bool>,
    /// The views before relaxing.
    original: Vec<UniqueOp>,
    /// The reads of each value, by producer: only in the relaxed stage (the
    /// witness orders them; 30 MB unused in a million-op key otherwise).
    readers: FxHashMap<State, Vec<usize>>,
    /// Guessed producers of `nil` already followed by a cas or an append.
    /// (with the deadline of that change).
    nil_followed: FxHashMap<usize, i64>,
    /// Required ops that change the value to something other than `nil`,
    /// as (return, the latest call among those returning no later), by
    /// return; built on first use.
    certain_changes: Option<Vec<(i64, i64)>>,
}

/// The ops writing each value (write, delete, cas new), by value id.
///
/// Most values have one writer: it is kept in a vector indexed by the
/// (dense) value id, and only values with several writers get a list of
/// their own (a hash map of a million one-element lists was the biggest
/// part of a one-key check's memory).
#[derive(Default)]
struct Writers {
    /// The one writer of each value, [`NO_WRITER`] if none (or several).
    single: Vec<usize>,
    /// The writers of values with several, in the order pushed.
    many: FxHashMap<u32, Vec<usize>>,
}

const NO_WRITER: usize = usize::MAX;

impl Writers {
    fn push(&mut self, value: u32, op: usize) {
        let v = value as usize;
        if let Some(list) = self.many.get_mut(&value) {
            list.push(op);
            return;
        }
        if v >= self.single.len() {
            self.single.resize(v + 1, NO_WRITER);
        }
        match std::mem::replace(&mut self.single[v], op) {
            NO_WRITER => {}
            first => {
                self.single[v] = NO_WRITER;
                self.many.insert(value, vec![first, op]);
            }
        }
    }

    /// The writers of `value`, `None` if it has none.
    fn get(&self, value: u32) -> Option<&[usize]> {
        if let Some(list) = self.many.get(&value) {
            return Some(list);
        }
        match self.single.get(value as usize) {
            Some(w) if *w != NO_WRITER => Some(std::slice::from_ref(w)),
            _ => None,
        }
    }

    fn contains_key(&self, value: u32) -> bool {
        self.get(value).is_some()
    }

    /// Sorts the writers of `value`.
    fn sort_by_key<K: Ord>(&mut self, value: u32, key: impl FnMut(&usize) -> K) {
        if let Some(list) = self.many.get_mut(&value) {
            list.sort_by_key(key);
        }
    }
}

/// A value as made by one producer ([`INIT`] or an op).
type State = (u32, usize);

fn call(op: &SearchOp<impl Clone>) -> i64 {
    op.call() as i64
}

fn ret(op: &SearchOp<impl Clone>) -> i64 {
    op.ret().map_or(NEVER, |r| r as i64)
}

impl<'a, M: UniqueValues> Checker<'a, M> {
    fn new(model: &'a mut M, ops: &'a [SearchOp<M::Op>], guess: Guess) -> Self {
        let view: Vec<UniqueOp> = ops.iter().map(|o| model.view(&o.op)).collect();
        let init = model.init();
        Checker {
            model,
            ops,
            view,
            init,
            writers: Writers::default(),
            tokens: FxHashMap::default(),
            token_lengths: Vec::new(),
            observed: ObservedTable::default(),
            append_states: FxHashMap::default(),
            consumed: FxHashMap::default(),
            needed: vec![false; ops.len()],
            guessed: false,
            guess,
            relaxed: false,
            nil_heads: vec![false; ops.len()],
            original: Vec::new(),
            readers: FxHashMap::default(),
            nil_followed: Default::default(),
            certain_changes: None,
        }
    }

    /// The latest call among the required changes to a value other than
    /// `nil` that returned before `time` (`-1` if none): any op that made
    /// the `nil` seen at `time` took effect after that call.
    fn latest_certain_change_call(&mut self, time: i64) -> i64 {
        let changes = self.certain_changes.get_or_insert_with(|| {
            let ops = self.ops;
            let (view, observed, append_states) = (&self.view, &self.observed, &self.append_states);
            let mut changes: Vec<(i64, i64)> = (0..ops.len())
                .filter_map(|i| {
                    let made = match view[i] {
                        // A read of another value: also before the producer.
                        UniqueOp::Read(x) if x != NIL => {
                            return ops[i].ret().map(|r| (r as i64, call(&ops[i])))
                        }
                        UniqueOp::Write(x) | UniqueOp::Cas { new: x, .. } if x != NIL => Some(x),
                        UniqueOp::Append(_) => append_states.get(&i).copied(),
                        _ => return None,
                    };
                    // Its deadline: its return, or the first return among
                    // the reads of its value.
                    let seen = made
                        .and_then(|x| observed.get(&(x, i)))
                        .map_or(NEVER, |o| o.first_return().0);
                    let deadline = ret(&ops[i]).min(seen);
                    (deadline != NEVER).then(|| (deadline, call(&ops[i])))
                })
                .collect();
            changes.sort_unstable();
            let mut latest = -1;
            for c in &mut changes {
                latest = latest.max(c.1);
                c.1 = latest;
            }
            changes
        });
        let n = changes.partition_point(|&(r, _)| r <= time);
        n.checked_sub(1).map_or(-1, |i| changes[i].1)
    }

    /// Leaves the deletes and the reads of `nil` out, and counts ops that
    /// change `nil` as blind writes (see [`check`]).
    fn relax_nil(&mut self) {
        self.relaxed = true;
        self.original = self.view.clone();
        for (i, v) in self.view.iter_mut().enumerate() {
            match *v {
                UniqueOp::Read(NIL) | UniqueOp::Write(NIL) => *v = UniqueOp::Skip,
                UniqueOp::Cas { old: NIL, new } => {
                    *v = UniqueOp::Write(new);
                    self.nil_heads[i] = true;
                }
                _ => {}
            }
        }
    }

    fn describe(&self, id: u32) -> String {
        self.model.value(id).to_string()
    }

    fn violation(&self, op: usize, pending: Vec<usize>, reason: String) -> Decision {
        Decision::NotLinearizable {
            stuck: Stuck {
                prefix: Vec::new(),
                state: self.init,
                op,
                pending,
            },
            reason,
        }
    }

    fn run(mut self) -> Decision {
        if let Some(why) = self.index() {
            return Decision::NotApplicable(why);
        }
        if let Some(d) = self.unwritten() {
            return d;
        }
        let decision = match self.resolve().and_then(|()| self.blocks()) {
            Ok(blocks) => match self.zones(&blocks) {
                Decision::Linearizable if self.relaxed => self.witness(&blocks),
                d => d,
            },
            Err(d) => d,
        };
        match decision {
            Decision::NotLinearizable { .. } if self.guessed => {
                Decision::NotApplicable(GUESS_FAILED.into())
            }
            d => d,
        }
    }

    /// Indexes writers and appended strings; `Some` if the key does not fit.
    fn index(&mut self) -> Option<String> {
        let mut has_appends = false;
        // Sized once (appended strings are mostly unique).
        self.tokens.reserve(
            self.view
                .iter()
                .filter(|v| matches!(v, UniqueOp::Append(_)))
                .count(),
        );
        for (i, v) in self.view.iter().enumerate() {
            match *v {
                UniqueOp::Write(x) | UniqueOp::Cas { new: x, .. } => self.writers.push(x, i),
                UniqueOp::Append(x) => {
                    has_appends = true;
                    let Value::Str(s) = self.model.value(x) else {
                        return Some("an append of a non-string value".into());
                    };
                    if s.is_empty() {
                        return Some("an append of the empty string".into());
                    }
                    self.tokens.entry(s.clone()).or_default().push(i);
                }
                UniqueOp::Read(_) | UniqueOp::Skip => {}
            }
        }
        // By call, for the window of guesses in `producer`.
        let ops = self.ops;
        self.writers.sort_by_key(NIL, |&i| ops[i].call());
        if has_appends {
            let non_string = self.view.iter().find_map(|v| match *v {
                UniqueOp::Read(x) | UniqueOp::Write(x) | UniqueOp::Cas { new: x, .. } => {
                    (!matches!(self.model.value(x), Value::Str(_) | Value::Nil)).then_some(x)
                }
                _ => None,
            });
            if let Some(x) = non_string.or_else(|| {
                (!matches!(self.model.value(self.init), Value::Str(_) | Value::Nil))
                    .then_some(self.init)
            }) {
                return Some(format!(
                    "appends mixed with the non-string value {}",
                    self.describe(x)
                ));
            }
            let mut lengths: Vec<usize> = self.tokens.keys().map(|k| k.len()).collect();
            lengths.sort_unstable();
            lengths.dedup();
            self.token_lengths = lengths;
        }
        None
    }

    /// A read or cas that needs a value no op can have made (whatever the
    /// reads-from guesses later): not linearizable.
    fn unwritten(&self) -> Option<Decision> {
        for (i, v) in self.view.iter().enumerate() {
            let value = match *v {
                UniqueOp::Read(x) => x,
                UniqueOp::Cas { old, .. } if self.ops[i].ret().is_some() => old,
                _ => continue,
            };
            let written = value == self.init
                || self
                    .writers
                    .get(value)
                    .is_some_and(|w| w.iter().any(|&o| o != i))
                || match self.model.value(value) {
                    Value::Str(s) => self.token_lengths.iter().any(|&len| {
                        len <= s.len()
                            && s.is_char_boundary(s.len() - len)
                            && self.tokens.contains_key(&s[s.len() - len..])
                    }),
                    _ => false,
                };
            if !written {
                return Some(self.violation(
                    i,
                    Vec::new(),
                    format!(
                        "it needs the value {}, which no op wrote",
                        self.describe(value)
                    ),
                ));
            }
        }
        None
    }

    /// Finds the producer of every observed value (reads-from).
    fn resolve(&mut self) -> Result<(), Decision> {
        // (value, the op observing it, when that op's effect is needed by:
        // its return, or the earliest deadline of what depends on it)
        // At most one entry per read, cas and append: sized once.
        let observers = self
            .view
            .iter()
            .filter(|v| !matches!(v, UniqueOp::Write(_) | UniqueOp::Skip))
            .count();
        let mut work: Vec<(u32, usize, i64)> = Vec::with_capacity(observers);
        for (i, v) in self.view.iter().enumerate() {
            let required = self.ops[i].ret().is_some();
            match *v {
                UniqueOp::Read(x) => work.push((x, i, ret(&self.ops[i]))),
                UniqueOp::Cas { old, .. } if required => work.push((old, i, ret(&self.ops[i]))),
                _ => {}
            }
            if required && *v != UniqueOp::Skip {
                self.needed[i] = true;
            }
        }
        // Each observer makes at most one entry: the maps are sized once
        // (growing them by doubling left every smaller table behind in a
        // million-op key's peak memory).
        let reads = work
            .iter()
            .filter(|&&(_, o, _)| matches!(self.view[o], UniqueOp::Read(_)))
            .count();
        self.observed = ObservedTable::for_ops(self.ops.len());
        // Appends observe the value they appended to, once each.
        let appends = self
            .view
            .iter()
            .filter(|v| matches!(v, UniqueOp::Append(_)))
            .count();
        if self.relaxed {
            self.readers.reserve(reads);
        }
        self.consumed.reserve(work.len() - reads + appends);
        self.append_states.reserve(appends);
        // Observers of `nil` when several ops wrote it: resolved last, once
        // the other values' producers (and so the changes that must come
        // before each observer) are known; cas and appends before reads.
        let mut deferred: Vec<(u32, usize, i64)> = Vec::new();
        let mut defer = self.writers.get(NIL).is_some_and(|w| w.len() > 1)
            || (self.init == NIL && self.writers.contains_key(NIL));
        loop {
            let Some((value, observer, needed_by)) = work.pop() else {
                if deferred.is_empty() {
                    break;
                }
                defer = false;
                self.certain_changes = None;
                // A change's effect is needed by the first return among its
                // own, the reads of its value and those of the changes
                // chained after it (known now).
                let next: FxHashMap<State, usize> =
                    self.consumed.iter().map(|(&o, &st)| (st, o)).collect();
                for item in &mut deferred {
                    let mut op = item.1;
                    let mut steps = 0;
                    while let Some(made) = self.produced_value(op) {
                        let st = (made, op);
                        if let Some(seen) = self.observed.get(&st) {
                            item.2 = item.2.min(seen.first_return().0);
                        }
                        match next.get(&st) {
                            Some(&n) if steps < self.ops.len() => {
                                item.2 = item.2.min(ret(&self.ops[n]));
                                op = n;
                                steps += 1;
                            }
                            _ => break,
                        }
                    }
                }
                // Popped from the end: changers first.
                deferred.sort_by_key(|&(_, o, _)| !matches!(self.view[o], UniqueOp::Read(_)));
                work = std::mem::take(&mut deferred);
                continue;
            };
            if defer && value == NIL {
                deferred.push((value, observer, needed_by));
                continue;
            }
            let (producer, predecessor) = self.producer(value, observer, needed_by)?;
            let needed_by = if producer == INIT {
                needed_by
            } else {
                needed_by.min(ret(&self.ops[producer]))
            };
            let state = (value, producer);
            if matches!(self.view[observer], UniqueOp::Read(_)) {
                if self.relaxed {
                    self.readers.entry(state).or_default().push(observer);
                }
            } else {
                self.consumed.insert(observer, state);
            }
            if let Some(seen) = self.observed.get_mut(&state) {
                note_read(seen, &self.view, self.ops, observer);
                continue;
            }
            let mut seen = Observed::unseen();
            note_read(&mut seen, &self.view, self.ops, observer);
            self.observed.insert(state, seen);
            if producer == INIT {
                continue;
            }
            if let Some(pred) = predecessor {
                if let Some(&other) = self.append_states.get(&producer) {
                    if other != value {
                        if self.guessed {
                            return Err(Decision::NotApplicable(
                                "appends of equal strings could not be told apart".into(),
                            ));
                        }
                        return Err(self.violation(
                            observer,
                            vec![producer],
                            format!(
                                "{} and {} both end with the string appended by one op, which took effect once",
                                self.describe(other),
                                self.describe(value)
                            ),
                        ));
                    }
                }
                self.append_states.insert(producer, value);
                if self.relaxed && pred == NIL {
                    // An append to a missing key: a blind write here.
                    self.nil_heads[producer] = true;
                } else {
                    work.push((pred, producer, needed_by));
                }
            }
            if !self.needed[producer] {
                // An op of unknown outcome that some read depends on.
                self.needed[producer] = true;
                if let UniqueOp::Cas { old, .. } = self.view[producer] {
                    work.push((old, producer, needed_by));
                }
            }
        }
        Ok(())
    }

    /// The op (or the initial state) that made `value` as `observer` saw it,
    /// and for an append the value it appended to. With several possible
    /// producers, the one invoked last before `observer` returned is guessed.
    fn producer(
        &mut self,
        value: u32,
        observer: usize,
        needed_by: i64,
    ) -> Result<(usize, Option<u32>), Decision> {
        let mut candidates: Vec<usize> = Vec::new();
        if value == self.init {
            candidates.push(INIT);
        }
        if let Some(w) = self.writers.get(value) {
            if value == NIL && w.len() > NIL_WINDOW {
                // Many deletes: only the latest invoked before the deadline
                // are guessed from (a guess, so never a final verdict).
                self.guessed = true;
                let n = w.partition_point(|&i| call(&self.ops[i]) < needed_by);
                let window = &w[n.saturating_sub(NIL_WINDOW)..n];
                candidates.extend(window.iter().copied().filter(|&i| i != observer));
                if candidates.is_empty() {
                    candidates.extend(w.iter().copied().find(|&i| i != observer));
                }
            } else {
                candidates.extend(w.iter().copied().filter(|&i| i != observer));
            }
        }
        let mut rest: Option<String> = None;
        if let Value::Str(s) = self.model.value(value) {
            for &len in &self.token_lengths {
                if len > s.len() || !s.is_char_boundary(s.len() - len) {
                    continue;
                }
                if let Some(appends) = self.tokens.get(&s[s.len() - len..]) {
                    if rest.is_some() || !candidates.is_empty() {
                        return Err(Decision::NotApplicable(format!(
                            "the value {} can be the result of different kinds of ops",
                            self.describe(value)
                        )));
                    }
                    candidates.extend(appends.iter().copied().filter(|&i| i != observer));
                    rest = Some(s[..s.len() - len].to_string());
                }
            }
        }
        let producer = match candidates.len() {
            0 => {
                return Err(self.violation(
                    observer,
                    Vec::new(),
                    format!(
                        "it needs the value {}, which no op wrote",
                        self.describe(value)
                    ),
                ))
            }
            1 => candidates[0],
            _ => {
                self.guessed = true;
                let after = if value == NIL {
                    self.latest_certain_change_call(call(&self.ops[observer]))
                } else {
                    -1
                };
                let deadline = needed_by;
                let taken = |c: usize| {
                    rest.is_some() && self.append_states.get(&c).is_some_and(|&v| v != value)
                };
                let call_of = |c: usize| if c == INIT { -1 } else { call(&self.ops[c]) };
                let ret_of = |c: usize| if c == INIT { -1 } else { ret(&self.ops[c]) };
                // For `nil`: a producer must be able to come after every
                // change that certainly came before the observer (else that
                // change would hide its nil); and a producer already
                // followed by a cas or append cannot be followed by another.
                let changer = !matches!(self.view[observer], UniqueOp::Read(_));
                let start = call(&self.ops[observer]);
                let fits = |c: usize| {
                    !taken(c)
                        && (value != NIL || ret_of(c) > after || (c == INIT && after < 0))
                        && match self.nil_followed.get(&c) {
                            None => true,
                            // Followed by a change needed before this read.
                            Some(&by) => !changer && by > start,
                        }
                };
                let finished = candidates
                    .iter()
                    .copied()
                    .filter(|&c| ret_of(c) < start && fits(c))
                    .max_by_key(|&c| ret_of(c));
                let invoked = candidates
                    .iter()
                    .copied()
                    .filter(|&c| call_of(c) < deadline && fits(c))
                    .max_by_key(|&c| call_of(c));
                let pick = match self.guess {
                    Guess::LastInvoked => invoked,
                    Guess::LastCompleted => finished.or(invoked),
                    Guess::ChangesCompleted if changer => finished.or(invoked),
                    Guess::ChangesCompleted => invoked,
                }
                .unwrap_or(candidates[0]);
                if value == NIL && changer {
                    self.nil_followed.insert(pick, needed_by);
                }
                pick
            }
        };
        let Some(rest) = rest else {
            return Ok((producer, None));
        };
        let pred = if rest.is_empty() {
            // Appending to a missing key or to "" gives the same string.
            let empty = self.model.intern_computed(Value::string(""));
            let empty_made = empty == self.init || self.writers.contains_key(empty);
            let nil_made = NIL == self.init || self.writers.contains_key(NIL);
            if empty_made && nil_made {
                return Err(Decision::NotApplicable(
                    "appends to both a missing key and an empty string".into(),
                ));
            }
            if empty_made {
                empty
            } else {
                NIL
            }
        } else {
            self.model.intern_computed(Value::string(rest))
        };
        Ok((producer, Some(pred)))
    }

    /// Links each observed value to the op that changed it next, and builds
    /// the blocks: from the initial state and from each blind write, the
    /// chain of changes that must follow one another.
    fn blocks(&mut self) -> Result<Vec<Block>, Decision> {
        let mut successors: Vec<(State, usize)> = Vec::new();
        for i in 0..self.ops.len() {
            if self.needed[i] && matches!(self.view[i], UniqueOp::Cas { .. } | UniqueOp::Append(_))
            {
                if let Some(&state) = self.consumed.get(&i) {
                    successors.push((state, i));
                }
            }
        }
        for ((value, producer), op) in successors {
            let seen = self
                .observed
                .get_mut(&(value, producer))
                .expect("observed before");
            if let Some(other) = seen.successor() {
                let (first, second) = if ret(&self.ops[other]) <= ret(&self.ops[op]) {
                    (other, op)
                } else {
                    (op, other)
                };
                let value = self.describe(value);
                return Err(self.violation(
                    second,
                    vec![first],
                    format!("both need the value {value}, which held once, and only one op can change it"),
                ));
            }
            seen.set_successor(op);
        }
        let mut blocks = Vec::new();
        let mut placed = vec![false; self.ops.len()];
        let heads = std::iter::once(INIT).chain((0..self.ops.len()).filter(|&i| {
            (self.needed[i] && matches!(self.view[i], UniqueOp::Write(_)))
                || (self.needed[i]
                    && matches!(self.view[i], UniqueOp::Append(_))
                    && (!self.append_states.contains_key(&i) || self.nil_heads[i]))
        }));
        let heads: Vec<usize> = heads.collect();
        for head in heads {
            let block = self.block_from(head, &mut placed)?;
            blocks.push(block);
        }
        if let Some(stray) = (0..self.ops.len())
            .find(|&i| self.needed[i] && !placed[i] && !matches!(self.view[i], UniqueOp::Read(_)))
        {
            return Err(self.violation(
                stray,
                Vec::new(),
                "the value it needs is only made by ops that need its own result first".into(),
            ));
        }
        Ok(blocks)
    }

    /// The value a change made (for an append: once resolved).
    fn produced_value(&self, op: usize) -> Option<u32> {
        match self.view[op] {
            UniqueOp::Write(x) | UniqueOp::Cas { new: x, .. } => Some(x),
            UniqueOp::Append(_) => self.append_states.get(&op).copied(),
            UniqueOp::Read(_) | UniqueOp::Skip => None,
        }
    }

    /// The value an op produced, if someone observed it.
    fn produced(&self, op: usize) -> Option<u32> {
        let v = match self.view[op] {
            UniqueOp::Write(x) | UniqueOp::Cas { new: x, .. } => x,
            UniqueOp::Append(_) => *self.append_states.get(&op)?,
            UniqueOp::Read(_) | UniqueOp::Skip => return None,
        };
        self.observed.contains_key(&(v, op)).then_some(v)
    }

    fn block_from(&self, head: usize, placed: &mut [bool]) -> Result<Block, Decision> {
        let mut block = Block {
            start: -1,
            deadline: (NEVER, usize::MAX),
            exit: (-1, usize::MAX),
            head,
        };
        // Earliest slot of the current change.
        let mut k: (i64, usize) = if head == INIT {
            (-1, INIT)
        } else {
            block.start = call(&self.ops[head]);
            (block.start, head)
        };
        let mut op = head;
        loop {
            let value = if op == INIT {
                Some(self.init).filter(|&v| self.observed.contains_key(&(v, INIT)))
            } else {
                placed[op] = true;
                self.produced(op)
            };
            let seen = value.and_then(|v| self.observed.get(&(v, op)));
            // Deadline of this change: its own return, and its value's reads.
            let own = if op == INIT {
                (NEVER, INIT)
            } else {
                (ret(&self.ops[op]), op)
            };
            let u = match seen {
                Some(s) if s.first_return().0 < own.0 => s.first_return(),
                _ => own,
            };
            if k.0 >= u.0 {
                let mut pending = vec![op];
                if k.1 != op && k.1 != INIT {
                    pending.push(k.1);
                }
                pending.retain(|&p| p != u.1 && p != INIT);
                let what = if op == INIT {
                    "the initial value".to_string()
                } else {
                    format!(
                        "the value {}",
                        value.map_or("?".into(), |v| self.describe(v))
                    )
                };
                return Err(self.violation(
                    u.1,
                    pending,
                    format!("{what} cannot take effect before this op returned: the ops that must come before it were not even invoked"),
                ));
            }
            if u.0 < block.deadline.0 {
                block.deadline = u;
            }
            let exit = match seen {
                Some(s) if s.last_call().0 > k.0 => s.last_call(),
                _ => k,
            };
            match seen.and_then(|s| s.successor()) {
                Some(next) => {
                    let c = (call(&self.ops[next]), next);
                    k = if c.0 > exit.0 { c } else { exit };
                    op = next;
                }
                None => {
                    block.exit = exit;
                    return Ok(block);
                }
            }
        }
    }

    /// The zone test over all blocks.
    fn zones(&self, blocks: &[Block]) -> Decision {
        let mut forward: Vec<&Block> = Vec::new();
        let mut backward: Vec<&Block> = Vec::new();
        for b in blocks {
            if b.head == INIT || b.deadline.0 <= b.exit.0 {
                forward.push(b);
            } else {
                backward.push(b);
            }
        }
        // A forward block spans [a, exit] with a = deadline - 1 (the initial
        // block from the start).
        let a = |b: &Block| {
            if b.head == INIT {
                -1
            } else {
                b.deadline.0 - 1
            }
        };
        forward.sort_by_key(|b| (a(b), b.exit.0));
        for pair in forward.windows(2) {
            let (f, g) = (pair[0], pair[1]);
            if f.exit.0 > a(g) {
                return self.overlap(g, f);
            }
        }
        for p in backward {
            let (lo, hi) = (p.exit.0, p.deadline.0 - 1);
            // The forward zone with the largest start before `lo`.
            let n = forward.partition_point(|f| a(f) < lo);
            if n > 0 {
                let f = forward[n - 1];
                if hi < f.exit.0 {
                    return self.overlap(p, f);
                }
            }
        }
        Decision::Linearizable
    }

    /// The second stage for keys with deletes (see [`check`]): the sweep,
    /// then (if it finds nothing) the older witness: it orders the blocks
    /// the relaxed check accepted, inserts the deletes and reads of `nil`
    /// between blocks where real time allows, and replays the sequence on
    /// the model. A replay that succeeds is a linearization; otherwise the
    /// key is left to the other checks.
    fn witness(&mut self, blocks: &[Block]) -> Decision {
        if self.sweep(blocks) == Decision::Linearizable {
            // The refutations are necessary conditions: a key the sweep
            // linearized never fails one.
            debug_assert!(
                self.refute(blocks).is_none(),
                "a refutation of a linearizable key"
            );
            return Decision::Linearizable;
        }
        if let Some(refuted) = self.refute(blocks) {
            return refuted;
        }
        let mut last = Decision::Linearizable;
        for late in [false, true] {
            last = self.witness_with(blocks, late);
            if last == Decision::Linearizable {
                break;
            }
        }
        last
    }

    /// Refutations for keys with deletes whose relaxed check passed: each
    /// is a necessary condition of every linearization, so when one fails
    /// the key is not linearizable.
    ///
    /// Facts they rest on (the relaxed check passed with every producer of
    /// a value other than `nil` known, no guess; no cas writes `nil`):
    /// in a linearization, take each op's point `p` in `[call, return - 1]`
    /// (slots), non-decreasing along the order (an order respecting real
    /// time has such points: the latest call so far). A block `B` (a chain
    /// of changes with the reads of its values) runs from its head to its
    /// last element; nothing that changes the value (a delete, another
    /// block's change) and no read of `nil` lies strictly inside that span,
    /// since the next element needs the block's (unique, non-`nil`) value.
    /// Its head is at `p <= S - 1` (`S`, the block's deadline, is the
    /// earliest return among its elements) and its last element at
    /// `p >= X` (the latest call among them).
    ///
    /// 1. **Trapped.** A required delete or read of `nil` `Y` and a block
    ///    `F` with `S_F - 1 < call(Y)` and `return(Y) - 1 < X_F`: `Y`'s
    ///    point is strictly after `F`'s head and strictly before its last
    ///    element, inside the span. Impossible.
    /// 2. **No source.** A required read of `nil`, or the head `Y` of a
    ///    block that needs `nil` just before it (a cas from `nil`, an
    ///    append to a missing key), with point range `[call(Y), h]` (`h` =
    ///    return - 1 for a read, `S - 1` for a head). The last change
    ///    before `Y` is a delete `D` (or there is none and the initial
    ///    value is `nil`: `D` at slot -1). Every other block `Z` then lies
    ///    wholly before `D` (its head is not between `D` and `Y`, and `D`
    ///    is not inside its span), so `X_Z <= p(D) <= return(D) - 1`, or
    ///    has its head after `Y`, so `S_Z - 1 >= p(Y) >= call(Y)`. So `D`
    ///    must satisfy `call(D) <= h` and `return(D) - 1 >= X_Z` for every
    ///    block `Z` with `S_Z - 1 < call(Y)`. No delete (required or not)
    ///    does: impossible.
    /// 3. **Shared source.** Two heads needing `nil` cannot have the same
    ///    delete as their source (the first of them is a change between
    ///    that delete and the second). So the heads must be matched to
    ///    distinct deletes each satisfying rule 2 for its head: a delete
    ///    `D` fits head `Y` iff `call(D) <= h_Y` and `return(D) - 1 >=
    ///    m_Y` (`m_Y` the largest `X_Z` of rule 2). Heads taken by
    ///    increasing `h`, each given the fitting free delete with the
    ///    smallest `return`, find a matching if there is one (exchange: a
    ///    later head can use any delete an earlier one could, and one with
    ///    a larger return fits every head the smaller one fits).
    /// 4. **Source taken.** A read of `nil` `R` and the heads `Y` with
    ///    `h_Y < call(R)`: each such head's block took effect before `R`,
    ///    so (by 2) lies wholly before `R`'s source, and its own source is
    ///    before it: `R` and those heads have pairwise distinct sources.
    ///    Those heads are a prefix of the order of 3 and `R` comes after
    ///    them in it (`h_R >= call(R)`), so after matching them as in 3,
    ///    some delete not taken with `call <= h_R` and `return - 1 >= m_R`
    ///    must be left (reads do not take deletes: they can share one).
    /// 5. **Forced before** (deletes7; sharpens `m` in 2-4). Two blocks'
    ///    spans do not interleave (a head inside another span is a change
    ///    inside it). So if `S_Z - 1 < X_W` for blocks `Z != W`, `Z`'s head
    ///    (point `<= S_Z - 1`) comes before `W`'s last element (point `>=
    ///    X_W`), hence before `W`'s head, and `Z` lies wholly before `W`.
    ///    The blocks whose heads certainly come before `Y` are then not
    ///    only those with `S_Z - 1 < call(Y)`, but (for a head `Y`) those
    ///    with `S_Z - 1 < X` of `Y`'s own block, and, closing the set, those
    ///    with `S_Z - 1 < X_W` for any `W` already in it. Each lies wholly
    ///    before `Y`'s source as in 2, so `m_Y` is the largest `X_Z` over
    ///    that set (leaving out `Y`'s own block). Sorting the blocks by
    ///    `S - 1` makes the set a prefix; the prefix each prefix closes to
    ///    is computed once, from the longest down.
    /// 6. **Forced after** (deletes7; sharpens `h` in 2-4). Dually, if
    ///    `h_Y < X_W` for a block `W` (not `Y`'s own), `Y`'s point comes
    ///    before `W`'s last element, so (not inside `W`'s span) before
    ///    `W`'s head: `p(Y) <= S_W - 1`. Closing as in 5 (then `h_Z < X_W`
    ///    with `h_Z = S_Z - 1` for each `Z` already forced after `Y`), `h_Y`
    ///    becomes the least `S - 1` over the set, an upper bound of `p(Y)`
    ///    as 2-4 need (`Y`'s own block has `S - 1 = h_Y`: including it
    ///    changes nothing).
    ///
    /// Checked against the brute force on random histories
    /// (`tests/brute_force.rs`).
    fn refute(&self, blocks: &[Block]) -> Option<Decision> {
        if self
            .original
            .iter()
            .any(|v| matches!(v, UniqueOp::Cas { new: NIL, .. }))
        {
            return None;
        }
        // Blocks by S - 1, with the largest X so far (and its block).
        let mut by_start: Vec<(i64, i64, usize)> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.head != INIT)
            .map(|(j, b)| (b.deadline.0 - 1, b.exit.0, j))
            .collect();
        by_start.sort_unstable();
        let latest_exit = running_max(&by_start);
        // The largest X (and its block) among blocks with S - 1 < c.
        let before = |c: i64| -> Option<(i64, usize)> {
            let n = by_start.partition_point(|e| e.0 < c);
            n.checked_sub(1).map(|i| latest_exit[i])
        };
        // 5 (forced): the first `reach[k]` blocks by S - 1 are the closure
        // of the first `k` under "S_Z - 1 < X_W for some W in the set"; the
        // second largest X so far (of another block) for leaving one out.
        let count = |t: i64| by_start.partition_point(|e| e.0 < t);
        let mut reach: Vec<usize> = (0..=by_start.len()).collect();
        for k in (1..=by_start.len()).rev() {
            let grown = count(latest_exit[k - 1].0).max(k);
            if grown > k {
                reach[k] = reach[grown];
            }
        }
        let (mut first, mut second) = ((i64::MIN, usize::MAX), (i64::MIN, usize::MAX));
        let second_exit: Vec<(i64, usize)> = by_start
            .iter()
            .map(|&(_, x, j)| {
                if x > first.0 {
                    second = first;
                    first = (x, j);
                } else if x > second.0 {
                    second = (x, j);
                }
                second
            })
            .collect();
        // The largest X (and its block) among the blocks other than `own`
        // whose heads are forced before `y`: those with S - 1 below `y`'s
        // call or (for a head) below its block's exit, closed as above.
        let forced = |c: i64, own: Option<usize>| -> Option<(i64, usize)> {
            let t = own.map_or(c, |j| c.max(blocks[j].exit.0));
            let i = reach[count(t)].checked_sub(1)?;
            match latest_exit[i] {
                (_, j) if Some(j) == own => Some(second_exit[i]).filter(|s| s.1 != usize::MAX),
                best => Some(best),
            }
        };
        // 6 (forced after): by X, largest first, the smallest S - 1 so far;
        // the first `reach_after[k]` are the closure of the first `k` under
        // "X_W > S_Z - 1 for some Z in the set".
        let mut by_exit: Vec<(i64, i64)> = by_start.iter().map(|&(s, x, _)| (x, s)).collect();
        by_exit.sort_unstable_by(|a, b| b.cmp(a));
        let mut low = i64::MAX;
        let earliest_start: Vec<i64> = by_exit
            .iter()
            .map(|&(_, s)| {
                low = low.min(s);
                low
            })
            .collect();
        let count_after = |h: i64| by_exit.partition_point(|e| e.0 > h);
        let mut reach_after: Vec<usize> = (0..=by_exit.len()).collect();
        for k in (1..=by_exit.len()).rev() {
            let grown = count_after(earliest_start[k - 1]).max(k);
            if grown > k {
                reach_after[k] = reach_after[grown];
            }
        }
        // The latest slot of an op with last slot `h` that no block's
        // change may follow inside its span: before the head of every block
        // forced after it.
        let latest_point = |h: i64| -> i64 {
            reach_after[count_after(h)]
                .checked_sub(1)
                .map_or(h, |i| h.min(earliest_start[i]))
        };
        let last_slot = |i: usize| ret(&self.ops[i]).saturating_sub(1);
        // Deletes (and the initial nil) as (call, last slot, op).
        let mut deletes: Vec<(i64, i64, usize)> = (0..self.ops.len())
            .filter(|&i| self.original[i] == UniqueOp::Write(NIL))
            .map(|i| (call(&self.ops[i]), last_slot(i), i))
            .collect();
        if self.init == NIL {
            deletes.push((-1, -1, INIT));
        }
        deletes.sort_unstable();
        let latest_delete = running_max(&deletes);
        // The latest last slot among deletes called by `h`.
        let source = |h: i64| -> Option<(i64, usize)> {
            let n = deletes.partition_point(|d| d.0 <= h);
            n.checked_sub(1).map(|i| latest_delete[i])
        };
        let name = |j: usize| match self.produced(blocks[j].head) {
            Some(v) => format!("the value {}", self.describe(v)),
            None => "a change".to_string(),
        };
        // 1 and 2 for the required deletes and reads of nil; the reads
        // kept for 4 as (call, last slot, m, op).
        let mut reads: Vec<(i64, i64, i64, usize)> = Vec::new();
        for i in 0..self.ops.len() {
            let is_read = match self.original[i] {
                UniqueOp::Read(NIL) => true,
                UniqueOp::Write(NIL) => false,
                _ => continue,
            };
            if self.ops[i].ret().is_none() {
                continue;
            }
            let (lo, hi) = (call(&self.ops[i]), last_slot(i));
            if let Some((_, j)) = before(lo).filter(|&(x, _)| x > hi) {
                let what = if is_read {
                    "it reads nil"
                } else {
                    "it deletes the key"
                };
                return Some(self.violation(
                    i,
                    vec![blocks[j].head],
                    format!(
                        "{what} while {} must hold: that value took effect before this op was invoked, and an op invoked after this one returned still needs it",
                        name(j)
                    ),
                ));
            }
            if is_read {
                let hi = latest_point(hi);
                let forced = |c: i64| forced(c, None);
                if let Some(d) = self.no_source(i, lo, hi, &forced, &source, &name, blocks) {
                    return Some(d);
                }
                let m = forced(lo).map_or(i64::MIN, |(x, _)| x);
                reads.push((lo, hi, m, i));
            }
        }
        // 2 and 3 for the heads that need nil.
        let mut heads: Vec<(i64, i64, usize)> = Vec::new();
        for (own, b) in blocks.iter().enumerate() {
            if b.head == INIT || !self.nil_heads[b.head] {
                continue;
            }
            let (lo, hi) = (call(&self.ops[b.head]), latest_point(b.deadline.0 - 1));
            let forced = |c: i64| forced(c, Some(own));
            if let Some(d) = self.no_source(b.head, lo, hi, &forced, &source, &name, blocks) {
                return Some(d);
            }
            let m = forced(lo).map_or(i64::MIN, |(x, _)| x);
            heads.push((hi, m, b.head));
        }
        heads.sort_unstable();
        reads.sort_unstable();
        // The largest last slot among deletes[a..b], by a sparse table.
        let mut table: Vec<Vec<i64>> = vec![deletes.iter().map(|d| d.1).collect()];
        while 2 << (table.len() - 1) <= deletes.len() {
            let (prev, half) = (table.last().expect("one level"), 1 << (table.len() - 1));
            let level: Vec<i64> = (0..prev.len() - half)
                .map(|k| prev[k].max(prev[k + half]))
                .collect();
            table.push(level);
        }
        let range_max = |a: usize, b: usize| -> i64 {
            if a >= b {
                return i64::MIN;
            }
            let level = (usize::BITS - 1 - (b - a).leading_zeros()) as usize;
            table[level][a].max(table[level][b - (1 << level)])
        };
        // 3: heads by increasing h take free deletes (added as h grows);
        // 4: each read of nil, after the heads with h below its call.
        let mut free: std::collections::BTreeSet<(i64, usize)> = Default::default();
        let mut next = 0;
        let mut reads = reads.into_iter().peekable();
        let mut heads = heads.into_iter().peekable();
        loop {
            let read_first = match (reads.peek(), heads.peek()) {
                (Some(r), Some(h)) => r.0 <= h.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if read_first {
                let (_, hi, m, read) = reads.next().expect("peeked");
                let k = deletes.partition_point(|d| d.0 <= hi);
                let unused = free
                    .last()
                    .map_or(i64::MIN, |d| d.0)
                    .max(range_max(next, k));
                if unused < m {
                    return Some(self.violation(
                        read,
                        Vec::new(),
                        "it reads nil, but each delete that can take effect before it with no change in between is needed by a change from nil that must come before it".to_string(),
                    ));
                }
                continue;
            }
            let (hi, m, head) = heads.next().expect("peeked");
            while next < deletes.len() && deletes[next].0 <= hi {
                free.insert((deletes[next].1, deletes[next].2));
                next += 1;
            }
            let Some(&d) = free.range((m, 0)..).next() else {
                let fitting = deletes[..next].iter().filter(|d| d.1 >= m).count();
                let reason = match fitting {
                    0 => "it needs nil just before it, but no delete can take effect before it".to_string(),
                    n => format!(
                        "it needs nil just before it, but the {n} deletes that can make that nil are each needed by another change from nil"
                    ),
                };
                return Some(self.violation(head, Vec::new(), reason));
            };
            free.remove(&d);
        }
    }

    /// Rule 2 of [`Checker::refute`] for one op `y` needing nil, with point
    /// range `[lo, hi]`.
    #[allow(clippy::too_many_arguments)]
    fn no_source(
        &self,
        y: usize,
        lo: i64,
        hi: i64,
        before: &dyn Fn(i64) -> Option<(i64, usize)>,
        source: &dyn Fn(i64) -> Option<(i64, usize)>,
        name: &dyn Fn(usize) -> String,
        blocks: &[Block],
    ) -> Option<Decision> {
        let (x, j) = before(lo)?;
        match source(hi) {
            Some((last, _)) if last >= x => None,
            found => {
                let what = match self.original[y] {
                    UniqueOp::Read(_) => "it reads nil",
                    _ => "it needs nil just before it",
                };
                let tail = match found {
                    Some((_, d)) if d != INIT => "and an op invoked after every delete that could precede this op had returned still needed it",
                    _ => "and no delete was invoked before this op returned",
                };
                Some(self.violation(
                    y,
                    vec![blocks[j].head],
                    format!(
                        "{what}, but {} must take effect before this op (by real time and the other blocks), {tail}",
                        name(j)
                    ),
                ))
            }
        }
    }

    /// The ops of a block in the order they take effect: each change, then
    /// the reads of its value by call.
    fn block_sequence(&self, b: &Block, out: &mut Vec<usize>) {
        let mut op = b.head;
        loop {
            let value = if op == INIT {
                Some(self.init)
            } else {
                out.push(op);
                self.produced(op)
            };
            let Some(v) = value else { break };
            if let Some(reads) = self.readers.get(&(v, op)) {
                let from = out.len();
                out.extend_from_slice(reads);
                out[from..].sort_by_key(|&r| self.ops[r].call());
            }
            match self.observed.get(&(v, op)).and_then(|s| s.successor()) {
                Some(next) => op = next,
                None => break,
            }
        }
    }

    /// The witness for keys with deletes: one sweep over time slots that
    /// places everything the relaxed check left out.
    ///
    /// The relaxed check's forward blocks are fixed at their zones
    /// `[deadline - 1, exit]` (any linearization can be shrunk to that, and
    /// nothing else can take effect inside one); every other item is a point
    /// to choose within its range of slots, clamped to the slots outside
    /// forward interiors: a backward block in `[exit, deadline - 1]`, a
    /// delete or a read of `nil` in `[call, return - 1]`. Ops placed at one
    /// slot may go in any order, ops at increasing slots in that order, so
    /// real time holds by construction. The state between blocks matters
    /// only as "`nil` or not": `nil` is never worse (a block starts with its
    /// own write, a nil-headed one needs `nil`), so the sweep
    /// - serves every pending read of `nil` while the state is `nil`;
    /// - places a backward block at its last slot (placing one ends
    ///   `nil`), but puts every pending blind backward block just before
    ///   each delete (free: the delete restores `nil`), and whenever `nil`
    ///   is about to end (a delete, a blind block), lets the pending
    ///   nil-headed block due first use it;
    /// - places a delete at its last slot, or earlier when `nil` is needed
    ///   now (a read of `nil` or a nil-headed block at its last slot, a
    ///   nil-headed forward block at its start): then the pending delete due
    ///   first (earliest deadline first); an `:info` delete never needed is
    ///   left out.
    ///
    /// The order built is replayed on the model and against real time
    /// ([`replays`]): only a replay that succeeds counts, so a wrong choice
    /// can only cost a decision (the key goes on to the other checks).
    fn sweep(&mut self, blocks: &[Block]) -> Decision {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let failed = || {
            Decision::NotApplicable("the sweep found no place for a delete or a read of nil".into())
        };
        let is_forward = |b: &Block| b.head == INIT || b.deadline.0 <= b.exit.0;
        let start_of = |b: &Block| if b.head == INIT { -1 } else { b.deadline.0 - 1 };
        let mut forward: Vec<usize> = (0..blocks.len())
            .filter(|&j| is_forward(&blocks[j]))
            .collect();
        forward.sort_by_key(|&j| (start_of(&blocks[j]), blocks[j].exit.0));
        let starts: Vec<i64> = forward.iter().map(|&j| start_of(&blocks[j])).collect();
        let exits: Vec<i64> = forward.iter().map(|&j| blocks[j].exit.0).collect();
        // The slots outside forward interiors: a range is clamped to them.
        let clamp = |lo: i64, hi: i64| -> Option<(i64, i64)> {
            let inside = |x: i64| {
                let n = starts.partition_point(|&a| a < x);
                n.checked_sub(1).filter(|&i| x < exits[i])
            };
            let lo = inside(lo).map_or(lo, |i| exits[i]);
            let hi = inside(hi).map_or(hi, |i| starts[i]);
            (lo <= hi).then_some((lo, hi))
        };
        let range = |i: usize| (call(&self.ops[i]), ret(&self.ops[i]).saturating_sub(1));
        // (lo, hi, op or block)
        let mut reads: Vec<(i64, i64, usize)> = Vec::new();
        let mut deletes: Vec<(i64, i64, usize)> = Vec::new();
        for i in 0..self.ops.len() {
            let required = self.ops[i].ret().is_some();
            match self.original[i] {
                UniqueOp::Read(NIL) if required => {
                    let (lo, hi) = range(i);
                    let Some((lo, hi)) = clamp(lo, hi) else {
                        return failed();
                    };
                    reads.push((lo, hi, i));
                }
                UniqueOp::Write(NIL) => {
                    let (lo, hi) = if required {
                        range(i)
                    } else {
                        (call(&self.ops[i]), NEVER)
                    };
                    match clamp(lo, hi) {
                        Some((lo, hi)) => deletes.push((lo, hi, i)),
                        None if required => return failed(),
                        None => {}
                    }
                }
                _ => {}
            }
        }
        let mut backward: Vec<(i64, i64, usize)> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            if !is_forward(b) {
                let Some((lo, hi)) = clamp(b.exit.0, b.deadline.0 - 1) else {
                    return failed();
                };
                backward.push((lo, hi, j));
            }
        }
        let mut sequences: Vec<Vec<usize>> = vec![Vec::new(); blocks.len()];
        for (j, b) in blocks.iter().enumerate() {
            self.block_sequence(b, &mut sequences[j]);
        }
        let nil_headed = |j: usize| blocks[j].head != INIT && self.nil_heads[blocks[j].head];
        let mut slots: Vec<i64> = reads
            .iter()
            .chain(&deletes)
            .chain(&backward)
            .flat_map(|&(lo, hi, _)| [lo, hi])
            .chain(starts.iter().copied())
            .filter(|&t| t != NEVER)
            .collect();
        slots.sort_unstable();
        slots.dedup();
        reads.sort_unstable();
        deletes.sort_unstable();
        backward.sort_unstable();

        struct State<'s> {
            out: Vec<usize>,
            nil: bool,
            pending: Vec<usize>,
            /// The earliest last slot among the pending reads.
            due: i64,
            deletes: BinaryHeap<Reverse<(i64, usize)>>,
            blind: BinaryHeap<Reverse<(i64, usize)>>,
            nil_headed: BinaryHeap<Reverse<(i64, usize)>>,
            sequences: &'s [Vec<usize>],
        }
        impl State<'_> {
            fn serve(&mut self) {
                if self.nil {
                    self.out.append(&mut self.pending);
                    self.due = NEVER;
                }
            }
            fn block(&mut self, j: usize) {
                self.out.extend_from_slice(&self.sequences[j]);
                self.nil = false;
            }
            fn delete(&mut self, op: usize) {
                if self.nil {
                    if let Some(Reverse((_, j))) = self.nil_headed.pop() {
                        self.block(j);
                    }
                }
                while let Some(Reverse((_, j))) = self.blind.pop() {
                    self.block(j);
                }
                self.out.push(op);
                self.nil = true;
                self.serve();
            }
            /// Makes the state `nil` with the pending delete due first.
            fn revive(&mut self) -> bool {
                match self.deletes.pop() {
                    Some(Reverse((_, op))) => {
                        self.delete(op);
                        true
                    }
                    None => false,
                }
            }
            /// The item of `heap` due first, if its last slot is `t`.
            fn pop_due(heap: &mut BinaryHeap<Reverse<(i64, usize)>>, t: i64) -> Option<usize> {
                match heap.peek() {
                    Some(Reverse((hi, _))) if *hi <= t => heap.pop().map(|Reverse((_, x))| x),
                    _ => None,
                }
            }
        }
        let mut st = State {
            out: Vec::with_capacity(self.ops.len()),
            nil: false,
            pending: Vec::new(),
            due: NEVER,
            deletes: BinaryHeap::new(),
            blind: BinaryHeap::new(),
            nil_headed: BinaryHeap::new(),
            sequences: &sequences,
        };
        let (mut ri, mut di, mut bi, mut fi) = (0, 0, 0, 0);
        for &t in &slots {
            while ri < reads.len() && reads[ri].0 <= t {
                st.pending.push(reads[ri].2);
                st.due = st.due.min(reads[ri].1);
                ri += 1;
            }
            while di < deletes.len() && deletes[di].0 <= t {
                st.deletes.push(Reverse((deletes[di].1, deletes[di].2)));
                di += 1;
            }
            while bi < backward.len() && backward[bi].0 <= t {
                let (_, hi, j) = backward[bi];
                if nil_headed(j) {
                    st.nil_headed.push(Reverse((hi, j)));
                } else {
                    st.blind.push(Reverse((hi, j)));
                }
                bi += 1;
            }
            st.serve();
            // What must take effect by slot t.
            loop {
                if let Some(j) = State::pop_due(&mut st.nil_headed, t) {
                    if !st.nil && !st.revive() {
                        return failed();
                    }
                    st.block(j);
                } else if let Some(j) = State::pop_due(&mut st.blind, t) {
                    // While `nil` holds, a nil-headed block can use it first.
                    if st.nil {
                        if let Some(Reverse((_, b))) = st.nil_headed.pop() {
                            st.block(b);
                        }
                    }
                    st.block(j);
                } else if let Some(op) = State::pop_due(&mut st.deletes, t) {
                    st.delete(op);
                } else if !st.pending.is_empty() && st.due <= t {
                    if !st.revive() {
                        return failed();
                    }
                } else {
                    break;
                }
            }
            // Forward blocks starting at t.
            while fi < forward.len() && starts[fi] <= t {
                let j = forward[fi];
                fi += 1;
                if blocks[j].head == INIT {
                    st.block(j);
                    st.nil = self.init == NIL && sequences[j].is_empty();
                    st.serve();
                    continue;
                }
                if nil_headed(j) {
                    if !st.nil && !st.revive() {
                        return failed();
                    }
                } else if st.nil {
                    if let Some(Reverse((_, b))) = st.nil_headed.pop() {
                        st.block(b);
                    }
                }
                st.block(j);
            }
        }
        if !st.pending.is_empty()
            || fi < forward.len()
            || bi < backward.len()
            || !st.blind.is_empty()
            || !st.nil_headed.is_empty()
        {
            return failed();
        }
        let order = std::mem::take(&mut st.out);
        drop(st);
        if replays(self.model, self.ops, &order) {
            Decision::Linearizable
        } else {
            failed()
        }
    }

    /// [`Checker::witness`] with forward blocks anchored at their start
    /// (`late`: at their exit) and backward ones at the start of their range.
    fn witness_with(&mut self, blocks: &[Block], late: bool) -> Decision {
        const FAILED: &str = "no order of the deletes and reads of nil was found";
        // Each block at an anchor: a forward block where it must already
        // hold (its deadline - 1), a backward one at the first point of its
        // range outside every forward block (ties: backward blocks first).
        let forward_start = |b: &Block| if b.head == INIT { -1 } else { b.deadline.0 - 1 };
        let mut forward: Vec<&Block> = blocks
            .iter()
            .filter(|b| b.head == INIT || b.deadline.0 <= b.exit.0)
            .collect();
        forward.sort_by_key(|b| (forward_start(b), b.exit.0));
        let mut order: Vec<((i64, u8, i64), &Block)> = Vec::with_capacity(blocks.len());
        for b in blocks {
            if b.head == INIT || b.deadline.0 <= b.exit.0 {
                let key = if b.head == INIT {
                    (-2, 0, 0)
                } else if late {
                    (b.exit.0, 1, forward_start(b))
                } else {
                    (forward_start(b), 1, b.exit.0)
                };
                order.push((key, b));
            } else {
                let lo = b.exit.0;
                let n = forward.partition_point(|f| forward_start(f) < lo);
                let x = match n.checked_sub(1).map(|i| forward[i]) {
                    Some(f) if f.exit.0 > lo => f.exit.0,
                    _ => lo,
                };
                order.push(((x, 0, 0), b));
            }
        }
        order.sort_by_key(|(key, _)| *key);
        // The ops of the blocks, in order; `starts[j]` is where block j begins.
        let mut seq: Vec<usize> = Vec::with_capacity(self.ops.len());
        let mut starts: Vec<usize> = Vec::with_capacity(order.len() + 1);
        let mut nil_before: Vec<bool> = Vec::with_capacity(order.len() + 1);
        for (_, b) in &order {
            starts.push(seq.len());
            nil_before.push(b.head != INIT && self.nil_heads[b.head]);
            self.block_sequence(b, &mut seq);
        }
        starts.push(seq.len());
        nil_before.push(false);
        // Real time at each boundary: the latest call before it, the
        // earliest return after it; and the model's state there.
        let bounds = starts.len();
        let mut max_call = vec![-1i64; bounds];
        let mut min_ret = vec![NEVER; bounds];
        let mut nil_at = vec![false; bounds];
        {
            let mut m = -1i64;
            let mut state = self.model.init();
            let mut j = 0;
            for (pos, &i) in seq.iter().enumerate() {
                while j < bounds && starts[j] == pos {
                    max_call[j] = m;
                    nil_at[j] = state == NIL;
                    if nil_before[j] {
                        // A delete will be inserted here.
                        state = NIL;
                    }
                    j += 1;
                }
                m = m.max(call(&self.ops[i]));
                match self.model.step(&state, &self.ops[i].op) {
                    Some(next) => state = next,
                    None => return Decision::NotApplicable(FAILED.into()),
                }
            }
            while j < bounds {
                max_call[j] = m;
                nil_at[j] = state == NIL;
                j += 1;
            }
            let mut r = NEVER;
            let mut j = bounds;
            for pos in (0..=seq.len()).rev() {
                while j > 0 && starts[j - 1] == pos {
                    j -= 1;
                    min_ret[j] = r;
                }
                if pos > 0 {
                    r = r.min(ret(&self.ops[seq[pos - 1]]));
                }
            }
        }
        // The boundaries where an op fits: after every op called before it
        // returned... precisely, max_call < its return and min_ret > its call.
        let range = |op: usize| -> Option<(usize, usize)> {
            let lo = min_ret.partition_point(|&r| r <= call(&self.ops[op]));
            let hi = max_call.partition_point(|&c| c < ret(&self.ops[op]));
            (lo < hi).then(|| (lo, hi - 1))
        };
        let mut deletes: Vec<(usize, (usize, usize))> = Vec::new();
        let mut nil_reads: Vec<(usize, (usize, usize))> = Vec::new();
        for i in 0..self.ops.len() {
            match self.original[i] {
                UniqueOp::Write(NIL) => match range(i) {
                    Some(r) => deletes.push((i, r)),
                    None if self.ops[i].ret().is_some() => {
                        return Decision::NotApplicable(FAILED.into())
                    }
                    None => {}
                },
                UniqueOp::Read(NIL) => match range(i) {
                    Some(r) => nil_reads.push((i, r)),
                    None => return Decision::NotApplicable(FAILED.into()),
                },
                _ => {}
            }
        }
        // Demands for nil: before a block that changes nil, and somewhere in
        // each nil read's range; served earliest-deadline first by deletes
        // (required ones first), each placed as late as the demand allows.
        let mut demands: Vec<(usize, usize)> = (0..bounds)
            .filter(|&j| nil_before[j])
            .map(|j| (j, j))
            .chain(nil_reads.iter().map(|&(_, r)| r))
            .collect();
        demands.sort_by_key(|&(lo, hi)| (hi, lo));
        let mut placed: Vec<Option<usize>> = vec![None; deletes.len()];
        let mut nil_points: std::collections::BTreeSet<usize> =
            (0..bounds).filter(|&j| nil_at[j]).collect();
        let mut by_choice: Vec<usize> = (0..deletes.len()).collect();
        by_choice.sort_by_key(|&d| (self.ops[deletes[d].0].ret().is_none(), deletes[d].1 .1));
        for &(lo, hi) in &demands {
            if nil_points.range(lo..=hi).next().is_some() {
                continue;
            }
            let pick = by_choice.iter().copied().find(|&d| {
                let (dlo, dhi) = deletes[d].1;
                placed[d].is_none() && dlo <= hi && dhi >= lo
            });
            let Some(d) = pick else {
                return Decision::NotApplicable(FAILED.into());
            };
            let at = hi.min(deletes[d].1 .1);
            placed[d] = Some(at);
            nil_points.insert(at);
        }
        for (d, &(op, (lo, _))) in deletes.iter().enumerate() {
            if placed[d].is_none() && self.ops[op].ret().is_some() {
                placed[d] = Some(lo);
            }
        }
        // The final sequence: at each boundary the deletes, then the nil
        // reads, each by call.
        let mut inserted: Vec<Vec<usize>> = vec![Vec::new(); bounds];
        let mut delete_at: Vec<Vec<usize>> = vec![Vec::new(); bounds];
        for (d, &(op, _)) in deletes.iter().enumerate() {
            if let Some(at) = placed[d] {
                delete_at[at].push(op);
            }
        }
        for &(op, (lo, hi)) in &nil_reads {
            match nil_points.range(lo..=hi).next() {
                Some(&at) => inserted[at].push(op),
                None => return Decision::NotApplicable(FAILED.into()),
            }
        }
        let mut full: Vec<usize> = Vec::with_capacity(seq.len() + deletes.len() + nil_reads.len());
        for j in 0..bounds {
            // The first delete invoked, then the other deletes and the reads
            // by call (all see nil).
            let mut here = std::mem::take(&mut delete_at[j]);
            here.sort_by_key(|&i| self.ops[i].call());
            let mut rest = here.split_off(here.len().min(1));
            rest.append(&mut inserted[j]);
            rest.sort_by_key(|&i| self.ops[i].call());
            full.extend(here);
            full.extend(rest);
            if j + 1 < bounds {
                full.extend_from_slice(&seq[starts[j]..starts[j + 1]]);
            }
        }
        if replays(self.model, self.ops, &full) {
            Decision::Linearizable
        } else {
            Decision::NotApplicable(FAILED.into())
        }
    }

    /// Block `inner` has to take effect while `outer`'s value must hold.
    fn overlap(&self, inner: &Block, outer: &Block) -> Decision {
        let name = |b: &Block| match b.head {
            INIT => "the initial value".to_string(),
            h => match self.produced(h) {
                Some(v) => format!("the value {}", self.describe(v)),
                None => "an unobserved change".to_string(),
            },
        };
        let op = inner.deadline.1;
        let mut pending: Vec<usize> = [inner.head, outer.exit.1, outer.head]
            .into_iter()
            .filter(|&p| p != INIT && p != usize::MAX && p != op)
            .collect();
        pending.dedup();
        self.violation(
            op,
            pending,
            format!(
                "{} must take effect before this op returned, but {} must hold until an op invoked later has seen it",
                name(inner),
                name(outer)
            ),
        )
    }
}

/// True if `order` is a linearization of `ops`: every op with a return
/// appears once (others at most once), no op comes after one that was
/// invoked after it returned, and the model accepts each op in turn.
/// For entries `(key, value, id)` sorted by key: at each position, the
/// largest `value` (and its `id`) among the entries up to it; the first
/// of equal values wins.
fn running_max(entries: &[(i64, i64, usize)]) -> Vec<(i64, usize)> {
    let mut best = (i64::MIN, usize::MAX);
    entries
        .iter()
        .map(|&(_, value, id)| {
            if value > best.0 {
                best = (value, id);
            }
            best
        })
        .collect()
}

fn replays<M: Model<State = u32>>(model: &mut M, ops: &[SearchOp<M::Op>], order: &[usize]) -> bool {
    let mut used = vec![false; ops.len()];
    let mut latest_call = -1i64;
    let mut state = model.init();
    for &i in order {
        if used[i] || ret(&ops[i]) <= latest_call {
            return false;
        }
        used[i] = true;
        latest_call = latest_call.max(call(&ops[i]));
        match model.step(&state, &ops[i].op) {
            Some(next) => state = next,
            None => return false,
        }
    }
    ops.iter()
        .zip(&used)
        .all(|(op, &u)| u || op.ret().is_none())
}

/// Records `observer` reading `seen`'s value (only reads bound the value's
/// span; a cas or append observing it is its successor instead).
fn note_read<O: Clone>(
    seen: &mut Observed,
    view: &[UniqueOp],
    ops: &[SearchOp<O>],
    observer: usize,
) {
    if !matches!(view[observer], UniqueOp::Read(_)) {
        return;
    }
    let op = &ops[observer];
    seen.note(observer, call(op), ret(op));
}

/// A chain of changes that follow one another.
#[derive(Debug, Clone)]
struct Block {
    head: usize,
    /// The head's call (`-1` for the initial state).
    start: i64,
    /// The earliest deadline among the changes and reads: the head must take
    /// effect at a slot below it (and the op setting it).
    deadline: (i64, usize),
    /// The slot from which the next block may start (and the op setting it).
    exit: (i64, usize),
}
