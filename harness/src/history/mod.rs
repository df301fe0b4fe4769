//! Jepsen histories: the op model, reading and writing EDN.
//!
//! A history is the sequence of events a test observed, in real-time order:
//! each client op appears twice, once when invoked (`:type :invoke`) and once
//! when it completed (`:ok`, `:fail` or `:info`). One op map a line:
//!
//! ```text
//! {:index 7, :time 123456789, :process 3, :type :invoke, :f :write, :value ["k1" "v3"], :node "127.0.0.1:8001"}
//! ```
//!
//! API in short:
//! - build: [`Op::invoke`], [`Op::complete`], [`Op::nemesis`], [`Op::new`]
//!   (then the public fields `value`, `f`, `kind` and the setters
//!   [`Op::set_index`], [`Op::set_time`], [`Op::set_process`]), [`Op::at`]
//!   for `:time`, [`Op::with_extra`] for fields like `:node` or `:error`;
//!   read `:index`, `:time` and `:process` with [`Op::index`], [`Op::time`],
//!   [`Op::process`]; push into [`History::ops`] (or
//!   [`History::push`], which fills `:index`). Values convert from `i64`,
//!   `&str`, `String`, `bool`, `Option<T>` and `Vec<T>` (see [`Value`]).
//! - write: [`Op::to_edn`] gives one line (stream it as the run goes), or
//!   [`History::write_edn`] / [`History::to_edn_string`] for a whole file.
//! - read: [`History::from_file`] / [`History::parse`] accept one map per line or
//!   a single vector of maps, keys in any order, commas optional. Unknown keys
//!   are kept in [`Op::extra`] and written back.
//! - pair: [`History::client_ops`] applies Jepsen's semantics (see
//!   [`pairing`]) and is what the checker consumes.
//!
//! The history order (position in [`History::ops`]) is the real-time order;
//! `:time` (nanoseconds since the test start) is carried for reports.

pub mod edn;
pub mod intern;
pub mod pairing;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use edn::{SyntaxError, Value};
pub use intern::{Interner, Name, Str};
pub use pairing::{ClientOp, Outcome};

/// Who issued an op: a client process (an integer in Jepsen) or a named one
/// such as `:nemesis`. Only integer processes are clients whose ops are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(i64),
    /// A keyword process, stored without the colon (`:nemesis` → `"nemesis"`).
    Named(Name),
}

impl Process {
    /// The `:nemesis` process.
    pub fn nemesis() -> Self {
        Process::Named(Name::new("nemesis"))
    }

    pub fn is_client(&self) -> bool {
        matches!(self, Process::Client(_))
    }

    fn to_value(self) -> Value {
        match self {
            Process::Client(p) => Value::Int(p),
            Process::Named(n) => Value::Keyword(n),
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Named(n) => write!(f, ":{n}"),
        }
    }
}

/// Jepsen's `:type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpType {
    /// The op was invoked; its completion follows later, from the same process.
    Invoke,
    /// It took effect, at some instant between invocation and completion.
    Ok,
    /// It surely did not take effect.
    Fail,
    /// Unknown outcome (timeout, lost connection): it may have taken effect at
    /// any time after its invocation, or never. The process issues no more ops.
    Info,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "invoke" => OpType::Invoke,
            "ok" => OpType::Ok,
            "fail" => OpType::Fail,
            "info" => OpType::Info,
            _ => return None,
        })
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.as_str())
    }
}

/// One event of a history.
///
/// Compact (72 bytes, issue 17: a million-op history holds two million of
/// them): `:index`, `:time` and `:process` are read through accessors
/// ([`Op::index`], [`Op::time`], [`Op::process`]) and stored without their
/// `Option`/enum tags, and what few ops have (a named process such as
/// `:nemesis`, extra fields) lives behind one pointer.
#[derive(Clone)]
pub struct Op {
    /// `:value` (`nil` when absent).
    pub value: Value,
    /// `:f`, the operation name without the colon: `"read"`, `"write"`, `"cas"`,
    /// `"get"`, `"put"`, `"append"`, `"delete"`, or nemesis ones like
    /// `"start-pause"` (compare with `op.f == "read"`).
    pub f: Name,
    /// `:index`, meaningful when `present` has [`HAS_INDEX`].
    index: u64,
    /// `:time`, meaningful when `present` has [`HAS_TIME`].
    time: i64,
    /// The client process number, when `rare` names no process.
    client: i64,
    /// A named process and the extra fields, when the op has either.
    rare: Option<Box<Rare>>,
    /// `:type`.
    pub kind: OpType,
    /// Which of `index` and `time` are set.
    present: u8,
}

