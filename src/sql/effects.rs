//! What a SQL text may do to *session state*: the statements and calls that outlive the
//! transaction (settings, prepared statements, LISTEN, temporary tables, WITH HOLD cursors,
//! session advisory locks, ...). The pooler runs this on every simple Query and every Parse, so
//! that after a transaction it knows whether to ask the server what changed.
//!
//! It owns the recognition only: one pass over `lexer` tokens, keyword heads at statement
//! starts, a few known function calls anywhere. It does not parse SQL (that is the server's
//! job), decide what the pooler does about an effect, or talk to anyone. Ordinary statements
//! allocate nothing. It errs towards reporting: a false alarm costs the pooler one look at the
//! server, a miss could leave one client's state on a connection another client gets.
//!
//! What it cannot see: effects inside functions the text calls (`SELECT f()`), or a setting
//! named by an expression (`set_config($1, ...)`: SETTINGS, no name). `DO` and `CALL` are
//! reported as OPAQUE for that reason. One deliberate exception to erring towards reporting:
//! advisory lock calls inside a definition (CREATE FUNCTION / PROCEDURE / VIEW / RULE, and a
//! `BEGIN ATOMIC` body, tracked with psql's BEGIN/CASE/END rule) are not reported, since they
//! do not run now and a false session-only feature would refuse or pin the client.

use std::ops::Range;

use super::lexer::{Lexer, Token, TokenKind};
use super::names::{ident_name, lower_word, unquote};

mod flags;
pub use flags::Flags;

/// A SQL-level `PREPARE` found in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The statement name as Postgres stores it (unquoted folded to lower case).
    pub name: Vec<u8>,
    /// The whole `PREPARE ...` statement in the input, from the keyword to its last token
    /// (no `;`), so that it can be run again on its own on another server.
    pub range: Range<usize>,
}

/// What a SQL text may do to session state. `flags` says which kinds; the other fields give
/// the names the pooler needs and stay empty (unallocated) unless the text names any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub flags: Flags,
    /// Dotted (custom, placeholder) settings set or reset for the session: `myapp.tenant`.
    /// Unquoted parts folded to lower case, quoted parts as written, joined by `.`; a
    /// `set_config('a.b', ...)` literal name as written. Each name once.
    pub custom_settings: Vec<Vec<u8>>,
    /// `RESET ALL`: every setting back to its default, custom ones included.
    pub reset_all: bool,
    /// `DEALLOCATE ALL`.
    pub deallocate_all: bool,
    /// Statement names given to `DEALLOCATE`, each once.
    pub deallocated: Vec<Vec<u8>>,
    /// SQL `PREPARE`s, in text order.
    pub prepares: Vec<Prepared>,
    /// Statement names given to SQL `EXECUTE`, each once.
    pub executed: Vec<Vec<u8>>,
}

impl Effects {
    /// Nothing that outlives the transaction: the common case.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Whether any flag of `f` is set.
    pub fn has(&self, f: Flags) -> bool {
        self.flags.intersects(f)
    }

    /// The first session-only feature used, named for an error message: these cannot follow a
    /// client from one server connection to another.
    pub fn session_feature(&self) -> Option<&'static str> {
        [
            (Flags::LISTEN, "LISTEN"),
            (Flags::TEMP, "temporary tables"),
            (Flags::HOLD_CURSOR, "cursors WITH HOLD"),
            (Flags::ADVISORY_LOCK, "session advisory locks"),
        ]
        .into_iter()
        .find(|(f, _)| self.flags.contains(*f))
        .map(|(_, name)| name)
    }
}

/// Scans `sql` as Postgres would lex it with `standard_conforming_strings = on` (the default).
pub fn scan(sql: &[u8]) -> Effects {
    scan_with(sql, true)
}

