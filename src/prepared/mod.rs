//! Named prepared statements that survive transaction pooling.
//!
//! A client's statement names mean nothing on a shared server: its next transaction lands on a
//! server where the statement does not exist, or where another client's statement of the same
//! name does. So every named statement a client parses is looked up in one proxy-wide
//! [`Registry`] by what it *is* (query text and parameter types) and gets a proxy-made name
//! (`lagoon_<id>`). Each client keeps its own name -> statement map ([`ClientStatements`]);
//! each server connection knows which statements it holds ([`ServerStatements`], an LRU capped
//! by `pool.max_prepared_statements`). [`rewrite`] turns a client's Parse / Bind / Describe /
//! Close into what this server needs: the name rewritten, a Parse injected where the server
//! lacks the statement, a Close answered by the proxy. The replies the client did not ask for
//! are swallowed by `protocol::replies`, which knows the order replies come back in.
//!
//! Unnamed statements and portals are passed through untouched: they live only until the next
//! Parse or the end of the transaction, which never outlives a checkout.

pub mod client_statements;
pub mod registry;
pub mod rewrite;
pub mod server_statements;

pub use client_statements::ClientStatements;
pub use registry::{Registry, Statement};
pub use server_statements::ServerStatements;