/// Bits of [`Op`]'s `present`.
const HAS_INDEX: u8 = 1;
const HAS_TIME: u8 = 2;

/// The parts of an op most ops do not have.
#[derive(Clone, Default)]
struct Rare {
    /// A process that is not a client (`:nemesis`).
    process: Option<Name>,
    extra: Extra,
}

/// The extra fields of an op without any.
static NO_EXTRA: Extra = Extra(None);

impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        self.index() == other.index()
            && self.time() == other.time()
            && self.process() == other.process()
            && self.kind == other.kind
            && self.f == other.f
            && self.value == other.value
            && self.extra() == other.extra()
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("index", &self.index())
            .field("time", &self.time())
            .field("process", &self.process())
            .field("kind", &self.kind)
            .field("f", &self.f)
            .field("value", &self.value)
            .field("extra", self.extra())
            .finish()
    }
}

/// The extra fields of an op, sorted by name: one pointer, to a small
/// vector when there are any (most ops have none or one, `:node`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra(Option<Box<[(Name, Value)]>>);

impl Extra {
    pub fn new() -> Self {
        Extra(None)
    }

    fn fields(&self) -> &[(Name, Value)] {
        self.0.as_deref().unwrap_or(&[])
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        let fields = self.fields();
        let i = fields
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()?;
        Some(&fields[i].1)
    }

    /// Sets a field; returns its previous value.
    pub fn insert(&mut self, name: impl Into<Name>, value: Value) -> Option<Value> {
        let name = name.into();
        let mut fields = self.0.take().map(Vec::from).unwrap_or_default();
        let previous = match fields.binary_search_by(|(k, _)| k.as_str().cmp(name.as_str())) {
            Ok(i) => Some(std::mem::replace(&mut fields[i].1, value)),
            Err(i) => {
                fields.insert(i, (name, value));
                None
            }
        };
        self.0 = Some(fields.into_boxed_slice());
        previous
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self
            .fields()
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()?;
        let mut fields = self.0.take().map(Vec::from).unwrap_or_default();
        let (_, value) = fields.remove(i);
        if !fields.is_empty() {
            self.0 = Some(fields.into_boxed_slice());
        }
        Some(value)
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Value)> {
        self.fields().iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.fields().len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }
}

impl<'a> IntoIterator for &'a Extra {
    type Item = (&'a Name, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Name, Value)>,
        fn(&'a (Name, Value)) -> (&'a Name, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.fields().iter().map(|(k, v)| (k, v))
    }
}

impl Op {
    /// An `:invoke` event (no index or time yet).
    pub fn invoke(process: i64, f: impl Into<Name>, value: impl Into<Value>) -> Op {
        Op::new(
            Process::Client(process),
            OpType::Invoke,
            f.into(),
            value.into(),
        )
    }

    /// An event of `process` (no index, time or extra fields).
    pub fn new(process: Process, kind: OpType, f: Name, value: Value) -> Op {
        let mut op = Op {
            value,
            f,
            index: 0,
            time: 0,
            client: 0,
            rare: None,
            kind,
            present: 0,
        };
        op.set_process(process);
        op
    }

    /// A nemesis event, e.g. `Op::nemesis(OpType::Info, "start-pause", Value::Nil)`.
    pub fn nemesis(kind: OpType, f: impl Into<Name>, value: impl Into<Value>) -> Op {
        Op::new(Process::nemesis(), kind, f.into(), value.into())
    }

