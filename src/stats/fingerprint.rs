//! Query fingerprints: the normalized text of a statement (what `SHOW QUERIES` and the slow-query
//! log show instead of the text as sent) and a 64-bit fingerprint that groups every text of one
//! shape, so `WHERE id = 1` and `WHERE id = 2` are one row of statistics.
//!
//! It owns the normalization rules and the hash; it does not know where fingerprints are kept
//! (`aggregate`) or logged (`slow_log`). Sans-IO, total (any bytes, no panic), and built on the
//! project's lexer (`sql::lexer`), so strings, dollar quotes, nested comments, quoted identifiers
//! and `$n` parameters end where Postgres says they end.
//!
//! # Normalization
//!
//! - Literals become placeholders, numbered `$1, $2, ...` in order of appearance: strings
//!   (`'..'`, `E'..'`, `U&'..'`, dollar quotes), numbers, bit and hex strings (`B'101'`,
//!   `X'1f'`, also `N'..'`), and a sign glued to a number after an operator, `(` or `,`
//!   (`= -1` is `= $1`, while `a -1` keeps its minus: that one is a subtraction).
//! - Parameters the client sent (`$1`, `$7`) are renumbered in the same sequence, so a query
//!   sent with literals and the same query prepared with parameters share a fingerprint.
//! - Booleans and `NULL` are kept as written: they are keywords, they often select a different
//!   plan (`deleted = false`), and keeping them is free.
//! - Lists of constants fold to `(...)`, however long: `IN (1, 2, 3)`, `IN ($1, $2)`,
//!   `ARRAY[1, 2]` (to `ARRAY[...]`), and `VALUES (1, 'a'), (2, 'b')` (to `VALUES (...)`, one
//!   or many rows), so a batch size is not a new query. A constant is a literal, a parameter,
//!   `TRUE`/`FALSE`/`NULL`/`DEFAULT`, optionally signed and cast (`'a'::text`,
//!   `$1::varchar(10)[]`). A list holding anything else (a column, a call, a subquery) is not
//!   folded; its literals are still replaced.
//! - Comments are dropped; whitespace (and a dropped comment) between two tokens becomes one
//!   space; a token that touched its neighbour still does. Trailing and empty statements (`;`)
//!   are dropped.
//! - Keywords and identifiers keep the case they were written in: the normalized text is the
//!   first text seen, readable as the application wrote it.
//! - The text is cut at [`MAX_TEXT`] bytes (the fingerprint still covers all of it) and is
//!   lossy UTF-8: a query text need not be valid UTF-8.
//!
//! # Fingerprint
//!
//! XXH3-64 (seed 0) of a canonical encoding of the normalized token sequence: each unquoted
//! identifier or keyword ASCII-lowercased (Postgres folds unquoted names, so `SELECT` and
//! `select`, `Users` and `users` are the same query), each other token as written, each
//! placeholder and folded list as one tag, every token length-prefixed. Spacing is not part of
//! it, so `id=1` and `id = 1` match. XXH3 is a published, seedless algorithm: a fingerprint is
//! the same in every process and release, and scripts may keep it. The encoding is built in a
//! stack buffer, so fingerprinting a text allocates nothing; past the buffer it streams.
//! `fingerprint(normalize(q)) == fingerprint(q)` for any UTF-8 `q` shorter than `MAX_TEXT`.
//!
//! Two shapes collide with odds about n²/2⁶⁵; the cost is two queries sharing a row of
//! statistics, so nothing compares texts on a hit.

use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_64_with_seed};

use crate::sql::lexer::{Lexer, Token, TokenKind};

/// Longest normalized text kept, in bytes. A statement can be megabytes (bulk `INSERT`s that
/// are not all constants); the top-queries table keeps one text per fingerprint and must stay
/// bounded.
pub const MAX_TEXT: usize = 4096;

/// The 64-bit fingerprint of `sql` (see the module doc). `std_strings` is the session's
/// `standard_conforming_strings` (on since Postgres 9.1): when off, backslashes escape in
/// plain strings, which moves where they end. No allocation.
pub fn fingerprint(sql: &[u8], std_strings: bool) -> u64 {
    let mut sink = HashSink::new();
    walk(sql, std_strings, &mut sink);
    sink.finish()
}

/// The normalized text of `sql` (see the module doc): at most [`MAX_TEXT`] bytes plus a
/// trailing `...` when cut. Allocates; called on a table miss or for a slow query, not per
/// query.
pub fn normalize(sql: &[u8], std_strings: bool) -> String {
    let mut sink = TextSink::default();
    walk(sql, std_strings, &mut sink);
    sink.finish()
}

