//! A tokenizer over SQL bytes, following the boundaries of Postgres's own lexer (`scan.l`)
//! wherever they decide what is code and what is data: strings (`'..'`, `E'..'`, `U&'..'`),
//! quoted identifiers, dollar quotes, nested block comments, line comments. Everything else
//! (numbers, operators) is only split well enough never to swallow one of those.
//!
//! It owns token boundaries only: no keywords, no grammar (that is `effects`), no allocation,
//! no UTF-8 assumption (bytes >= 0x80 are identifier characters, as in Postgres). It is total:
//! unterminated strings, quotes and comments end at the end of the input, and every token
//! advances by at least one byte, so any input is lexed in one linear pass without panicking.

use std::ops::Range;

/// What a token is. Whitespace is skipped, never returned; so are comments, unless the lexer
/// was made `with_comments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword (`select`, `my_table`, `a$b`).
    Ident,
    /// `"quoted identifier"` or `U&"..."`: a name, with `""` standing for `"`.
    QuotedIdent,
    /// `'...'`, with `''` for `'` (and backslash escapes when `standard_conforming_strings`
    /// is off). Also the string part of `B'..'`, `X'..'`, `N'..'` (their letter is an `Ident`).
    String,
    /// `E'...'`: backslash escapes always apply.
    EscapeString,
    /// `U&'...'`.
    UnicodeString,
    /// `$$...$$` or `$tag$...$tag$`.
    DollarString,
    /// A numeric literal (with any trailing identifier characters, which Postgres rejects).
    Number,
    /// `$1`.
    Param,
    /// `;`: separates statements.
    Semicolon,
    LParen,
    RParen,
    Comma,
    Dot,
    /// An operator (`+`, `<>`, `::`, ...) or any other punctuation or stray byte.
    Operator,
    /// `-- ...` (to the end of the line) or `/* ... */` (nested; `unterminated` when the input
    /// ends inside it). Only from a lexer made `with_comments`.
    Comment,
}

/// One token: its kind and where it lies in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// A string, quoted identifier or dollar quote that ran to the end of the input.
    pub unterminated: bool,
}

impl Token {
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }

    /// The token's bytes in `src` (the input it was lexed from; empty if `src` is another,
    /// shorter one).
    pub fn text<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        src.get(self.start..self.end).unwrap_or_default()
    }

    /// For strings, quoted identifiers and dollar quotes, what lies between the delimiters,
    /// escapes not undone; for other tokens, the whole text.
    pub fn body<'a>(&self, src: &'a [u8]) -> &'a [u8] {
        let text = self.text(src);
        let open = match self.kind {
            TokenKind::String => 1,
            TokenKind::EscapeString => 2,
            TokenKind::UnicodeString => 3,
            TokenKind::QuotedIdent if text.first() == Some(&b'"') => 1,
            TokenKind::QuotedIdent => 3,
            TokenKind::DollarString => text
                .iter()
                .skip(1)
                .position(|&c| c == b'$')
                .map_or(text.len(), |p| p + 2),
            _ => return text,
        };
        let close = match (self.unterminated, self.kind) {
            (true, _) => 0,
            (false, TokenKind::DollarString) => open,
            (false, _) => 1,
        };
        text.get(open..text.len().saturating_sub(close).max(open))
            .unwrap_or_default()
    }
}

