//! `kv`: a map of independent keys; each key is checked on its own.
//!
//! Values are `[key v]`. Operations: `:read`/`:get` (observes `v`; a missing
//! key reads as `nil`), `:write`/`:put`, `:delete` (value `[key]`, `[key nil]`
//! or just `key`), `:cas [key [old new]]` (`old` = `nil` matches a missing key),
//! `:append [key v]`: a string is concatenated to a string value, anything is
//! pushed onto a vector value; appending to a missing key creates it (a string
//! as itself, anything else as a one-element vector).
//!
//! Because keys are independent (P-compositionality: a history is
//! linearizable iff each key's sub-history is), [`partition`] splits the
//! history by key and the per-key model [`KvKey`] is a register extended with
//! delete and append.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::model::{Model, ModelError, Partition, SearchOp, ValueTable, NIL, TOO_LONG};
use crate::history::{ClientOp, Outcome, Value};

/// An operation on one key, over interned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvOp {
    Read(u32),
    Write(u32),
    Delete,
    Cas { old: u32, new: u32 },
    Append(u32),
}

/// The model of one key; state is the interned id of its value (`nil` = missing).
#[derive(Debug, Clone, Default)]
pub struct KvKey<'h> {
    pub values: ValueTable<'h>,
    /// Memo of `append`: (value id, appended id) → result id, so that the
    /// search builds each concatenation once.
    appended: FxHashMap<(u32, u32), Option<u32>>,
    /// The id of the value every key starts with (`nil`: missing).
    pub initial: u32,
}

impl KvKey<'_> {
    fn append(&mut self, state: u32, item: u32) -> Option<u32> {
        if let Some(&result) = self.appended.get(&(state, item)) {
            return result;
        }
        let result = match (self.values.get(state), self.values.get(item)) {
            (Value::Nil, Value::Str(s)) => Some(Value::Str(s.clone())),
            (Value::Nil, other) => Some(Value::Vector(vec![other.clone()].into())),
            (Value::Str(a), Value::Str(b)) => Some(Value::string(format!("{a}{b}"))),
            (Value::Vector(items), other) => {
                let mut items = items.to_vec();
                items.push(other.clone());
                Some(Value::Vector(items.into()))
            }
            _ => None, // e.g. appending to an integer: impossible
        };
        let result = result.map(|v| self.values.intern_owned(v));
        self.appended.insert((state, item), result);
        result
    }
}

impl Model for KvKey<'_> {
    type Op = KvOp;
    type State = u32;

    fn init(&self) -> u32 {
        self.initial
    }

    #[inline]
    fn step(&mut self, state: &u32, op: &KvOp) -> Option<u32> {
        match *op {
            KvOp::Read(v) => (*state == v).then_some(v),
            KvOp::Write(v) => Some(v),
            KvOp::Delete => Some(NIL),
            KvOp::Cas { old, new } => (*state == old).then_some(new),
            KvOp::Append(v) => self.append(*state, v),
        }
    }

    fn is_read(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Read(_))
    }

    fn describe_op(&self, op: &KvOp) -> String {
        match *op {
            KvOp::Read(v) => format!("read {}", self.values.get(v)),
            KvOp::Write(v) => format!("write {}", self.values.get(v)),
            KvOp::Delete => "delete".to_string(),
            KvOp::Cas { old, new } => {
                format!("cas {} -> {}", self.values.get(old), self.values.get(new))
            }
            KvOp::Append(v) => format!("append {}", self.values.get(v)),
        }
    }

    fn describe_state(&self, state: &u32) -> String {
        self.values.get(*state).to_string()
    }
}

impl super::unique::UniqueValues for KvKey<'_> {
    fn view(&self, op: &KvOp) -> super::unique::UniqueOp {
        use super::unique::UniqueOp as U;
        match *op {
            KvOp::Read(v) => U::Read(v),
            KvOp::Write(v) => U::Write(v),
            KvOp::Delete => U::Write(NIL),
            KvOp::Cas { old, new } => U::Cas { old, new },
            KvOp::Append(v) => U::Append(v),
        }
    }

    fn value(&self, id: u32) -> &Value {
        self.values.get(id)
    }

    fn intern_computed(&mut self, value: Value) -> u32 {
        self.values.intern_owned(value)
    }
}

/// The key of a kv op value: `[key ...]`, or a bare key for `:delete`.
fn key_of<'a>(op: &ClientOp<'_>, value: &'a Value) -> Result<&'a Value, ModelError> {
    match value {
        Value::Vector(items) if !items.is_empty() => Ok(&items[0]),
        v if op.f == "delete" && !v.is_nil() => Ok(v),
        v => Err(ModelError::new(
            op,
            format!("a kv value [key ...] for :{}, found {v}", op.f),
        )),
    }
}

