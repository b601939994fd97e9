//! PgBouncer's `[databases]` entries: a libpq-style connection string
//! (`host=... port=... dbname=... pool_size=...`, values optionally in
//! single quotes with `''` or `\'` for a quote) per database name, turned
//! into `[databases.NAME]` keys; what churnstile has no place for is dropped
//! with the reason.

use super::ini::Setting;
use super::output::{Dropped, Table};

/// Connection-string keys that become the churnstile key of the same
/// meaning (PgBouncer name, churnstile name, is it a number).
const CARRIED: &[(&str, &str, bool)] = &[
    ("host", "host", false),
    ("port", "port", true),
    ("dbname", "dbname", false),
    ("user", "user", false),
    ("password", "password", false),
    ("pool_size", "default_pool_size", true),
    ("min_pool_size", "min_pool_size", true),
    ("pool_mode", "pool_mode", false),
    ("server_lifetime", "server_lifetime", true),
];

/// Why a connection-string key is dropped.
fn dropped_reason(key: &str) -> &'static str {
    match key {
        "auth_user" | "auth_query" | "auth_dbname" => {
            "churnstile does not look passwords up in the database yet; put the users in auth_file or [users]"
        }
        "reserve_pool" | "reserve_pool_size" => {
            "churnstile has no reserve pool; raise pool_size instead"
        }
        "max_db_connections" | "max_db_client_connections" => {
            "churnstile limits server connections per (database, user) pool only (pool_size)"
        }
        "client_encoding" | "datestyle" | "timezone" | "application_name" => {
            "churnstile does not set startup parameters for the server; clients send their own"
        }
        "connect_query" => "churnstile runs no query on new server connections",
        "load_balance_hosts" => "churnstile connects to one host per database",
        _ => "no churnstile equivalent",
    }
}

/// The `[databases.NAME]` table for one entry, or `None` when the entry as
/// a whole cannot be carried (the `*` fallback, a malformed string).
pub fn database(
    entry: &Setting,
    socket_dir: &str,
    dropped: &mut Vec<Dropped>,
) -> Option<(String, Table)> {
    let name = &entry.key;
    let what = format!("[databases] {name}");
    if name == "*" {
        dropped.push(Dropped::new(
            entry,
            what,
            "churnstile has no fallback database; add a [databases.NAME] entry for each \
             database name clients connect to",
        ));
        return None;
    }
    let pairs = match parse_connection_string(&entry.value) {
        Ok(pairs) => pairs,
        Err(message) => {
            dropped.push(Dropped::new(entry, what, message));
            return None;
        }
    };
    let mut table = Table::default();
    for (key, value) in &pairs {
        match CARRIED.iter().find(|(from, _, _)| from == key) {
            Some((_, _, _)) if key == "host" && value.contains(',') => {
                let first = value.split(',').next().unwrap_or_default();
                table.string("host", first);
                dropped.push(Dropped::new(
                    entry,
                    format!("{what}: host={value}"),
                    "churnstile connects to one host per database; the first was kept",
                ));
            }
            Some((_, to, true)) => table.number(to, value),
            Some((_, to, false)) => table.string(to, value),
            None => dropped.push(Dropped::new(
                entry,
                format!("{what}: {key}"),
                dropped_reason(key),
            )),
        }
    }
    // PgBouncer's default server is the Unix socket in its socket directory.
    if !pairs.iter().any(|(key, _)| key == "host") {
        table.string("host", socket_dir);
    }
    if table.has("password") && !table.has("user") {
        table.remove("password");
        dropped.push(Dropped::new(
            entry,
            format!("{what}: password"),
            "a password without user means nothing to churnstile (it is the forced user's)",
        ));
    }
    Some((name.clone(), table))
}

/// `key=value` pairs separated by spaces; a value in single quotes may hold
/// spaces, with `''` or `\'` for a quote.
fn parse_connection_string(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in the connection string at {rest:?}"))?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("malformed key {key:?} in the connection string"));
        }
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('\'') {
            Some(quoted) => quoted_value(quoted)?,
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        pairs.push((key, value));
        rest = remaining.trim_start();
    }
    Ok(pairs)
}

fn quoted_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let next_is_quote = chars.peek().is_some_and(|&(_, next)| next == '\'');
        match c {
            '\\' | '\'' if next_is_quote => {
                value.push('\'');
                chars.next();
            }
            '\'' => return Ok((value, &text[index + 1..])),
            _ => value.push(c),
        }
    }
    Err("unterminated quote in the connection string".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_connection_string(text).unwrap()
    }

    #[test]
    fn connection_strings_with_quotes() {
        assert_eq!(
            pairs("host=db1 port=5433  connect_query='SELECT ''a'' ' dbname=x"),
            vec![
                ("host".into(), "db1".into()),
                ("port".into(), "5433".into()),
                ("connect_query".into(), "SELECT 'a' ".into()),
                ("dbname".into(), "x".into()),
            ]
        );
        assert_eq!(pairs(""), vec![]);
        assert!(parse_connection_string("host=a 'x").is_err());
        assert!(parse_connection_string("password='open").is_err());
    }
}
