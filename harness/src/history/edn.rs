//! A small EDN reader and writer, just enough for Jepsen histories.
//!
//! Jepsen writes histories as EDN: one op map a line (`history.edn`) or one
//! vector holding all the maps. The values that occur are `nil`, booleans,
//! integers, floats, strings, keywords, vectors and maps; we also accept
//! lists (read as vectors), sets, symbols, `#tag value` and the `#_` discard,
//! so that an unusual extra field never makes a history unreadable.
//!
//! Why not an EDN crate: the one or two that exist return errors without a
//! line number, and "bad input names the line and what was expected" is part of
//! the contract. The reader is ~300 lines, has no recursion limit surprises
//! (nesting is bounded by [`MAX_DEPTH`]) and never panics on any input (a
//! property tested below, `never_panics_on_garbage`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use super::intern::{Interner, Name, Str};

/// Deepest nesting of vectors/maps the reader accepts; deeper input is an
/// error rather than a stack overflow.
pub const MAX_DEPTH: usize = 128;

/// An EDN value.
///
/// Compact (24 bytes): strings are shared [`Str`]s, keywords and symbols
/// interned [`Name`]s, collections shared slices (`Arc<[..]>`, cheap to
/// clone; build one from a `Vec` with `.into()`). Maps keep their entries in
/// input order (not a hash map): histories are written back exactly as read,
/// and op maps are tiny.
#[derive(Debug, Clone, Default)]
pub enum Value {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    /// Floats compare and hash by bit pattern, so `Value` can be a map key.
    Float(f64),
    Str(Str),
    /// A keyword, stored without its leading colon: `:write` is `Keyword("write")`.
    Keyword(Name),
    Symbol(Name),
    /// Vectors, and lists `( ... )` which are read as vectors.
    Vector(Arc<[Value]>),
    Set(Arc<[Value]>),
    Map(Arc<[(Value, Value)]>),
    /// `#tag value`, e.g. `#inst "2024-01-01T00:00:00Z"`, kept as written.
    Tagged(Name, Box<Value>),
}

impl Value {
    /// A keyword value (`name` without the colon).
    pub fn keyword(name: impl Into<Name>) -> Value {
        Value::Keyword(name.into())
    }

    /// A string value.
    pub fn string(s: impl Into<Str>) -> Value {
        Value::Str(s.into())
    }

    /// A vector value.
    pub fn vector(items: impl Into<Arc<[Value]>>) -> Value {
        Value::Vector(items.into())
    }

    /// A map value (entries in order).
    pub fn map(entries: impl Into<Arc<[(Value, Value)]>>) -> Value {
        Value::Map(entries.into())
    }

    /// A string value, or `nil` for `None`.
    pub fn opt(s: Option<String>) -> Value {
        s.map(|s| Value::Str(s.into())).unwrap_or(Value::Nil)
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The elements of a vector, `None` for anything else.
    pub fn as_vector(&self) -> Option<&[Value]> {
        match self {
            Value::Vector(v) => Some(&v[..]),
            _ => None,
        }
    }

    /// The name of a keyword, `None` for anything else.
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Value::Keyword(k) => Some(k.as_str()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// Looks a keyword key up in a map value.
    pub fn get(&self, keyword: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_keyword() == Some(keyword))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Keyword(_) => "a keyword",
            Value::Symbol(_) => "a symbol",
            Value::Vector(_) => "a vector",
            Value::Set(_) => "a set",
            Value::Map(_) => "a map",
            Value::Tagged(..) => "a tagged value",
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Nil, Nil) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Keyword(a), Keyword(b)) | (Symbol(a), Symbol(b)) => a == b,
            (Vector(a), Vector(b)) | (Set(a), Set(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Tagged(t, a), Tagged(u, b)) => t == u && a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Nil => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::Keyword(s) | Value::Symbol(s) => s.hash(state),
            Value::Vector(v) | Value::Set(v) => v.hash(state),
            Value::Map(m) => m.hash(state),
            Value::Tagged(t, v) => {
                t.hash(state);
                v.hash(state)
            }
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}

impl From<Str> for Value {
    fn from(s: Str) -> Self {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Nil, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Vector(v.into_iter().map(Into::into).collect())
    }
}

/// Writes the value as EDN; reading the output gives the same value back.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.is_nan() {
                    f.write_str("##NaN")
                } else if x.is_infinite() {
                    f.write_str(if *x > 0.0 { "##Inf" } else { "##-Inf" })
                } else {
                    // `{:?}` always keeps a `.` or an exponent, so it reads back as a float.
                    write!(f, "{x:?}")
                }
            }
            Value::Str(s) => write_string(f, s),
            Value::Keyword(k) => write!(f, ":{k}"),
            Value::Symbol(s) => f.write_str(s),
            Value::Vector(items) => write_seq(f, "[", items, "]"),
            Value::Set(items) => write_seq(f, "#{", items, "}"),
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
            Value::Tagged(tag, v) => write!(f, "#{tag} {v}"),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A syntax error: where it is and what the reader expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub expected: String,
    pub found: String,
}

/// A top-level form and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub line: usize,
    pub value: Value,
}

