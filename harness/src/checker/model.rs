//! The model interface: what the search needs to know about an object.
//!
//! As in Porcupine (`model.go`), a model is a sequential specification: an
//! initial state and a `step` that, given a state and one operation (its input
//! *and* what it observed), says whether the operation is possible there and
//! what state follows. The search ([`super::linearizable`]) knows nothing else
//! about keys or values.
//!
//! Two decisions keep the search fast:
//! - States are small `Copy`-like values compared and hashed in the memo table
//!   millions of times, so models intern EDN values into `u32` ids
//!   ([`ValueTable`]); the register's state is one id.
//! - `step` takes `&mut self` so a model can intern values it creates while
//!   searching (the kv model's `append` builds new strings). Each key gets its
//!   own model instance, so there is no sharing between parallel searches.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxHasher;

use crate::history::{ClientOp, Value};

/// A sequential specification checked by the linearizability search.
pub trait Model {
    /// One operation as the model sees it: input and observed output together.
    type Op: Clone + Eq + Hash + fmt::Debug + Send;
    /// The object's state; cheap to clone, compare and hash.
    type State: Clone + Eq + Hash + fmt::Debug + Send;

    fn init(&self) -> Self::State;

    /// `Some(next)` if `op` can take effect in `state`, `None` if it cannot
    /// (e.g. a read that observed another value, a cas whose old value differs).
    fn step(&mut self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// True if `op` never changes the state: `step` gives `None` or the same
    /// state. The search linearizes such ops as soon as they fit, without
    /// branching (see [`super::linearizable`]).
    fn is_read(&self, _op: &Self::Op) -> bool {
        false
    }

    /// Human-readable operation, for reports.
    fn describe_op(&self, op: &Self::Op) -> String;

    /// Human-readable state, for reports ("nil", "3", "\"x 0 1 y\"").
    fn describe_state(&self, state: &Self::State) -> String;
}

/// One operation handed to the search: the model's op and its real-time interval.
///
/// Compact (positions are stored as `u32`: a million-op key's partition is
/// a million of these): read them with [`SearchOp::call`],
/// [`SearchOp::ret`] and [`SearchOp::source`].
#[derive(Debug, Clone)]
pub struct SearchOp<O> {
    pub op: O,
    call: u32,
    /// [`NO_RETURN`] for an op of unknown outcome.
    ret: u32,
    source: u32,
}

/// `ret` of a [`SearchOp`] without a return.
const NO_RETURN: u32 = u32::MAX;

/// Positions and indices above this do not fit a [`SearchOp`] (a history
/// of four billion events; no history that fits in memory has them).
pub const MAX_POSITION: usize = (u32::MAX - 1) as usize;

/// The message of a [`ModelError`] for an op past [`MAX_POSITION`].
pub const TOO_LONG: &str = "a history of at most 4 294 967 294 events (this op is further on)";

impl<O> SearchOp<O> {
    /// `None` if a position or `source` is above [`MAX_POSITION`].
    pub fn new(op: O, call: usize, ret: Option<usize>, source: usize) -> Option<SearchOp<O>> {
        let fits = |p: usize| (p <= MAX_POSITION).then_some(p as u32);
        Some(SearchOp {
            op,
            call: fits(call)?,
            ret: match ret {
                Some(r) => fits(r)?,
                None => NO_RETURN,
            },
            source: fits(source)?,
        })
    }

    /// When it was invoked (a position in the history).
    pub fn call(&self) -> usize {
        self.call as usize
    }

    /// When it completed: `Some` for `:ok` ops, which must be linearized before
    /// it; `None` for ops of unknown outcome, which may be linearized at any
    /// point after `call`, or left out.
    pub fn ret(&self) -> Option<usize> {
        (self.ret != NO_RETURN).then_some(self.ret as usize)
    }

    /// Index of the originating op in the client-op list (for reports).
    pub fn source(&self) -> usize {
        self.source as usize
    }
}

/// The part of a history that concerns one key, with its own model instance.
#[derive(Debug, Clone)]
pub struct Partition<M: Model> {
    /// The key (`None` for a single register).
    pub key: Option<Value>,
    pub model: M,
    pub ops: Vec<SearchOp<M::Op>>,
}

/// A history op the model cannot interpret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    /// Position of the op's invocation in the history.
    pub invoke: usize,
    pub message: String,
}

impl ModelError {
    pub fn new(op: &ClientOp<'_>, message: impl Into<String>) -> Self {
        ModelError {
            invoke: op.invoke,
            message: message.into(),
        }
    }
}

/// Interns EDN values as `u32` ids; id 0 is always `nil` (a missing key).
///
/// Values from the history are borrowed, not copied (a million-op history has
/// a million distinct written values, and reads of appended keys return long
/// strings); values the model computes (append results) are owned. The index
/// is a table of ids hashed by the value they name.
#[derive(Debug, Clone)]
pub struct ValueTable<'h> {
    index: HashTable<u32>,
    values: Vec<Cow<'h, Value>>,
}

/// The id of `nil`.
pub const NIL: u32 = 0;

/// Hash for the table. Long strings hash by length and their two ends only:
/// the values of one key are mostly appends of one another, which differ in
/// length, and hashing kilobytes per read would dominate splitting.
fn hash_value(value: &Value) -> u64 {
    let mut h = FxHasher::default();
    match value {
        Value::Str(s) if s.len() > 64 => {
            let b = s.as_bytes();
            b.len().hash(&mut h);
            b[..32].hash(&mut h);
            b[b.len() - 32..].hash(&mut h);
        }
        v => v.hash(&mut h),
    }
    h.finish()
}

impl Default for ValueTable<'_> {
    fn default() -> Self {
        let mut index = HashTable::new();
        index.insert_unique(hash_value(&Value::Nil), NIL, |_| hash_value(&Value::Nil));
        ValueTable {
            index,
            values: vec![Cow::Owned(Value::Nil)],
        }
    }
}

impl<'h> ValueTable<'h> {
    /// The id of a value of the history (borrowed).
    pub fn intern(&mut self, value: &'h Value) -> u32 {
        let hash = hash_value(value);
        if let Some(&id) = self
            .index
            .find(hash, |&id| *self.values[id as usize] == *value)
        {
            return id;
        }
        self.insert_new(hash, Cow::Borrowed(value))
    }

    /// The id of a computed value (owned).
    pub fn intern_owned(&mut self, value: Value) -> u32 {
        let hash = hash_value(&value);
        if let Some(&id) = self
            .index
            .find(hash, |&id| *self.values[id as usize] == value)
        {
            return id;
        }
        self.insert_new(hash, Cow::Owned(value))
    }

    fn insert_new(&mut self, hash: u64, value: Cow<'h, Value>) -> u32 {
        let id = self.values.len() as u32;
        self.values.push(value);
        let values = &self.values;
        self.index
            .insert_unique(hash, id, |&other| hash_value(&values[other as usize]));
        id
    }

    pub fn get(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}
