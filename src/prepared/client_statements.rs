//! One client's statement names and what they stand for. Names are the client's own and are
//! compared as bytes, as Postgres does.

use std::collections::HashMap;
use std::sync::Arc;

use super::registry::Statement;

#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<Box<[u8]>, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.map.get(name)
    }

    pub fn insert(&mut self, name: &[u8], stmt: Arc<Statement>) {
        self.map.insert(name.into(), stmt);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        self.map.remove(name)
    }

    /// Removes `name` only if it still stands for `id` (a failed Parse must not undo a later,
    /// successful one of the same name).
    pub fn remove_if(&mut self, name: &[u8], id_at_parse: u64) {
        if self.map.get(name).is_some_and(|s| s.id() == id_at_parse) {
            self.map.remove(name);
        }
    }

    /// The client's name for registry statement `id` (a linear search: error paths only).
    pub fn name_of(&self, id: u64) -> Option<&[u8]> {
        self.map
            .iter()
            .find(|(_, s)| s.id() == id)
            .map(|(k, _)| &k[..])
    }

    /// The statement with registry id `id`, if this client uses it (error paths only).
    pub fn by_id(&self, id: u64) -> Option<Arc<Statement>> {
        self.map.values().find(|s| s.id() == id).cloned()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
