//! The session state churnstile moves with a client between server
//! connections under transaction pooling: current schema, session system
//! variables (learned from SESSION_TRACK, never from parsing SQL), the
//! multi-statement option and LAST_INSERT_ID(). `transition` says what to
//! run on a server connection so its state becomes the client's.

use std::collections::BTreeMap;

/// The character set every upstream connection is switched to after login,
/// so a pooled connection starts from a known place.
pub(super) const BASELINE_CHARSET: &str = "utf8mb4";
pub(super) const BASELINE_COLLATION: &str = "utf8mb4_general_ci";

/// The variables a client's handshake character set decides.
pub(super) const CHARSET_VARIABLES: [&str; 3] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
];
pub(super) const COLLATION_VARIABLE: &str = "collation_connection";

/// Variables the server reports that are not session settings to move:
/// churnstile's own tracking switches, LAST_INSERT_ID (moved by itself),
/// per-statement values, and `autocommit`, which pooling reads from the
/// status flags instead.
const NOT_MOVED: &[&str] = &[
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
    "autocommit",
    "last_insert_id",
    "identity",
    "warning_count",
    "error_count",
];

/// Variables whose reported change is state that cannot move to another
/// server connection: a frozen clock (MariaDB reports `SET timestamp =
/// DEFAULT` with the old value, so the report cannot tell the two apart),
/// the next insert's AUTO_INCREMENT value and the RAND() seeds.
const UNMOVABLE: &[&str] = &["timestamp", "insert_id", "rand_seed1", "rand_seed2"];

/// Variables that report LAST_INSERT_ID() when set (`SET last_insert_id = n`).
const LAST_INSERT_ID: &[&str] = &["last_insert_id", "identity"];

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|listed| listed.eq_ignore_ascii_case(name))
}

/// True for a reported variable that is moved with the client.
pub(super) fn is_moved(name: &str) -> bool {
    !listed(NOT_MOVED, name) && !listed(UNMOVABLE, name)
}

/// True for a reported variable that keeps the client on its server
/// connection under transaction pooling.
pub(super) fn is_unmovable(name: &str) -> bool {
    listed(UNMOVABLE, name)
}

/// The LAST_INSERT_ID() a reported variable sets, if it is one that does.
pub(super) fn reported_last_insert_id(name: &str, value: &str) -> Option<u64> {
    listed(LAST_INSERT_ID, name)
        .then(|| value.parse().ok())
        .flatten()
}

/// Session state of a client, or of a server connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SessionState {
    /// The current schema (`USE`, COM_INIT_DB); `None` when none is selected.
    pub(super) schema: Option<String>,
    /// Session variables by lower-case name, with the value the server
    /// reported; variables never touched are absent.
    pub(super) vars: BTreeMap<String, String>,
    /// Whether several statements may be sent in one COM_QUERY.
    pub(super) multi_statements: bool,
    /// What LAST_INSERT_ID() returns.
    pub(super) last_insert_id: u64,
}

impl SessionState {
    /// The state of a server connection right after churnstile's login.
    pub(super) fn baseline(schema: Option<String>) -> Self {
        let mut state = SessionState {
            schema,
            multi_statements: true,
            ..SessionState::default()
        };
        state.set_charset(BASELINE_CHARSET, BASELINE_COLLATION);
        state
    }

    /// What `SET NAMES charset COLLATE collation` leaves behind.
    pub(super) fn set_charset(&mut self, charset: &str, collation: &str) {
        for name in CHARSET_VARIABLES {
            self.vars.insert(name.to_owned(), charset.to_owned());
        }
        self.vars
            .insert(COLLATION_VARIABLE.to_owned(), collation.to_owned());
    }

    /// Records a variable the server reported changed.
    pub(super) fn note_variable(&mut self, name: &str, value: &str) {
        if is_moved(name) {
            self.vars
                .insert(name.to_ascii_lowercase(), value.to_owned());
        }
    }
}

/// What a server connection must run to take on a client's state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Transition {
    /// One `SET SESSION ...` statement, if any variable differs.
    pub(super) set_statement: Option<String>,
    /// COM_INIT_DB with this schema.
    pub(super) schema: Option<String>,
    /// COM_SET_OPTION to this multi-statement setting.
    pub(super) multi_statements: Option<bool>,
}

impl Transition {
    pub(super) fn is_empty(&self) -> bool {
        *self == Transition::default()
    }
}

