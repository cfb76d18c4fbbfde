//! The cache-miss path: classify a text from Postgres's own parse tree (libpg_query, through
//! the `pg_query` crate). Runs once per statement shape; `shape` and `cache` spare the rest.
//!
//! It owns the rules (what reads, what writes, what opens a transaction); it does not scan
//! bytes, cache, or know about hints.
//!
//! Each statement gets an `Effect` from its top-level node; the effects of a multi-statement
//! text are folded in order (`fold`). Statements that may read are then walked whole, every
//! node of every kind, for what makes them write: locking clauses, `INTO`, data-modifying
//! statements nested in CTEs or `COPY (...)`, and writing function calls. The walk goes over a
//! `serde_json::Value` of the tree (pg_query's protobuf types derive `Serialize`): a generic
//! walk cannot forget a node kind, which a hand-written one over ~250 of them would, and the
//! allocation is paid on a miss only.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pg_query::protobuf::{TransactionStmtKind, VariableSetKind, a_const};
use pg_query::{NodeEnum, ParserOptions};
use serde_json::Value;

use super::classify::Class;
use super::functions::WriteFunctions;

/// What one statement does to the routing decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Reads only, or touches only session settings.
    Read,
    /// Needs the primary.
    Write,
    /// `BEGIN` / `START TRANSACTION`; `read_only` when it says `READ ONLY`.
    Begin { read_only: bool },
    /// `SET TRANSACTION READ ONLY` (or `SET transaction_read_only = on`): the open
    /// transaction, if any, becomes read-only (always allowed, even after a query).
    ReadOnly,
    /// `COMMIT`, `ROLLBACK`, `END`, `ABORT`.
    End,
}

/// Classifies one UTF-8 text. Anything pg_query cannot parse is a `Write`.
pub fn classify(sql: &str, std_strings: bool, writes: &WriteFunctions) -> Class {
    let mut options = ParserOptions::DEFAULT;
    if !std_strings {
        options |= ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
    }
    // pg_query's Rust side indexes into the tree it builds; a bug there must cost one verdict
    // (the primary), not the connection.
    let parsed = match catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, options))) {
        Ok(Ok(parsed)) => parsed,
        _ => return Class::Write,
    };
    fold(parsed.protobuf.stmts.iter().map(|raw| {
        raw.stmt
            .as_ref()
            .and_then(|n| n.node.as_ref())
            .map_or(Effect::Write, |n| effect(n, writes))
    }))
}

/// The class of a whole text from its statements' effects, in order.
///
/// A transaction opened in default access mode and still open at the end (not made read-only
/// by `SET TRANSACTION READ ONLY`) makes the text `Begin`: whether it may write depends on the
/// session's `default_transaction_read_only`, which the caller knows. A transaction that is
/// opened and closed within the text, having only read, is a `Read`. A `BEGIN` inside an open
/// transaction changes nothing (Postgres only warns), and neither does `SET TRANSACTION`
/// outside one.
fn fold(effects: impl Iterator<Item = Effect>) -> Class {
    // The open transaction, if any: whether it is read-only.
    let mut open: Option<bool> = None;
    for e in effects {
        match e {
            Effect::Write => return Class::Write,
            Effect::Read => {}
            Effect::Begin { read_only } => {
                open.get_or_insert(read_only);
            }
            Effect::ReadOnly => {
                if let Some(ro) = open.as_mut() {
                    *ro = true;
                }
            }
            Effect::End => open = None,
        }
    }
    if open == Some(false) {
        Class::Begin
    } else {
        Class::Read
    }
}

fn effect(node: &NodeEnum, writes: &WriteFunctions) -> Effect {
    match node {
        NodeEnum::SelectStmt(_) => reads(node, writes),
        NodeEnum::VariableShowStmt(_) => Effect::Read,
        NodeEnum::VariableSetStmt(s) => set(s),
        NodeEnum::TransactionStmt(s) => transaction(s),
        // Judged by what it explains, never by its options: `ANALYZE` may be spelled
        // `(ANALYZE 0)`, and the cache key drops literals. EXPLAIN of anything but a query
        // (INSERT, EXECUTE, CREATE TABLE AS, ...) goes to the primary even without ANALYZE:
        // uncertain, and rare enough not to matter.
        NodeEnum::ExplainStmt(s) => match s.query.as_ref().and_then(|q| q.node.as_ref()) {
            Some(q @ NodeEnum::SelectStmt(_)) => reads(q, writes),
            _ => Effect::Write,
        },
        // To the client only (`TO STDOUT`); a server file or program is a side effect.
        NodeEnum::CopyStmt(s) if !s.is_from && !s.is_program && s.filename.is_empty() => {
            match s.query.as_ref().and_then(|q| q.node.as_ref()) {
                None => Effect::Read,
                Some(q @ NodeEnum::SelectStmt(_)) => reads(q, writes),
                Some(_) => Effect::Write,
            }
        }
        // Everything else: DML, DDL, utility, cursors and prepared statements (they live on
        // one server), LISTEN/NOTIFY, DO, CALL, LOCK, VACUUM, ...
        _ => Effect::Write,
    }
}

