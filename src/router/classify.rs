//! The entry point: `Classifier::classify` turns a SQL text into a `Verdict` (read, begin or
//! write, plus any routing hint), parsing each statement shape once.
//!
//! Per call: one lexer pass (`shape`: cache key and hint), a UTF-8 check, a cache lookup; on a
//! miss, Postgres's parser (`grammar`) and an insert. The hit path does not allocate.

use std::hash::RandomState;

use super::cache::ShapeCache;
use super::functions::WriteFunctions;
use super::grammar;
use super::hint::Hint;
use super::shape;

/// What a SQL text (one Query message, or one Parse's text; may hold several statements) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Every statement is provably read-only: may run on a replica.
    Read,
    /// Starts a transaction with the session's default access mode (plain BEGIN / START
    /// TRANSACTION, no READ ONLY / READ WRITE) and otherwise only reads: read-only only if the
    /// session's default_transaction_read_only is on. The caller decides.
    Begin,
    /// Anything else, and anything uncertain: the primary.
    Write,
}

/// The classifier's answer for one text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub class: Class,
    /// A `lagoon:primary` / `lagoon:replica` comment in this very text.
    pub hint: Option<Hint>,
}

/// Texts longer than this are classified without the cache: long texts are rarely repeated
/// shapes (bulk VALUES, generated IN lists), and their parse dwarfs what a hit would save.
const MAX_CACHED_LEN: usize = 16 * 1024;

/// Read/write classification with a shape cache; `Send + Sync`, one per proxy behind an `Arc`.
pub struct Classifier {
    writes: WriteFunctions,
    cache: ShapeCache,
    /// Seeds the shape hash (see `shape`: why it is keyed).
    keys: RandomState,
}

impl Classifier {
    /// `write_functions`: extra function names (lowercase, unqualified or schema-qualified)
    /// that write. `cache_entries`: the shape cache's bound (0: no cache).
    pub fn new(write_functions: &[String], cache_entries: usize) -> Classifier {
        Classifier {
            writes: WriteFunctions::new(write_functions),
            cache: ShapeCache::new(cache_entries),
            keys: RandomState::new(),
        }
    }

    /// `std_strings`: the session's standard_conforming_strings (off => backslash escapes in
    /// '..').
    pub fn classify(&self, sql: &[u8], std_strings: bool) -> Verdict {
        let shape = shape::scan(sql, std_strings, &self.keys);
        let verdict = |class| Verdict {
            class,
            hint: shape.hint,
        };
        if shape.blank {
            return verdict(Class::Read);
        }
        // The parser takes a C string of UTF-8; and neither check may be skipped by a cache
        // hit, since the key drops literals, where such bytes usually sit.
        let Ok(text) = std::str::from_utf8(sql) else {
            return verdict(Class::Write);
        };
        if sql.contains(&0) {
            return verdict(Class::Write);
        }
        let cacheable = sql.len() <= MAX_CACHED_LEN;
        if cacheable {
            if let Some(class) = self.cache.get(shape.key) {
                return verdict(class);
            }
        }
        let class = grammar::classify(text, std_strings, &self.writes);
        if cacheable {
            self.cache.insert(shape.key, class);
        }
        verdict(class)
    }
}

#[cfg(test)]
mod tests;
