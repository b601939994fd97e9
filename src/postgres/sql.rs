//! Just enough SQL to pool safely: splits a query string into statements
//! (respecting quotes, dollar quotes and comments) and recognises the few
//! statements that change session state — settings to replay, or state that
//! cannot move between server connections and so pins the client.

use crate::keywords::mentions_any;

/// Session state that cannot be replayed on another server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinReason {
    Listen,
    AdvisoryLock,
    TempTable,
    HoldCursor,
    SqlPrepare,
    Load,
}

impl PinReason {
    pub const ALL: [PinReason; 6] = [
        PinReason::Listen,
        PinReason::AdvisoryLock,
        PinReason::TempTable,
        PinReason::HoldCursor,
        PinReason::SqlPrepare,
        PinReason::Load,
    ];

    /// Stable name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::Listen => "listen",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::TempTable => "temp_table",
            PinReason::HoldCursor => "hold_cursor",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Load => "load",
        }
    }

    /// Why the state cannot follow the client to another server connection.
    pub(super) fn explanation(self) -> &'static str {
        match self {
            PinReason::Listen => "LISTEN registers this server connection for notifications",
            PinReason::AdvisoryLock => {
                "a session-level advisory lock belongs to this server connection"
            }
            PinReason::TempTable => {
                "a temporary table without ON COMMIT DROP lives on this server connection"
            }
            PinReason::HoldCursor => "a WITH HOLD cursor lives on this server connection",
            PinReason::SqlPrepare => "an SQL-level PREPARE lives on this server connection",
            PinReason::Load => "LOAD changes this server process for good",
        }
    }
}

/// What a query string does to session state, as far as its text shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// It may change settings or pinned state: ask the server afterwards.
    pub(super) touches_session: bool,
    /// Statements that create state which cannot move, with their text.
    pub(super) pins: Vec<(PinReason, String)>,
    /// It opens an explicit transaction block.
    pub(super) begins_transaction: bool,
    /// It deallocates every prepared statement (DISCARD ALL, DEALLOCATE ALL).
    pub(super) drops_prepared_statements: bool,
    /// Custom settings (`myapp.tenant`) it sets or resets: `pg_settings`
    /// does not list those, so the server is asked for them by name.
    pub(super) custom_settings: Vec<String>,
}

/// Every word the analysis reacts to contains one of these
/// (case-insensitive), listed by their first letter.
fn triggers_starting_with(letter: u8) -> &'static [&'static [u8]] {
    match letter {
        b'a' => &[b"advisory"],
        b'b' => &[b"begin"],
        b'c' => &[b"close"],
        b'd' => &[b"dealloc", b"drop", b"discard", b"declare"],
        b'l' => &[b"listen", b"load"],
        b'p' => &[b"prepare"],
        b's' => &[b"set", b"start"],
        b't' => &[b"temp"],
        _ => &[],
    }
}

/// False when `sql` cannot contain a statement the analysis reacts to, so
/// the common query (`SELECT ... WHERE id = $1`) costs no allocation:
/// every Parse and Query goes through this.
fn may_matter(sql: &str) -> bool {
    mentions_any(sql.as_bytes(), triggers_starting_with)
}

/// Analyses every statement in `sql`.
pub fn analyze(sql: &str) -> Analysis {
    let mut analysis = Analysis::default();
    if !may_matter(sql) {
        return analysis;
    }
    for statement in split(sql) {
        classify(&statement, &mut analysis);
    }
    analysis
}

/// What a lone `DEALLOCATE` statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Deallocate {
    All,
    Name(String),
}

/// The target of `DEALLOCATE [PREPARE] {name | ALL}` when that is the whole
/// query string; unquoted names fold to lower case as in PostgreSQL.
pub(super) fn deallocate_target(sql: &str) -> Option<Deallocate> {
    let statements = split(sql);
    let [statement] = statements.as_slice() else {
        return None;
    };
    let rest = strip_keyword(statement.text, "DEALLOCATE")?;
    let rest = strip_keyword(rest, "PREPARE").unwrap_or(rest).trim();
    if rest.eq_ignore_ascii_case("ALL") {
        return Some(Deallocate::All);
    }
    if let Some(quoted) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return Some(Deallocate::Name(quoted.replace("\"\"", "\"")));
    }
    let is_identifier = !rest.is_empty() && rest.bytes().all(|b| is_word_byte(Some(b)));
    is_identifier.then(|| Deallocate::Name(rest.to_ascii_lowercase()))
}