/// The second element of `[key v]` (`nil` when absent).
fn second(value: &Value) -> &Value {
    match value {
        Value::Vector(items) if items.len() >= 2 => &items[1],
        _ => &Value::Nil,
    }
}

/// Splits a kv history by key; partitions come out sorted by key.
///
/// Two passes: group op indices by key (one hash of the key per op), then
/// build each key's partition (interning its values) in parallel.
pub fn partition<'h>(ops: &[ClientOp<'h>]) -> Result<Vec<Partition<KvKey<'h>>>, ModelError> {
    partition_from(ops, None)
}

/// [`partition`] with every key starting as `initial` instead of missing
/// (`nil`): Jepsen's `independent` registers checked with Knossos' cas
/// register, which starts at 0.
pub fn partition_from<'h>(
    ops: &[ClientOp<'h>],
    initial: Option<&Value>,
) -> Result<Vec<Partition<KvKey<'h>>>, ModelError> {
    // Ops grouped by key in chunks on all cores, then the chunks' groups
    // merged in order (each key's ops stay in history order; the first
    // bad op is the first of the earliest chunk that has one).
    let chunks: Vec<Result<KeyGroups<'h>, ModelError>> = ops
        .par_chunks(SPLIT_CHUNK)
        .enumerate()
        .map(|(n, chunk)| group_by_key(chunk, n * SPLIT_CHUNK))
        .collect();
    let mut index: FxHashMap<&'h Value, usize> = FxHashMap::default();
    let mut groups: KeyGroups<'h> = Vec::new();
    for chunk in chunks {
        for (key, sources) in chunk? {
            match index.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    groups[*e.get()].1.extend_from_slice(&sources)
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(groups.len());
                    groups.push((key, sources));
                }
            }
        }
    }
    let built: Vec<Result<Partition<KvKey<'h>>, ModelError>> = groups
        .into_par_iter()
        .map(|(key, sources)| build_partition(key, &sources, ops, initial))
        .collect();
    let mut parts = Vec::with_capacity(built.len());
    let mut first_error: Option<ModelError> = None;
    for result in built {
        match result {
            Ok(part) => parts.push(part),
            Err(e) => {
                if first_error.as_ref().is_none_or(|f| e.invoke < f.invoke) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    parts.sort_by_cached_key(|p| p.key.as_ref().map(|k| k.to_string()));
    Ok(parts)
}

/// Op indices by key, keys in the order they first appear.
type KeyGroups<'h> = Vec<(&'h Value, Vec<usize>)>;

/// Ops per chunk of the split's first pass.
const SPLIT_CHUNK: usize = 1 << 16;

/// The indices (from `first`) of the ops of `chunk` by key, keys in the
/// order they first appear; failed ops are left out.
fn group_by_key<'h>(chunk: &[ClientOp<'h>], first: usize) -> Result<KeyGroups<'h>, ModelError> {
    let mut index: FxHashMap<&'h Value, usize> = FxHashMap::default();
    let mut groups: Vec<(&'h Value, Vec<usize>)> = Vec::new();
    // Keys are shared strings (the reader interns them): a key already
    // seen at the same address is found by its address, without hashing or
    // comparing its text; other keys (and other addresses) by content.
    let mut by_address = vec![(0usize, 0usize); ADDRESS_SLOTS];
    for (i, op) in chunk.iter().enumerate() {
        if op.outcome == Outcome::Fail {
            continue;
        }
        let key = key_of(op, op.input())?;
        let address = match key {
            Value::Str(s) => s.as_ptr() as usize,
            _ => 0,
        };
        let cached = &mut by_address[address_slot(address)];
        let group = if address != 0 && cached.0 == address {
            cached.1
        } else {
            let group = *index.entry(key).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            if address != 0 {
                *cached = (address, group);
            }
            group
        };
        groups[group].1.push(first + i);
    }
    Ok(groups)
}

/// Slots of the split's cache of key addresses (a power of two).
const ADDRESS_SLOTS: usize = 1 << 12;

fn address_slot(address: usize) -> usize {
    ((address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - ADDRESS_SLOTS.trailing_zeros()))
        as usize
}