/// Reads every top-level form of `text`. A text that is a single vector is
/// *not* unwrapped here (see [`read_forms_flattened`]).
pub fn read_forms(text: &str) -> Result<Vec<Form>, SyntaxError> {
    let mut reader = Reader::new(text);
    let mut forms = Vec::new();
    loop {
        reader.skip_blank()?;
        if reader.peek().is_none() {
            return Ok(forms);
        }
        let line = reader.line;
        if let Some(value) = reader.read_value(0)? {
            forms.push(Form { line, value });
        }
    }
}

/// Reads the forms of a history file: one form per op, or one vector holding
/// all ops (its elements are returned, each with its own line).
pub fn read_forms_flattened(text: &str) -> Result<Vec<Form>, SyntaxError> {
    HistoryForms::new(text).collect()
}

/// Iterates over the forms of a history file one at a time, like
/// [`read_forms_flattened`] without holding them all: a caller converting
/// each form into an op as it comes keeps half the memory.
///
/// A leading `[` (or `(`, as Jepsen's older files and Knossos' test data
/// have it) opens the whole-history vector or list, whose elements are
/// yielded; forms after its closing bracket, if any, are yielded too.
pub struct HistoryForms<'a> {
    reader: Reader<'a>,
    started: bool,
    /// The bracket closing the whole-history collection, while inside it.
    closing: Option<char>,
    failed: bool,
}

/// Where a [`HistoryForms`] stopped, to go on in the next piece of a file
/// read in pieces ([`HistoryForms::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormsState {
    pub line: usize,
    pub column: usize,
    started: bool,
    closing: Option<char>,
}

impl Default for FormsState {
    fn default() -> Self {
        FormsState {
            line: 1,
            column: 1,
            started: false,
            closing: None,
        }
    }
}

impl FormsState {
    /// Whether the reader has seen the start of the history (and knows
    /// whether it is one vector or list).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The state at the start of the line `newlines` lines further on, as
    /// it is when no form is open across those lines (a guess, to read a
    /// later piece of a file before the earlier one is read; the caller
    /// checks it against where the earlier piece really ends).
    pub fn lines_later(self, newlines: usize) -> FormsState {
        FormsState {
            line: self.line + newlines,
            column: 1,
            ..self
        }
    }
}

impl<'a> HistoryForms<'a> {
    pub fn new(text: &'a str) -> Self {
        Self::resume(text, FormsState::default())
    }

    /// Reads `text` as the continuation of a file whose earlier part ended
    /// in `state` (lines and columns go on from there).
    pub fn resume(text: &'a str, state: FormsState) -> Self {
        let mut reader = Reader::new(text);
        reader.line = state.line;
        reader.column = state.column;
        HistoryForms {
            reader,
            started: state.started,
            closing: state.closing,
            failed: false,
        }
    }

    /// The state after the last form returned, and its byte offset in the text.
    pub fn state(&self) -> (FormsState, usize) {
        let state = FormsState {
            line: self.reader.line,
            column: self.reader.column,
            started: self.started,
            closing: self.closing,
        };
        (state, self.reader.pos)
    }

    /// Opens the whole-history vector or list, if there is one: decided at
    /// the first non-blank character (a file read in pieces may have none
    /// in its first piece). False when the text has none yet.
    fn start(&mut self) -> Result<bool, SyntaxError> {
        if self.started {
            return Ok(true);
        }
        self.reader.skip_blank()?;
        match self.reader.peek() {
            None => return Ok(false),
            Some('[') => self.closing = Some(']'),
            Some('(') => self.closing = Some(')'),
            _ => {}
        }
        self.started = true;
        if self.closing.is_some() {
            self.reader.bump();
        }
        Ok(true)
    }

    /// The next form; `Ok(None)` at the end of the text.
    pub fn next_form(&mut self) -> Result<Option<Form>, SyntaxError> {
        if !self.start()? {
            return Ok(None);
        }
        let reader = &mut self.reader;
        loop {
            reader.skip_blank()?;
            match reader.peek() {
                Some(c) if Some(c) == self.closing => {
                    reader.bump();
                    self.closing = None;
                }
                None if self.closing.is_some() => {
                    let what = match self.closing {
                        Some(')') => "`)` closing the history list (the file ends inside it)",
                        _ => "`]` closing the history vector (the file ends inside it)",
                    };
                    return Err(reader.error(what));
                }
                None => return Ok(None),
                Some(c @ (')' | ']' | '}')) => {
                    return Err(
                        reader.error(&format!("an op map or the end of the history, not `{c}`"))
                    )
                }
                _ => {
                    let line = reader.line;
                    let depth = usize::from(self.closing.is_some());
                    if let Some(value) = reader.read_value(depth)? {
                        return Ok(Some(Form { line, value }));
                    }
                }
            }
        }
    }