/// `SET` and `RESET` change this session's settings, which a replica accepts, except where
/// they ask for a read-write transaction (refused during recovery) or import a snapshot
/// (from one server).
fn set(s: &pg_query::protobuf::VariableSetStmt) -> Effect {
    let kind = VariableSetKind::try_from(s.kind).unwrap_or(VariableSetKind::Undefined);
    match (kind, s.name.to_ascii_lowercase().as_str()) {
        (VariableSetKind::VarSetMulti, "transaction") => match access_mode(&s.args) {
            Some(true) => Effect::ReadOnly,
            Some(false) => Effect::Write,
            None => Effect::Read,
        },
        (VariableSetKind::VarSetMulti, "transaction snapshot") => Effect::Write,
        (VariableSetKind::VarSetValue, "transaction_read_only") => match s.args.as_slice() {
            [arg] if is_true(arg) => Effect::ReadOnly,
            _ => Effect::Write,
        },
        (_, "transaction_read_only") => Effect::Write,
        _ => Effect::Read,
    }
}

fn transaction(s: &pg_query::protobuf::TransactionStmt) -> Effect {
    use TransactionStmtKind as K;
    match TransactionStmtKind::try_from(s.kind).unwrap_or(K::Undefined) {
        K::TransStmtBegin | K::TransStmtStart => match access_mode(&s.options) {
            Some(true) => Effect::Begin { read_only: true },
            Some(false) => Effect::Write,
            None => Effect::Begin { read_only: false },
        },
        K::TransStmtCommit | K::TransStmtRollback => Effect::End,
        // Savepoints work in a read-only transaction on a replica.
        K::TransStmtSavepoint | K::TransStmtRelease | K::TransStmtRollbackTo => Effect::Read,
        // Two-phase commit writes state files; and anything unknown.
        _ => Effect::Write,
    }
}

/// The `READ ONLY` (true) / `READ WRITE` (false) among transaction modes, if given: the
/// grammar turns it into `transaction_read_only` with an integer constant.
fn access_mode(options: &[pg_query::protobuf::Node]) -> Option<bool> {
    options.iter().rev().find_map(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname == "transaction_read_only" => {
            Some(d.arg.as_deref().is_some_and(is_true))
        }
        _ => None,
    })
}

/// A constant Postgres's `parse_bool` reads as true: `on`, `true`, `yes`, `1` (and their
/// unambiguous prefixes). Anything else, including what would be an error, is false.
fn is_true(node: &pg_query::protobuf::Node) -> bool {
    let Some(NodeEnum::AConst(c)) = node.node.as_ref() else {
        return false;
    };
    match c.val.as_ref() {
        Some(a_const::Val::Ival(i)) => i.ival != 0,
        Some(a_const::Val::Boolval(b)) => b.boolval,
        Some(a_const::Val::Sval(s)) => {
            let v = s.sval.to_ascii_lowercase();
            v == "on"
                || v == "1"
                || (!v.is_empty() && ("true".starts_with(&v) || "yes".starts_with(&v)))
        }
        _ => false,
    }
}

/// `Read` if nothing anywhere in the statement writes.
fn reads(node: &NodeEnum, writes: &WriteFunctions) -> Effect {
    match serde_json::to_value(node) {
        Ok(tree) if !writes_anywhere(&tree, writes) => Effect::Read,
        _ => Effect::Write,
    }
}

/// The generic walk. In the serialized tree a node is `{"KindName": {fields...}}` and a field
/// is `"snake_name": value`, so variant names and field names never collide.
fn writes_anywhere(v: &Value, writes: &WriteFunctions) -> bool {
    match v {
        Value::Object(fields) => fields.iter().any(|(k, v)| match k.as_str() {
            // SELECT ... FOR UPDATE/SHARE/...: row locks write (and a replica refuses them).
            "locking_clause" | "LockingClause" => !is_empty(v),
            // SELECT INTO creates a table.
            "into_clause" | "IntoClause" => !is_empty(v),
            "FuncCall" => calls_writer(v, writes) || writes_anywhere(v, writes),
            // Any statement inside a query but a query: INSERT/UPDATE/DELETE/MERGE in a CTE
            // or under COPY, and whatever later versions add.
            k if k.ends_with("Stmt") && k != "SelectStmt" => true,
            _ => writes_anywhere(v, writes),
        }),
        Value::Array(items) => items.iter().any(|v| writes_anywhere(v, writes)),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether a `FuncCall`'s name is a writing function: `funcname` is a list of `String`
/// nodes, `[schema,] name`.
fn calls_writer(call: &Value, writes: &WriteFunctions) -> bool {
    let Some(Value::Array(parts)) = call.get("funcname") else {
        return true;
    };
    let mut names = parts
        .iter()
        .filter_map(|p| p.pointer("/node/String/sval").and_then(Value::as_str));
    let (Some(last), before) = (names.next_back(), names.next_back()) else {
        return true;
    };
    writes.writes(before, last)
}