/// `text` after a leading keyword and white space.
fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    let rest = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(|c: char| c.is_ascii_whitespace()))
        .then(|| rest.trim_start())
}

/// One statement: its trimmed text and its words in upper case (string
/// literals, quoted identifiers and comments left out).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement<'a> {
    text: &'a str,
    words: Vec<String>,
}

fn classify(statement: &Statement<'_>, analysis: &mut Analysis) {
    let words: Vec<&str> = statement.words.iter().map(String::as_str).collect();
    let text = statement.text.to_owned();
    let has = |needle: &[&str]| words.windows(needle.len()).any(|w| w == needle);
    match words.as_slice() {
        ["SET", "LOCAL", ..] | ["SET", "TRANSACTION", ..] => {}
        ["SET", ..] | ["RESET", ..] => {
            analysis.touches_session = true;
            analysis
                .custom_settings
                .extend(set_target(statement.text).filter(|name| name.contains('.')));
        }
        ["DEALLOCATE", rest @ ..] => {
            analysis.touches_session = true;
            let rest = rest.strip_prefix(&["PREPARE"]).unwrap_or(rest);
            analysis.drops_prepared_statements |= rest == ["ALL"];
        }
        ["UNLISTEN", ..] | ["DROP", ..] | ["CLOSE", ..] => {
            analysis.touches_session = true;
        }
        ["DISCARD", rest @ ..] => {
            analysis.touches_session = true;
            analysis.drops_prepared_statements |= rest.first() == Some(&"ALL");
        }
        ["LISTEN", ..] => analysis.pins.push((PinReason::Listen, text.clone())),
        ["LOAD", ..] => analysis.pins.push((PinReason::Load, text.clone())),
        ["PREPARE", "TRANSACTION", ..] => {}
        ["PREPARE", ..] => analysis.pins.push((PinReason::SqlPrepare, text.clone())),
        ["DECLARE", ..] if has(&["WITH", "HOLD"]) => {
            analysis.pins.push((PinReason::HoldCursor, text.clone()))
        }
        ["CREATE", rest @ ..] if is_temp_create(rest) && !has(&["ON", "COMMIT", "DROP"]) => {
            analysis.pins.push((PinReason::TempTable, text.clone()));
        }
        ["BEGIN", ..] | ["START", "TRANSACTION", ..] => analysis.begins_transaction = true,
        _ => {}
    }
    if words.contains(&"SET_CONFIG") {
        analysis
            .custom_settings
            .extend(set_config_targets(statement.text).filter(|name| name.contains('.')));
    }
    for word in &words {
        match *word {
            "SET_CONFIG"
            | "PG_ADVISORY_UNLOCK"
            | "PG_ADVISORY_UNLOCK_SHARED"
            | "PG_ADVISORY_UNLOCK_ALL" => {
                analysis.touches_session = true;
            }
            "PG_ADVISORY_LOCK"
            | "PG_ADVISORY_LOCK_SHARED"
            | "PG_TRY_ADVISORY_LOCK"
            | "PG_TRY_ADVISORY_LOCK_SHARED" => {
                analysis.pins.push((PinReason::AdvisoryLock, text.clone()));
            }
            _ => {}
        }
    }
    if !analysis.pins.is_empty() {
        analysis.touches_session = true;
    }
}

/// `name` as a custom setting name (`myapp.tenant`), folded to lower case;
/// `None` for built-in settings and anything but a plain dotted name.
pub(super) fn custom_setting_name(name: &str) -> Option<String> {
    setting_name(name).filter(|folded| folded.contains('.') && folded.len() == name.len())
}

/// The setting `SET [SESSION] name ...` or `RESET name` names, as
/// PostgreSQL folds it.
fn set_target(text: &str) -> Option<String> {
    let rest = strip_keyword(text, "SET").or_else(|| strip_keyword(text, "RESET"))?;
    let rest = strip_keyword(rest, "SESSION").unwrap_or(rest);
    setting_name(rest)
}

/// The setting names given as literals to `set_config('name', ...)`.
fn set_config_targets(text: &str) -> impl Iterator<Item = String> + '_ {
    let lower = text.to_ascii_lowercase();
    let starts: Vec<usize> = lower.match_indices("set_config").map(|(i, _)| i).collect();
    starts.into_iter().filter_map(move |start| {
        let rest = text[start + "set_config".len()..].trim_start();
        let rest = rest.strip_prefix('(')?.trim_start().strip_prefix('\'')?;
        let name = &rest[..rest.find('\'')?];
        setting_name(name)
    })
}