    /// Like [`HistoryForms::next_form`], but a map's entries are handed to
    /// `entry` one by one as they are read instead of being collected into a
    /// [`Value::Map`] (an op becomes its fields without an intermediate map).
    /// Returns the line the form starts on, and the form itself when it is
    /// not a map.
    pub fn next_entries(
        &mut self,
        entry: &mut dyn FnMut(Value, Value),
    ) -> Result<Option<(usize, Option<Value>)>, SyntaxError> {
        if self.started && self.reader.peek() == Some('{') {
            // The common case, straight after the previous op.
            let line = self.reader.line;
            let depth = usize::from(self.closing.is_some());
            self.reader.read_map_entries(depth, entry)?;
            return Ok(Some((line, None)));
        }
        if !self.start()? {
            return Ok(None);
        }
        loop {
            self.reader.skip_blank()?;
            match self.reader.peek() {
                Some('{') => {
                    let line = self.reader.line;
                    let depth = usize::from(self.closing.is_some());
                    self.reader.read_map_entries(depth, entry)?;
                    return Ok(Some((line, None)));
                }
                Some(c) if Some(c) == self.closing => {
                    self.reader.bump();
                    self.closing = None;
                }
                _ => return Ok(self.next_form()?.map(|f| (f.line, Some(f.value)))),
            }
        }
    }

    /// Uses `interner` (carried over from the previous piece of a file).
    pub fn with_interner(mut self, interner: Interner) -> Self {
        self.reader.interner = interner;
        self
    }

    /// Reads with the general reader only (to test the fast path against it).
    #[cfg(test)]
    fn without_fast_path(mut self) -> Self {
        self.reader.fast = false;
        self
    }

    /// The interner, to carry it over to the next piece.
    pub fn take_interner(&mut self) -> Interner {
        std::mem::take(&mut self.reader.interner)
    }
}

impl Iterator for HistoryForms<'_> {
    type Item = Result<Form, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_form();
        self.failed = next.is_err();
        next.transpose()
    }
}

/// Reads exactly one value (surrounding whitespace allowed).
pub fn read_value(text: &str) -> Result<Value, SyntaxError> {
    let mut reader = Reader::new(text);
    reader.skip_blank()?;
    let value = loop {
        if reader.peek().is_none() {
            return Err(reader.error("a value"));
        }
        if let Some(v) = reader.read_value(0)? {
            break v;
        }
        reader.skip_blank()?;
    };
    reader.skip_blank()?;
    if reader.peek().is_some() {
        return Err(reader.error("end of input after the value"));
    }
    Ok(value)
}

struct Reader<'a> {
    /// Shares equal strings and small vectors.
    interner: Interner,
    /// Recently read keywords, by a hash of their text (a hit costs one
    /// comparison, where `Name::new` hashes and looks up a table).
    keywords: [Option<Name>; 64],
    text: &'a str,
    /// `text` as bytes: every delimiter is ASCII, so the reader scans bytes
    /// and only decodes UTF-8 where a non-ASCII character starts.
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    column: usize,
    /// The entries of the map read by [`Reader::read_flat_map_line`].
    entries: Vec<(Value, Value)>,
    /// The items of a vector read by [`Reader::flat_vector`], and of a
    /// vector inside it.
    items: [Vec<Value>; 2],
    /// Whether [`Reader::read_flat_map_line`] is tried (off only in tests
    /// comparing it with the general reader).
    fast: bool,
}

/// Process numbers below this have their last invocation remembered by
/// the reader (see [`Reader::read_flat_map_line`]).
const MAX_REMEMBERED_PROCESS: i64 = 1 << 16;

/// The names of the op fields the fast path looks at.
struct OpNames {
    process: Name,
    kind: Name,
    value: Name,
    invoke: Name,
}

fn op_names() -> &'static OpNames {
    static NAMES: std::sync::OnceLock<OpNames> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| OpNames {
        process: Name::new("process"),
        kind: Name::new("type"),
        value: Name::new("value"),
        invoke: Name::new("invoke"),
    })
}

/// `a == b` for an atom of a vector, a shared string by its pointer first.
fn same_item(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => {
            std::ptr::eq(x.as_ptr(), y.as_ptr())
                || super::intern::same_text(x.as_bytes(), y.as_bytes())
        }
        (a, b) => a == b,
    }
}