    /// The completion of `self` (an invoke) with the given type and value.
    pub fn complete(&self, kind: OpType, value: impl Into<Value>) -> Op {
        Op::new(self.process(), kind, self.f, value.into())
    }

    /// Sets `:time` (nanoseconds since the test start).
    pub fn at(mut self, time_ns: i64) -> Op {
        self.set_time(Some(time_ns));
        self
    }

    /// Adds an extra field, e.g. `.with_extra("node", "127.0.0.1:8001")`.
    pub fn with_extra(mut self, key: impl Into<Name>, value: impl Into<Value>) -> Op {
        self.extra_mut().insert(key.into(), value.into());
        self
    }

    /// `:index`, the position Jepsen gave the event (optional on input).
    pub fn index(&self) -> Option<u64> {
        (self.present & HAS_INDEX != 0).then_some(self.index)
    }

    pub fn set_index(&mut self, index: Option<u64>) {
        self.index = index.unwrap_or(0);
        self.present = (self.present & !HAS_INDEX) | if index.is_some() { HAS_INDEX } else { 0 };
    }

    /// `:time`, nanoseconds since the test start (optional on input).
    pub fn time(&self) -> Option<i64> {
        (self.present & HAS_TIME != 0).then_some(self.time)
    }

    pub fn set_time(&mut self, time: Option<i64>) {
        self.time = time.unwrap_or(0);
        self.present = (self.present & !HAS_TIME) | if time.is_some() { HAS_TIME } else { 0 };
    }

    /// `:process`.
    pub fn process(&self) -> Process {
        match self.rare.as_ref().and_then(|r| r.process) {
            Some(name) => Process::Named(name),
            None => Process::Client(self.client),
        }
    }

    /// The client process number, `None` for a named process (`:nemesis`).
    pub fn client(&self) -> Option<i64> {
        match &self.rare {
            Some(rare) if rare.process.is_some() => None,
            _ => Some(self.client),
        }
    }

    pub fn set_process(&mut self, process: Process) {
        match process {
            Process::Client(p) => {
                self.client = p;
                if let Some(rare) = &mut self.rare {
                    rare.process = None;
                    if rare.extra.is_empty() {
                        self.rare = None;
                    }
                }
            }
            Process::Named(name) => {
                self.client = 0;
                self.rare.get_or_insert_with(Default::default).process = Some(name);
            }
        }
    }

    /// Every other key of the op map, by keyword name (`:node` → `"node"`),
    /// written back after the standard keys in name order. Entries whose key is
    /// not a keyword are kept with the key written as EDN text.
    pub fn extra(&self) -> &Extra {
        self.rare.as_ref().map_or(&NO_EXTRA, |r| &r.extra)
    }

    /// The extra fields, to change them.
    pub fn extra_mut(&mut self) -> &mut Extra {
        &mut self.rare.get_or_insert_with(Default::default).extra
    }

    /// Writes the op as one EDN map, without a newline:
    /// `{:index 7, :time 12, :process 3, :type :ok, :f :read, :value 1, :node "n1"}`.
    pub fn to_edn(&self) -> String {
        self.to_string()
    }

    /// Builds an op from a parsed EDN map. `Err` holds a message saying what is
    /// wrong (the caller adds the line).
    pub fn from_value(value: &Value) -> Result<Op, String> {
        Self::from_edn(value.clone())
    }

    /// Like [`Op::from_value`], for an owned value.
    pub fn from_edn(value: Value) -> Result<Op, String> {
        let Value::Map(entries) = value else {
            return Err(format!(
                "an op map `{{:type .. :f .. ...}}`, found {}",
                value.kind()
            ));
        };
        let mut fields = OpFields::default();
        for (k, v) in entries.iter() {
            fields.field(k.clone(), v.clone());
        }
        fields.finish()
    }
}

/// The names of the standard op fields and types, interned once: a field's
/// key is recognised by comparing pointers, not text.
struct KnownNames {
    index: Name,
    time: Name,
    process: Name,
    kind: Name,
    f: Name,
    value: Name,
    types: [(Name, OpType); 4],
}

impl KnownNames {
    fn op_type(&self, name: Name) -> Option<OpType> {
        self.types.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
    }
}

fn known_names() -> &'static KnownNames {
    static KNOWN: std::sync::OnceLock<KnownNames> = std::sync::OnceLock::new();
    KNOWN.get_or_init(|| KnownNames {
        index: Name::new("index"),
        time: Name::new("time"),
        process: Name::new("process"),
        kind: Name::new("type"),
        f: Name::new("f"),
        value: Name::new("value"),
        types: [OpType::Invoke, OpType::Ok, OpType::Fail, OpType::Info]
            .map(|t| (Name::new(t.as_str()), t)),
    })
}

