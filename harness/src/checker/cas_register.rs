//! `cas-register`: a single register holding any value, starting as `nil`.
//!
//! Operations (Jepsen's names): `:read` observes the value (the completion's
//! `:value`), `:write v` sets it, `:cas [old new]` sets it to `new` if it holds
//! `old`. A failed cas is reported by Jepsen as `:fail` and dropped before we
//! get here. A `:read` of unknown outcome observed nothing, so it constrains
//! nothing and is dropped too.

use super::model::{Model, ModelError, Partition, SearchOp, ValueTable, TOO_LONG};
use crate::history::{ClientOp, Outcome, Value};

/// A register operation over interned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read(u32),
    Write(u32),
    Cas { old: u32, new: u32 },
}

/// The register model; state is the interned id of the current value.
#[derive(Debug, Clone, Default)]
pub struct CasRegister<'h> {
    pub values: ValueTable<'h>,
    /// The id of the value it starts with (`nil` unless `--initial`).
    pub initial: u32,
}

impl Model for CasRegister<'_> {
    type Op = RegisterOp;
    type State = u32;

    fn init(&self) -> u32 {
        self.initial
    }

    #[inline]
    fn step(&mut self, state: &u32, op: &RegisterOp) -> Option<u32> {
        match *op {
            RegisterOp::Read(v) => (*state == v).then_some(v),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas { old, new } => (*state == old).then_some(new),
        }
    }

    fn is_read(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    fn describe_op(&self, op: &RegisterOp) -> String {
        match *op {
            RegisterOp::Read(v) => format!("read {}", self.values.get(v)),
            RegisterOp::Write(v) => format!("write {}", self.values.get(v)),
            RegisterOp::Cas { old, new } => {
                format!("cas {} -> {}", self.values.get(old), self.values.get(new))
            }
        }
    }

    fn describe_state(&self, state: &u32) -> String {
        self.values.get(*state).to_string()
    }
}

impl super::unique::UniqueValues for CasRegister<'_> {
    fn view(&self, op: &RegisterOp) -> super::unique::UniqueOp {
        use super::unique::UniqueOp as U;
        match *op {
            RegisterOp::Read(v) => U::Read(v),
            RegisterOp::Write(v) => U::Write(v),
            RegisterOp::Cas { old, new } => U::Cas { old, new },
        }
    }

    fn value(&self, id: u32) -> &Value {
        self.values.get(id)
    }

    fn intern_computed(&mut self, value: Value) -> u32 {
        self.values.intern_owned(value)
    }
}

/// Converts client ops into the one partition of a register history.
pub fn partition<'h>(ops: &[ClientOp<'h>]) -> Result<Vec<Partition<CasRegister<'h>>>, ModelError> {
    partition_from(ops, None)
}

/// [`partition`] for a register that starts with `initial` (Knossos' tests
/// start at 0) instead of `nil`.
pub fn partition_from<'h>(
    ops: &[ClientOp<'h>],
    initial: Option<&Value>,
) -> Result<Vec<Partition<CasRegister<'h>>>, ModelError> {
    let mut model = CasRegister::default();
    if let Some(v) = initial {
        model.initial = model.values.intern_owned(v.clone());
    }
    let mut search_ops = Vec::with_capacity(ops.len());
    for (source, op) in ops.iter().enumerate() {
        if op.outcome == Outcome::Fail {
            continue;
        }
        let register_op = match op.f {
            "read" => match op.output() {
                Some(v) => RegisterOp::Read(model.values.intern(v)),
                None => continue, // unknown read: observed nothing
            },
            "write" => RegisterOp::Write(model.values.intern(op.input())),
            "cas" => match op.input() {
                Value::Vector(pair) if pair.len() == 2 => RegisterOp::Cas {
                    old: model.values.intern(&pair[0]),
                    new: model.values.intern(&pair[1]),
                },
                other => {
                    return Err(ModelError::new(
                        op,
                        format!("a :cas value [old new], found {other}"),
                    ))
                }
            },
            f => {
                return Err(ModelError::new(
                    op,
                    format!(
                        "an op of the cas-register model (:read, :write, :cas), found :{f} \
                         (for a key-value history use --model kv)"
                    ),
                ))
            }
        };
        let ret = match op.outcome {
            Outcome::Ok => op.complete,
            _ => None,
        };
        let search_op = SearchOp::new(register_op, op.invoke, ret, source)
            .ok_or_else(|| ModelError::new(op, TOO_LONG))?;
        search_ops.push(search_op);
    }
    drop_unobservable(&mut search_ops);
    Ok(vec![Partition {
        key: None,
        model,
        ops: search_ops,
    }])
}

/// Drops ops of unknown outcome whose written value nobody observed: no read
/// returned it and no cas compared against it. In any linearization that
/// uses such an op, nothing until the next write can depend on the value, so
/// the order without it is a linearization too (see `kv::drop_unobservable`).
fn drop_unobservable(ops: &mut Vec<SearchOp<RegisterOp>>) {
    let observed: rustc_hash::FxHashSet<u32> = ops
        .iter()
        .filter_map(|op| match op.op {
            RegisterOp::Read(v) | RegisterOp::Cas { old: v, .. } => Some(v),
            RegisterOp::Write(_) => None,
        })
        .collect();
    ops.retain(|op| {
        op.ret().is_some()
            || match op.op {
                RegisterOp::Write(v) | RegisterOp::Cas { new: v, .. } => observed.contains(&v),
                RegisterOp::Read(_) => true,
            }
    });
}