/// Bytes that end a token. Only ASCII whitespace counts as whitespace.
fn is_delimiter_byte(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | 0x0c
            | b','
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b';'
    )
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            interner: Interner::default(),
            keywords: [None; 64],
            text,
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            column: 1,
            entries: Vec::new(),
            items: [Vec::new(), Vec::new()],
            fast: true,
        }
    }

    /// The interned name of a keyword's text.
    #[inline]
    fn name(&mut self, text: &str) -> Name {
        let b = text.as_bytes();
        let slot = (b.len() * 7 + b[0] as usize * 3 + b[b.len() - 1] as usize) & 63;
        if let Some(name) = self.keywords[slot] {
            if super::intern::same_text(name.as_bytes(), b) {
                return name;
            }
        }
        let name = Name::new(text);
        self.keywords[slot] = Some(name);
        name
    }

    #[inline]
    fn peek(&self) -> Option<char> {
        let b = *self.bytes.get(self.pos)?;
        if b < 0x80 {
            Some(b as char)
        } else {
            self.text[self.pos..].chars().next()
        }
    }

    #[inline]
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Advances to byte `end`, which is on the current line.
    #[inline]
    fn advance_in_line(&mut self, end: usize) {
        let chars = self.bytes[self.pos..end]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        self.column += chars;
        self.pos = end;
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of input".to_string(),
            Some(_) => {
                let rest: String = self.text[self.pos..]
                    .chars()
                    .take_while(|c| *c != '\n')
                    .take(20)
                    .collect();
                format!("`{rest}`")
            }
        }
    }

    fn error(&self, expected: &str) -> SyntaxError {
        SyntaxError {
            line: self.line,
            column: self.column,
            expected: expected.to_string(),
            found: self.found(),
        }
    }

    /// Skips whitespace, commas and `;` comments.
    fn skip_blank(&mut self) -> Result<(), SyntaxError> {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.bump();
            } else if c == ';' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
        Ok(())
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        let end = self.bytes[start..]
            .iter()
            .position(|&b| is_delimiter_byte(b))
            .map_or(self.bytes.len(), |n| start + n);
        self.advance_in_line(end);
        &self.text[start..end]
    }

    /// Reads one value at the cursor. Returns `None` for a `#_` discarded form.
    fn read_value(&mut self, depth: usize) -> Result<Option<Value>, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("at most {MAX_DEPTH} levels of nesting")));
        }
        let Some(c) = self.peek() else {
            return Err(self.error("a value"));
        };
        let value = match c {
            '{' => {
                self.bump();
                let items = self.read_seq('}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(
                        self.error("an even number of forms in the map (a key without value)")
                    );
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Value::Map(entries.into())
            }
            '[' => {
                self.bump();
                let items = self.read_seq(']', depth)?;
                Value::Vector(self.interner.vector(items))
            }
            '(' => {
                self.bump();
                let items = self.read_seq(')', depth)?;
                Value::Vector(self.interner.vector(items))
            }
            '"' => {
                let text = self.read_string()?;
                Value::Str(self.interner.str(&text))
            }
            ':' => {
                self.bump();
                let name = self.token();
                if name.is_empty() {
                    return Err(self.error("a keyword name after `:`"));
                }
                Value::Keyword(self.name(name))
            }
            '#' => return self.read_dispatch(depth),
            '\\' => return Err(self.error("a value (character literals are not supported)")),
            ')' | ']' | '}' => return Err(self.error("a value")),
            _ => {
                let (line, column) = (self.line, self.column);
                let token = self.token();
                parse_atom(token).map_err(|expected| SyntaxError {
                    line,
                    column,
                    expected,
                    found: format!("`{token}`"),
                })?
            }
        };
        Ok(Some(value))
    }

    /// Reads a map at the cursor (`{`), handing each entry to `entry`.
    fn read_map_entries(
        &mut self,
        depth: usize,
        entry: &mut dyn FnMut(Value, Value),
    ) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("at most {MAX_DEPTH} levels of nesting")));
        }
        if self.fast && depth + 3 <= MAX_DEPTH && self.read_flat_map_line() {
            for (k, v) in self.entries.drain(..) {
                entry(k, v);
            }
            return Ok(());
        }
        self.bump(); // '{'
        let open_line = self.line;
        let mut key: Option<Value> = None;
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some('}') => {
                    self.bump();
                    if key.is_some() {
                        return Err(
                            self.error("an even number of forms in the map (a key without value)")
                        );
                    }
                    return Ok(());
                }
                None => {
                    return Err(self.error(&format!(
                        "`}}` closing the map opened on line {open_line} (the input ends inside it)"
                    )))
                }
                Some(c @ (')' | ']')) => {
                    return Err(self.error(&format!("`}}` (or a value), not `{c}`")))
                }
                _ => {
                    if let Some(v) = self.read_value(depth + 1)? {
                        match key.take() {
                            None => key = Some(v),
                            Some(k) => entry(k, v),
                        }
                    }
                }
            }
        }
    }

    /// The fast path for the common shape of an op: a map on one line of
    /// ASCII text whose keys are keywords and whose values are atoms
    /// (keywords, integers, `nil`, plain strings, ...) or vectors of atoms
    /// and of vectors of atoms (a kv cas, `["k1" ["v3" "v4"]]`):
    /// `{:index 7, :time 12, :process 3, :type :ok, :f :put, :value ["k1" "v3"]}`.
    ///
    /// Reads it at byte level into `self.entries` and returns true; the
    /// entries are equal to those the general reader gives, and the
    /// cursor ends after the `}` as it would. On
    /// anything else (a newline, a comment, a nested map, an escape, a
    /// non-ASCII byte, a token the general reader rejects) it returns false
    /// without moving the cursor, and the general reader reads the map
    /// (and reports any error) as before.
    ///
    /// The completion of an op mostly carries its invocation's value
    /// again (`["k1" "v3"]`): when `:process` comes before `:value`, the
    /// value of that process's last invocation read here is compared with
    /// the text first, and taken (shared, without the interner's lookups)
    /// where it is equal ([`Interner::take_invocation`]).
    fn read_flat_map_line(&mut self) -> bool {
        self.entries.clear();
        let start = self.pos;
        let mut at = start + 1; // after '{'
        let bytes = self.bytes;
        let names = op_names();
        // The op's client process and whether it is an invocation, once read.
        let mut process: Option<usize> = None;
        let mut invoke = false;
        let mut value_entry: Option<usize> = None;
        loop {
            at = skip_spaces(bytes, at);
            match bytes.get(at) {
                Some(b'}') => {
                    at += 1;
                    break;
                }
                Some(b':') => {}
                _ => return false, // not a keyword key (or the line ends)
            }
            let Some((key, after)) = self.flat_keyword(at) else {
                return false;
            };
            at = skip_spaces(bytes, after);
            let Value::Keyword(name) = key else {
                return false;
            };
            let read = match process {
                Some(p) if name == names.value => {
                    let like = self.interner.take_invocation(p);
                    match self.flat_equals(at, &like, 2) {
                        Some(end) => Some((like, end)),
                        None => self.flat_value_like(at, like, 2),
                    }
                }
                _ => self.flat_value(at, 2),
            };
            let Some((value, after)) = read else {
                return false;
            };
            if name == names.process {
                process = match value {
                    Value::Int(p) if (0..MAX_REMEMBERED_PROCESS).contains(&p) => Some(p as usize),
                    _ => None,
                };
            } else if name == names.kind {
                invoke = matches!(value, Value::Keyword(t) if t == names.invoke);
            } else if name == names.value {
                value_entry = Some(self.entries.len());
            }
            self.entries.push((key, value));
            at = after;
        }
        if let (true, Some(p), Some(i)) = (invoke, process, value_entry) {
            self.interner
                .remember_invocation(p, self.entries[i].1.clone());
        }
        // ASCII only, one line: one column per byte.
        self.column += at - start;
        self.pos = at;
        true
    }

    /// [`Reader::flat_value`] of a value that is often equal to `like`:
    /// strings equal to `like` (or, in a vector, to its item at the same
    /// place) are taken from it, and so is a whole vector when every
    /// item is equal.
    fn flat_value_like(&mut self, at: usize, like: Value, vectors: u8) -> Option<(Value, usize)> {
        match (*self.bytes.get(at)?, like) {
            (b'"', Value::Str(like)) => {
                let end = self.flat_string_end(at + 1)?;
                let text = &self.text[at + 1..end];
                let s = if super::intern::same_text(text.as_bytes(), like.as_bytes()) {
                    like
                } else {
                    self.interner.str(text)
                };
                Some((Value::Str(s), end + 1))
            }
            (b'[', Value::Vector(like)) if vectors > 0 => {
                self.flat_vector(at, Some(like), vectors - 1)
            }
            _ => self.flat_value(at, vectors),
        }
    }

    /// Where the value at `at` ends if it is `like`, as [`Reader::flat_value`]
    /// would read it (nested at most `vectors` deep): checked without
    /// building anything, so a completion that repeats its invocation's
    /// value costs no allocation and no reference count.
    fn flat_equals(&mut self, at: usize, like: &Value, vectors: u8) -> Option<usize> {
        let bytes = self.bytes;
        match (like, *bytes.get(at)?) {
            (Value::Str(s), b'"') => {
                let s = s.as_bytes();
                let end = at + 1 + s.len();
                let plain = |b: &u8| *b != b'"' && *b != b'\\' && *b != b'\n' && *b < 0x80;
                (bytes.get(at + 1..end)? == s
                    && bytes.get(end) == Some(&b'"')
                    && s.iter().all(plain))
                .then_some(end + 1)
            }
            (Value::Vector(items), b'[') if vectors > 0 => {
                let mut at = at + 1;
                for item in items.iter() {
                    at = skip_spaces(bytes, at);
                    at = self.flat_equals(at, item, vectors - 1)?;
                }
                at = skip_spaces(bytes, at);
                (bytes.get(at) == Some(&b']')).then_some(at + 1)
            }
            (Value::Str(_) | Value::Vector(_), _) | (_, b'"' | b'[') => None,
            (like, _) => match self.flat_value(at, 0)? {
                (value, end) if value == *like => Some(end),
                _ => None,
            },
        }
    }

    /// Where the plain string whose text starts at `from` ends (at its
    /// closing quote); `None` for an escape, a newline or a non-ASCII byte.
    #[inline]
    fn flat_string_end(&self, from: usize) -> Option<usize> {
        let bytes = self.bytes;
        let mut end = from;
        loop {
            match *bytes.get(end)? {
                b'"' => return Some(end),
                b'\\' | b'\n' => return None,
                b if b >= 0x80 => return None,
                _ => end += 1,
            }
        }
    }

    /// A keyword at `at` (`:` then a token of plain ASCII characters), and
    /// the position after it.
    #[inline]
    fn flat_keyword(&mut self, at: usize) -> Option<(Value, usize)> {
        let end = self.flat_token_end(at + 1)?;
        if end == at + 1 {
            return None;
        }
        let name = &self.text[at + 1..end];
        Some((Value::Keyword(self.name(name)), end))
    }

    /// Where the token starting at `at` ends, if it is plain ASCII and ends
    /// at a delimiter (not at the end of the text, where a piece may cut it).
    #[inline]
    fn flat_token_end(&self, at: usize) -> Option<usize> {
        let bytes = self.bytes;
        let mut end = at;
        loop {
            let b = *bytes.get(end)?;
            if is_delimiter_byte(b) {
                return Some(end);
            }
            if b >= 0x80 || b == b'#' || b == b'\\' {
                return None;
            }
            end += 1;
        }
    }

    /// A value at `at`, and the position after it: an atom, or a vector
    /// nested at most `vectors` deep (`["k" ["v1" "v2"]]` is 2 deep).
    fn flat_value(&mut self, at: usize, vectors: u8) -> Option<(Value, usize)> {
        let bytes = self.bytes;
        match *bytes.get(at)? {
            b':' => self.flat_keyword(at),
            b'"' => {
                let end = self.flat_string_end(at + 1)?;
                let text = &self.text[at + 1..end];
                Some((Value::Str(self.interner.str(text)), end + 1))
            }
            b'[' if vectors > 0 => self.flat_vector(at, None, vectors - 1),
            b'0'..=b'9' | b'-' | b'+' | b'a'..=b'z' | b'A'..=b'Z' => {
                let end = self.flat_token_end(at)?;
                let token = &self.text[at..end];
                let value = match token.as_bytes() {
                    b"nil" => Value::Nil,
                    digits @ [b'0'..=b'9', ..]
                        if digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) =>
                    {
                        Value::Int(
                            digits
                                .iter()
                                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
                        )
                    }
                    _ => parse_atom(token).ok()?,
                };
                Some((value, end))
            }
            _ => None,
        }
    }

    /// A vector at `at` (`[`) whose items are atoms or vectors nested at
    /// most `inner` deep, and the position after it; with `like`, its
    /// equal strings and vectors, or all of it if equal, are taken from `like`.
    fn flat_vector(
        &mut self,
        at: usize,
        like: Option<Arc<[Value]>>,
        inner: u8,
    ) -> Option<(Value, usize)> {
        // Two buffers: one for a vector, one for the vectors inside it.
        let buffer = usize::from(inner == 0);
        let mut items = std::mem::take(&mut self.items[buffer]);
        items.clear();
        let mut at = at + 1;
        let mut all_like = like.is_some();
        let result = loop {
            at = skip_spaces(self.bytes, at);
            if self.bytes.get(at) == Some(&b']') {
                break Some(at + 1);
            }
            let read = match like.as_ref().and_then(|l| l.get(items.len())) {
                Some(l) => self.flat_value_like(at, l.clone(), inner),
                None => self.flat_value(at, inner),
            };
            match read {
                Some((value, after)) => {
                    all_like = all_like
                        && like
                            .as_ref()
                            .and_then(|l| l.get(items.len()))
                            .is_some_and(|l| same_item(l, &value));
                    items.push(value);
                    at = after;
                }
                None => break None,
            }
        };
        let value = result.map(|end| {
            let vector = match like {
                Some(like) if all_like && like.len() == items.len() => like,
                _ => self.interner.vector_of(&items),
            };
            (Value::Vector(vector), end)
        });
        items.clear();
        self.items[buffer] = items;
        value
    }

    fn read_seq(&mut self, close: char, depth: usize) -> Result<Vec<Value>, SyntaxError> {
        let mut items = Vec::new();
        let open_line = self.line;
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                None => {
                    let what = match close {
                        '}' => "map",
                        ')' => "list",
                        _ => "vector",
                    };
                    return Err(self.error(&format!(
                        "`{close}` closing the {what} opened on line {open_line} (the input ends inside it)"
                    )));
                }
                Some(c @ (')' | ']' | '}')) => {
                    return Err(self.error(&format!("`{close}` (or a value), not `{c}`")))
                }
                _ => {
                    if let Some(v) = self.read_value(depth + 1)? {
                        items.push(v);
                    }
                }
            }
        }
    }

    fn read_dispatch(&mut self, depth: usize) -> Result<Option<Value>, SyntaxError> {
        self.bump(); // '#'
        match self.peek() {
            Some('{') => {
                self.bump();
                Ok(Some(Value::Set(self.read_seq('}', depth)?.into())))
            }
            Some('_') => {
                self.bump();
                self.skip_blank()?;
                self.read_value(depth + 1)?;
                Ok(None)
            }
            Some('#') => {
                self.bump();
                let token = self.token();
                match token {
                    "NaN" => Ok(Some(Value::Float(f64::NAN))),
                    "Inf" => Ok(Some(Value::Float(f64::INFINITY))),
                    "-Inf" => Ok(Some(Value::Float(f64::NEG_INFINITY))),
                    _ => Err(self.error("##NaN, ##Inf or ##-Inf")),
                }
            }
            Some(c) if c.is_alphabetic() => {
                let tag = Name::new(self.token());
                self.skip_blank()?;
                loop {
                    if self.peek().is_none() {
                        return Err(self.error(&format!("a value after the tag #{tag}")));
                    }
                    if let Some(v) = self.read_value(depth + 1)? {
                        return Ok(Some(Value::Tagged(tag, Box::new(v))));
                    }
                    self.skip_blank()?;
                }
            }
            _ => Err(self.error("`{`, `_`, `#` or a tag name after `#`")),
        }
    }

    /// Reads a string literal; one without escapes or newlines is borrowed
    /// from the text.
    fn read_string(&mut self) -> Result<std::borrow::Cow<'a, str>, SyntaxError> {
        let start = self.pos + 1;
        let plain_end = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b == b'\n')
            .map(|n| start + n);
        if let Some(end) = plain_end.filter(|&end| self.bytes[end] == b'"') {
            self.advance_in_line(end + 1);
            return Ok(std::borrow::Cow::Borrowed(&self.text[start..end]));
        }
        self.read_escaped_string().map(std::borrow::Cow::Owned)
    }

    fn read_escaped_string(&mut self) -> Result<String, SyntaxError> {
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error("`\"` closing the string"));
            };
            match c {
                '"' => return Ok(out),
                c if c != '\\' => {
                    // Copy the run of plain characters up to the next quote,
                    // escape or newline in one go.
                    out.push(c);
                    let start = self.pos;
                    let end = self.bytes[start..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b == b'\n')
                        .map_or(self.bytes.len(), |n| start + n);
                    out.push_str(&self.text[start..end]);
                    self.advance_in_line(end);
                    continue;
                }
                '\\' => {
                    let Some(e) = self.bump() else {
                        return Err(self.error("an escape character after `\\`"));
                    };
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'u' => {
                            let mut code = 0u32;
                            for _ in 0..4 {
                                let d = self.peek().and_then(|d| d.to_digit(16));
                                let Some(d) = d else {
                                    return Err(self.error("4 hex digits after `\\u`"));
                                };
                                self.bump();
                                code = code * 16 + d;
                            }
                            match char::from_u32(code) {
                                Some(ch) => out.push(ch),
                                None => return Err(self.error("a valid unicode escape")),
                            }
                        }
                        _ => return Err(self.error("one of \\n \\t \\r \\b \\f \\\" \\\\ \\uXXXX")),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

/// The position of the first byte at or after `at` that is not a space or
/// a comma.
#[inline]
fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b',') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Parses a bare token: nil, booleans, numbers, symbols.
fn parse_atom(token: &str) -> Result<Value, String> {
    match token {
        "nil" => return Ok(Value::Nil),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let bytes = token.as_bytes();
    let starts_numeric = matches!(bytes, [b'0'..=b'9', ..] | [b'+' | b'-', b'0'..=b'9', ..]);
    if starts_numeric {
        let body = token.strip_suffix('N').unwrap_or(token);
        if let Ok(i) = body.strip_prefix('+').unwrap_or(body).parse::<i64>() {
            return Ok(Value::Int(i));
        }
        let fbody = token.strip_suffix('M').unwrap_or(token);
        if fbody.contains(['.', 'e', 'E']) {
            if let Ok(x) = fbody.parse::<f64>() {
                return Ok(Value::Float(x));
            }
        }
        return Err("a number (integers must fit in 64 bits)".to_string());
    }
    if token.is_empty() {
        return Err("a value".to_string());
    }
    Ok(Value::Symbol(Name::new(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scalars() {
        assert_eq!(read_value("nil").unwrap(), Value::Nil);
        assert_eq!(read_value(" true ").unwrap(), Value::Bool(true));
        assert_eq!(read_value("-42").unwrap(), Value::Int(-42));
        assert_eq!(read_value("+7").unwrap(), Value::Int(7));
        assert_eq!(read_value("12N").unwrap(), Value::Int(12));
        assert_eq!(read_value("1.5").unwrap(), Value::Float(1.5));
        assert_eq!(read_value(":f").unwrap(), Value::keyword("f"));
        assert_eq!(read_value(":a/b").unwrap(), Value::keyword("a/b"));
        assert_eq!(read_value(r#""a\"b\n""#).unwrap(), Value::string("a\"b\n"));
        assert_eq!(read_value("foo").unwrap(), Value::Symbol("foo".into()));
    }

    #[test]
    fn reads_collections_with_optional_commas_and_comments() {
        let v = read_value("{:a 1, :b [1 2,3] ; comment\n :c {:d nil}}").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.get("b"), Some(&Value::from(vec![1i64, 2, 3])));
        assert_eq!(v.get("c").and_then(|c| c.get("d")), Some(&Value::Nil));
        assert_eq!(read_value("(1 2)").unwrap(), Value::from(vec![1i64, 2]));
        assert_eq!(
            read_value("#{1}").unwrap(),
            Value::Set(vec![Value::Int(1)].into())
        );
        assert_eq!(
            read_value("[1 #_ 2 3]").unwrap(),
            Value::from(vec![1i64, 3])
        );
        assert_eq!(
            read_value("#inst \"2020\"").unwrap(),
            Value::Tagged("inst".into(), Box::new(Value::string("2020")))
        );
    }

    #[test]
    fn round_trips() {
        for text in [
            "{:a 1, :b [1 2 3], :c \"x\\\"y\", :d nil, :e true, :f -2.5, :g #{:k}, :h #inst \"t\"}",
            "[\"0\" [nil \"v\"]]",
            "##NaN",
            "\"tab\\there\\u0001\"",
        ] {
            let v = read_value(text).unwrap();
            let written = v.to_string();
            assert_eq!(read_value(&written).unwrap(), v, "{text} -> {written}");
        }
    }

    #[test]
    fn errors_name_line_and_expectation() {
        let e = read_forms("{:a 1}\n{:b 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.expected.contains('}'), "{e}");
        let e = read_forms("{:a 1}\n{:a}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.expected.contains("even number"), "{e}");
        let e = read_value("12abc").unwrap_err();
        assert!(e.expected.contains("number"), "{e}");
        let e = read_value("\"open").unwrap_err();
        assert!(e.expected.contains("closing the string"), "{e}");
        let e = read_value("[1 2}").unwrap_err();
        assert!(e.expected.contains("`]`"), "{e}");
        assert!(read_value(&"[".repeat(1000)).is_err());
    }

    #[test]
    fn flattens_a_whole_history_vector() {
        let forms = read_forms_flattened("[{:a 1}\n {:a 2}]").unwrap();
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[1].line, 2);
        let forms = read_forms_flattened("[1] [2]").unwrap();
        assert_eq!(forms.len(), 2);
        assert!(read_forms_flattened("[{:a 1}").is_err());
    }

    /// One form as `next_entries` gives it: its line, its entries or value,
    /// and the reader's state and position after it.
    type EntriesForm = (usize, Vec<(Value, Value)>, Option<Value>, FormsState, usize);

    /// Everything `next_entries` gives for a text, and the error if any.
    fn entries_of(mut forms: HistoryForms<'_>) -> (Vec<EntriesForm>, Option<SyntaxError>) {
        let mut out = Vec::new();
        loop {
            let mut entries = Vec::new();
            match forms.next_entries(&mut |k, v| entries.push((k, v))) {
                Ok(Some((line, value))) => {
                    let (state, pos) = forms.state();
                    out.push((line, entries, value, state, pos));
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn the_flat_op_line_path_reads_exactly_as_the_general_reader() {
        use rand::{Rng, SeedableRng};
        let lines = [
            "{:index 0, :time 1000, :process 142, :type :invoke, :f :put, :value [\"k307\" \"v1\"]}",
            "{:index 1, :time 1001, :process 142, :type :ok, :f :put, :value [\"k307\" \"v1\"]}",
            "{:process 142, :type :ok, :f :put, :value [\"k307\" \"v2\" 3]}",
            "{:process 142, :type :invoke, :f :append, :value \"k307\"}",
            "{:process 142, :type :info, :f :append, :value \"k307\"}",
            "{:process 3, :type :ok, :f :get, :value [\"k1\" nil], :node \"127.0.0.1:8001\"}",
            "{:process :nemesis, :type :info, :f :start-pause, :value nil}",
            "{:process 1 :type :ok :f :cas :value [\"k\" [1 2]]}",
            "{:process 142, :type :invoke, :f :cas, :value [\"k307\" [\"v1\" \"v2\"]]}",
            "{:process 142, :type :ok, :f :cas, :value [\"k307\" [\"v1\" \"v2\"]]}",
            "{:process 142, :type :fail, :f :cas, :value [\"k307\" [\"v1\" nil [[3]]]]}",
            "{:time -5, :process 0, :type :fail, :f :read, :value 12N, :x 1.5, :y true, :z sym}",
            "{:a [], :b [:k 007 -3 +4 \"\"], :c #inst \"t\"}",
            "{:v \"caf\u{e9}\", :w \"a\\\"b\"}",
            "{:a 99999999999999999999, :b 1e5, :c 12abc}",
            "{\"k\" 1, 2 3}",
            "[{:a 1} {:b 2}]",
        ];
        let noise = [
            "", " ", ",", "\n", "\t", ";c\n", "{", "}", "[", "]", "(", ")", ":", "\"", "#_", "#",
            "\\", "nil", "1", "-", "\u{e9}", ":k", "\"s\"", "\r",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for case in 0..4000 {
            let mut text = String::new();
            for _ in 0..rng.random_range(1..6) {
                let mut line = lines[rng.random_range(0..lines.len())].to_string();
                if case % 2 == 1 {
                    for _ in 0..rng.random_range(1..3) {
                        let mut at = rng.random_range(0..=line.len());
                        while !line.is_char_boundary(at) {
                            at -= 1;
                        }
                        line.insert_str(at, noise[rng.random_range(0..noise.len())]);
                    }
                }
                text.push_str(&line);
                text.push('\n');
            }
            // Also cut the text anywhere (a piece of a file).
            let cut = if case % 3 == 0 {
                let mut at = rng.random_range(0..=text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                at
            } else {
                text.len()
            };
            let text = &text[..cut];
            let fast = entries_of(HistoryForms::new(text));
            let general = entries_of(HistoryForms::new(text).without_fast_path());
            assert_eq!(fast, general, "{text:?}");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "{}[]()#_:\"\\,; \n0123456789+-.eNMabnil\u{e9}"
            .chars()
            .collect();
        let words = [
            "#inst \"2020\"",
            "#uuid \"x\"",
            "#tag ",
            "; comment\n",
            "(",
            ")",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5000 {
            let len = rng.random_range(0..30);
            let s: String = (0..len)
                .map(|_| {
                    if rng.random_bool(0.1) {
                        words[rng.random_range(0..words.len())].to_string()
                    } else {
                        alphabet[rng.random_range(0..alphabet.len())].to_string()
                    }
                })
                .collect();
            let _ = read_forms_flattened(&s);
            let _ = read_value(&s);
        }
    }
}