/// The partition of one key from the ops at `sources`.
fn build_partition<'h>(
    key: &Value,
    sources: &[usize],
    ops: &[ClientOp<'h>],
    initial: Option<&Value>,
) -> Result<Partition<KvKey<'h>>, ModelError> {
    let mut part = Partition {
        key: Some(key.clone()),
        model: KvKey::default(),
        ops: Vec::with_capacity(sources.len()),
    };
    if let Some(v) = initial {
        part.model.initial = part.model.values.intern_owned(v.clone());
    }
    let values = &mut part.model.values;
    for &source in sources {
        let op = &ops[source];
        let input = op.input();
        let kv_op = match op.f {
            "read" | "get" => match op.output() {
                Some(out) => {
                    if let Value::Vector(items) = out {
                        if items.first().is_some_and(|k| k != key) {
                            return Err(ModelError::new(
                                op,
                                format!("the completion of :{} to name key {key}, found {out}", op.f),
                            ));
                        }
                    }
                    KvOp::Read(values.intern(second(out)))
                }
                None => continue, // unknown read: observed nothing
            },
            "write" | "put" => KvOp::Write(values.intern(second(input))),
            "delete" => KvOp::Delete,
            "append" => KvOp::Append(values.intern(second(input))),
            "cas" => match second(input) {
                Value::Vector(pair) if pair.len() == 2 => KvOp::Cas {
                    old: values.intern(&pair[0]),
                    new: values.intern(&pair[1]),
                },
                other => {
                    return Err(ModelError::new(
                        op,
                        format!("a kv :cas value [key [old new]], found [{key} {other}]"),
                    ))
                }
            },
            f => {
                return Err(ModelError::new(
                    op,
                    format!(
                        "an op of the kv model (:read/:get, :write/:put, :delete, :cas, :append), found :{f}"
                    ),
                ))
            }
        };
        let ret = match op.outcome {
            Outcome::Ok => op.complete,
            _ => None,
        };
        let search_op = SearchOp::new(kv_op, op.invoke, ret, source)
            .ok_or_else(|| ModelError::new(op, TOO_LONG))?;
        part.ops.push(search_op);
    }
    drop_unobservable(&mut part);
    Ok(part)
}

/// True when the ops look like a kv history: kv-only op names, or values
/// shaped `[key v]` where a register would hold a plain value.
pub fn looks_like_kv(ops: &[ClientOp<'_>]) -> bool {
    ops.iter().any(|op| match op.f {
        "get" | "put" | "append" | "delete" => true,
        "write" => matches!(op.input(), Value::Vector(v) if v.len() == 2),
        "read" => matches!(op.output(), Some(Value::Vector(v)) if v.len() == 2)
            || matches!(op.invoke_value, Value::Vector(_)),
        "cas" => matches!(op.input(), Value::Vector(v) if v.len() == 2 && matches!(v[1], Value::Vector(_))),
        _ => false,
    })
}

/// True when a register history carries Jepsen `independent` tuples: every
/// op's value is `[key v]` (reads invoked with `[key nil]`, cas with
/// `[key [old new]]`), so it is one register per key.
pub fn looks_independent(ops: &[ClientOp<'_>]) -> bool {
    let pair = |v: &Value| matches!(v, Value::Vector(items) if items.len() == 2);
    !ops.is_empty()
        && ops.iter().all(|op| match op.f {
            "read" => pair(op.invoke_value),
            "write" => pair(op.input()),
            "cas" => matches!(op.input(), Value::Vector(v) if v.len() == 2 && pair(&v[1])),
            _ => false,
        })
}

/// The key a kv client op is about (`None` if its value has no key).
pub fn op_key<'h>(op: &ClientOp<'h>) -> Option<&'h Value> {
    key_of(op, op.input()).ok()
}

