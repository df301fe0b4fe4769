//! Interned text: [`Name`] for keywords and op names, [`Str`] for strings.
//!
//! A million-op history names the same few keywords (`:read`, `:put`,
//! `:nemesis`, `:node`) millions of times and the same key and value strings
//! twice or more (an invocation and its completion carry the same
//! `["k1" "v3"]`). Storing each occurrence as its own `String` made the
//! parsed history the bulk of the checker's memory, so:
//!
//! - a [`Name`] is one pointer to a name stored once for the whole program
//!   (like Clojure's keywords): comparing two names compares pointers;
//! - a [`Str`] is a shared, immutable string (`Arc<str>`); the reader
//!   ([`Interner`]) gives equal strings read close together (or often) one
//!   allocation, and equal small vectors (`["k1" "v3"]`) one allocation too.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap;

use super::Value;

/// A keyword-like name (`read`, `nemesis`, `node`), stored once per program.
///
/// Names are never freed: they are the vocabulary of histories (op names,
/// keywords, field names), a few dozen in practice.
#[derive(Clone, Copy)]
pub struct Name(&'static &'static str);

fn names() -> &'static Mutex<FxHashMap<&'static str, Name>> {
    static NAMES: OnceLock<Mutex<FxHashMap<&'static str, Name>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

thread_local! {
    /// Names this thread already looked up (the global table is locked
    /// once per name and thread, not once per keyword read).
    static SEEN: std::cell::RefCell<FxHashMap<&'static str, Name>> = Default::default();
}

impl Name {
    /// The name for `text` (without a leading colon).
    pub fn new(text: &str) -> Name {
        if let Some(name) = SEEN.with(|seen| seen.borrow().get(text).copied()) {
            return name;
        }
        let name = {
            let mut table = names().lock().unwrap_or_else(|e| e.into_inner());
            match table.get(text) {
                Some(&name) => name,
                None => {
                    let stored: &'static str = Box::leak(text.to_owned().into_boxed_str());
                    let name = Name(Box::leak(Box::new(stored)));
                    table.insert(stored, name);
                    name
                }
            }
        };
        SEEN.with(|seen| seen.borrow_mut().insert(name.as_str(), name));
        name
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        // Interned: one pointer per name.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::new(&text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::new(text)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An immutable shared string: cloning it copies a pointer.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Str(Arc<str>);

impl Str {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl From<&str> for Str {
    fn from(text: &str) -> Str {
        Str(text.into())
    }
}

impl From<String> for Str {
    fn from(text: String) -> Str {
        Str(text.into())
    }
}

impl From<&String> for Str {
    fn from(text: &String) -> Str {
        Str(text.as_str().into())
    }
}

impl From<Str> for String {
    fn from(text: Str) -> String {
        text.as_str().to_string()
    }
}

/// The text itself (as EDN it is written quoted, see [`Value`]'s `Display`).
impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Strings longer than this are not interned (they are mostly unique read
/// results of appended keys, and hashing them costs more than it saves).
const MAX_INTERNED_LEN: usize = 128;

/// Vectors longer than this are not interned.
const MAX_INTERNED_ITEMS: usize = 4;

/// Slots of each [`Interner`] cache (a power of two).
const CACHE_SLOTS: usize = 1 << 15;

/// Makes equal strings and small vectors read close together share memory.
///
/// The repeats worth sharing are near one another (an invocation and its
/// completion) or frequent (keys, op values like `nil`): a direct-mapped
/// cache of a few thousand recent values catches them, where a table of
/// every value ever read (millions, in a big history) cost a cache miss per
/// lookup and most of the parse time. A missed repeat only costs memory.
///
/// Each slot keeps its value's full hash next to it: a new value (most
/// values of a big history are new) is told from the slot's old one by the
/// hash, without reading the old value's memory (long out of the cache).
///
/// It also keeps the value of each client process's last invocation, which
/// the op's completion mostly repeats: the reader compares the completion's
/// text with it and shares it without any lookup.
#[derive(Default)]
pub struct Interner {
    strings: Vec<(u64, Option<Str>)>,
    vectors: Vec<(u64, Option<Arc<[Value]>>)>,
    /// By process number: the value of its last invocation not yet taken.
    invocations: Vec<Value>,
}

fn slot(hash: u64) -> usize {
    // Fibonacci hashing: the top bits of the product depend on every bit
    // of the hash (the middle bits of an Fx hash depend on few of the
    // input's: strings that differ after their fourth byte collided).
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
}

impl Interner {
    /// Remembers the value of an invocation by `process`.
    pub fn remember_invocation(&mut self, process: usize, value: Value) {
        if self.invocations.len() <= process {
            self.invocations.resize(process + 1, Value::Nil);
        }
        self.invocations[process] = value;
    }

    /// The value of the last invocation of `process` remembered and not
    /// yet taken (`nil` if none).
    pub fn take_invocation(&mut self, process: usize) -> Value {
        self.invocations
            .get_mut(process)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The shared copy of `text`.
    pub fn str(&mut self, text: &str) -> Str {
        if text.len() > MAX_INTERNED_LEN {
            return Str::from(text);
        }
        if self.strings.is_empty() {
            self.strings.resize(CACHE_SLOTS, (0, None));
        }
        let mut h = rustc_hash::FxHasher::default();
        text.hash(&mut h);
        let hash = h.finish();
        let entry = &mut self.strings[slot(hash)];
        match &entry.1 {
            Some(s) if entry.0 == hash && same_text(s.as_bytes(), text.as_bytes()) => s.clone(),
            _ => {
                let s = Str::from(text);
                *entry = (hash, Some(s.clone()));
                s
            }
        }
    }

    /// The shared copy of a vector: small vectors of scalars and strings
    /// (`["k1" "v3"]`, `["k1" nil]`) are interned, others allocated as they are.
    pub fn vector(&mut self, items: Vec<Value>) -> Arc<[Value]> {
        if !is_small(&items) {
            return items.into();
        }
        self.vector_of(&items)
    }

    /// [`Interner::vector`] of a slice (one allocation, no `Vec` first).
    ///
    /// Vectors are found by a cheap hash of their items (a string's length
    /// and ends, a name's address) and compared item by item (shared
    /// strings by pointer).
    pub fn vector_of(&mut self, items: &[Value]) -> Arc<[Value]> {
        if !is_small(items) {
            return items.into();
        }
        if self.vectors.is_empty() {
            self.vectors.resize(CACHE_SLOTS, (0, None));
        }
        let mut h = rustc_hash::FxHasher::default();
        for item in items {
            scalar_hash(item, &mut h);
        }
        items.len().hash(&mut h);
        let hash = h.finish();
        let entry = &mut self.vectors[slot(hash)];
        match &entry.1 {
            Some(v)
                if entry.0 == hash
                    && v.len() == items.len()
                    && v.iter().zip(items).all(|(a, b)| same(a, b)) =>
            {
                v.clone()
            }
            _ => {
                let v: Arc<[Value]> = items.into();
                *entry = (hash, Some(v.clone()));
                v
            }
        }
    }
}

/// `a == b`, inline for short texts (most keys and values are a few bytes,
/// where a call to `memcmp` costs more than the comparison).
#[inline]
pub(crate) fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word =
        |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    let half =
        |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or_default());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Whether a vector is worth interning: a few scalars and short strings.
fn is_small(items: &[Value]) -> bool {
    items.len() <= MAX_INTERNED_ITEMS
        && items.iter().all(|v| match v {
            Value::Vector(_) | Value::Set(_) | Value::Map(_) | Value::Tagged(..) => false,
            Value::Str(s) => s.len() <= MAX_INTERNED_LEN,
            _ => true,
        })
}

/// Hashes a scalar cheaply: a name by its address (names are interned
/// for the whole program), a string by its length and its first and last
/// eight bytes (no loop over the text).
fn scalar_hash(value: &Value, h: &mut rustc_hash::FxHasher) {
    match value {
        Value::Str(s) => {
            let b = s.as_bytes();
            let n = b.len();
            let word = |at: usize, len: usize| {
                let mut w = [0u8; 8];
                w[..len].copy_from_slice(&b[at..at + len]);
                u64::from_le_bytes(w)
            };
            n.hash(h);
            word(0, n.min(8)).hash(h);
            word(n.saturating_sub(8), n.min(8)).hash(h);
        }
        Value::Keyword(n) | Value::Symbol(n) => (n.0 as *const &str as usize).hash(h),
        Value::Int(i) => i.hash(h),
        other => other.hash(h),
    }
}

/// `a == b` for scalars, without a call for a shared or short string.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => {
            Arc::ptr_eq(&x.0, &y.0) || same_text(x.as_bytes(), y.as_bytes())
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_and_compare_as_text() {
        let a = Name::new("read");
        let b = Name::from(String::from("read"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, "read");
        assert_ne!(a, Name::new("write"));
        assert!(Name::new("a") < Name::new("b"));
        let from_thread = std::thread::spawn(|| Name::new("read")).join().unwrap();
        assert_eq!(from_thread, a);
    }

    #[test]
    fn same_text_is_equality() {
        let texts: Vec<Vec<u8>> = (0..40)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 7) as u8).collect();
                let mut variants = vec![base.clone()];
                for at in 0..n {
                    let mut v = base.clone();
                    v[at] = b'Z';
                    variants.push(v);
                }
                variants
            })
            .collect();
        for a in &texts {
            for b in &texts {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_interner_shares_equal_strings_and_small_vectors() {
        let mut i = Interner::default();
        let a = i.str("k1");
        let b = i.str("k1");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let v1 = i.vector(vec![Value::Str(a), Value::Nil]);
        let v2 = i.vector(vec![Value::Str(b), Value::Nil]);
        assert!(Arc::ptr_eq(&v1, &v2));
        let long = "x".repeat(MAX_INTERNED_LEN + 1);
        assert_eq!(i.str(&long), i.str(&long));
    }
}
