//! The WGL search: is there a linearization of one partition's ops?
//!
//! Wing & Gong's algorithm with Lowe's memoization, as in Porcupine
//! (`checker.go`): the ops' call and return events sit in a doubly linked
//! list in time order. Walking from the head, a *call* event is a candidate to
//! linearize next: if the model accepts it, the op is "lifted" out of the list
//! (call and return), pushed on a stack, and the walk restarts. Reaching a
//! *return* event means the op that returns there should already have been
//! linearized: backtrack (pop, re-insert, try the next candidate). The search
//! succeeds when every op that must take effect is linearized.
//!
//! The memo table holds every (set of linearized ops, model state) pair ever
//! reached: reaching one again can only repeat a failed exploration, so it is
//! skipped. Sets are bitsets (`Vec<u64>`) hashed incrementally with Zobrist
//! keys (one random `u64` per op, XORed in and out), so a lookup costs one
//! probe plus, on a hit, one bitset comparison; states are the models' `u32`s.
//!
//! Ops of unknown outcome (`ret: None`) have no return event: nothing forces
//! them to be linearized, so they may be placed anywhere after their call, or
//! nowhere (success only counts ops with a return). That is exactly Jepsen's
//! `:info`.
//!
//! The search is bounded by a [`Budget`]: explored states (which bounds memory)
//! and wall time. Running out yields [`SearchResult::Unknown`], never a hang.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hashbrown::hash_table::{Entry, HashTable};
use rustc_hash::{FxHashMap, FxHasher};

use super::model::{Model, SearchOp};

/// Limits for one partition's search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most (linearized set, state) pairs kept in the memo table.
    pub max_states: u64,
    /// Most bytes the memo table may use (approximately); whichever limit is
    /// reached first ends the search.
    pub max_memory: u64,
    /// Wall-clock limit.
    pub time_limit: Option<Duration>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_states: 20_000_000,
            max_memory: 2 << 30,
            time_limit: Some(Duration::from_secs(60)),
        }
    }
}

/// Why a search stopped without a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    States(u64),
    Memory(u64),
    Time(Duration),
    /// The whole run's time limit passed (this key's search was cut short or
    /// never started).
    RunTime(Duration),
    /// Another key was found not linearizable, which decided the history;
    /// this key's search was stopped (or never started).
    Cancelled,
}

/// Stops a search from outside: a flag another thread sets (another key's
/// verdict decided the history) and the whole run's deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Interrupt<'a> {
    pub cancel: Option<&'a AtomicBool>,
    /// The run's deadline and its limit (for the message).
    pub deadline: Option<(Instant, Duration)>,
}

impl Interrupt<'_> {
    /// Why to stop now, if at all.
    pub fn check(&self) -> Option<Exhausted> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Some(Exhausted::Cancelled);
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Some(Exhausted::RunTime(limit)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::States(n) => write!(f, "explored-state limit reached ({n} states)"),
            Exhausted::Memory(b) => {
                write!(f, "memory limit reached ({} MiB of memo table)", b >> 20)
            }
            Exhausted::Time(t) => write!(f, "time limit reached ({:.1} s)", t.as_secs_f64()),
            Exhausted::RunTime(t) => write!(
                f,
                "the run's time limit ({:.1} s) passed before this key was decided",
                t.as_secs_f64()
            ),
            Exhausted::Cancelled => f.write_str(
                "not checked: another key is not linearizable (use --all-keys for every key's verdict)",
            ),
        }
    }
}

/// The deepest point the search reached before failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck<S> {
    /// The longest linearizable prefix found, in linearization order (indices
    /// into the ops slice).
    pub prefix: Vec<usize>,
    /// The model state after `prefix`.
    pub state: S,
    /// The op whose return was reached without it being linearizable.
    pub op: usize,
    /// The other ops that were pending (invoked, not linearized) at that point:
    /// none of them could be linearized next either without a dead end.
    pub pending: Vec<usize>,
}