/// Scans `sql` as Postgres would lex it with the given `standard_conforming_strings`: when off,
/// a backslash escapes the next byte in `'...'` strings, which moves where they end.
pub fn scan_with(sql: &[u8], standard_conforming_strings: bool) -> Effects {
    let mut s = Scanner {
        src: sql,
        lex: Lexer::with_standard_strings(sql, standard_conforming_strings),
        standard_strings: standard_conforming_strings,
        hist: [NO_TOKEN; 4],
        taken: 0,
        fx: Effects::default(),
        atomic_depth: 0,
    };
    while s.statement() {}
    s.fx
}

/// Per-statement state for the tail of a statement, set by its head.
#[derive(Default)]
struct Stmt {
    /// SELECT / WITH / `(`: `INTO TEMP x` creates a temporary table.
    select_like: bool,
    /// CREATE: `AS EXECUTE name` runs a prepared statement.
    create: bool,
    /// CREATE FUNCTION / PROCEDURE: `BEGIN ATOMIC ... END` may hold `;`s.
    routine: bool,
    /// A definition (function, procedure, view, rule): calls in it do not run now.
    defines: bool,
    /// DECLARE before its FOR: `WITH HOLD` here makes a holdable cursor.
    declare: bool,
    /// Index into `Effects::prepares` whose range ends with this statement.
    prepare: Option<usize>,
    paren: u32,
}

/// The session-scoped functions recognised in calls.
enum Call {
    SetConfig,
    Lock,
    Unlock,
}

struct Scanner<'a> {
    src: &'a [u8],
    lex: Lexer<'a>,
    standard_strings: bool,
    /// The last tokens taken, a ring indexed by `taken` (see `prev`): a call is a name
    /// (maybe `pg_catalog.` qualified) before `(`.
    hist: [Token; 4],
    /// Tokens taken so far.
    taken: usize,
    fx: Effects,
    /// BEGIN/CASE ... END nesting of a `CREATE FUNCTION ... BEGIN ATOMIC` body (psql's rule),
    /// which outlives the `;`s inside it: calls in there do not run now. Statement heads are
    /// still looked for after every `;`, so an unbalanced END can hide no SET or LISTEN.
    atomic_depth: u32,
}