/// One element of the normalized sequence.
#[derive(Clone, Copy)]
enum Unit<'a> {
    /// An unquoted identifier or keyword: case-folded in the fingerprint only.
    Word(&'a [u8]),
    /// Any other kept token (operator, punctuation, quoted identifier), as written.
    Raw(&'a [u8]),
    /// A literal or parameter: `$n`.
    Placeholder,
    /// A folded list of constants; the byte is its opening bracket (`(` or `[`).
    List(u8),
}

/// Where the walk sends the sequence: a text or a hash. `space` says whether the input had
/// whitespace or a comment before the unit (only the text uses it).
trait Sink {
    fn unit(&mut self, space: bool, unit: Unit<'_>);
}

/// Walks the tokens of `sql`, sending the normalized sequence to `out`.
fn walk(sql: &[u8], std_strings: bool, out: &mut impl Sink) {
    let mut lex = Lexer::with_standard_strings(sql, std_strings);
    let mut prev_end = 0usize;
    // Kind of the last token sent in this statement (`None` at a statement's start): decides
    // whether a `-` before a number is a sign.
    let mut prev: Option<TokenKind> = None;
    let mut emitted = false;
    // A `;` (and whether space preceded it) waiting for a statement after it.
    let mut semicolon: Option<bool> = None;
    while let Some(t) = lex.next() {
        let space = t.start > prev_end;
        let text = t.text(sql);
        if t.kind == TokenKind::Semicolon {
            if emitted && semicolon.is_none() {
                semicolon = Some(space);
            }
            prev_end = t.end;
            prev = None;
            continue;
        }
        if let Some(space) = semicolon.take() {
            out.unit(space, Unit::Raw(b";"));
        }
        emitted = true;
        let (unit, end) = match t.kind {
            kind if is_literal(kind) => (Unit::Placeholder, t.end),
            TokenKind::Ident => {
                if let Some(s) = prefixed_string(&lex, &t, sql) {
                    lex.next();
                    (Unit::Placeholder, s.end)
                } else if let Some((open, fold_end, rest)) = folded_list(&lex, text, sql) {
                    out.unit(space, Unit::Word(text));
                    let gap = open.start > t.end;
                    lex = rest;
                    prev_end = fold_end;
                    prev = Some(TokenKind::RParen);
                    out.unit(
                        gap,
                        Unit::List(open.text(sql).first().copied().unwrap_or(b'(')),
                    );
                    continue;
                } else {
                    (Unit::Word(text), t.end)
                }
            }
            TokenKind::Operator
                if matches!(text, b"-" | b"+")
                    && matches!(
                        prev,
                        None | Some(TokenKind::Operator | TokenKind::LParen | TokenKind::Comma)
                    ) =>
            {
                match lex.clone().next() {
                    Some(n) if n.kind == TokenKind::Number && n.start == t.end => {
                        lex.next();
                        (Unit::Placeholder, n.end)
                    }
                    _ => (Unit::Raw(text), t.end),
                }
            }
            _ => (Unit::Raw(text), t.end),
        };
        out.unit(space, unit);
        prev_end = end;
        prev = Some(t.kind);
    }
}

fn is_literal(kind: TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::String
            | TokenKind::EscapeString
            | TokenKind::UnicodeString
            | TokenKind::DollarString
            | TokenKind::Number
            | TokenKind::Param
    )
}

/// `B'..'`, `X'..'`, `N'..'`: the lexer gives a one-letter identifier touching a string; the
/// string token is returned (not consumed).
fn prefixed_string(lex: &Lexer<'_>, ident: &Token, sql: &[u8]) -> Option<Token> {
    if !matches!(ident.text(sql), b"b" | b"B" | b"x" | b"X" | b"n" | b"N") {
        return None;
    }
    lex.clone()
        .next()
        .filter(|s| s.kind == TokenKind::String && s.start == ident.end)
}

/// After `IN`, `VALUES` or `ARRAY`: a list of constants to fold. Returns the opening bracket,
/// the end of the list and the lexer past it; `None` leaves the tokens to the ordinary walk.
fn folded_list<'a>(lex: &Lexer<'a>, word: &[u8], sql: &[u8]) -> Option<(Token, usize, Lexer<'a>)> {
    let rows = word.eq_ignore_ascii_case(b"values");
    let close: &[u8] = if word.eq_ignore_ascii_case(b"array") {
        b"]"
    } else if rows || word.eq_ignore_ascii_case(b"in") {
        b")"
    } else {
        return None;
    };
    let open_text: &[u8] = if close == b"]" { b"[" } else { b"(" };
    let mut ahead = lex.clone();
    let mut open = None;
    loop {
        let o = ahead.next().filter(|o| o.text(sql) == open_text)?;
        open.get_or_insert(o);
        let end = constants(&mut ahead, sql, close)?;
        // VALUES (..), (..): another row when a comma and a bracket follow.
        let mut next = ahead.clone();
        let more = rows
            && next.next().is_some_and(|c| c.kind == TokenKind::Comma)
            && next.next().is_some_and(|p| p.kind == TokenKind::LParen);
        if more {
            ahead.next();
        } else {
            return Some((open?, end, ahead));
        }
    }
}