/// The fields of an op, filled in one map entry at a time as the reader
/// reads them (no map is built); the first bad field is remembered.
#[derive(Default)]
struct OpFields {
    index: Option<u64>,
    time: Option<i64>,
    process: Option<Process>,
    kind: Option<OpType>,
    f: Option<Name>,
    value: Value,
    extra: Extra,
    error: Option<String>,
}

impl OpFields {
    fn field(&mut self, key: Value, v: Value) {
        if self.error.is_none() {
            if let Err(e) = self.try_field(key, v) {
                self.error = Some(e);
            }
        }
    }

    fn try_field(&mut self, key: Value, v: Value) -> Result<(), String> {
        let name = match key {
            Value::Keyword(name) => name,
            other => {
                self.extra.insert(other.to_string(), v);
                return Ok(());
            }
        };
        let known = known_names();
        if name == known.value {
            self.value = v;
            return Ok(());
        }
        let field = if name == known.index {
            "index"
        } else if name == known.time {
            "time"
        } else if name == known.process {
            "process"
        } else if name == known.kind {
            "type"
        } else if name == known.f {
            "f"
        } else {
            ""
        };
        match field {
            "index" => match v {
                Value::Int(i) if i >= 0 => self.index = Some(i as u64),
                Value::Nil => {}
                _ => return Err(format!(":index must be a non-negative integer, found {v}")),
            },
            "time" => match v {
                Value::Int(t) => self.time = Some(t),
                Value::Float(t) => self.time = Some(t as i64),
                Value::Nil => {}
                _ => return Err(format!(":time must be an integer (nanoseconds), found {v}")),
            },
            "process" => {
                self.process = Some(match v {
                    Value::Int(p) => Process::Client(p),
                    Value::Keyword(n) | Value::Symbol(n) => Process::Named(n),
                    Value::Str(n) => Process::Named(Name::new(&n)),
                    _ => {
                        return Err(format!(
                            ":process must be an integer or a keyword like :nemesis, found {v}"
                        ))
                    }
                })
            }
            "type" => {
                let t = match &v {
                    Value::Keyword(t) => known.op_type(*t),
                    Value::Str(t) => OpType::parse(t),
                    _ => None,
                };
                match t {
                    Some(t) => self.kind = Some(t),
                    None => {
                        return Err(format!(
                            ":type must be one of :invoke :ok :fail :info, found {v}"
                        ))
                    }
                }
            }
            "f" => match v {
                Value::Keyword(n) | Value::Symbol(n) => self.f = Some(n),
                Value::Str(n) => self.f = Some(Name::new(&n)),
                _ => return Err(format!(":f must be a keyword like :read, found {v}")),
            },
            _ => {
                self.extra.insert(name, v);
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Op, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let kind = self
            .kind
            .ok_or("the op has no :type (expected :invoke, :ok, :fail or :info)")?;
        let process = self.process.ok_or("the op has no :process")?;
        let f = self.f.ok_or("the op has no :f")?;
        let mut op = Op::new(process, kind, f, self.value);
        op.set_index(self.index);
        op.set_time(self.time);
        if !self.extra.is_empty() {
            *op.extra_mut() = self.extra;
        }
        Ok(op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        if let Some(i) = self.index() {
            write!(f, ":index {i}, ")?;
        }
        if let Some(t) = self.time() {
            write!(f, ":time {t}, ")?;
        }
        write!(
            f,
            ":process {}, :type {}, :f :{}, :value {}",
            self.process().to_value(),
            self.kind,
            self.f,
            self.value
        )?;
        for (k, v) in self.extra() {
            // Keys that were not keywords were stored as their EDN text.
            let key_is_edn_text = k.starts_with(['"', '[', '{', '#']) || k.parse::<i64>().is_ok();
            if key_is_edn_text {
                write!(f, ", {k} {v}")?;
            } else {
                write!(f, ", :{k} {v}")?;
            }
        }
        f.write_str("}")
    }
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}line {}, column {}: expected {}, found {}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(), .error.line, .error.column, .error.expected, .error.found)]
    Syntax {
        path: Option<PathBuf>,
        error: SyntaxError,
    },
    #[error("{}line {line}: expected {message}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    BadOp {
        path: Option<PathBuf>,
        line: usize,
        message: String,
    },
}