/// The outcome of [`search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchResult<S> {
    /// A linearization exists; `order` is one (indices into the ops slice; ops
    /// of unknown outcome that it leaves out did not take effect).
    Linearizable {
        order: Vec<usize>,
    },
    NotLinearizable(Stuck<S>),
    Unknown(Exhausted),
}

/// Counters of one search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Distinct (linearized set, state) pairs explored.
    pub states: u64,
    /// Model steps tried.
    pub steps: u64,
    /// Nodes of the search tree expanded (fresh memo visits; more than
    /// `states` when later visits with fewer optional ops replace earlier ones).
    pub expanded: u64,
    pub elapsed: Duration,
}

const NONE: u32 = u32::MAX;

/// The event list: entry 0 is the head sentinel, entry `len - 1` the tail one.
struct Events {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The op of each entry.
    op: Vec<u32>,
    /// For a call entry, its return entry (`NONE` if the op has none); for a
    /// return entry, `NONE`.
    ret: Vec<u32>,
    is_call: Vec<bool>,
}

impl Events {
    fn new<O>(ops: &[SearchOp<O>]) -> Events {
        // (time, is_return, op): a call and a return never share a time
        // (times are history positions), the tie-break is only for safety.
        let mut events: Vec<(usize, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call(), false, i as u32));
            if let Some(ret) = op.ret() {
                events.push((ret.max(op.call()), true, i as u32));
            }
        }
        events.sort_unstable();
        let n = events.len() + 2;
        let tail = (n - 1) as u32;
        let mut ev = Events {
            next: (1..=n as u32).collect(),
            prev: (0..n as u32).map(|i| i.wrapping_sub(1)).collect(),
            op: vec![NONE; n],
            ret: vec![NONE; n],
            is_call: vec![false; n],
        };
        ev.next[n - 1] = NONE;
        ev.prev[0] = NONE;
        let mut call_entry = vec![NONE; ops.len()];
        for (j, &(_, is_return, op)) in events.iter().enumerate() {
            let e = j + 1;
            ev.op[e] = op;
            if is_return {
                ev.ret[call_entry[op as usize] as usize] = e as u32;
            } else {
                ev.is_call[e] = true;
                call_entry[op as usize] = e as u32;
            }
        }
        debug_assert_eq!(ev.next[n - 2], tail);
        ev
    }

    fn tail(&self) -> u32 {
        (self.next.len() - 1) as u32
    }

    #[inline]
    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    #[inline]
    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = e;
        self.prev[n as usize] = e;
    }

    /// Removes a call entry and its return entry.
    #[inline]
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let ret = self.ret[call as usize];
        if ret != NONE {
            self.unlink(ret);
        }
    }

    /// Undoes [`Events::lift`] (in reverse order, dancing-links style).
    #[inline]
    fn unlift(&mut self, call: u32) {
        let ret = self.ret[call as usize];
        if ret != NONE {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// The set of linearized ops, with its Zobrist hash kept up to date.
struct LinearizedSet {
    words: Vec<u64>,
    keys: Vec<u64>,
    hash: u64,
}

impl LinearizedSet {
    fn new(n: usize) -> Self {
        // SplitMix64: deterministic, well-distributed keys.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ n as u64;
        let keys = (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect();
        LinearizedSet {
            words: vec![0; n.div_ceil(64).max(1)],
            keys,
            hash: 0,
        }
    }

    #[inline]
    fn toggle(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
        self.hash ^= self.keys[i];
    }
}

/// Which bitset an op belongs to and its bit there.
#[derive(Clone, Copy)]
struct Slot {
    required: bool,
    bit: u32,
}

#[inline]
fn toggle_bit(words: &mut [u64], bit: usize) {
    words[bit / 64] ^= 1 << (bit % 64);
}

#[inline]
fn bit(words: &[u64], bit: usize) -> bool {
    words[bit / 64] & (1 << (bit % 64)) != 0
}

#[inline]
fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// One (set of linearized required ops, state) reached, with the sets of
/// optional ops linearized on the way each time it was reached (only the
/// minimal ones: a superset of a recorded set is dominated and pruned).
struct MemoEntry<S> {
    hash: u64,
    /// Leading words of the required set that are all ones (not stored).
    lead: u32,
    /// The required set's words from `lead` to its last non-zero word: the
    /// search linearizes roughly in time order, so a set over 10 000 ops is a
    /// run of ones, a few mixed words, then zeros, and storing only the middle
    /// keeps entries tens of bytes instead of kilobytes.
    required: Box<[u64]>,
    state: S,
    optional: Vec<Box<[u64]>>,
}

/// The memo table with subsumption on optional ops.
///
/// Why subsumption: an op of unknown outcome may be linearized or left out,
/// so reaching (R, s) having used the optional ops I is never better than
/// having reached it with a subset I' ⊆ I: everything possible from the
/// former is possible from the latter (skip the extra ops; the remaining
/// required ops and therefore the real-time constraints are the same). With
/// many `:info` ops, the exact memo of Porcupine explores every subset of
/// them; subsumption cuts that to the minimal ones.
struct Memo<S> {
    table: HashTable<MemoEntry<S>>,
    /// Optional-op sets recorded (the search's "states").
    sets: u64,
    /// Approximate bytes held.
    bytes: u64,
}

impl<S: Hash + Eq + Clone> Memo<S> {
    fn new() -> Self {
        Memo {
            table: HashTable::new(),
            sets: 0,
            bytes: 0,
        }
    }

    /// Records a visit; false if it is dominated by an earlier one.
    #[inline]
    fn visit(&mut self, required: &LinearizedSet, optional: &[u64], state: &S) -> bool {
        let hash = combined_hash(required.hash, state);
        let words = &required.words;
        let lead = words.iter().take_while(|&&w| w == u64::MAX).count();
        let end = words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(lead, |i| i + 1)
            .max(lead);
        let window = &words[lead..end];
        match self.table.entry(
            hash,
            |m| {
                m.hash == hash
                    && m.lead as usize == lead
                    && m.state == *state
                    && *m.required == *window
            },
            |m| m.hash,
        ) {
            Entry::Vacant(v) => {
                v.insert(MemoEntry {
                    hash,
                    lead: lead as u32,
                    required: window.into(),
                    state: state.clone(),
                    optional: vec![optional.into()],
                });
                self.sets += 1;
                // The table keeps entries inline with up to half its slots
                // free, and each boxed slice has allocator overhead.
                self.bytes += (2 * std::mem::size_of::<MemoEntry<S>>()
                    + 8 * (window.len() + optional.len())
                    + 64) as u64;
                true
            }
            Entry::Occupied(mut o) => {
                let entry = o.get_mut();
                if entry.optional.iter().any(|seen| is_subset(seen, optional)) {
                    return false;
                }
                let before = entry.optional.len();
                entry.optional.retain(|seen| !is_subset(optional, seen));
                self.sets -= (before - entry.optional.len()) as u64;
                entry.optional.push(optional.into());
                self.sets += 1;
                self.bytes += (8 * optional.len() + 16) as u64;
                true
            }
        }
    }
}

#[inline]
fn combined_hash<S: Hash>(set_hash: u64, state: &S) -> u64 {
    let mut h = FxHasher::default();
    state.hash(&mut h);
    // Zobrist keys are uniform, so XOR keeps the result uniform in all bits.
    set_hash ^ h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Searches for a linearization of `ops` under `model`.
pub fn search<M: Model>(
    model: &mut M,
    ops: &[SearchOp<M::Op>],
    budget: &Budget,
) -> (SearchResult<M::State>, SearchStats) {
    search_until(model, ops, budget, Interrupt::default())
}

/// [`search`] that also stops when `interrupt` says so (checked with the time
/// limit, every 1024 steps).
pub fn search_until<M: Model>(
    model: &mut M,
    ops: &[SearchOp<M::Op>],
    budget: &Budget,
    interrupt: Interrupt<'_>,
) -> (SearchResult<M::State>, SearchStats) {
    let started = Instant::now();
    if let Some(why) = interrupt.check() {
        return (SearchResult::Unknown(why), SearchStats::default());
    }
    let mut stats = SearchStats::default();
    let required = ops.iter().filter(|op| op.ret().is_some()).count();
    if required == 0 {
        stats.elapsed = started.elapsed();
        return (SearchResult::Linearizable { order: Vec::new() }, stats);
    }

    let mut slots = Vec::with_capacity(ops.len());
    let (mut n_required, mut n_optional) = (0u32, 0u32);
    for op in ops {
        let required = op.ret().is_some();
        let counter = if required {
            &mut n_required
        } else {
            &mut n_optional
        };
        slots.push(Slot {
            required,
            bit: *counter,
        });
        *counter += 1;
    }
    // Twins: optional ops with the same model op. Once invoked, two of them
    // are interchangeable (no return event ties either down), so only the
    // earliest unused one of a twin chain is ever a candidate. Without this,
    // k identical `:info` writes make the search try all 2^k subsets.
    let mut twin_before: Vec<u32> = vec![NONE; ops.len()];
    {
        let mut by_call: Vec<usize> = (0..ops.len()).filter(|&i| !slots[i].required).collect();
        by_call.sort_by_key(|&i| ops[i].call());
        let mut last: FxHashMap<&M::Op, usize> = FxHashMap::default();
        for i in by_call {
            if let Some(j) = last.insert(&ops[i].op, i) {
                twin_before[i] = j as u32;
            }
        }
    }
    let mut events = Events::new(ops);
    let tail = events.tail();
    let mut linearized = LinearizedSet::new(n_required as usize);
    let mut optional = vec![0u64; (n_optional as usize).div_ceil(64).max(1)];
    let mut memo: Memo<M::State> = Memo::new();
    let mut state = model.init();
    let mut linearized_required = 0usize;
    // (call entry, state before it)
    // (call entry, state before it, forced: see `fresh` below)
    let mut stack: Vec<(u32, M::State, bool)> = Vec::with_capacity(ops.len());
    let mut best: Option<Stuck<M::State>> = None;
    let mut entry = events.next[0];
    // Candidates are tried in two passes over the list: required ops first,
    // then optional ones. Reaching a state first with few optional ops used
    // makes the memo's subsumption prune the later, larger variants instead
    // of re-exploring below each smaller one found later.
    let mut optional_pass = false;
    // At a node just reached, a required *read* that is a candidate and fits
    // the state is linearized at once, without branching ("forced"): any
    // linearization from this node can be rewritten with that read first (a
    // read leaves the state unchanged, and no pending op returned before it
    // was called), so if the node has a solution, it has one with the read
    // first. When the forced child fails, the node fails.
    let mut fresh = true;
    let mut iterations: u64 = 0;
    let toggle = |slot: Slot, linearized: &mut LinearizedSet, optional: &mut [u64]| {
        if slot.required {
            linearized.toggle(slot.bit as usize);
        } else {
            toggle_bit(optional, slot.bit as usize);
        }
    };

    loop {
        iterations += 1;
        if iterations & 0x3FF == 0 {
            if let Some(limit) = budget.time_limit {
                if started.elapsed() > limit {
                    stats.elapsed = started.elapsed();
                    return (SearchResult::Unknown(Exhausted::Time(limit)), stats);
                }
            }
            if let Some(why) = interrupt.check() {
                stats.elapsed = started.elapsed();
                return (SearchResult::Unknown(why), stats);
            }
        }
        // The candidate to try, and whether it is forced.
        let mut forced = false;
        if fresh {
            fresh = false;
            let mut e = events.next[0];
            while e != tail && events.is_call[e as usize] {
                let i = events.op[e as usize] as usize;
                if slots[i].required && model.is_read(&ops[i].op) {
                    stats.steps += 1;
                    if model.step(&state, &ops[i].op).as_ref() == Some(&state) {
                        forced = true;
                        entry = e;
                        break;
                    }
                }
                e = events.next[e as usize];
            }
        }
        let e = entry as usize;
        let backtrack = if forced {
            let i = events.op[e] as usize;
            toggle(slots[i], &mut linearized, &mut optional);
            if memo.visit(&linearized, &optional, &state) {
                false
            } else {
                // Explored before: this node fails.
                toggle(slots[i], &mut linearized, &mut optional);
                true
            }
        } else if entry != tail && events.is_call[e] {
            let i = events.op[e] as usize;
            if slots[i].required == optional_pass {
                entry = events.next[e];
                continue;
            }
            let twin = twin_before[i];
            if twin != NONE && !bit(&optional, slots[twin as usize].bit as usize) {
                entry = events.next[e];
                continue;
            }
            stats.steps += 1;
            let Some(next_state) = model.step(&state, &ops[i].op) else {
                entry = events.next[e];
                continue;
            };
            toggle(slots[i], &mut linearized, &mut optional);
            if !memo.visit(&linearized, &optional, &next_state) {
                toggle(slots[i], &mut linearized, &mut optional);
                entry = events.next[e];
                continue;
            }
            let previous = std::mem::replace(&mut state, next_state);
            stack.push((entry, previous, false));
            false
        } else if !optional_pass {
            // End of the required candidates: now the optional ones, from the head.
            optional_pass = true;
            entry = events.next[0];
            continue;
        } else {
            // A return event (or the end of the list, which holds only ops
            // without return events: nothing left to try).
            if entry != tail && best.as_ref().is_none_or(|b| stack.len() > b.prefix.len()) {
                best = Some(stuck_here(&events, &stack, &state, entry));
            }
            true
        };
        if !backtrack {
            // A new node: the candidate at `entry` is linearized.
            if forced {
                stack.push((entry, state.clone(), true));
            }
            let i = events.op[entry as usize] as usize;
            stats.expanded += 1;
            stats.states = memo.sets;
            let exhausted = if memo.sets > budget.max_states {
                Some(Exhausted::States(budget.max_states))
            } else if memo.bytes > budget.max_memory {
                Some(Exhausted::Memory(memo.bytes))
            } else {
                None
            };
            if let Some(why) = exhausted {
                stats.elapsed = started.elapsed();
                return (SearchResult::Unknown(why), stats);
            }
            events.lift(entry);
            if slots[i].required {
                linearized_required += 1;
                if linearized_required == required {
                    stats.elapsed = started.elapsed();
                    let order = stack
                        .iter()
                        .map(|&(c, _, _)| events.op[c as usize] as usize);
                    return (
                        SearchResult::Linearizable {
                            order: order.collect(),
                        },
                        stats,
                    );
                }
            }
            entry = events.next[0];
            optional_pass = false;
            fresh = true;
            continue;
        }
        // Backtrack: undo frames until one that was a choice (forced frames
        // fail with their node), then try the candidate after it.
        loop {
            let Some((call, previous, was_forced)) = stack.pop() else {
                stats.elapsed = started.elapsed();
                let stuck = best.unwrap_or_else(|| Stuck {
                    prefix: Vec::new(),
                    state: model.init(),
                    op: 0,
                    pending: Vec::new(),
                });
                return (SearchResult::NotLinearizable(stuck), stats);
            };
            let i = events.op[call as usize] as usize;
            toggle(slots[i], &mut linearized, &mut optional);
            if slots[i].required {
                linearized_required -= 1;
            }
            state = previous;
            events.unlift(call);
            if !was_forced {
                entry = events.next[call as usize];
                optional_pass = !slots[i].required;
                break;
            }
        }
    }
}

/// Describes the search's position when it hits the return entry `ret_entry`.
fn stuck_here<S: Clone>(
    events: &Events,
    stack: &[(u32, S, bool)],
    state: &S,
    ret_entry: u32,
) -> Stuck<S> {
    let op = events.op[ret_entry as usize] as usize;
    let mut pending = Vec::new();
    let mut e = events.next[0];
    while e != ret_entry && e != NONE {
        if events.is_call[e as usize] {
            let i = events.op[e as usize] as usize;
            if i != op {
                pending.push(i);
            }
        }
        e = events.next[e as usize];
    }
    Stuck {
        prefix: stack
            .iter()
            .map(|&(c, _, _)| events.op[c as usize] as usize)
            .collect(),
        state: state.clone(),
        op,
        pending,
    }
}
