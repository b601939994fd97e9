//! Prepared statements under pooling. A client's statement ids are
//! churnstile's own; each server connection keeps the statements prepared
//! on it by SQL text and the schema and sql_mode it was prepared under
//! (which decide what the text means), so any client landing there reuses
//! them, and the least recently used are closed beyond
//! `max_prepared_statements`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::state::SessionState;

/// What a server's statement is found by: the SQL text with the schema and
/// sql_mode current when it was prepared.
pub(super) fn statement_key(state: &SessionState, sql: &str) -> Arc<str> {
    let schema = state.schema.as_deref().unwrap_or_default();
    let sql_mode = state.vars.get("sql_mode").map_or("", String::as_str);
    format!("{schema}\0{sql_mode}\0{sql}").into()
}

/// A statement as the client prepared it.
#[derive(Debug, Clone)]
pub(super) struct ClientStatement {
    pub(super) sql: Arc<str>,
    /// `statement_key` when the client prepared it.
    pub(super) key: Arc<str>,
    pub(super) params: u16,
    /// The parameter types the client last bound (2 bytes per parameter),
    /// sent again on every execute so a server connection that never saw
    /// them can run the statement.
    pub(super) param_types: Option<Bytes>,
}

/// The statements one client has prepared, by churnstile id.
#[derive(Debug, Default)]
pub(super) struct ClientStatements {
    by_id: HashMap<u32, ClientStatement>,
    next_id: u32,
}

impl ClientStatements {
    /// Registers a statement and returns its churnstile id.
    pub(super) fn add(&mut self, statement: ClientStatement) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.by_id.insert(self.next_id, statement);
        self.next_id
    }

    /// The id the next `add` returns.
    pub(super) fn next_id(&self) -> u32 {
        self.next_id.wrapping_add(1).max(1)
    }

    pub(super) fn get(&self, id: u32) -> Option<&ClientStatement> {
        self.by_id.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut ClientStatement> {
        self.by_id.get_mut(&id)
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<ClientStatement> {
        self.by_id.remove(&id)
    }

    pub(super) fn clear(&mut self) {
        self.by_id.clear();
    }
}

#[derive(Debug)]
struct ServerStatement {
    id: u32,
    last_used: u64,
}

/// The statements prepared on one server connection, by SQL text.
#[derive(Debug, Default)]
pub(super) struct ServerStatements {
    by_sql: HashMap<Arc<str>, ServerStatement>,
    clock: u64,
}

impl ServerStatements {
    /// The server's id for `sql`, marking it used.
    pub(super) fn lookup(&mut self, sql: &str) -> Option<u32> {
        self.clock += 1;
        let clock = self.clock;
        self.by_sql.get_mut(sql).map(|statement| {
            statement.last_used = clock;
            statement.id
        })
    }

    /// Records a statement the server prepared; returns the ids of the
    /// least recently used statements to close so at most `limit` stay.
    pub(super) fn insert(&mut self, sql: Arc<str>, id: u32, limit: usize) -> Vec<u32> {
        self.clock += 1;
        self.by_sql.insert(
            sql,
            ServerStatement {
                id,
                last_used: self.clock,
            },
        );
        let mut evicted = Vec::new();
        while self.by_sql.len() > limit.max(1) {
            let Some(oldest) = (self.by_sql.iter())
                .min_by_key(|(_, statement)| statement.last_used)
                .map(|(sql, _)| Arc::clone(sql))
            else {
                break;
            };
            if let Some(statement) = self.by_sql.remove(&oldest) {
                evicted.push(statement.id);
            }
        }
        evicted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_sql.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_start_at_one_and_are_never_reused_while_open() {
        let mut statements = ClientStatements::default();
        let statement = ClientStatement {
            sql: "SELECT ?".into(),
            key: "app\0\0SELECT ?".into(),
            params: 1,
            param_types: None,
        };
        assert_eq!(statements.next_id(), 1);
        assert_eq!(statements.add(statement.clone()), 1);
        assert_eq!(statements.add(statement), 2);
        assert_eq!(&*statements.remove(1).unwrap().sql, "SELECT ?");
        assert!(statements.get(1).is_none() && statements.get(2).is_some());
    }

    #[test]
    fn the_same_text_under_another_schema_or_sql_mode_is_another_statement() {
        let mut state = SessionState::baseline(Some("app".into()));
        let app = statement_key(&state, "SELECT * FROM t");
        state.schema = Some("other".into());
        let other = statement_key(&state, "SELECT * FROM t");
        state.note_variable("sql_mode", "ANSI_QUOTES");
        let ansi = statement_key(&state, "SELECT * FROM t");
        assert!(app != other && other != ansi && app != ansi);
    }

    #[test]
    fn least_recently_used_statements_are_evicted() {
        let mut statements = ServerStatements::default();
        assert!(statements.insert("a".into(), 10, 2).is_empty());
        assert!(statements.insert("b".into(), 11, 2).is_empty());
        assert_eq!(statements.lookup("a"), Some(10));
        assert_eq!(statements.insert("c".into(), 12, 2), [11]);
        assert_eq!(statements.lookup("b"), None);
        assert_eq!(statements.len(), 2);
    }
}
