//! Which registry statements one server connection has prepared, capped by
//! `pool.max_prepared_statements` with least-recently-used eviction (the evicted statement is
//! closed on the server by [`crate::prepared::rewrite`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::Statement;

#[derive(Debug, Default)]
pub struct ServerStatements {
    /// Statement id -> tick of its last use, and the statement (held, so the registry keeps it
    /// while some server has it).
    used: HashMap<u64, (u64, Arc<Statement>)>,
    tick: u64,
    /// Statements used at or after this tick belong to the batch being sent and are never
    /// evicted: closing a statement also closes the portals bound from it.
    batch_start: u64,
}

impl ServerStatements {
    pub fn contains(&self, id: u64) -> bool {
        self.used.contains_key(&id)
    }

    /// Marks `id` as just used; false when the server does not have it.
    pub fn touch(&mut self, id: u64) -> bool {
        self.tick += 1;
        match self.used.get_mut(&id) {
            Some((t, _)) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// A new batch (up to Sync) starts: statements used from now on are protected from
    /// eviction until the next one.
    pub fn new_batch(&mut self) {
        self.batch_start = self.tick + 1;
    }

    /// Records `id` as prepared. When that makes more than `cap`, returns the least recently
    /// used statement not used by the current batch, now forgotten, for the caller to close on
    /// the server. (A batch using more than `cap` statements overflows the cap until the next.)
    pub fn insert(&mut self, id: u64, stmt: &Arc<Statement>, cap: usize) -> Option<u64> {
        self.tick += 1;
        self.used.insert(id, (self.tick, Arc::clone(stmt)));
        if self.used.len() <= cap.max(1) {
            return None;
        }
        // O(n) only when full; n is the cap (hundreds), and a full set evicts rarely once warm.
        let protect = self.batch_start;
        let (&victim, _) = self
            .used
            .iter()
            .filter(|(_, (t, _))| *t < protect)
            .min_by_key(|(_, (t, _))| *t)?;
        self.used.remove(&victim);
        Some(victim)
    }

    pub fn get(&self, id: u64) -> Option<&Arc<Statement>> {
        self.used.get(&id).map(|(_, s)| s)
    }

    pub fn remove(&mut self, id: u64) {
        self.used.remove(&id);
    }

    pub fn clear(&mut self) {
        self.used.clear();
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The ids held, for replacing the set with what the server reports.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.used.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::Registry;

    fn st(r: &Registry, n: u64) -> Arc<Statement> {
        r.register(b"", format!("select {n}").as_bytes())
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let r = Registry::default();
        let mut s = ServerStatements::default();
        assert_eq!(s.insert(1, &st(&r, 1), 2), None);
        assert_eq!(s.insert(2, &st(&r, 2), 2), None);
        assert!(s.touch(1));
        s.new_batch();
        assert_eq!(s.insert(3, &st(&r, 3), 2), Some(2));
        assert!(s.contains(1) && s.contains(3) && !s.contains(2));
        assert!(!s.touch(2));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_cap_of_zero_still_holds_the_statement_in_use() {
        let r = Registry::default();
        let mut s = ServerStatements::default();
        assert_eq!(s.insert(1, &st(&r, 1), 0), None);
        s.new_batch();
        assert_eq!(s.insert(2, &st(&r, 2), 0), Some(1));
        assert!(s.contains(2));
    }

    #[test]
    fn statements_of_the_current_batch_are_not_evicted() {
        let r = Registry::default();
        let mut s = ServerStatements::default();
        s.insert(1, &st(&r, 1), 1);
        s.new_batch();
        assert!(s.touch(1));
        assert_eq!(s.insert(2, &st(&r, 2), 1), None, "1 is bound in this batch");
        assert_eq!(s.len(), 2);
        s.new_batch();
        assert_eq!(s.insert(3, &st(&r, 3), 1), Some(1));
        assert_eq!(s.len(), 2, "2 stays over the cap until a batch evicts it");
    }
}