impl Scanner<'_> {
    fn take(&mut self) -> Option<Token> {
        let t = self.lex.next()?;
        // A ring, not a shifted array: shifting on every token cost more than the lexing.
        self.hist[self.taken % 4] = t;
        self.taken += 1;
        Some(t)
    }

    /// The token taken `back` tokens ago (0: the last one), `back` < 4.
    fn prev(&self, back: usize) -> Option<Token> {
        (back < self.taken.min(4)).then(|| self.hist[(self.taken - 1 - back) % 4])
    }

    fn peek(&self) -> Option<Token> {
        self.lex.clone().next()
    }

    fn is_kw(&self, t: Option<Token>, kw: &[u8]) -> bool {
        t.is_some_and(|t| t.kind == TokenKind::Ident && t.text(self.src).eq_ignore_ascii_case(kw))
    }

    fn peek_kw(&self, kw: &[u8]) -> bool {
        self.is_kw(self.peek(), kw)
    }

    /// Takes the next token if it is the keyword `kw`.
    fn eat_kw(&mut self, kw: &[u8]) -> bool {
        let hit = self.peek_kw(kw);
        if hit {
            self.take();
        }
        hit
    }

    /// Takes the next token if it is a name, and returns it as Postgres would store it.
    fn eat_name(&mut self) -> Option<Vec<u8>> {
        let name = ident_name(self.src, self.peek()?)?;
        self.take();
        Some(name)
    }

    /// One statement, up to and including its `;`. False once the input is exhausted.
    fn statement(&mut self) -> bool {
        let mut st = Stmt::default();
        let mut head = self.take();
        while head.is_some_and(|t| t.kind == TokenKind::LParen) {
            // `(SELECT ...)`: a parenthesised query.
            st.select_like = true;
            head = self.take();
        }
        let Some(head) = head else { return false };
        match head.kind {
            TokenKind::Semicolon => return true,
            TokenKind::Ident => {
                // Inside a BEGIN ATOMIC body, its closing END opens a "statement".
                if self.atomic_depth > 0 {
                    self.atomic_word(&st, head.text(self.src));
                }
                self.head(head, &mut st, true);
            }
            _ => {}
        }
        let end = self.tail(&mut st);
        if let Some(p) = st.prepare.and_then(|i| self.fx.prepares.get_mut(i)) {
            p.range.end = end;
        }
        true
    }

    /// Acts on the keyword opening a statement; `explain` allows one `EXPLAIN ...` prefix.
    fn head(&mut self, head: Token, st: &mut Stmt, explain: bool) {
        match lower_word(head.text(self.src)).as_deref() {
            Some(b"set") => self.set(),
            Some(b"reset") => {
                self.fx.flags |= Flags::SETTINGS;
                if self.eat_kw(b"all") {
                    self.fx.reset_all = true;
                } else if let Some(name) = self.var_name() {
                    push_once(&mut self.fx.custom_settings, name);
                }
            }
            Some(b"discard") => {
                if self.eat_kw(b"all") {
                    self.fx.flags |= Flags::DISCARD_ALL;
                } else if [&b"plans"[..], b"sequences", b"temp", b"temporary"]
                    .iter()
                    .any(|kw| self.peek_kw(kw))
                {
                    self.fx.flags |= Flags::DISCARD_OTHER;
                }
            }
            Some(b"deallocate") => self.deallocate(),
            Some(b"prepare") => self.prepare(head, st),
            Some(b"execute") => self.execute(),
            Some(b"listen") => self.fx.flags |= Flags::LISTEN,
            Some(b"unlisten") => self.fx.flags |= Flags::UNLISTEN,
            Some(b"create") => self.create(st),
            Some(b"select" | b"with") => st.select_like = true,
            Some(b"declare") => st.declare = true,
            Some(b"close") => self.fx.flags |= Flags::CLOSE_CURSOR,
            Some(b"drop") => self.fx.flags |= Flags::DROP,
            Some(b"do" | b"call") => self.fx.flags |= Flags::OPAQUE,
            Some(b"explain") if explain => {
                // EXPLAIN [ANALYZE] [VERBOSE] stmt, or EXPLAIN (options) stmt: what matters is
                // the statement (EXPLAIN EXECUTE needs the prepared statement, EXPLAIN ANALYZE
                // runs it).
                if self.peek().is_some_and(|t| t.kind == TokenKind::LParen) {
                    self.skip_parens();
                } else {
                    while [&b"analyze"[..], b"analyse", b"verbose"]
                        .iter()
                        .any(|kw| self.peek_kw(kw))
                    {
                        self.take();
                    }
                }
                if let Some(inner) = self.peek().filter(|t| t.kind == TokenKind::Ident) {
                    self.take();
                    self.head(inner, st, false);
                }
            }
            _ => {}
        }
    }

    /// `SET ...` after the keyword.
    fn set(&mut self) {
        if self.eat_kw(b"local") {
            // Transaction-scoped, so no SETTINGS; but a custom name is recorded: once set, a
            // placeholder reads as '' (not NULL) for the rest of the session, on every server
            // the client uses.
            if let Some(name) = self.var_name() {
                push_once(&mut self.fx.custom_settings, name);
            }
            return;
        }
        if [&b"transaction"[..], b"constraints"]
            .iter()
            .any(|kw| self.peek_kw(kw))
        {
            return;
        }
        // SET SESSION TRANSACTION ... is SET TRANSACTION. (SESSION AUTHORIZATION and SESSION
        // CHARACTERISTICS are session settings, with no dotted name to find.)
        if self.eat_kw(b"session") && self.peek_kw(b"transaction") {
            return;
        }
        self.fx.flags |= Flags::SETTINGS;
        if let Some(name) = self.var_name() {
            push_once(&mut self.fx.custom_settings, name);
        }
    }

    /// A setting name `part(.part)*`; only dotted (custom) names are returned (and only
    /// they allocate).
    fn var_name(&mut self) -> Option<Vec<u8>> {
        let mut ahead = self.lex.clone();
        ahead.next();
        if !ahead.next().is_some_and(|t| t.kind == TokenKind::Dot) {
            return None;
        }
        let mut name = self.eat_name()?;
        let mut dotted = false;
        while self.peek().is_some_and(|t| t.kind == TokenKind::Dot) {
            self.take();
            let part = self.eat_name()?;
            name.push(b'.');
            name.extend_from_slice(&part);
            dotted = true;
        }
        dotted.then_some(name)
    }

    /// `DEALLOCATE [PREPARE] name | ALL` after the keyword.
    fn deallocate(&mut self) {
        self.fx.flags |= Flags::DEALLOCATE;
        // `prepare` is also a valid statement name: it is the keyword only if a name follows.
        if self.peek_kw(b"prepare") {
            let mut ahead = self.lex.clone();
            ahead.next();
            if ahead
                .next()
                .is_some_and(|t| matches!(t.kind, TokenKind::Ident | TokenKind::QuotedIdent))
            {
                self.take();
            }
        }
        if self.eat_kw(b"all") {
            self.fx.deallocate_all = true;
        } else if let Some(name) = self.eat_name() {
            push_once(&mut self.fx.deallocated, name);
        }
    }

    /// `PREPARE name [(types)] AS stmt` after the keyword; `PREPARE TRANSACTION 'gid'` is
    /// two-phase commit (and `transaction` is a valid statement name otherwise).
    fn prepare(&mut self, head: Token, st: &mut Stmt) {
        if self.peek_kw(b"transaction") {
            let mut ahead = self.lex.clone();
            ahead.next();
            if ahead.next().is_some_and(|t| {
                matches!(
                    t.kind,
                    TokenKind::String
                        | TokenKind::EscapeString
                        | TokenKind::UnicodeString
                        | TokenKind::DollarString
                )
            }) {
                return;
            }
        }
        if let Some(name) = self.eat_name() {
            self.fx.flags |= Flags::PREPARE;
            st.prepare = Some(self.fx.prepares.len());
            self.fx.prepares.push(Prepared {
                name,
                range: head.start..self.lex.position(),
            });
        }
    }

    /// `EXECUTE name` after the keyword.
    fn execute(&mut self) {
        self.fx.flags |= Flags::EXECUTE;
        if let Some(name) = self.eat_name() {
            push_once(&mut self.fx.executed, name);
        }
    }

    /// `CREATE ...` after the keyword: temporary objects, and what the tail must watch for.
    fn create(&mut self, st: &mut Stmt) {
        st.create = true;
        if self.eat_kw(b"or") {
            self.eat_kw(b"replace");
        }
        if !self.eat_kw(b"global") {
            self.eat_kw(b"local");
        }
        if self.eat_kw(b"temp") || self.eat_kw(b"temporary") {
            self.fx.flags |= Flags::TEMP;
        } else {
            self.eat_kw(b"unlogged");
        }
        self.eat_kw(b"recursive");
        let Some(kind) = self.peek().and_then(|t| lower_word(t.text(self.src))) else {
            return;
        };
        match &*kind {
            b"function" | b"procedure" => {
                st.routine = true;
                st.defines = true;
            }
            b"view" | b"rule" => st.defines = true,
            b"table" | b"sequence" | b"type" | b"domain" => {}
            _ => return,
        }
        self.take();
        if self.eat_kw(b"if") && self.eat_kw(b"not") {
            self.eat_kw(b"exists");
        }
        let Some(schema) = self.peek().and_then(|t| ident_name(self.src, t)) else {
            return;
        };
        let mut ahead = self.lex.clone();
        ahead.next();
        if ahead.next().is_some_and(|t| t.kind == TokenKind::Dot) && is_temp_schema(&schema) {
            self.fx.flags |= Flags::TEMP;
        }
    }

    /// Skips a parenthesised group starting at the next token (EXPLAIN's options), never
    /// past the statement's `;`.
    fn skip_parens(&mut self) {
        let mut depth = 0u32;
        while let Some(t) = self.peek().filter(|t| t.kind != TokenKind::Semicolon) {
            self.take();
            match t.kind {
                TokenKind::LParen => depth += 1,
                TokenKind::RParen => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 {
                return;
            }
        }
    }

    /// The rest of a statement up to and including its `;` (head handlers never take it):
    /// calls, and what the head asked to watch for. Returns the end of the statement's last
    /// token.
    fn tail(&mut self, st: &mut Stmt) -> usize {
        let mut end = self.prev(0).map_or(0, |t| t.end);
        while let Some(t) = self.take() {
            match t.kind {
                TokenKind::Semicolon => break,
                TokenKind::LParen => {
                    self.call(st);
                    st.paren += 1;
                }
                TokenKind::RParen => st.paren = st.paren.saturating_sub(1),
                TokenKind::Ident => self.tail_word(st, t),
                _ => {}
            }
            end = t.end;
        }
        end
    }

    /// A word in a statement's tail.
    fn tail_word(&mut self, st: &mut Stmt, t: Token) {
        let word = t.text(self.src);
        self.atomic_word(st, word);
        if st.select_like && word.eq_ignore_ascii_case(b"into") {
            self.select_into();
        } else if st.create
            && word.eq_ignore_ascii_case(b"execute")
            && self.is_kw(self.prev(1), b"as")
        {
            self.execute();
        } else if st.declare {
            if word.eq_ignore_ascii_case(b"for") {
                st.declare = false;
            } else if word.eq_ignore_ascii_case(b"with") && self.peek_kw(b"hold") {
                self.fx.flags |= Flags::HOLD_CURSOR;
            }
        }
    }

    /// psql's rule for `CREATE FUNCTION ... BEGIN ATOMIC ... END`: outside parentheses, BEGIN
    /// opens, CASE opens once inside, END closes.
    fn atomic_word(&mut self, st: &Stmt, word: &[u8]) {
        if !(st.routine || self.atomic_depth > 0) || st.paren > 0 {
            return;
        }
        if word.eq_ignore_ascii_case(b"begin")
            || (word.eq_ignore_ascii_case(b"case") && self.atomic_depth > 0)
        {
            self.atomic_depth += 1;
        } else if word.eq_ignore_ascii_case(b"end") {
            self.atomic_depth = self.atomic_depth.saturating_sub(1);
        }
    }

    /// `SELECT ... INTO [GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] name` (the `INTO` just taken).
    /// `INSERT INTO temp ...` and `SELECT ... INTO temp FROM` name a table called `temp`.
    fn select_into(&mut self) {
        if self.is_kw(self.prev(1), b"insert") || self.is_kw(self.prev(1), b"merge") {
            return;
        }
        let mut ahead = self.lex.clone();
        let mut t = ahead.next();
        if self.is_kw(t, b"global") || self.is_kw(t, b"local") {
            t = ahead.next();
        }
        if !(self.is_kw(t, b"temp") || self.is_kw(t, b"temporary")) {
            return;
        }
        t = ahead.next();
        if self.is_kw(t, b"table") {
            t = ahead.next();
        }
        let named = t.is_some_and(|t| match t.kind {
            TokenKind::QuotedIdent => true,
            TokenKind::Ident => {
                lower_word(t.text(self.src)).is_none_or(|w| !CLAUSE_AFTER_INTO.contains(&&*w))
            }
            _ => false,
        });
        if named {
            self.fx.flags |= Flags::TEMP;
        }
    }

    /// At a `(` just taken: a call of a session-scoped function?
    fn call(&mut self, st: &Stmt) {
        let Some(name) = self.prev(1) else { return };
        let Some(call) = known_call(self.src, name) else {
            return;
        };
        if self.prev(2).is_some_and(|t| t.kind == TokenKind::Dot)
            && !self
                .prev(3)
                .is_some_and(|t| name_is(self.src, t, b"pg_catalog"))
        {
            return;
        }
        match call {
            Call::SetConfig => {
                self.fx.flags |= Flags::SETTINGS;
                let mut ahead = self.lex.clone();
                if let (Some(lit), Some(comma)) = (ahead.next(), ahead.next())
                    && lit.kind == TokenKind::String
                    && comma.kind == TokenKind::Comma
                {
                    let name = unquote(lit.body(self.src), b'\'');
                    // Without standard strings, a backslash would escape: not a plain name.
                    let plain = self.standard_strings || !name.contains(&b'\\');
                    if plain && name.contains(&b'.') {
                        push_once(&mut self.fx.custom_settings, name);
                    }
                }
            }
            // Calls in a definition run later, when it is used, if ever.
            _ if st.defines || self.atomic_depth > 0 => {}
            Call::Lock => self.fx.flags |= Flags::ADVISORY_LOCK,
            Call::Unlock => self.fx.flags |= Flags::ADVISORY_UNLOCK,
        }
    }
}

