//! Explanations in words: why a key's ops cannot be linearized.
//!
//! The checker says *which* op could not be linearized ([`Violation`]); this
//! module says *why*, in one sentence a person can check against the history:
//! the acknowledged write a read missed, when it completed and through which
//! node, and what the read should have returned. [`explain`] recognizes:
//!
//! - [`Anomaly::StaleRead`]: a read returned a value overwritten by a write
//!   acknowledged before the read began, and other reads saw the newer value
//!   (or a value written after it);
//! - [`Anomaly::LostWrite`]: as above, but no read ever saw the acknowledged
//!   write nor anything written after it (or an acknowledged append is
//!   missing from a later read);
//! - [`Anomaly::NeverWritten`]: a read returned a value no op wrote;
//! - [`Anomaly::CasWrongValue`]: a cas succeeded although the key held another
//!   value (or its expected value was never written);
//! - [`Anomaly::AppendOutOfOrder`]: a read shows appends in an order real time
//!   forbids, or two reads disagree on the order.
//!
//! Anything else gets [`Anomaly::Other`] with the model state the checker
//! reached (and the checker's own reason, when its polynomial path gave one).
//! This is the one "why" of a report: [`report_text`] prints it instead of
//! the checker's `why:` line. Times are the ops' `:time` (seconds since the test start) or,
//! without one, history lines; nodes are the ops' `:node`.

use std::collections::HashMap;
use std::fmt::Write;

use crate::checker::{kv, ModelKind, Violation};
use crate::history::{ClientOp, History, Outcome, Value};

/// The kind of anomaly an explanation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    StaleRead,
    LostWrite,
    NeverWritten,
    CasWrongValue,
    AppendOutOfOrder,
    Other,
}

impl Anomaly {
    /// The kebab-case name used in `results.json`.
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::StaleRead => "stale-read",
            Anomaly::LostWrite => "lost-write",
            Anomaly::NeverWritten => "never-written",
            Anomaly::CasWrongValue => "cas-wrong-value",
            Anomaly::AppendOutOfOrder => "append-out-of-order",
            Anomaly::Other => "other",
        }
    }
}

/// Why a key is not linearizable, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub anomaly: Anomaly,
    /// One sentence (no newline).
    pub text: String,
    /// The ops the sentence names, as positions of their invocations in
    /// [`History::ops`] (the offending op first).
    pub ops: Vec<usize>,
}

/// What one op does to its key, as far as explanations care.
#[derive(Debug, Clone, PartialEq)]
enum Effect<'h> {
    Read(&'h Value),
    /// write, put, delete (`nil`).
    Write(&'h Value),
    Cas(&'h Value, &'h Value),
    Append(&'h Value),
    Unknown,
}

/// One op of the key with its effect.
#[derive(Debug, Clone)]
struct KeyOp<'h> {
    op: ClientOp<'h>,
    effect: Effect<'h>,
}

impl KeyOp<'_> {
    /// The value the op leaves in the key, if it writes a fixed one.
    fn written(&self) -> Option<&Value> {
        match self.effect {
            Effect::Write(v) | Effect::Cas(_, v) => Some(v),
            _ => None,
        }
    }
    fn is_ok(&self) -> bool {
        self.op.outcome == Outcome::Ok
    }
}

static NIL: Value = Value::Nil;

fn effect<'h>(op: &ClientOp<'h>, model: ModelKind) -> Effect<'h> {
    let second = |v: &'h Value| -> &'h Value {
        match v {
            Value::Vector(items) if items.len() >= 2 => &items[1],
            _ => &NIL,
        }
    };
    let (input, output) = match model {
        ModelKind::CasRegister => (op.input(), op.output()),
        ModelKind::Kv => (second(op.input()), op.output().map(second)),
    };
    match op.f {
        "read" | "get" => output.map_or(Effect::Unknown, Effect::Read),
        "write" | "put" => Effect::Write(input),
        "delete" => Effect::Write(&NIL),
        "append" => Effect::Append(input),
        "cas" => match input {
            Value::Vector(pair) if pair.len() == 2 => Effect::Cas(&pair[0], &pair[1]),
            _ => Effect::Unknown,
        },
        _ => Effect::Unknown,
    }
}

