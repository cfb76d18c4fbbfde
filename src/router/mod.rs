//! Routing decisions, sans-IO: where a request may run.
//!
//! - `classify`: read / begin / write per SQL text, by Postgres's real grammar (pg_query) on a
//!   cache miss, with a literal-stripping shape scan (`shape`, over `sql::lexer`) as the cache
//!   key, so repeated statement shapes with changing literals are parsed once; the
//!   writing-function list (`functions`); the `lagoon:primary` / `lagoon:replica` comment
//!   hints (`hint`).
//! - `request`: those verdicts folded over a whole buffered request (Query messages, or an
//!   extended batch with named statements).
//! - `select`: a member for a read, from the health view (up, lag, latency, outstanding).
//! - `rw`: read-your-writes (which LSN a client's reads need).
//! - `route_setting`: `SET lagoon.route = primary`, which Postgres's grammar refuses unquoted.
//!
//! It does not do I/O, track the members (that is `health`) or hold per-session state beyond
//! the small values the session keeps: `client::route` calls it and checks out servers.
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
pub mod request;
pub mod route_setting;
pub mod rw;
pub mod select;
mod shape;

pub use classify::{Class, Classifier, Verdict};
pub use hint::Hint;