/// A setting name at the start of `text`: dotted identifier parts, each
/// unquoted (folded to lower case) or double-quoted. Only names made of
/// identifier characters are returned, so they are safe to ask about.
fn setting_name(text: &str) -> Option<String> {
    let mut name = String::new();
    let mut rest = text;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            name.push_str(&quoted[..end].to_ascii_lowercase());
            rest = &quoted[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'))
                .unwrap_or(rest.len());
            name.push_str(&rest[..end].to_ascii_lowercase());
            rest = &rest[end..];
        }
        match rest.strip_prefix('.') {
            Some(after) => {
                name.push('.');
                rest = after;
            }
            None if rest.starts_with('"') => {}
            None => break,
        }
    }
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        });
    valid.then_some(name)
}

/// `CREATE [GLOBAL | LOCAL] {TEMP | TEMPORARY} ...`
fn is_temp_create(rest: &[&str]) -> bool {
    let rest = match rest.first() {
        Some(&"GLOBAL") | Some(&"LOCAL") => &rest[1..],
        _ => rest,
    };
    matches!(rest.first(), Some(&"TEMP") | Some(&"TEMPORARY"))
}

/// Splits on semicolons that are outside literals and comments.
fn split(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut words = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b';' => {
                push_statement(&mut statements, &sql[start..i], std::mem::take(&mut words));
                i += 1;
                start = i;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && !is_word_byte(bytes.get(i.wrapping_sub(2)).copied());
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'$' => i = skip_dollar_quoted(sql, i),
            _ if is_word_start(b) => {
                let end = i + bytes[i..]
                    .iter()
                    .take_while(|&&c| is_word_byte(Some(c)))
                    .count();
                let word = &sql[i..end];
                // E'...' literals: the E is a prefix, not a word.
                if !(end < bytes.len() && bytes[end] == b'\'' && word.eq_ignore_ascii_case("e")) {
                    words.push(word.to_ascii_uppercase());
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    push_statement(&mut statements, &sql[start..], words);
    statements
}

fn push_statement<'a>(statements: &mut Vec<Statement<'a>>, text: &'a str, words: Vec<String>) {
    let text = text.trim();
    if !words.is_empty() {
        statements.push(Statement { text, words });
    }
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
}

/// Index just past a quoted literal or identifier starting at `i`.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            c if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index just past a (nested) block comment starting at `i`.
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Index just past `$tag$ ... $tag$` starting at `i`, or past a lone `$`
/// (a positional parameter like `$1`).
fn skip_dollar_quoted(sql: &str, i: usize) -> usize {
    let rest = &sql[i + 1..];
    let tag_len = rest
        .bytes()
        .take_while(|&b| b.is_ascii_alphanumeric() || b == b'_')
        .count();
    let is_tag = rest.as_bytes().get(tag_len) == Some(&b'$')
        && !rest.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if !is_tag {
        return i + 1;
    }
    let delimiter = &sql[i..i + tag_len + 2];
    let body_start = i + tag_len + 2;
    sql[body_start..]
        .find(delimiter)
        .map_or(sql.len(), |n| body_start + n + delimiter.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pins(sql: &str) -> Vec<PinReason> {
        analyze(sql)
            .pins
            .into_iter()
            .map(|(reason, _)| reason)
            .collect()
    }

    #[test]
    fn splits_outside_literals_and_comments() {
        let statements = split(
            "SELECT ';' ; -- x; y\nSELECT $a$ ; $a$, \"a;b\" /* ; /* ; */ */; SET x = E'\\';'",
        );
        let words: Vec<Vec<String>> = statements.iter().map(|s| s.words.clone()).collect();
        assert_eq!(
            words,
            vec![vec!["SELECT"], vec!["SELECT"], vec!["SET", "X"]]
        );
    }

    #[test]
    fn settings_are_recognised_but_local_ones_are_not() {
        assert!(analyze("set search_path = a").touches_session);
        assert!(analyze("RESET ALL").touches_session);
        assert!(analyze("select set_config('a.b', '1', false)").touches_session);
        assert!(!analyze("SET LOCAL work_mem = '1MB'").touches_session);
        assert!(!analyze("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").touches_session);
        assert!(!analyze("UPDATE t SET x = 1").touches_session);
        assert!(!analyze("SELECT 'SET x = 1'").touches_session);
    }

    #[test]
    fn custom_settings_are_named_as_postgres_folds_them() {
        let names = |sql| analyze(sql).custom_settings;
        assert_eq!(names("SET myapp.Tenant = 'a'"), vec!["myapp.tenant"]);
        assert_eq!(names("set session \"MyApp\".x to 1"), vec!["myapp.x"]);
        assert_eq!(names("RESET myapp.tenant"), vec!["myapp.tenant"]);
        assert_eq!(
            names("SELECT pg_catalog.set_config( 'a.b', $1, false), set_config('c.d', 'x', false)"),
            vec!["a.b", "c.d"]
        );
        assert!(names("SET work_mem = '1MB'").is_empty());
        assert!(names("SET LOCAL myapp.tenant = 'a'").is_empty());
        assert!(names("SELECT set_config($1, 'x', false)").is_empty());
        assert!(names("SET \"my app\".x = 1").is_empty());
        assert!(
            names("SET a.b'; DROP TABLE t; --.c = 1")
                .iter()
                .all(|n| n == "a.b")
        );
    }

    #[test]
    fn pinning_statements_are_recognised() {
        assert_eq!(pins("LISTEN chan"), vec![PinReason::Listen]);
        assert_eq!(
            pins("select pg_advisory_lock(1)"),
            vec![PinReason::AdvisoryLock]
        );
        assert_eq!(
            pins("select pg_try_advisory_lock(1)"),
            vec![PinReason::AdvisoryLock]
        );
        assert!(pins("select pg_advisory_xact_lock(1)").is_empty());
        assert_eq!(
            pins("create temp table t (x int)"),
            vec![PinReason::TempTable]
        );
        assert_eq!(
            pins("CREATE GLOBAL TEMPORARY TABLE t (x int)"),
            vec![PinReason::TempTable]
        );
        assert!(pins("create temp table t (x int) on commit drop").is_empty());
        assert!(pins("create table temp (x int)").is_empty());
        assert_eq!(
            pins("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            vec![PinReason::HoldCursor]
        );
        assert!(pins("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1").is_empty());
        assert_eq!(pins("PREPARE p AS SELECT 1"), vec![PinReason::SqlPrepare]);
        assert!(pins("PREPARE TRANSACTION 'x'").is_empty());
        assert_eq!(pins("LOAD 'auto_explain'"), vec![PinReason::Load]);
        assert!(pins("SELECT 'LISTEN x' -- LISTEN y").is_empty());
    }

    #[test]
    fn pin_carries_the_statement_text() {
        let analysis = analyze("SELECT 1; LISTEN jobs ;");
        assert_eq!(
            analysis.pins,
            vec![(PinReason::Listen, "LISTEN jobs".to_owned())]
        );
        assert!(analysis.touches_session);
    }

    #[test]
    fn transactions_and_discard_all() {
        assert!(analyze("begin").begins_transaction);
        assert!(analyze("START TRANSACTION READ ONLY").begins_transaction);
        assert!(analyze("DISCARD ALL").drops_prepared_statements);
        assert!(analyze("SELECT 1; deallocate prepare all").drops_prepared_statements);
        assert!(!analyze("DISCARD PLANS").drops_prepared_statements);
        assert!(!analyze("DEALLOCATE all_of_them").drops_prepared_statements);
    }

    #[test]
    fn positional_parameters_are_not_dollar_quotes() {
        let analysis = analyze("SELECT $1; LISTEN x");
        assert_eq!(analysis.pins.len(), 1);
    }

    #[test]
    fn deallocate_targets() {
        assert_eq!(deallocate_target("DEALLOCATE ALL"), Some(Deallocate::All));
        assert_eq!(
            deallocate_target("deallocate prepare S_1;"),
            Some(Deallocate::Name("s_1".into()))
        );
        assert_eq!(
            deallocate_target("DEALLOCATE \"Mixed\"\"q\""),
            Some(Deallocate::Name("Mixed\"q".into()))
        );
        assert_eq!(deallocate_target("DEALLOCATE a; SELECT 1"), None);
        assert_eq!(deallocate_target("DEALLOCATEX a"), None);
        assert_eq!(deallocate_target("SELECT 1"), None);
    }

    #[test]
    fn plain_queries_skip_the_analysis() {
        assert!(!may_matter(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(may_matter("UPDATE t SET x = 1"), "SET still triggers");
        for sql in [
            "ReSeT all",
            "unlisten *",
            "select pg_advisory_lock(1)",
            "Create TEMPORARY table t()",
        ] {
            assert!(may_matter(sql), "{sql}");
        }
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in [
            "'abc", "\"abc", "$a$ abc", "/* abc", "-- abc", "E'\\", "$", "$1",
        ] {
            let _ = analyze(sql);
        }
    }
}