/// Explains `violation` of `history` (see the module doc for the kinds).
pub fn explain(history: &History, violation: &Violation) -> Explanation {
    let ops = history.client_ops().unwrap_or_default();
    let key_ops: Vec<KeyOp<'_>> = ops
        .iter()
        .filter(|op| op.outcome != Outcome::Fail)
        .filter(|op| match violation.model {
            ModelKind::CasRegister => true,
            ModelKind::Kv => kv::op_key(op) == violation.key.as_ref(),
        })
        .map(|op| KeyOp {
            op: *op,
            effect: effect(op, violation.model),
        })
        .collect();
    let ctx = Ctx {
        history,
        violation,
        ops: &key_ops,
    };
    let stuck = key_ops
        .iter()
        .position(|k| k.op.invoke == violation.op.invoke);
    // The offending op first, then the other ops pending with it.
    let mut candidates: Vec<usize> = stuck.into_iter().collect();
    for p in &violation.pending {
        if let Some(i) = key_ops.iter().position(|k| k.op.invoke == p.invoke) {
            candidates.push(i);
        }
    }
    for &i in &candidates {
        if let Some(e) = ctx.explain_op(i) {
            return e;
        }
    }
    // A stuck append: one of the key's reads shows the problem.
    if ctx.has_appends() {
        for (i, k) in key_ops.iter().enumerate() {
            if matches!(k.effect, Effect::Read(_)) && !candidates.contains(&i) {
                if let Some(e) = ctx.explain_op(i) {
                    return e;
                }
            }
        }
    }
    ctx.other(stuck)
}

struct Ctx<'a, 'h> {
    history: &'a History,
    violation: &'a Violation,
    ops: &'a [KeyOp<'h>],
}

