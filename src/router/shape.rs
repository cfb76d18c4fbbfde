//! The cache key: a literal-stripping scan that gives every text of one statement *shape* the
//! same 64-bit key, so `... WHERE id = 1` and `... WHERE id = 2` are parsed once between them.
//! The same pass collects the routing hint from the comments it walks past.
//!
//! It owns the key and what goes into it; it does not know what a shape means (`grammar`) or
//! where keys are kept (`cache`).
//!
//! # What the key keeps
//!
//! The key hashes the token sequence of `sql::lexer` (Postgres's own boundaries for strings,
//! `E''`, `U&''`, dollar quotes, nested comments, quoted identifiers, numbers, parameters):
//! every token's kind and, except for literal strings and numbers, its bytes. Whitespace and
//! comments are dropped; so are the bytes of literals (their kind and whether they ran to the
//! end of the input are kept). Keywords and identifiers are hashed as written: `select` and
//! `SELECT` are two entries, which only costs a parse. Quoted identifiers are names, not
//! literals: `"a"` and `"b"` differ. `standard_conforming_strings` is hashed too, since it
//! moves where strings end.
//!
//! # Why a literal's value cannot change the verdict
//!
//! Two texts with one key differ only in layout, comments and literal values. A literal is one
//! token to the grammar, so its value never changes the tree's shape, only the constants in it.
//! The classifier looks at constants in exactly one place: `SET transaction_read_only = on`
//! (read-only transaction) versus `= off` (read-write: refused by a replica). So statements
//! whose first token is `SET` keep their literals in the key. Everywhere else a verdict is a
//! function of the tree's shape:
//! - transaction modes (`BEGIN READ ONLY`, `ISOLATION LEVEL ...`) are keywords, no literals;
//! - writing functions are found by name, an identifier: `set_config('a', 'b', false)` is a
//!   write whatever its arguments;
//! - `EXPLAIN` is judged by the statement it explains, never by its options, so
//!   `EXPLAIN (ANALYZE 0)` and `(ANALYZE 1)` cannot disagree;
//! - `COPY ... TO STDOUT` versus `TO 'file'` differ in token kind (an identifier versus a
//!   string), which the key keeps;
//! - dollar-quoted bodies only appear in `DO` and `CREATE FUNCTION`, which are writes whatever
//!   the body.
//!
//! A literal can make a text fail to parse (`U&'\zz'`, a bad Unicode escape; `1abc` on 16+);
//! the classifier calls unparsable text a write, so such a text and a well-formed one of the
//! same shape may meet different verdicts depending on which filled the entry first. Both are
//! harmless: a text the server cannot parse fails on any server, and texts that are not UTF-8
//! or hold a NUL byte never reach the cache (`classify` checks first).
//!
//! # Collisions
//!
//! The hash is SipHash-1-3 under a per-`Classifier` random key (`std::hash::RandomState`), so
//! a client cannot aim two texts at one key. Two of the cache's shapes collide with odds about
//! n²/2⁶⁵ (10⁻¹¹ for a million shapes); the cost of one is a read sent to the primary, or a
//! write sent to a replica, which refuses it (25006, retried on the primary by the caller).
//! That is not worth storing and comparing the shape text on every hit.

use std::hash::{BuildHasher, Hasher, RandomState};

use super::hint::{self, Hint};
use crate::sql::lexer::{Lexer, TokenKind};

/// What the scan learned about one text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The cache key (see the module doc).
    pub key: u64,
    /// The first `lagoon:primary` / `lagoon:replica` comment.
    pub hint: Option<Hint>,
    /// No statement at all: empty, or only whitespace, comments and semicolons.
    pub blank: bool,
}

