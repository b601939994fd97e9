//! The little SQL reading MySQL pooling needs: which statements create
//! state that cannot move to another server connection (user variables,
//! temporary tables, GET_LOCK, LOCK TABLES, SQL_CALC_FOUND_ROWS, text
//! PREPARE, HANDLER, changes to session tracking), which release it, and
//! `KILL`. Quoted text and comments are skipped; nothing else is parsed.

use crate::keywords::mentions_any;

/// Why a client is pinned to its server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum PinReason {
    UserVariable,
    TemporaryTable,
    NamedLock,
    LockTables,
    FoundRows,
    SqlPrepare,
    Handler,
    SessionTracking,
    Autocommit,
    Xa,
    /// The server reported session state churnstile cannot name.
    ServerState,
}

impl PinReason {
    /// Every reason, in the order the metrics list them.
    pub(super) const ALL: [PinReason; 11] = [
        PinReason::UserVariable,
        PinReason::TemporaryTable,
        PinReason::NamedLock,
        PinReason::LockTables,
        PinReason::FoundRows,
        PinReason::SqlPrepare,
        PinReason::Handler,
        PinReason::SessionTracking,
        PinReason::Autocommit,
        PinReason::Xa,
        PinReason::ServerState,
    ];

    pub(super) fn describe(self) -> &'static str {
        match self {
            PinReason::UserVariable => "user variables (@name)",
            PinReason::TemporaryTable => "temporary tables",
            PinReason::NamedLock => "named locks (GET_LOCK)",
            PinReason::LockTables => "LOCK TABLES",
            PinReason::FoundRows => "SQL_CALC_FOUND_ROWS / FOUND_ROWS()",
            PinReason::SqlPrepare => "SQL-level PREPARE",
            PinReason::Handler => "HANDLER ... OPEN",
            PinReason::SessionTracking => "changing session_track_* settings",
            PinReason::Autocommit => "autocommit = 0 outside a transaction",
            PinReason::Xa => "XA transactions",
            PinReason::ServerState => "session state reported by the server",
        }
    }

    /// The label metrics use.
    pub(super) fn label(self) -> &'static str {
        match self {
            PinReason::UserVariable => "user_variable",
            PinReason::TemporaryTable => "temporary_table",
            PinReason::NamedLock => "get_lock",
            PinReason::LockTables => "lock_tables",
            PinReason::FoundRows => "found_rows",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Handler => "handler",
            PinReason::SessionTracking => "session_track",
            PinReason::Autocommit => "autocommit_off",
            PinReason::Xa => "xa",
            PinReason::ServerState => "server_state",
        }
    }
}

/// What one COM_QUERY means for pooling.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Analysis {
    pub(super) pins: Vec<PinReason>,
    /// `UNLOCK TABLES`: the LOCK TABLES pin ends.
    pub(super) unlocks_tables: bool,
    /// `SET TRANSACTION ...` (next transaction only): keep the server
    /// connection until that transaction ends.
    pub(super) sets_next_transaction: bool,
    /// MariaDB's `SET STATEMENT var = value FOR ...`: the server reports the
    /// statement's temporary values, not the ones it restores after it.
    pub(super) per_statement_settings: bool,
    /// `LAST_INSERT_ID(expr)`, which outside INSERT and UPDATE sets
    /// LAST_INSERT_ID() without the OK packet saying so.
    pub(super) sets_last_insert_id: bool,
    pub(super) kill: Option<Kill>,
}

/// `KILL [CONNECTION | QUERY] id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kill {
    pub(super) id: u32,
    pub(super) query_only: bool,
}

/// One token of a statement: a word (upper-cased) or a symbol.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    UserVariable,
    Symbol(u8),
}

/// What makes a statement worth reading (a user variable's `@` or a
/// keyword), by first letter; a statement with none is skipped without
/// tokenising.
fn triggers_starting_with(letter: u8) -> &'static [&'static [u8]] {
    match letter {
        b'@' => &[b"@"],
        b'a' => &[b"autocommit"],
        b'g' => &[b"get_lock"],
        b'h' => &[b"handler"],
        b'k' => &[b"kill"],
        b'l' => &[b"lock", b"last_insert_id"],
        b'p' => &[b"prepare"],
        b's' => &[b"sql_calc_found_rows", b"session_track", b"statement"],
        b't' => &[b"temporary", b"transaction"],
        b'x' => &[b"xa"],
        _ => &[],
    }
}

/// Reads a COM_QUERY text.
pub(super) fn analyze(sql: &[u8]) -> Analysis {
    if !might_matter(sql) {
        return Analysis::default();
    }
    let mut analysis = Analysis::default();
    for statement in statements(sql) {
        analyze_statement(&statement, &mut analysis);
    }
    analysis.pins.sort();
    analysis.pins.dedup();
    analysis
}

