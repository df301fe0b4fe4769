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

use std::fmt;
use std::hash::Hash;

use rustc_hash::FxHashMap;

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

    /// Human-readable operation, for reports.
    fn describe_op(&self, op: &Self::Op) -> String;

    /// Human-readable state, for reports ("nil", "3", "\"x 0 1 y\"").
    fn describe_state(&self, state: &Self::State) -> String;
}

/// One operation handed to the search: the model's op and its real-time interval.
#[derive(Debug, Clone)]
pub struct SearchOp<O> {
    pub op: O,
    /// When it was invoked (a position in the history).
    pub call: usize,
    /// When it completed: `Some` for `:ok` ops, which must be linearized before
    /// it; `None` for ops of unknown outcome, which may be linearized at any
    /// point after `call`, or left out.
    pub ret: Option<usize>,
    /// Index of the originating op in the client-op list (for reports).
    pub source: usize,
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
#[derive(Debug, Clone)]
pub struct ValueTable {
    ids: FxHashMap<Value, u32>,
    values: Vec<Value>,
}

/// The id of `nil`.
pub const NIL: u32 = 0;

impl Default for ValueTable {
    fn default() -> Self {
        let mut ids = FxHashMap::default();
        ids.insert(Value::Nil, NIL);
        ValueTable {
            ids,
            values: vec![Value::Nil],
        }
    }
}

impl ValueTable {
    pub fn intern(&mut self, value: &Value) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.intern_owned(value.clone())
    }

    pub fn intern_owned(&mut self, value: Value) -> u32 {
        if let Some(&id) = self.ids.get(&value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(value.clone());
        self.ids.insert(value, id);
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