/// Scans `sql` under the session's `standard_conforming_strings`; `keys` seeds the hash.
pub fn scan(sql: &[u8], std_strings: bool, keys: &RandomState) -> Shape {
    let mut h = keys.build_hasher();
    h.write_u8(u8::from(std_strings));
    let mut hint = None;
    let mut blank = true;
    // At the first token of a statement; and whether this statement keeps its literals.
    let (mut head, mut keep_literals) = (true, false);
    for t in Lexer::with_standard_strings(sql, std_strings).with_comments() {
        let text = t.text(sql);
        match t.kind {
            // An unterminated comment is a syntax error: keep it in the key, and not blank.
            TokenKind::Comment if t.unterminated => blank = false,
            TokenKind::Comment => {
                if hint.is_none() {
                    hint = hint::in_comment(text);
                }
                continue;
            }
            TokenKind::Semicolon => (head, keep_literals) = (true, false),
            kind => {
                blank = false;
                if head {
                    head = false;
                    keep_literals = kind == TokenKind::Ident && text.eq_ignore_ascii_case(b"set");
                }
            }
        }
        let literal = !keep_literals
            && matches!(
                t.kind,
                TokenKind::String
                    | TokenKind::EscapeString
                    | TokenKind::UnicodeString
                    | TokenKind::DollarString
                    | TokenKind::Number
            );
        // One word per token: kind, unterminated flag, and the length of the bytes that follow
        // (none for a literal). The length keeps `ab` apart from `a` `b`.
        let kept = if literal { &[][..] } else { text };
        h.write_u64(t.kind as u64 | u64::from(t.unterminated) << 8 | (kept.len() as u64) << 16);
        h.write(kept);
    }
    Shape {
        key: h.finish(),
        hint,
        blank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> u64 {
        key_with(sql, true)
    }

    fn key_with(sql: &str, std_strings: bool) -> u64 {
        // One fixed seed per test run: keys are only compared within it.
        thread_local!(static KEYS: RandomState = RandomState::new());
        KEYS.with(|k| scan(sql.as_bytes(), std_strings, k).key)
    }

    #[test]
    fn literals_and_layout_share_a_key() {
        let same = [
            (
                "SELECT * FROM t WHERE id = 1",
                "SELECT * FROM t WHERE id = 22",
            ),
            (
                "SELECT * FROM t WHERE id = 1",
                "SELECT  *\nFROM t /* c */ WHERE id=1.5e3",
            ),
            ("SELECT 'a', $$b$$", "SELECT 'it''s', $x$y$x$"),
            ("SELECT E'a\\'b'", "SELECT E'zz'"),
            ("SELECT U&'a'", "SELECT U&'\\0061'"),
            ("SELECT 1; SELECT 'x'", "SELECT 2; SELECT 'y' -- z"),
            ("SELECT $1", "SELECT $1 -- lagoon:replica"),
            ("SET work_mem = 1", "SET work_mem = 1 /* same literal */"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn names_structure_and_set_values_do_not() {
        let differ = [
            ("SELECT \"a\" FROM t", "SELECT \"b\" FROM t"),
            ("SELECT a FROM t", "SELECT b FROM t"),
            ("SELECT 1", "SELECT '1'"),
            ("SELECT 'a'", "SELECT 'a"),
            ("SELECT ab", "SELECT a b"),
            ("SELECT $1", "SELECT $2"),
            ("COPY t TO STDOUT", "COPY t TO 'f'"),
            (
                "SET transaction_read_only = on",
                "SET transaction_read_only = off",
            ),
            (
                "set transaction_read_only = 1",
                "set transaction_read_only = 0",
            ),
            (
                "BEGIN; SET transaction_read_only = 'on'",
                "BEGIN; SET transaction_read_only = 'off'",
            ),
            ("SELECT 1", "SELECT 1;"),
        ];
        for (a, b) in differ {
            assert_ne!(key(a), key(b), "{a:?} vs {b:?}");
        }
        assert_ne!(key_with("SELECT 'a'", true), key_with("SELECT 'a'", false));
    }

    #[test]
    fn hints_come_from_comments_only() {
        let keys = RandomState::new();
        let hint = |sql: &str| scan(sql.as_bytes(), true, &keys).hint;
        assert_eq!(hint("/* lagoon:primary */ SELECT 1"), Some(Hint::Primary));
        assert_eq!(hint("SELECT 1 -- lagoon:replica"), Some(Hint::Replica));
        assert_eq!(
            hint("/* lagoon:replica */ SELECT 1 /* lagoon:primary */"),
            Some(Hint::Replica)
        );
        assert_eq!(hint("SELECT 'lagoon:primary'"), None);
        assert_eq!(hint("SELECT \"lagoon:primary\""), None);
        assert_eq!(hint("SELECT $$/* lagoon:primary */$$"), None);
    }

    #[test]
    fn blank_texts() {
        let keys = RandomState::new();
        let blank = |sql: &str| scan(sql.as_bytes(), true, &keys).blank;
        assert!(blank(""));
        assert!(blank(" ;; -- x\n /* y */ ;"));
        assert!(!blank("; SELECT"));
    }
}