impl<'h> Ctx<'_, 'h> {
    fn key(&self) -> String {
        match &self.violation.key {
            None => "the register".to_string(),
            Some(Value::Str(s)) => s.to_string(),
            Some(k) => k.to_string(),
        }
    }

    /// "5.450 s" from `:time`, else "line 12".
    fn when(&self, pos: usize) -> String {
        match self.history.ops[pos].time() {
            Some(t) => format!("{:.3} s", t as f64 / 1e9),
            None => format!("line {}", self.history.line_of(pos)),
        }
    }

    /// " via n1" from the completion's (else the invocation's) `:node`.
    fn via(&self, op: &ClientOp<'_>) -> String {
        let node = op
            .complete
            .and_then(|c| self.history.ops[c].extra().get("node"))
            .or_else(|| self.history.ops[op.invoke].extra().get("node"));
        match node {
            Some(Value::Str(s)) => format!(" via {s}"),
            Some(v) => format!(" via {v}"),
            None => String::new(),
        }
    }

    fn completed(&self, op: &ClientOp<'_>) -> String {
        op.complete.map_or("never".to_string(), |c| self.when(c))
    }

    /// "write 3", "cas [1 2]", "delete", "append x" — what a writer did.
    fn describe(&self, k: &KeyOp<'_>) -> String {
        match k.effect {
            Effect::Write(Value::Nil) if k.op.f == "delete" => "delete".to_string(),
            Effect::Write(v) => format!("{} {v}", k.op.f),
            Effect::Cas(old, new) => format!("cas [{old} {new}]"),
            Effect::Append(v) => format!("append {v}"),
            _ => format!(":{}", k.op.f),
        }
    }

    fn has_appends(&self) -> bool {
        self.ops
            .iter()
            .any(|k| matches!(k.effect, Effect::Append(_)))
    }

    fn explain_op(&self, i: usize) -> Option<Explanation> {
        let k = &self.ops[i];
        match k.effect {
            Effect::Read(v) if self.has_appends() && !v.is_nil() => self.append_read(i, v),
            Effect::Read(v) if k.is_ok() => self.register_read(i, v),
            Effect::Cas(old, new) if k.is_ok() => self.cas(i, old, new),
            _ => None,
        }
    }

    /// The ops other than `except` that could leave `v` in the key.
    fn writers(&self, v: &Value, except: usize) -> Vec<usize> {
        (0..self.ops.len())
            .filter(|&j| j != except && self.ops[j].written() == Some(v))
            .collect()
    }

    /// An acknowledged write of another value that completed before `start`
    /// and began after every writer of `v` completed: it overwrote `v` for
    /// good. The most recently acknowledged one.
    fn overwriter(&self, v: &Value, except: usize, start: usize) -> Option<usize> {
        let writers = self.writers(v, except);
        let done_before = |j: usize, pos: usize| {
            let k = &self.ops[j];
            k.is_ok() && k.op.complete.is_some_and(|c| c < pos)
        };
        (0..self.ops.len())
            .filter(|&j| j != except && done_before(j, start))
            .filter(|&j| self.ops[j].written().is_some_and(|w| w != v))
            .filter(|&j| {
                writers
                    .iter()
                    .all(|&x| done_before(x, self.ops[j].op.invoke))
            })
            .max_by_key(|&j| self.ops[j].op.complete)
    }

    fn value_was_seen(&self, v: &Value, except: usize) -> Option<usize> {
        (0..self.ops.len()).find(|&j| {
            j != except
                && self.ops[j].is_ok()
                && match self.ops[j].effect {
                    Effect::Read(r) => r == v,
                    Effect::Cas(old, _) => old == v,
                    _ => false,
                }
        })
    }

    /// A write invoked after write `w` was acknowledged whose value some
    /// read (or cas) observed: `(the write, the observer)`.
    fn later_value_seen(&self, w: usize) -> Option<(usize, usize)> {
        let acked = self.ops[w].op.complete?;
        // One pass each (a key can hold 100k ops): how many ops wrote each
        // value, and the first op that observed it.
        let mut writers: HashMap<&Value, usize> = HashMap::new();
        let mut observer: HashMap<&Value, usize> = HashMap::new();
        for (j, k) in self.ops.iter().enumerate() {
            if let Some(x) = k.written() {
                *writers.entry(x).or_default() += 1;
            }
            let seen = match k.effect {
                Effect::Read(r) if k.is_ok() => Some(r),
                Effect::Cas(old, _) if k.is_ok() => Some(old),
                _ => None,
            };
            if let Some(x) = seen {
                observer.entry(x).or_insert(j);
            }
        }
        (0..self.ops.len())
            .filter(|&j| j != w && self.ops[j].op.invoke > acked)
            .find_map(|j| {
                let x = self.ops[j].written()?;
                let s = *observer.get(x)?;
                (writers[x] == 1 && s != j).then_some((j, s))
            })
    }

    fn nothing_after(&self, v: &Value) -> String {
        if v.is_nil() {
            "nothing deleted it after it".to_string()
        } else {
            format!("nothing wrote {v} after it")
        }
    }

    fn register_read(&self, i: usize, v: &Value) -> Option<Explanation> {
        let r = &self.ops[i];
        let key = self.key();
        let read = format!(
            "read of {key} at {}{} returned {v}",
            self.when(r.op.invoke),
            self.via(&r.op)
        );
        if !v.is_nil() && self.writers(v, i).is_empty() {
            return Some(Explanation {
                anomaly: Anomaly::NeverWritten,
                text: format!(
                    "{read}, but no operation wrote {v}; {key} could hold {} there",
                    self.violation.state
                ),
                ops: vec![r.op.invoke],
            });
        }
        let w = self.overwriter(v, i, r.op.invoke)?;
        let wk = &self.ops[w];
        let u = wk.written()?;
        let ack = format!(
            "{}{} was acknowledged at {}, before the read began",
            self.describe(wk),
            self.via(&wk.op),
            self.completed(&wk.op)
        );
        match self.value_was_seen(u, w) {
            Some(s) => Some(Explanation {
                anomaly: Anomaly::StaleRead,
                text: format!(
                    "{read}, but {ack}, and {}; the read should have returned {u} (as the {} at {} did) or a later value",
                    self.nothing_after(v),
                    self.ops[s].op.f,
                    self.when(self.ops[s].op.invoke),
                ),
                ops: vec![r.op.invoke, wk.op.invoke, self.ops[s].op.invoke],
            }),
            // Nobody saw `u`, but a value written after it was seen: `u`
            // was overwritten in time, and the read is stale all the same.
            None => match self.later_value_seen(w) {
                Some((later, s)) => Some(Explanation {
                    anomaly: Anomaly::StaleRead,
                    text: format!(
                        "{read}, but {ack}, and {}; the read should have returned {u} or a later value (the {} at {} saw {}, written after it)",
                        self.nothing_after(v),
                        self.ops[s].op.f,
                        self.when(self.ops[s].op.invoke),
                        self.ops[later].written().unwrap_or(&NIL),
                    ),
                    ops: vec![r.op.invoke, wk.op.invoke, self.ops[s].op.invoke],
                }),
                None => Some(Explanation {
                anomaly: Anomaly::LostWrite,
                text: format!(
                    "{read}, but {ack}, and {}; no operation ever observed {u}: the acknowledged write was lost",
                    self.nothing_after(v)
                ),
                ops: vec![r.op.invoke, wk.op.invoke],
            }),
            },
        }
    }

    fn cas(&self, i: usize, old: &Value, new: &Value) -> Option<Explanation> {
        let c = &self.ops[i];
        let key = self.key();
        let cas = format!(
            "cas [{old} {new}] of {key} at {}{} succeeded",
            self.when(c.op.invoke),
            self.via(&c.op)
        );
        if !old.is_nil() && self.writers(old, i).is_empty() {
            return Some(Explanation {
                anomaly: Anomaly::CasWrongValue,
                text: format!(
                    "{cas}, but no operation wrote {old}; {key} could hold {} there",
                    self.violation.state
                ),
                ops: vec![c.op.invoke],
            });
        }
        let w = self.overwriter(old, i, c.op.invoke)?;
        let wk = &self.ops[w];
        let u = wk.written()?;
        Some(Explanation {
            anomaly: Anomaly::CasWrongValue,
            text: format!(
                "{cas}, but {key} held {u} then: {}{} was acknowledged at {}, before the cas began, and {}",
                self.describe(wk),
                self.via(&wk.op),
                self.completed(&wk.op),
                self.nothing_after(old)
            ),
            ops: vec![c.op.invoke, wk.op.invoke],
        })
    }

    /// Splits an append key's value into the appended items: a vector's
    /// elements, or a string cut into the key's appended strings (longest
    /// first); `Err(rest)` when a part of the string matches no append.
    fn items(&self, v: &'h Value) -> Result<Vec<Value>, String> {
        match v {
            Value::Vector(items) => Ok(items.to_vec()),
            Value::Str(s) => {
                let mut pieces: Vec<&str> = self
                    .ops
                    .iter()
                    .filter_map(|k| match k.effect {
                        Effect::Append(Value::Str(p)) if !p.is_empty() => Some(p.as_str()),
                        _ => None,
                    })
                    .collect();
                pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
                let mut rest = s.as_str();
                let mut out = Vec::new();
                while !rest.is_empty() {
                    match pieces.iter().find(|p| rest.starts_with(**p)) {
                        Some(p) => {
                            out.push(Value::string(*p));
                            rest = &rest[p.len()..];
                        }
                        None => return Err(rest.to_string()),
                    }
                }
                Ok(out)
            }
            other => Ok(vec![other.clone()]),
        }
    }

    fn appender(&self, item: &Value) -> Option<usize> {
        self.ops
            .iter()
            .position(|k| matches!(k.effect, Effect::Append(a) if a == item))
    }

    /// Whether `v` is, or begins with, a value a write or cas left in the
    /// key (a string prefix, or a vector's leading elements). Such a read
    /// is not made of appends alone, so the appends cannot show it was
    /// never written or out of order; the checker's own reason stands.
    fn starts_with_written(&self, v: &Value) -> bool {
        self.ops.iter().any(|k| match (k.written(), v) {
            (Some(w), _) if w == v => true,
            (Some(Value::Str(w)), Value::Str(s)) => {
                !w.as_str().is_empty() && s.as_str().starts_with(w.as_str())
            }
            (Some(Value::Vector(w)), Value::Vector(s)) => !w.is_empty() && s.starts_with(w),
            _ => false,
        })
    }

    fn append_read(&self, i: usize, v: &'h Value) -> Option<Explanation> {
        let r = &self.ops[i];
        if !r.is_ok() || self.starts_with_written(v) {
            return None;
        }
        let key = self.key();
        let read = format!(
            "read of {key} at {}{} returned {v}",
            self.when(r.op.invoke),
            self.via(&r.op)
        );
        let items = match self.items(v) {
            Ok(items) => items,
            Err(rest) => {
                return Some(Explanation {
                    anomaly: Anomaly::NeverWritten,
                    text: format!("{read}, but no operation appended {}", Value::string(rest)),
                    ops: vec![r.op.invoke],
                })
            }
        };
        let mut appenders = Vec::new();
        for item in &items {
            match self.appender(item) {
                Some(a) => appenders.push(a),
                None => {
                    return Some(Explanation {
                        anomaly: Anomaly::NeverWritten,
                        text: format!("{read}, but no operation appended {item}"),
                        ops: vec![r.op.invoke],
                    })
                }
            }
        }
        // Real-time order: an item shown before another whose append was
        // acknowledged before the first one's append began.
        for (x, &a) in appenders.iter().enumerate() {
            for &b in &appenders[x + 1..] {
                let (ak, bk) = (&self.ops[a], &self.ops[b]);
                if bk.is_ok() && bk.op.complete.is_some_and(|c| c < ak.op.invoke) {
                    return Some(Explanation {
                        anomaly: Anomaly::AppendOutOfOrder,
                        text: format!(
                            "{read}, with {} before {}, but {}{} was acknowledged at {}, before {}{} began at {}",
                            self.item(ak),
                            self.item(bk),
                            self.describe(bk),
                            self.via(&bk.op),
                            self.completed(&bk.op),
                            self.describe(ak),
                            self.via(&ak.op),
                            self.when(ak.op.invoke),
                        ),
                        ops: vec![r.op.invoke, bk.op.invoke, ak.op.invoke],
                    });
                }
            }
        }
        // Two reads that disagree on the order.
        for (j, other) in self.ops.iter().enumerate() {
            let Effect::Read(ov) = other.effect else {
                continue;
            };
            if j == i || !other.is_ok() || ov.is_nil() {
                continue;
            }
            let Ok(other_items) = self.items(ov) else {
                continue;
            };
            let n = items.len().min(other_items.len());
            if items[..n] != other_items[..n] {
                return Some(Explanation {
                    anomaly: Anomaly::AppendOutOfOrder,
                    text: format!(
                        "{read}, but the read at {}{} returned {ov}: neither order of the appends extends the other",
                        self.when(other.op.invoke),
                        self.via(&other.op)
                    ),
                    ops: vec![r.op.invoke, other.op.invoke],
                });
            }
        }
        // An acknowledged append missing from a read that began after it.
        let missing = (0..self.ops.len()).find(|&j| {
            let k = &self.ops[j];
            matches!(k.effect, Effect::Append(_))
                && k.is_ok()
                && k.op.complete.is_some_and(|c| c < r.op.invoke)
                && !appenders.contains(&j)
        });
        if let Some(j) = missing {
            let k = &self.ops[j];
            let seen = self.ops.iter().any(|o| {
                matches!(o.effect, Effect::Read(ov) if o.is_ok()
                    && self.items(ov).is_ok_and(|its| its.contains(&self.item_value(k))))
            });
            return Some(Explanation {
                anomaly: if seen {
                    Anomaly::StaleRead
                } else {
                    Anomaly::LostWrite
                },
                text: format!(
                    "{read}, without {}, but {}{} was acknowledged at {}, before the read began{}",
                    self.item(k),
                    self.describe(k),
                    self.via(&k.op),
                    self.completed(&k.op),
                    if seen {
                        ""
                    } else {
                        "; no read ever observed it: the acknowledged append was lost"
                    }
                ),
                ops: vec![r.op.invoke, k.op.invoke],
            });
        }
        None
    }

    fn item_value(&self, k: &KeyOp<'_>) -> Value {
        match k.effect {
            Effect::Append(v) => v.clone(),
            _ => Value::Nil,
        }
    }

    fn item(&self, k: &KeyOp<'_>) -> String {
        self.item_value(k).to_string()
    }

    fn other(&self, stuck: Option<usize>) -> Explanation {
        let mut text = String::new();
        let op = &self.violation.op;
        let _ = write!(
            text,
            "{} of {} at {}",
            match stuck {
                Some(s) => self.describe(&self.ops[s]),
                None => format!(":{}", op.f),
            },
            self.key(),
            self.when(op.invoke)
        );
        if let Some(s) = stuck {
            text.push_str(&self.via(&self.ops[s].op));
            if let Effect::Read(v) = self.ops[s].effect {
                let _ = write!(text, " returned {v}");
            }
        }
        let _ = write!(
            text,
            " cannot take effect before it returned: after the longest linearizable order ({} ops) {} holds {}, and none of the {} ops pending with it makes it possible",
            self.violation.prefix.len(),
            self.key(),
            self.violation.state,
            self.violation.pending.len()
        );
        // The checker's polynomial path says why in its own words: keep it,
        // so that the report has one explanation, not two.
        if let Some(reason) = &self.violation.reason {
            let _ = write!(text, " ({reason})");
        }
        Explanation {
            anomaly: Anomaly::Other,
            text,
            ops: std::iter::once(op.invoke)
                .chain(self.violation.pending.iter().map(|p| p.invoke))
                .collect(),
        }
    }
}

/// The checker's text report of `violation` with the explanation as its
/// second line: `  why (stale-read): read of k0 at ...`.
pub fn report_text(history: &History, violation: &Violation) -> String {
    let e = explain(history, violation);
    let text = violation.render_text_with_why(history, None);
    let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
    format!("{head}\n  why ({}): {}\n{rest}", e.anomaly.name(), e.text)
}