/// Constants separated by commas up to `close` (consumed; its end returned). Also accepts a
/// bare `...` (what a folded list normalizes to), so normalizing is idempotent.
fn constants(lex: &mut Lexer<'_>, sql: &[u8], close: &[u8]) -> Option<usize> {
    let mut dots = lex.clone();
    if (0..3).all(|_| dots.next().is_some_and(|d| d.kind == TokenKind::Dot)) {
        if let Some(c) = dots.next().filter(|c| c.text(sql) == close) {
            *lex = dots;
            return Some(c.end);
        }
    }
    loop {
        constant(lex, sql)?;
        let t = lex.next()?;
        match t.kind {
            TokenKind::Comma => {}
            _ if t.text(sql) == close => return Some(t.end),
            _ => return None,
        }
    }
}

/// One constant: an optional sign, a literal, parameter or constant keyword, then any casts.
fn constant(lex: &mut Lexer<'_>, sql: &[u8]) -> Option<()> {
    let mut t = lex.next()?;
    if matches!(t.text(sql), b"-" | b"+") {
        t = lex.next().filter(|n| n.kind == TokenKind::Number)?;
    }
    let ok = match t.kind {
        kind if is_literal(kind) => true,
        TokenKind::Ident => {
            let word = t.text(sql);
            if prefixed_string(lex, &t, sql).is_some() {
                lex.next();
                true
            } else {
                [&b"true"[..], b"false", b"null", b"default"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
            }
        }
        _ => false,
    };
    if !ok {
        return None;
    }
    while let Some(rest) = cast(lex, sql) {
        *lex = rest;
    }
    Some(())
}

/// `::type`, `::schema.type`, `::double precision`, `::varchar(10)`, `::int[]`: the lexer past
/// it, or `None` when no cast follows.
fn cast<'a>(lex: &Lexer<'a>, sql: &[u8]) -> Option<Lexer<'a>> {
    let mut ahead = lex.clone();
    let c1 = ahead.next()?;
    let c2 = ahead.next()?;
    if c1.text(sql) != b":" || c2.text(sql) != b":" || c2.start != c1.end {
        return None;
    }
    let mut names = 0;
    loop {
        let mut next = ahead.clone();
        match next.next() {
            Some(n)
                if matches!(
                    n.kind,
                    TokenKind::Ident | TokenKind::QuotedIdent | TokenKind::Dot
                ) =>
            {
                ahead = next;
                names += 1;
            }
            _ => break,
        }
    }
    if names == 0 {
        return None;
    }
    // Type modifiers: `(10)`, `(10, 2)`.
    let mut next = ahead.clone();
    if next.next().is_some_and(|p| p.kind == TokenKind::LParen) {
        loop {
            next.next().filter(|n| n.kind == TokenKind::Number)?;
            match next.next()?.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => break,
                _ => return None,
            }
        }
        ahead = next;
    }
    // Array brackets: `[]`, any number of them.
    loop {
        let mut next = ahead.clone();
        let pair = next.next().is_some_and(|o| o.text(sql) == b"[")
            && next.next().is_some_and(|c| c.text(sql) == b"]");
        if !pair {
            return Some(ahead);
        }
        ahead = next;
    }
}

/// Builds the normalized text.
#[derive(Default)]
struct TextSink {
    out: Vec<u8>,
    placeholders: u32,
    cut: bool,
}

impl Sink for TextSink {
    fn unit(&mut self, space: bool, unit: Unit<'_>) {
        if self.cut {
            return;
        }
        if self.out.len() >= MAX_TEXT {
            self.cut = true;
            return;
        }
        if space && !self.out.is_empty() {
            self.out.push(b' ');
        }
        match unit {
            Unit::Word(b) | Unit::Raw(b) => self.out.extend_from_slice(b),
            Unit::Placeholder => {
                self.placeholders = self.placeholders.saturating_add(1);
                self.out.push(b'$');
                self.out
                    .extend_from_slice(self.placeholders.to_string().as_bytes());
            }
            Unit::List(b'[') => self.out.extend_from_slice(b"[...]"),
            Unit::List(_) => self.out.extend_from_slice(b"(...)"),
        }
    }
}