/// Lexes `src` into tokens; an `Iterator`, and `Clone` so that callers can look ahead.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// `standard_conforming_strings = off`: backslash escapes in plain `'...'` strings too.
    backslash_strings: bool,
    /// Return comments as tokens instead of skipping them.
    comments: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer for `standard_conforming_strings = on`, the default since Postgres 9.1.
    pub fn new(src: &'a [u8]) -> Self {
        Self::with_standard_strings(src, true)
    }

    /// A lexer for the given `standard_conforming_strings`: when off, a backslash escapes the
    /// next byte inside plain `'...'` strings, which moves where they end.
    pub fn with_standard_strings(src: &'a [u8], standard_conforming_strings: bool) -> Self {
        Self {
            src,
            pos: 0,
            backslash_strings: !standard_conforming_strings,
            comments: false,
        }
    }

    /// Also return comments, as `TokenKind::Comment` tokens (for readers of comment hints).
    /// Without it the skipping costs nothing extra.
    pub fn with_comments(mut self) -> Self {
        self.comments = true;
        self
    }

    /// The byte offset the next token will be searched from.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments; false at the end of the input.
    fn skip_trivia(&mut self) -> bool {
        // Fast path for most gaps: none, or one space. (A loop alone mispredicts its exit.)
        for _ in 0..2 {
            match self.src.get(self.pos) {
                None => return false,
                Some(&b) if class(b) & SPACE != 0 => self.pos += 1,
                Some(b'-' | b'/') => break,
                Some(_) => return true,
            }
        }
        loop {
            while self.pos < self.src.len() && class(self.src[self.pos]) & SPACE != 0 {
                self.pos += 1;
            }
            match (self.at(self.pos), self.at(self.pos + 1)) {
                // `next` returns it as a token.
                (b'-', b'-') | (b'/', b'*') if self.comments => return true,
                (b'-', b'-') => self.line_comment(),
                (b'/', b'*') => {
                    self.block_comment();
                }
                _ => return self.pos < self.src.len(),
            }
        }
    }

    /// `-- ...` up to (not including) the end of the line.
    fn line_comment(&mut self) {
        self.pos = self.src[self.pos..]
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .map_or(self.src.len(), |p| self.pos + p);
    }

    /// `/* ... */`, nested as in Postgres (and unlike the SQL standard's single level).
    /// Returns true when the input ended inside it.
    fn block_comment(&mut self) -> bool {
        let mut depth = 0usize;
        let mut i = self.pos;
        while i < self.src.len() {
            match (self.src[i], self.at(i + 1)) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                }
                _ => i += 1,
            }
        }
        self.pos = i.min(self.src.len());
        depth > 0
    }

    /// From `self.pos` (just past the opening quote) to past the closing `quote`, which is
    /// doubled to stand for itself; `backslash` makes `\` escape the next byte. Returns true
    /// when the input ended first.
    fn quoted(&mut self, quote: u8, backslash: bool) -> bool {
        let mut i = self.pos;
        while i < self.src.len() {
            let c = self.src[i];
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if self.at(i + 1) == quote {
                    i += 2;
                } else {
                    self.pos = i + 1;
                    return false;
                }
            } else {
                i += 1;
            }
        }
        self.pos = self.src.len();
        true
    }

    /// At a `$`: a parameter (`$1`), a dollar quote (`$$`, `$tag$`), or a lone `$`.
    fn dollar(&mut self, start: usize) -> (TokenKind, bool) {
        let mut i = start + 1;
        if class(self.at(i)) & DIGIT != 0 {
            self.pos = self.ident_tail(i);
            return (TokenKind::Param, false);
        }
        if class(self.at(i)) & IDENT_START != 0 {
            while class(self.at(i)) & (IDENT_START | DIGIT) != 0 {
                i += 1;
            }
        }
        if self.at(i) != b'$' {
            self.pos = start + 1;
            return (TokenKind::Operator, false);
        }
        let tag = &self.src[start..=i];
        let mut k = i + 1;
        while let Some(p) = self.src[k..].iter().position(|&c| c == b'$') {
            if self.src[k + p..].starts_with(tag) {
                self.pos = k + p + tag.len();
                return (TokenKind::DollarString, false);
            }
            k += p + 1;
        }
        self.pos = self.src.len();
        (TokenKind::DollarString, true)
    }

    /// Past identifier characters from `i` (digits, `$` and bytes >= 0x80 included).
    fn ident_tail(&self, mut i: usize) -> usize {
        while class(self.at(i)) & IDENT_CONT != 0 {
            i += 1;
        }
        i
    }

    fn number(&mut self, start: usize) {
        let digits = |mut i: usize| {
            while class(self.at(i)) & DIGIT != 0 || self.at(i) == b'_' {
                i += 1;
            }
            i
        };
        let mut i = digits(start);
        if self.at(i) == b'.' && self.at(i + 1) != b'.' {
            i = digits(i + 1);
        }
        if matches!(self.at(i), b'e' | b'E') {
            let sign = usize::from(matches!(self.at(i + 1), b'+' | b'-'));
            if class(self.at(i + 1 + sign)) & DIGIT != 0 {
                i = digits(i + 1 + sign);
            }
        }
        // Hex/octal/binary digits and "trailing junk" (an error in Postgres) stay in the number.
        self.pos = self.ident_tail(i);
    }

    /// An operator run; it stops where a comment starts, as in Postgres (`1+--x` is `1 +`).
    fn operator(&mut self, start: usize) {
        let mut i = start + 1;
        while class(self.at(i)) & OP != 0
            && !matches!((self.at(i), self.at(i + 1)), (b'-', b'-') | (b'/', b'*'))
        {
            i += 1;
        }
        self.pos = i;
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if !self.skip_trivia() {
            return None;
        }
        let start = self.pos;
        if self.comments {
            let unterminated = match (self.at(start), self.at(start + 1)) {
                (b'-', b'-') => {
                    self.line_comment();
                    Some(false)
                }
                (b'/', b'*') => Some(self.block_comment()),
                _ => None,
            };
            if let Some(unterminated) = unterminated {
                return Some(Token {
                    kind: TokenKind::Comment,
                    start,
                    end: self.pos,
                    unterminated,
                });
            }
        }
        let b = self.src[start];
        self.pos += 1;
        let mut unterminated = false;
        let kind = match b {
            b'\'' => {
                unterminated = self.quoted(b'\'', self.backslash_strings);
                TokenKind::String
            }
            b'"' => {
                unterminated = self.quoted(b'"', false);
                TokenKind::QuotedIdent
            }
            b'$' => {
                let (kind, open) = self.dollar(start);
                unterminated = open;
                kind
            }
            b';' => TokenKind::Semicolon,
            b'(' => TokenKind::LParen,
            b')' => TokenKind::RParen,
            b',' => TokenKind::Comma,
            b'.' if class(self.at(self.pos)) & DIGIT != 0 => {
                self.number(start);
                TokenKind::Number
            }
            b'.' => TokenKind::Dot,
            _ if class(b) & DIGIT != 0 => {
                self.number(start);
                TokenKind::Number
            }
            _ if class(b) & IDENT_START != 0 => {
                self.pos = self.ident_tail(self.pos);
                let one = self.pos == start + 1;
                match (b, self.at(self.pos), self.at(self.pos + 1)) {
                    (b'e' | b'E', b'\'', _) if one => {
                        self.pos += 1;
                        unterminated = self.quoted(b'\'', true);
                        TokenKind::EscapeString
                    }
                    (b'u' | b'U', b'&', q @ (b'\'' | b'"')) if one => {
                        self.pos += 2;
                        unterminated = self.quoted(q, false);
                        if q == b'\'' {
                            TokenKind::UnicodeString
                        } else {
                            TokenKind::QuotedIdent
                        }
                    }
                    _ => TokenKind::Ident,
                }
            }
            _ if class(b) & OP != 0 => {
                self.operator(start);
                TokenKind::Operator
            }
            _ => TokenKind::Operator,
        };
        Some(Token {
            kind,
            start,
            end: self.pos,
            unterminated,
        })
    }
}

const IDENT_START: u8 = 1;
const IDENT_CONT: u8 = 2;
const DIGIT: u8 = 4;
const SPACE: u8 = 8;
const OP: u8 = 16;

fn class(b: u8) -> u8 {
    CLASSES[usize::from(b)]
}

/// Byte classes as in `scan.l`: `ident_start [A-Za-z\200-\377_]`, `ident_cont` adds digits
/// and `$`, `space [ \t\n\r\f\v]`, `op_chars [~!@#^&|`?+\-*/%<>=]`.
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            IDENT_START | IDENT_CONT
        } else if c.is_ascii_digit() {
            DIGIT | IDENT_CONT
        } else if c == b'$' {
            IDENT_CONT
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b) {
            SPACE
        } else if matches!(
            c,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            OP
        } else {
            0
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests;