/// What turns `server` into `client`. Variables the server has and the
/// client does not go back to their defaults.
pub(super) fn transition(server: &SessionState, client: &SessionState) -> Transition {
    let mut assignments = Vec::new();
    for (name, value) in &client.vars {
        if server.vars.get(name) != Some(value) {
            assignments.push(format!(
                "SESSION {name} = {}",
                literal(name, value, backslash_escapes(server))
            ));
        }
    }
    for name in server.vars.keys() {
        if !client.vars.contains_key(name) {
            assignments.push(format!("SESSION {name} = DEFAULT"));
        }
    }
    if client.last_insert_id != server.last_insert_id {
        assignments.push(format!(
            "SESSION last_insert_id = {}",
            client.last_insert_id
        ));
    }
    Transition {
        set_statement: (!assignments.is_empty()).then(|| format!("SET {}", assignments.join(", "))),
        schema: (client.schema != server.schema)
            .then(|| client.schema.clone())
            .flatten(),
        multi_statements: (client.multi_statements != server.multi_statements)
            .then_some(client.multi_statements),
    }
}

/// Whether the server reads a backslash in a string as an escape (its
/// sql_mode lacks NO_BACKSLASH_ESCAPES); asked only when a value is written.
fn backslash_escapes(server: &SessionState) -> bool {
    const MODE: &[u8] = b"NO_BACKSLASH_ESCAPES";
    !server.vars.get("sql_mode").is_some_and(|mode| {
        mode.as_bytes()
            .windows(MODE.len())
            .any(|window| window.eq_ignore_ascii_case(MODE))
    })
}

/// The value as SQL: numbers bare (integer variables refuse strings), the
/// empty character_set_results as NULL (how the server reports NULL),
/// everything else a quoted string.
fn literal(name: &str, value: &str, backslash_escapes: bool) -> String {
    let numeric = !value.is_empty()
        && value
            .strip_prefix('-')
            .unwrap_or(value)
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
        && !value.ends_with('.');
    if numeric {
        return value.to_owned();
    }
    if value.is_empty() && name == "character_set_results" {
        return "NULL".to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' if backslash_escapes => quoted.push_str("\\\\"),
            _ => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_states_need_nothing() {
        let state = SessionState::baseline(Some("app".into()));
        assert!(transition(&state, &state.clone()).is_empty());
    }

    #[test]
    fn differences_become_one_set_statement() {
        let server = SessionState::baseline(Some("app".into()));
        let mut client = server.clone();
        client.note_variable("time_zone", "+02:00");
        client.note_variable("SQL_MODE", "ANSI_QUOTES");
        client.note_variable("wait_timeout", "77");
        client.note_variable("autocommit", "OFF");
        client.set_charset("latin1", "latin1_swedish_ci");
        client.schema = Some("other".into());
        client.multi_statements = false;
        client.last_insert_id = 12;
        let moved = transition(&server, &client);
        assert_eq!(
            moved.set_statement.as_deref(),
            Some(
                "SET SESSION character_set_client = 'latin1', \
                 SESSION character_set_connection = 'latin1', \
                 SESSION character_set_results = 'latin1', \
                 SESSION collation_connection = 'latin1_swedish_ci', \
                 SESSION sql_mode = 'ANSI_QUOTES', SESSION time_zone = '+02:00', \
                 SESSION wait_timeout = 77, SESSION last_insert_id = 12"
            )
        );
        assert_eq!(moved.schema.as_deref(), Some("other"));
        assert_eq!(moved.multi_statements, Some(false));
    }

    #[test]
    fn variables_the_client_never_set_go_back_to_default() {
        let client = SessionState::baseline(None);
        let mut server = client.clone();
        server.note_variable("time_zone", "+05:00");
        assert_eq!(
            transition(&server, &client).set_statement.as_deref(),
            Some("SET SESSION time_zone = DEFAULT")
        );
    }

    #[test]
    fn the_servers_sql_mode_decides_how_backslashes_are_written() {
        let mut server = SessionState::baseline(None);
        let mut client = server.clone();
        client.note_variable("lc_messages_dir", "a\\b");
        assert_eq!(
            transition(&server, &client).set_statement.as_deref(),
            Some("SET SESSION lc_messages_dir = 'a\\\\b'")
        );
        server.note_variable("sql_mode", "ansi,no_backslash_escapes");
        client.note_variable("sql_mode", "ansi,no_backslash_escapes");
        assert_eq!(
            transition(&server, &client).set_statement.as_deref(),
            Some("SET SESSION lc_messages_dir = 'a\\b'")
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_for_the_servers_sql_mode() {
        assert_eq!(literal("x", "it's a\\b", true), "'it''s a\\\\b'");
        assert_eq!(literal("x", "it's a\\b", false), "'it''s a\\b'");
        assert_eq!(literal("x", "-1.5", true), "-1.5");
        assert_eq!(literal("x", "1.2.3", true), "'1.2.3'");
        assert_eq!(literal("character_set_results", "", true), "NULL");
        assert_eq!(literal("sql_mode", "", true), "''");
    }
}