/// A whole history, in real-time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Op>,
    /// The input line of each op, when it was read from text (for messages;
    /// see [`History::line_of`]).
    pub lines: Vec<u32>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an op, setting `:index` to its position when it has none.
    pub fn push(&mut self, mut op: Op) {
        if op.index().is_none() {
            op.set_index(Some(self.ops.len() as u64));
        }
        self.ops.push(op);
    }

    /// Parses EDN text: op maps one per line (or any whitespace), or a single
    /// vector of op maps.
    pub fn parse(text: &str) -> Result<History, HistoryError> {
        Self::parse_inner(text, None)
    }

    /// Reads a history file, in pieces of a few MiB: a big file's text is
    /// never held whole next to its parsed ops.
    pub fn from_file(path: impl AsRef<Path>) -> Result<History, HistoryError> {
        let path = path.as_ref();
        let io_error = |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        Self::read_pieces(file, size, Some(path.to_path_buf()), 8 << 20)
    }

    /// Parses from `input`, `PIECE` bytes at a time (cut after a newline; a
    /// form that runs past the cut is parsed again with the next piece).
    ///
    /// Each piece is read as two halves on two threads: the second half
    /// (from a newline near the middle) is read assuming no form is open
    /// there, and its ops are kept only if the first half really ends
    /// there in that state; otherwise the rest of the piece is read again
    /// after the first half, so the ops and errors are those of one reader.
    fn read_pieces(
        mut input: impl io::Read,
        size_hint: u64,
        path: Option<PathBuf>,
        piece: usize,
    ) -> Result<History, HistoryError> {
        let io_error = |source| HistoryError::Io {
            path: path.clone().unwrap_or_default(),
            source,
        };
        let estimate = (size_hint as usize) / 96 + 1;
        let mut history = History {
            ops: Vec::with_capacity(estimate),
            lines: Vec::with_capacity(estimate),
        };
        // A small file is read in one piece of its own size (plus one byte
        // to see the end), without zeroing megabytes.
        let piece = piece.min(size_hint as usize + 1).max(1);
        let mut buf: Vec<u8> = Vec::with_capacity(piece);
        let mut state = edn::FormsState::default();
        let mut interners = [Interner::default(), Interner::default()];
        let mut at_end = false;
        // False right after a wrong guess: the next read is one reader's.
        let mut split = true;
        // The second halves' ops, moved to `history` after each piece (the
        // vector is reused: its pages are touched once, not once per piece).
        let mut rest = History::new();
        loop {
            if !at_end {
                let before = buf.len();
                buf.resize(before + piece, 0);
                let mut filled = before;
                while filled < buf.len() {
                    match input.read(&mut buf[filled..]) {
                        Ok(0) => {
                            at_end = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_error(e)),
                    }
                }
                buf.truncate(filled);
            }
            // Parse up to the last newline (everything at the end).
            let end = if at_end {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => continue,
                }
            };
            let text = std::str::from_utf8(&buf[..end]).map_err(|e| {
                io_error(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not UTF-8 text ({e})"),
                ))
            })?;
            let middle = if split && state.is_started() {
                text.as_bytes()[..text.len() / 2]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map(|i| i + 1)
            } else {
                None
            };
            let whole;
            let consumed;
            (state, consumed, whole) = match middle {
                None => {
                    let mut forms = edn::HistoryForms::resume(text, state)
                        .with_interner(std::mem::take(&mut interners[0]));
                    let read = history.read_ops(&mut forms, &path, at_end);
                    interners[0] = forms.take_interner();
                    let (state, consumed) = read?;
                    (state, consumed, true)
                }
                Some(middle) => {
                    let (first, second) = text.split_at(middle);
                    let guess = state.lines_later(first.bytes().filter(|&b| b == b'\n').count());
                    let [a, b] = std::mem::take(&mut interners);
                    rest.ops.clear();
                    rest.lines.clear();
                    let ((read, a), (read_rest, b)) = rayon::join(
                        || {
                            let mut forms =
                                edn::HistoryForms::resume(first, state).with_interner(a);
                            let read = history.read_ops(&mut forms, &path, false);
                            (read, forms.take_interner())
                        },
                        || {
                            let mut forms =
                                edn::HistoryForms::resume(second, guess).with_interner(b);
                            let read = rest.read_ops(&mut forms, &path, at_end);
                            (read, forms.take_interner())
                        },
                    );
                    interners = [a, b];
                    let (state, consumed) = read?;
                    if (state, consumed) == (guess, first.len()) {
                        history.ops.append(&mut rest.ops);
                        history.lines.append(&mut rest.lines);
                        let (state, consumed) = read_rest?;
                        (state, middle + consumed, true)
                    } else {
                        // The first half ends inside a form (or closes the
                        // history vector): read on from where it stopped.
                        (state, consumed, false)
                    }
                }
            };
            split = whole;
            buf.drain(..consumed);
            if at_end && whole {
                return Ok(history);
            }
        }
    }

    fn parse_inner(text: &str, path: Option<PathBuf>) -> Result<History, HistoryError> {
        // A typical op line is ~100 bytes; reserving avoids regrowing big vectors.
        let estimate = text.len() / 96 + 1;
        let mut history = History {
            ops: Vec::with_capacity(estimate),
            lines: Vec::with_capacity(estimate),
        };
        history.read_ops(&mut edn::HistoryForms::new(text), &path, true)?;
        Ok(history)
    }

    /// Appends the ops of `forms` up to the end of its text; returns where
    /// the reader stopped: after the last whole op (a piece that is not the
    /// last of the file may end inside one, which is read again with the
    /// next piece).
    fn read_ops(
        &mut self,
        forms: &mut edn::HistoryForms<'_>,
        path: &Option<PathBuf>,
        at_end: bool,
    ) -> Result<(edn::FormsState, usize), HistoryError> {
        let mut last = forms.state();
        loop {
            let mut fields = OpFields::default();
            match forms.next_entries(&mut |k, v| fields.field(k, v)) {
                Ok(Some((line, form))) => {
                    let op = match form {
                        None => fields.finish(),
                        Some(value) => Op::from_edn(value),
                    };
                    let op = op.map_err(|message| HistoryError::BadOp {
                        path: path.clone(),
                        line,
                        message,
                    })?;
                    self.ops.push(op);
                    self.lines.push(line as u32);
                    last = forms.state();
                }
                Ok(None) => return Ok(forms.state()),
                // A form cut by the end of the piece: read on.
                Err(e) if !at_end && e.found == "end of input" => return Ok(last),
                Err(error) => {
                    return Err(HistoryError::Syntax {
                        path: path.clone(),
                        error,
                    })
                }
            }
        }
    }

    /// The input line of op `i`, or `i + 1` for a history built in memory.
    pub fn line_of(&self, i: usize) -> usize {
        self.lines.get(i).map_or(i + 1, |&l| l as usize)
    }

    /// Writes the history as EDN, one op map a line.
    pub fn write_edn(&self, mut out: impl Write) -> io::Result<()> {
        for op in &self.ops {
            writeln!(out, "{op}")?;
        }
        Ok(())
    }

    /// The history as EDN text, one op map a line.
    pub fn to_edn_string(&self) -> String {
        let mut s = String::new();
        for op in &self.ops {
            s.push_str(&op.to_edn());
            s.push('\n');
        }
        s
    }

    /// Writes the history to a file (see [`History::write_edn`]).
    pub fn write_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = io::BufWriter::new(file);
        self.write_edn(&mut out)?;
        out.flush()
    }

    /// Pairs invocations with completions under Jepsen's rules; see [`pairing`].
    pub fn client_ops(&self) -> Result<Vec<ClientOp<'_>>, pairing::PairingError> {
        pairing::pair(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_vectors_with_keys_in_any_order() {
        let by_line = History::parse(
            "{:type :invoke, :f :write, :value 1, :process 0, :time 5}\n\
             {:process 0 :type :ok :f :write :value 1 :extra-key [1 2]}\n",
        )
        .unwrap();
        let as_vector = History::parse(
            "[{:process 0, :type :invoke, :f :write, :value 1, :time 5}\n\
              {:process 0, :type :ok, :f :write, :value 1, :extra-key [1 2]}]",
        )
        .unwrap();
        assert_eq!(by_line.ops, as_vector.ops);
        assert_eq!(by_line.ops[0].time(), Some(5));
        assert_eq!(by_line.ops[1].kind, OpType::Ok);
        assert_eq!(
            by_line.ops[1].extra().get("extra-key"),
            Some(&Value::from(vec![1i64, 2]))
        );
    }

    #[test]
    fn round_trips_extra_fields_and_nemesis_ops() {
        let text = "{:index 0, :time 10, :process :nemesis, :type :info, :f :start-pause, :value {\"n1\" :paused}}\n\
                    {:index 1, :time 20, :process 3, :type :invoke, :f :put, :value [\"k\" \"v\"], :node \"127.0.0.1:8001\"}\n\
                    {:index 2, :time 30, :process 3, :type :info, :f :put, :value [\"k\" \"v\"], :error \"deadline exceeded\", :node \"127.0.0.1:8001\"}\n";
        let h = History::parse(text).unwrap();
        assert_eq!(h.ops[0].process(), Process::nemesis());
        assert_eq!(h.to_edn_string(), text);
        assert_eq!(History::parse(&h.to_edn_string()).unwrap().ops, h.ops);
    }

    #[test]
    fn an_op_is_compact_and_keeps_every_field() {
        assert_eq!(std::mem::size_of::<Op>(), 72);
        let mut op = Op::invoke(-7, "read", Value::Nil);
        assert_eq!(
            (op.index(), op.time(), op.process()),
            (None, None, Process::Client(-7))
        );
        op.set_index(Some(u64::MAX));
        op.set_time(Some(i64::MIN));
        op.set_process(Process::nemesis());
        assert_eq!(op.client(), None);
        op.extra_mut().insert("node", Value::from("n1"));
        assert_eq!((op.index(), op.time()), (Some(u64::MAX), Some(i64::MIN)));
        assert_eq!(op.process(), Process::nemesis());
        op.set_process(Process::Client(3));
        assert_eq!((op.process(), op.client()), (Process::Client(3), Some(3)));
        assert_eq!(op.extra().get("node"), Some(&Value::from("n1")));
        op.extra_mut().remove("node");
        let mut same = Op::invoke(3, "read", Value::Nil).at(i64::MIN);
        same.set_index(Some(u64::MAX));
        assert_eq!(op, same);
        op.set_time(None);
        op.set_index(None);
        assert_eq!(op, Op::invoke(3, "read", Value::Nil));
    }

    #[test]
    fn a_completion_shares_its_invocation_value_however_far_apart() {
        // Far more distinct values in between than the interner's cache holds.
        let mut text = String::from("{:process 0, :type :invoke, :f :put, :value [\"k\" \"v\"]}\n");
        for i in 1..100_000 {
            text.push_str(&format!(
                "{{:process {i}, :type :invoke, :f :put, :value [\"k{i}\" \"v{i}\"]}}\n"
            ));
        }
        text.push_str("{:process 0, :type :ok, :f :put, :value [\"k\" \"v\"]}\n");
        let h = History::parse(&text).unwrap();
        let (Value::Vector(a), Value::Vector(b)) = (&h.ops[0].value, &h.ops[100_000].value) else {
            panic!("vectors expected");
        };
        assert!(std::sync::Arc::ptr_eq(a, b));
    }

    #[test]
    fn builds_ops_in_memory() {
        let mut h = History::new();
        let inv = Op::invoke(1, "write", 3i64).at(100);
        h.push(inv.clone());
        h.push(
            inv.complete(OpType::Ok, 3i64)
                .at(200)
                .with_extra("node", "n2"),
        );
        assert_eq!(
            h.ops[1].to_edn(),
            "{:index 1, :time 200, :process 1, :type :ok, :f :write, :value 3, :node \"n2\"}"
        );
    }

    #[test]
    fn reading_in_pieces_gives_the_same_history_and_errors() {
        let text = "; comment\n[{:process 0, :type :invoke,\n :f :write, :value \"a\\nb é\"}\n\
                    {:process 0, :type :ok, :f :write, :value \"a\\nb é\"} {:process 1,\n :type :invoke, :f :read}\n]\n\
                    {:process 1, :type :ok, :f :read, :value [1\n 2]}\n";
        let whole = History::parse(text).unwrap();
        for piece in [1, 2, 3, 7, 16, 64, 1 << 20] {
            let h = History::read_pieces(text.as_bytes(), text.len() as u64, None, piece).unwrap();
            assert_eq!(h, whole, "piece {piece}");
        }
        for bad in [
            "{:process 0,\n :type :ok :f}",
            "[{:process 0, :type :ok, :f :read}\n",
            "{:a 1}\n{:b",
        ] {
            let whole = History::parse(bad).unwrap_err().to_string();
            for piece in [1, 5, 1 << 20] {
                let e = History::read_pieces(bad.as_bytes(), bad.len() as u64, None, piece)
                    .unwrap_err();
                assert_eq!(e.to_string(), whole, "{bad:?}, piece {piece}");
            }
        }
    }

    #[test]
    fn reading_halves_in_parallel_gives_the_same_history_and_errors() {
        // Many one-line ops (the halves' guesses hold) with a few maps over
        // several lines and a vector closing midway (guesses that fail).
        let mut text = String::from("[");
        for i in 0..300 {
            if i % 37 == 5 {
                text.push_str(&format!("{{:process {i},\n :type :invoke,\n :f :read}}\n"));
            } else {
                text.push_str(&format!(
                    "{{:process {i}, :type :invoke, :f :read, :value \"v\"}}\n"
                ));
            }
            if i == 150 {
                text.push_str("]\n");
            }
        }
        let whole = History::parse(&text).unwrap();
        assert_eq!(whole.ops.len(), 300);
        for piece in [40, 100, 333, 1000, 4096, 1 << 20] {
            let h = History::read_pieces(text.as_bytes(), text.len() as u64, None, piece).unwrap();
            assert_eq!(h, whole, "piece {piece}");
        }
        let bad = text.replace("{:process 250,", "{:process 250, :type :done,");
        let whole = History::parse(&bad).unwrap_err().to_string();
        assert!(whole.contains("line"), "{whole}");
        for piece in [40, 100, 333, 1000, 4096, 1 << 20] {
            let e =
                History::read_pieces(bad.as_bytes(), bad.len() as u64, None, piece).unwrap_err();
            assert_eq!(e.to_string(), whole, "piece {piece}");
        }
    }

    #[test]
    fn bad_ops_name_the_line() {
        let e = History::parse("{:process 0, :type :invoke, :f :read}\n{:process 0, :f :read}")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 2") && msg.contains(":type"), "{msg}");
        let e = History::parse("{:process 0, :type :done, :f :read}").unwrap_err();
        assert!(e.to_string().contains(":invoke :ok :fail :info"), "{e}");
        let e = History::parse("[1 2]").unwrap_err();
        assert!(e.to_string().contains("op map"), "{e}");
        let e = History::parse("{:process 0,\n :type :ok :f}").unwrap_err();
        assert!(e.to_string().starts_with("line 2"), "{e}");
    }
}