/// Drops ops of unknown outcome whose effect nobody could have observed.
///
/// An optional `write v` / `cas [_ v]` / `append x` matters only if some read
/// or cas of the key could see it: a read result or cas `old` equal to `v`
/// (or, when the key has appends, a string containing `v` / `x`). Otherwise,
/// in any linearization using it, the ops after it until the value is
/// overwritten cannot depend on the value (no read or cas could match), so the
/// same order without it is a linearization too. With unique written values
/// (Jepsen's practice), this removes every timed-out op that did not take
/// effect, which is what makes searches with many `:info` ops explode.
/// Vector and map values under append are kept (element containment is not
/// worth the subtlety).
fn drop_unobservable(part: &mut Partition<KvKey<'_>>) {
    let values = &part.model.values;
    let mut observed_ids = rustc_hash::FxHashSet::default();
    for op in &part.ops {
        match op.op {
            KvOp::Read(v) | KvOp::Cas { old: v, .. } => {
                observed_ids.insert(v);
            }
            _ => {}
        }
    }
    let has_appends = part.ops.iter().any(|op| matches!(op.op, KvOp::Append(_)));
    let mut observed_strings: Vec<&str> = observed_ids
        .iter()
        .filter_map(|&id| values.get(id).as_str())
        .collect();
    // Under appends, reads mostly see prefixes of later reads; whatever a
    // prefix contains its extension contains too, so keep only the maximal
    // strings (in sorted order a prefix is followed by one of its extensions).
    observed_strings.sort_unstable();
    let maximal: Vec<&str> = observed_strings
        .iter()
        .enumerate()
        .filter(|&(i, s)| {
            observed_strings
                .get(i + 1)
                .is_none_or(|next| !next.starts_with(s))
        })
        .map(|(_, s)| *s)
        .collect();
    // The strings of the optional ops that some observed string contains:
    // all of them found in one pass over the observed strings (Aho-Corasick),
    // where testing each against each was quadratic (a 1M-op key: minutes).
    let mut candidates: Vec<u32> = Vec::new();
    if has_appends {
        for op in part.ops.iter().filter(|op| op.ret().is_none()) {
            if let KvOp::Write(v) | KvOp::Cas { new: v, .. } | KvOp::Append(v) = op.op {
                if values.get(v).as_str().is_some_and(|s| !s.is_empty()) {
                    candidates.push(v);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
    }
    let mut contained = rustc_hash::FxHashSet::default();
    if !candidates.is_empty() {
        let patterns: Vec<&str> = candidates
            .iter()
            .map(|&id| values.get(id).as_str().unwrap_or_default())
            .collect();
        match aho_corasick::AhoCorasick::new(&patterns) {
            Ok(automaton) => {
                for o in &maximal {
                    for m in automaton.find_overlapping_iter(*o) {
                        contained.insert(candidates[m.pattern().as_usize()]);
                    }
                }
            }
            // Too big an automaton: keep them all (always sound).
            Err(_) => contained.extend(candidates.iter().copied()),
        }
    }
    let seen_in_a_string = |id: u32, s: &str| s.is_empty() || contained.contains(&id);
    let observable = |id: u32, appended: bool| -> bool {
        if !has_appends {
            return observed_ids.contains(&id);
        }
        match values.get(id) {
            Value::Str(s) => seen_in_a_string(id, s),
            Value::Int(_) | Value::Bool(_) | Value::Keyword(_) | Value::Float(_) if !appended => {
                observed_ids.contains(&id)
            }
            _ => true,
        }
    };
    let keep: Vec<bool> = part
        .ops
        .iter()
        .map(|op| {
            op.ret().is_some()
                || match op.op {
                    KvOp::Write(v) | KvOp::Cas { new: v, .. } => observable(v, false),
                    KvOp::Append(x) => observable(x, true),
                    KvOp::Read(_) | KvOp::Delete => true,
                }
        })
        .collect();
    let mut keep = keep.into_iter();
    part.ops.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Op, OpType};

    #[test]
    fn equal_keys_at_different_addresses_are_one_key() {
        // Built in memory: every "k1" is its own allocation (no interner),
        // so the split's address cache misses and the content decides.
        let mut h = History::new();
        for (p, key) in [(0, "k1"), (1, "k2"), (2, "k1"), (3, "k1")] {
            let inv = Op::invoke(p, "put", vec![Value::string(key), Value::Int(p)]);
            h.push(inv.clone());
            h.push(inv.complete(OpType::Ok, vec![Value::string(key), Value::Int(p)]));
        }
        let ops = h.client_ops().unwrap();
        let parts = partition(&ops).unwrap();
        let sizes: Vec<(String, usize)> = parts
            .iter()
            .map(|p| (p.key.as_ref().unwrap().to_string(), p.ops.len()))
            .collect();
        assert_eq!(
            sizes,
            [("\"k1\"".to_string(), 3), ("\"k2\"".to_string(), 1)]
        );
    }

    #[test]
    fn the_split_across_chunks_keeps_history_order_and_the_first_error() {
        let mut h = History::new();
        let n = 2 * SPLIT_CHUNK + 10;
        for i in 0..n as i64 {
            let key = Value::string(format!("k{}", i % 3));
            let inv = Op::invoke(0, "put", vec![key.clone(), Value::Int(i)]);
            h.push(inv.clone());
            h.push(inv.complete(OpType::Ok, vec![key, Value::Int(i)]));
        }
        let ops = h.client_ops().unwrap();
        let parts = partition(&ops).unwrap();
        assert_eq!(parts.len(), 3);
        for part in &parts {
            assert!(part.ops.windows(2).all(|w| w[0].source() < w[1].source()));
        }
        assert_eq!(parts.iter().map(|p| p.ops.len()).sum::<usize>(), n);
        for bad in [SPLIT_CHUNK + 5, 2 * SPLIT_CHUNK + 3] {
            h.ops[2 * bad].value = Value::Int(7);
            h.ops[2 * bad + 1].value = Value::Int(7);
        }
        let ops = h.client_ops().unwrap();
        let e = partition(&ops).unwrap_err();
        assert_eq!(e.invoke, 2 * (SPLIT_CHUNK + 5), "{e}");
    }
}
