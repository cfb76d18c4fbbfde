//! Routing decisions, sans-IO: which SQL texts may run on a replica.
//!
//! It owns read/write classification (`Classifier`): Postgres's real grammar (pg_query) on
//! a cache miss, a literal-stripping shape scan (`shape`, over `sql::lexer`) as the cache key,
//! so repeated statement shapes with changing literals are parsed once; the writing-function
//! list (`functions`); and the `lagoon:primary` / `lagoon:replica` comment hints (`hint`).
//!
//! It does not choose a replica, track lag or read-your-writes, apply `SET lagoon.route`, or
//! know the session's transaction state or settings: the session passes in what the
//! classification depends on (`standard_conforming_strings`) and interprets the `Verdict`
//! (a `Begin` is read-only only under `default_transaction_read_only`; a hint is a request).
//! No tokio, no sockets; unit-tested here and benched in `benches/router.rs`.
//!
//! ```text
//! bytes -> shape::scan (lexer pass: key, hint) -> cache -> hit: Verdict
//!                                                       -> miss: grammar (pg_query) -> insert
//! ```

mod cache;
pub mod classify;
mod functions;
mod grammar;
pub mod hint;
mod shape;

pub use classify::{Class, Classifier, Verdict};
pub use hint::Hint;
