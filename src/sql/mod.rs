//! SQL text, sans-IO: a byte-level lexer (`lexer`) and the scan that says what a query text may
//! do to session state (`effects`), run on every simple Query and every Parse. No tokio, no
//! sockets, no allocation for ordinary statements, no UTF-8 assumption: unit-tested, fuzzed
//! (`fuzz/` target `sql_effects`) and benched (`benches/sql.rs`) directly.
//!
//! It does not parse SQL: the server does. It finds statement heads and a few calls, as
//! Postgres would lex them, so that the pooler knows when to ask the server what changed.

pub mod effects;
pub mod lexer;
mod names;

pub use effects::{Effects, Flags, scan};