fn might_matter(sql: &[u8]) -> bool {
    mentions_any(sql, triggers_starting_with)
}

fn analyze_statement(tokens: &[Token], analysis: &mut Analysis) {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(word)) => word.as_str(),
        _ => "",
    };
    let has = |keyword: &str| {
        tokens
            .iter()
            .any(|t| matches!(t, Token::Word(w) if w == keyword))
    };
    if tokens.contains(&Token::UserVariable) {
        analysis.pins.push(PinReason::UserVariable);
    }
    match word(0) {
        "CREATE" if has("TEMPORARY") => analysis.pins.push(PinReason::TemporaryTable),
        "LOCK" if matches!(word(1), "TABLE" | "TABLES") => {
            analysis.pins.push(PinReason::LockTables);
        }
        "UNLOCK" if matches!(word(1), "TABLE" | "TABLES") => analysis.unlocks_tables = true,
        "PREPARE" => analysis.pins.push(PinReason::SqlPrepare),
        "HANDLER" => analysis.pins.push(PinReason::Handler),
        "XA" => analysis.pins.push(PinReason::Xa),
        "KILL" => analysis.kill = parse_kill(tokens),
        "SET" => {
            match word(1) {
                "TRANSACTION" => analysis.sets_next_transaction = true,
                "STATEMENT" => analysis.per_statement_settings = true,
                _ => {}
            }
            if tokens
                .iter()
                .any(|t| matches!(t, Token::Word(w) if w.starts_with("SESSION_TRACK")))
            {
                analysis.pins.push(PinReason::SessionTracking);
            }
            // Known before the server's status says so, for pin_policy = reject.
            if tokens.windows(3).any(|window| {
                matches!(window, [Token::Word(name), Token::Symbol(b'='), Token::Word(value)]
                    if name == "AUTOCOMMIT" && matches!(value.as_str(), "0" | "OFF" | "FALSE"))
            }) {
                analysis.pins.push(PinReason::Autocommit);
            }
        }
        _ => {}
    }
    if has("GET_LOCK") {
        analysis.pins.push(PinReason::NamedLock);
    }
    analysis.sets_last_insert_id |= tokens.windows(3).any(|window| {
        matches!(window, [Token::Word(w), Token::Symbol(b'('), next]
            if w == "LAST_INSERT_ID" && *next != Token::Symbol(b')'))
    });
    if has("SQL_CALC_FOUND_ROWS") {
        analysis.pins.push(PinReason::FoundRows);
    }
}

/// `KILL [HARD | SOFT] [CONNECTION | QUERY] id`; anything else (KILL USER,
/// KILL QUERY ID) is not one churnstile maps.
fn parse_kill(tokens: &[Token]) -> Option<Kill> {
    let mut rest = tokens.get(1..)?;
    if let [Token::Word(w), tail @ ..] = rest
        && (w == "HARD" || w == "SOFT")
    {
        rest = tail;
    }
    let mut query_only = false;
    if let [Token::Word(w), tail @ ..] = rest
        && (w == "CONNECTION" || w == "QUERY")
    {
        query_only = w == "QUERY";
        rest = tail;
    }
    match rest {
        [Token::Word(id)] | [Token::Word(id), Token::Symbol(b';')] => {
            id.parse().ok().map(|id| Kill { id, query_only })
        }
        _ => None,
    }
}