/// Fills the history ring before any token is taken (never read: see `Scanner::prev`).
const NO_TOKEN: Token = Token {
    kind: TokenKind::Semicolon,
    start: 0,
    end: 0,
    unterminated: false,
};

/// Words that may follow `SELECT ... INTO temp` when `temp` is the table's name.
const CLAUSE_AFTER_INTO: &[&[u8]] = &[
    b"from",
    b"where",
    b"group",
    b"having",
    b"window",
    b"order",
    b"limit",
    b"offset",
    b"fetch",
    b"for",
    b"union",
    b"intersect",
    b"except",
];

/// `t` names one of the session-scoped functions (unquoted any case, quoted in lower case).
fn known_call(src: &[u8], t: Token) -> Option<Call> {
    const CALLS: [(&[u8], Call); 8] = [
        (b"set_config", Call::SetConfig),
        (b"pg_advisory_lock", Call::Lock),
        (b"pg_advisory_lock_shared", Call::Lock),
        (b"pg_try_advisory_lock", Call::Lock),
        (b"pg_try_advisory_lock_shared", Call::Lock),
        (b"pg_advisory_unlock", Call::Unlock),
        (b"pg_advisory_unlock_shared", Call::Unlock),
        (b"pg_advisory_unlock_all", Call::Unlock),
    ];
    let len = match t.kind {
        TokenKind::Ident => t.end - t.start,
        TokenKind::QuotedIdent if !t.unterminated => t.body(src).len(),
        _ => return None,
    };
    // Each name has its own length: one comparison at most, none for most words.
    if !(10..=27).contains(&len) {
        return None;
    }
    CALLS
        .into_iter()
        .find(|(n, _)| n.len() == len)
        .filter(|(n, _)| name_is(src, t, n))
        .map(|(_, c)| c)
}

/// `t` is the name `lower` (unquoted in any case, or quoted exactly).
fn name_is(src: &[u8], t: Token, lower: &[u8]) -> bool {
    match t.kind {
        TokenKind::Ident => t.text(src).eq_ignore_ascii_case(lower),
        TokenKind::QuotedIdent => !t.unterminated && t.body(src) == lower,
        _ => false,
    }
}

/// `pg_temp`, or a backend's own `pg_temp_N`.
fn is_temp_schema(name: &[u8]) -> bool {
    name == b"pg_temp"
        || name
            .strip_prefix(b"pg_temp_")
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

fn push_once(list: &mut Vec<Vec<u8>>, name: Vec<u8>) {
    if !list.contains(&name) {
        list.push(name);
    }
}

#[cfg(test)]
mod tests;