impl TextSink {
    fn finish(mut self) -> String {
        if self.cut || self.out.len() > MAX_TEXT {
            self.out.truncate(MAX_TEXT);
            self.out.extend_from_slice(b"...");
        }
        match String::from_utf8(self.out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// Stack buffer size of the fingerprint's encoding: covers short statements (pgbench's, a
/// 150-byte ORM select); past it the buffer is fed to XXH3's streaming state, also on the
/// stack, 256 bytes at a time (its block size). Zeroing the buffer is paid on every query:
/// 2 KiB of it was a third of the instructions of fingerprinting a short statement.
const HASH_BUF: usize = 256;

/// Builds the canonical encoding and hashes it; never allocates.
struct HashSink {
    buf: [u8; HASH_BUF],
    len: usize,
    /// Only for encodings longer than the buffer; `xxh3_64` of the whole otherwise (the same
    /// value: XXH3's streaming and one-shot forms agree).
    stream: Option<Xxh3>,
}

/// Remembers the fingerprints of the last few statement texts one session sent, so a text
/// sent again (an ORM's parameterized statements, `-M extended`, a prepared statement's
/// Bind) costs a hash of its bytes instead of a lexer pass and the encoding. A session
/// repeats a handful of texts: four slots, chosen by the text's hash.
///
/// The key is XXH3-64 of the raw text and `std_strings`; two texts with the same key would
/// share a fingerprint, with odds of 2⁻⁶⁴ per pair, below the fingerprint's own collisions.
#[derive(Debug, Default, Clone)]
pub struct Memo {
    /// (key, fingerprint); key 0 marks an empty slot (a real key of 0 is never stored).
    slots: [(u64, u64); 4],
}

impl Memo {
    /// [`fingerprint`] of `sql`, from the memo when this text was seen lately.
    pub fn fingerprint(&mut self, sql: &[u8], std_strings: bool) -> u64 {
        let key = xxh3_64_with_seed(sql, u64::from(std_strings));
        let slot = &mut self.slots[(key % 4) as usize];
        if key != 0 && slot.0 == key {
            return slot.1;
        }
        let fp = fingerprint(sql, std_strings);
        *slot = (key, fp);
        fp
    }
}

/// Encoding tags: one byte before each unit, so no sequence of units can spell another.
const TAG_WORD: u8 = 1;
const TAG_RAW: u8 = 2;
const TAG_PLACEHOLDER: u8 = 3;
const TAG_LIST: u8 = 4;

impl HashSink {
    fn new() -> Self {
        HashSink {
            buf: [0; HASH_BUF],
            len: 0,
            stream: None,
        }
    }

    /// A token: tag, length, bytes (lowercased for words). One bounds check and one copy on
    /// the common path: this runs for every token of every query.
    #[inline]
    fn token(&mut self, tag: u8, bytes: &[u8], lower: bool) {
        let need = bytes.len() + 2;
        if let (Ok(len @ 0..=254), Some(dst)) = (
            u8::try_from(bytes.len()),
            self.buf.get_mut(self.len..self.len + need),
        ) {
            dst[0] = tag;
            dst[1] = len;
            if lower {
                for (d, s) in dst[2..].iter_mut().zip(bytes) {
                    *d = s.to_ascii_lowercase();
                }
            } else {
                dst[2..].copy_from_slice(bytes);
            }
            self.len += need;
        } else {
            self.long_token(tag, bytes, lower);
        }
    }

    /// A token that does not fit the buffer's rest or is 255 bytes or longer: length as 255
    /// and four bytes, the bytes in pieces.
    #[cold]
    fn long_token(&mut self, tag: u8, bytes: &[u8], lower: bool) {
        self.put(&[tag]);
        match u8::try_from(bytes.len()) {
            Ok(l) if l < u8::MAX => self.put(&[l]),
            _ => {
                self.put(&[u8::MAX]);
                self.put(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            }
        }
        for chunk in bytes.chunks(64) {
            let mut piece = [0u8; 64];
            for (d, s) in piece.iter_mut().zip(chunk) {
                *d = if lower { s.to_ascii_lowercase() } else { *s };
            }
            self.put(&piece[..chunk.len()]);
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        // Full: move the buffer into the stream (`bytes` is at most 64 bytes here).
        let stream = self.stream.get_or_insert_with(Xxh3::new);
        stream.update(&self.buf[..self.len]);
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len();
    }

    fn finish(self) -> u64 {
        match self.stream {
            None => xxh3_64(&self.buf[..self.len]),
            Some(mut stream) => {
                stream.update(&self.buf[..self.len]);
                stream.digest()
            }
        }
    }
}

impl Sink for HashSink {
    #[inline]
    fn unit(&mut self, _space: bool, unit: Unit<'_>) {
        match unit {
            Unit::Word(b) => self.token(TAG_WORD, b, true),
            Unit::Raw(b) => self.token(TAG_RAW, b, false),
            Unit::Placeholder => self.put(&[TAG_PLACEHOLDER]),
            Unit::List(open) => self.put(&[TAG_LIST, open]),
        }
    }
}

#[cfg(test)]
mod tests;