/// Splits the text into statements of tokens, skipping quoted text and
/// comments.
fn statements(sql: &[u8]) -> Vec<Vec<Token>> {
    let mut statements = vec![Vec::new()];
    let mut i = 0;
    while i < sql.len() {
        let b = sql[i];
        match b {
            b'\'' | b'"' | b'`' => i = skip_quoted(sql, i),
            b'#' => i = skip_line(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(sql, i);
            }
            b'/' if sql.get(i + 1) == Some(&b'*') && sql.get(i + 2) != Some(&b'!') => {
                i = sql[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(sql.len(), |end| i + 2 + end + 2);
            }
            b'@' => {
                if sql.get(i + 1) == Some(&b'@') {
                    // @@[scope.]system_variable: one word, the name.
                    i += 2;
                    let start = i;
                    while i < sql.len() && (is_word_byte(sql[i]) || sql[i] == b'.') {
                        i += 1;
                    }
                    let name = sql[start..i]
                        .rsplit(|&b| b == b'.')
                        .next()
                        .unwrap_or_default();
                    if let Some(current) = statements.last_mut() {
                        current.push(Token::Word(
                            String::from_utf8_lossy(name).to_ascii_uppercase(),
                        ));
                    }
                } else {
                    if let Some(current) = statements.last_mut() {
                        current.push(Token::UserVariable);
                    }
                    i += 1;
                }
            }
            b';' => {
                statements.push(Vec::new());
                i += 1;
            }
            _ if is_word_byte(b) => {
                let start = i;
                while i < sql.len() && is_word_byte(sql[i]) {
                    i += 1;
                }
                let word = String::from_utf8_lossy(&sql[start..i]).to_ascii_uppercase();
                if let Some(current) = statements.last_mut() {
                    current.push(Token::Word(word));
                }
            }
            _ => {
                if !b.is_ascii_whitespace()
                    && let Some(current) = statements.last_mut()
                {
                    current.push(Token::Symbol(b));
                }
                i += 1;
            }
        }
    }
    statements.retain(|statement| !statement.is_empty());
    statements
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Index after the closing quote (a doubled quote or a backslash escapes).
fn skip_quoted(sql: &[u8], start: usize) -> usize {
    let quote = sql[start];
    let mut i = start + 1;
    while i < sql.len() {
        if sql[i] == b'\\' && quote != b'`' {
            i += 2;
        } else if sql[i] == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

fn skip_line(sql: &[u8], start: usize) -> usize {
    sql[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(sql.len(), |end| start + end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(sql: &str) -> Vec<PinReason> {
        analyze(sql.as_bytes()).pins
    }

    #[test]
    fn plain_statements_pin_nothing() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES ('@x', \"GET_LOCK\")",
            "SELECT @@session.time_zone, @@autocommit",
            "UPDATE t SET a = 1 -- @x\nWHERE b = 2",
            "SELECT /* LOCK TABLES @x */ 1",
            "SET SESSION sql_mode = 'ANSI'",
            "SELECT `@odd name` FROM t",
        ] {
            assert_eq!(pins(sql), [], "{sql}");
        }
    }

    #[test]
    fn each_kind_of_unmovable_state_pins() {
        let cases = [
            ("SET @x = 1", PinReason::UserVariable),
            ("SELECT a INTO @total FROM t", PinReason::UserVariable),
            ("select @x := 5", PinReason::UserVariable),
            (
                "CREATE TEMPORARY TABLE tmp (a int)",
                PinReason::TemporaryTable,
            ),
            ("SELECT GET_LOCK('job', 10)", PinReason::NamedLock),
            ("LOCK TABLES t WRITE", PinReason::LockTables),
            (
                "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
                PinReason::FoundRows,
            ),
            ("PREPARE s FROM 'SELECT 1'", PinReason::SqlPrepare),
            ("HANDLER t OPEN", PinReason::Handler),
            ("SET session_track_schema = OFF", PinReason::SessionTracking),
            (
                "SET @@SESSION.session_track_schema = OFF",
                PinReason::SessionTracking,
            ),
            ("SET autocommit = 0", PinReason::Autocommit),
            ("set @@session.autocommit=off", PinReason::Autocommit),
            ("XA START 'x'", PinReason::Xa),
        ];
        for (sql, reason) in cases {
            assert_eq!(pins(sql), [reason], "{sql}");
        }
        assert_eq!(
            pins("SELECT 1; LOCK TABLES t READ; SET @a = 2"),
            [PinReason::UserVariable, PinReason::LockTables]
        );
    }

    #[test]
    fn unlock_and_set_transaction_are_noticed() {
        assert!(analyze(b"UNLOCK TABLES").unlocks_tables);
        assert!(analyze(b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").sets_next_transaction);
        assert!(!analyze(b"SET SESSION TRANSACTION READ ONLY").sets_next_transaction);
    }

    #[test]
    fn set_statement_is_noticed() {
        assert!(
            analyze(b"SET STATEMENT max_statement_time = 1 FOR SELECT 1").per_statement_settings
        );
        assert!(!analyze(b"SET SESSION max_statement_time = 1").per_statement_settings);
        assert!(!analyze(b"SELECT 'SET STATEMENT'").per_statement_settings);
    }

    #[test]
    fn last_insert_id_with_an_argument_is_noticed() {
        let sets = |sql: &str| analyze(sql.as_bytes()).sets_last_insert_id;
        assert!(sets("SELECT LAST_INSERT_ID(77)"));
        assert!(sets("update seq set id = last_insert_id(id + 1)"));
        assert!(!sets("SELECT LAST_INSERT_ID()"));
        assert!(!sets("SELECT 'LAST_INSERT_ID(1)'"));
    }

    #[test]
    fn kill_forms() {
        let kill = |sql: &str| analyze(sql.as_bytes()).kill;
        assert_eq!(
            kill("KILL 12"),
            Some(Kill {
                id: 12,
                query_only: false
            })
        );
        assert_eq!(
            kill("kill query 7;"),
            Some(Kill {
                id: 7,
                query_only: true
            })
        );
        assert_eq!(
            kill("KILL HARD CONNECTION 3"),
            Some(Kill {
                id: 3,
                query_only: false
            })
        );
        assert_eq!(kill("KILL USER bob"), None);
        assert_eq!(kill("KILL QUERY ID 4"), None);
    }
}
