//! PgBouncer's `auth_file` (`userlist.txt`): one `"user" "secret"` line per
//! user, a quote inside either field doubled (`""`). Its users join
//! `[users]`, which wins for a name both define (it may also say
//! `upstream_user`). Read whenever the configuration is, so RELOAD re-reads
//! it; a malformed line is an error at its own line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Diagnostics};
use super::secret::parse_client_secret;
use super::section::Section;
use super::types::{AuthType, ClientSecret, UserConfig};

/// The `[general]` key naming the file.
pub(super) const AUTH_FILE_KEY: &str = "auth_file";

/// One well-formed line: 1-based line number, user name, secret text.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    line: usize,
    name: String,
    secret: String,
}

/// What is wrong with one line: 1-based line and column, and the message
/// (which never repeats the secret).
#[derive(Debug, PartialEq, Eq)]
struct LineError {
    line: usize,
    column: usize,
    message: String,
}

/// Users of the `auth_file` named in `[general]`, relative paths taken from
/// the configuration file's directory; errors point into the userlist.
pub(super) fn read_auth_file(
    general: Option<&Section>,
    origin: &str,
    auth_type: Option<AuthType>,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, UserConfig> {
    let Some(section) = general else {
        return BTreeMap::new();
    };
    let Some(file) = section.string(AUTH_FILE_KEY, diagnostics) else {
        return BTreeMap::new();
    };
    let path = resolve(origin, file.get_ref());
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            diagnostics.error(
                file.span(),
                section.field(AUTH_FILE_KEY),
                format!("cannot read the auth_file {shown}: {error}"),
            );
            return BTreeMap::new();
        }
    };
    let (entries, errors) = parse_userlist(&text);
    let mut users = BTreeMap::new();
    for error in errors {
        diagnostics.push(located(&shown, error.line, error.column, error.message));
    }
    for entry in entries {
        match parse_client_secret(&entry.secret) {
            // As for [users]: SCRAM cannot check a client against an md5 hash.
            Ok(ClientSecret::Md5(_)) if auth_type == Some(AuthType::ScramSha256) => {
                let message = "an md5 secret cannot be checked with auth_type = \
                               \"scram-sha-256\"; give the SCRAM-SHA-256 verifier from \
                               pg_authid or the plaintext password, or use auth_type = \"md5\"";
                diagnostics.push(located(&shown, entry.line, 1, message.to_owned()));
            }
            Ok(secret) => {
                users.insert(entry.name.clone(), user(entry.name, secret));
            }
            Err(message) => diagnostics.push(located(&shown, entry.line, 1, message)),
        }
    }
    users
}

fn located(file: &str, line: usize, column: usize, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        field: format!("{AUTH_FILE_KEY} user"),
        message,
    }
}

/// A relative `file` is taken from the directory of the configuration.
fn resolve(origin: &str, file: &str) -> PathBuf {
    let file = Path::new(file);
    match Path::new(origin).parent() {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file.to_path_buf(),
    }
}

fn user(name: String, secret: ClientSecret) -> UserConfig {
    let upstream_password = match &secret {
        ClientSecret::Plain(password) => Some(password.clone()),
        _ => None,
    };
    UserConfig {
        secret: Some(secret),
        upstream_user: name,
        upstream_password,
    }
}

/// Every line as PgBouncer reads it: blank lines and lines starting with
/// `;` or `#` are skipped; fields after the secret are ignored, as PgBouncer
/// ignores them.
fn parse_userlist(text: &str) -> (Vec<Entry>, Vec<LineError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let column = raw.len() - trimmed.len() + 1;
        match parse_line(trimmed) {
            Ok((name, secret)) => entries.push(Entry { line, name, secret }),
            Err((offset, message)) => errors.push(LineError {
                line,
                column: column + offset,
                message: message.to_owned(),
            }),
        }
    }
    (entries, errors)
}

/// `"user" "secret"`; the error carries the byte offset where it went wrong.
fn parse_line(line: &str) -> Result<(String, String), (usize, &'static str)> {
    let (name, rest) = quoted(line, 0)?;
    if name.is_empty() {
        return Err((0, "user name is empty"));
    }
    let offset = line.len() - rest.len();
    let after = rest.trim_start();
    if after.is_empty() {
        return Err((
            offset,
            "no secret after the user name; write \"user\" \"secret\"",
        ));
    }
    let (secret, _) = quoted(after, line.len() - after.len())?;
    Ok((name, secret))
}

/// One double-quoted field at the start of `text` (which stands at byte
/// `at` of its line), `""` meaning a quote; the field and what follows it.
fn quoted(text: &str, at: usize) -> Result<(String, &str), (usize, &'static str)> {
    let Some(body) = text.strip_prefix('"') else {
        return Err((at, "expected a field in double quotes: \"user\" \"secret\""));
    };
    let mut field = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c != '"' {
            field.push(c);
        } else if chars.peek().is_some_and(|&(_, next)| next == '"') {
            field.push('"');
            chars.next();
        } else {
            return Ok((field, &body[index + 1..]));
        }
    }
    Err((
        at,
        "unterminated quote; double a quote inside a field (\"\")",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, name: &str, secret: &str) -> Entry {
        Entry {
            line,
            name: name.to_owned(),
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn reads_pgbouncer_lines_with_doubled_quotes_and_comments() {
        let text = "; comment\n\n\"alice\" \"secret\"\n# other\n  \"bo\"\"b\" \"md5abc\" \"\"\n\"x\"\"\" \"pa\"\"ss\"\n";
        let (entries, errors) = parse_userlist(text);
        assert_eq!(errors, vec![]);
        assert_eq!(
            entries,
            vec![
                entry(3, "alice", "secret"),
                entry(5, "bo\"b", "md5abc"),
                entry(6, "x\"", "pa\"ss"),
            ]
        );
    }

    #[test]
    fn malformed_lines_are_reported_at_their_line_and_column() {
        let text =
            "\"ok\" \"pw\"\nalice secret\n\"bob\"\n  \"carol\" \"unterminated\n\"\" \"pw\"\n";
        let (entries, errors) = parse_userlist(text);
        assert_eq!(entries, vec![entry(1, "ok", "pw")]);
        let found: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(found, vec![(2, 1), (3, 6), (4, 11), (5, 1)]);
        assert!(
            errors[0]
                .message
                .starts_with("expected a field in double quotes")
        );
        assert!(errors[1].message.starts_with("no secret"));
        assert!(errors[2].message.starts_with("unterminated quote"));
        assert_eq!(errors[3].message, "user name is empty");
        assert!(errors.iter().all(|e| !e.message.contains("unterminated\"")));
    }

    #[test]
    fn relative_paths_follow_the_configuration_file() {
        assert_eq!(
            resolve("/etc/churnstile/c.toml", "userlist.txt"),
            PathBuf::from("/etc/churnstile/userlist.txt")
        );
        assert_eq!(
            resolve("/etc/c.toml", "/x/u.txt"),
            PathBuf::from("/x/u.txt")
        );
        assert_eq!(resolve("c.toml", "u.txt"), PathBuf::from("u.txt"));
    }

    const MD5: &str = "md5fb0a6fe3e8ea0e2f6a7e8a3ed7a4c9c5";

    fn config_with_userlist(userlist: &str, users: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("userlist.txt"), userlist).unwrap();
        let origin = dir.path().join("c.toml").display().to_string();
        let text = format!(
            "[general]\nauth_file = \"userlist.txt\"\nadmin_users = [\"alice\"]\n\
             [databases.app]\n{users}"
        );
        (dir, format!("{origin}\n{text}"))
    }

    fn parse(pair: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        let (origin, text) = pair.split_once('\n').unwrap();
        crate::config::parse_str(text, origin)
    }

    #[test]
    fn auth_file_users_join_users_and_users_wins() {
        let userlist = format!("\"alice\" \"pw\"\n\"bob\" \"{MD5}\"\n");
        let users = "[users.bob]\npassword = \"own\"\nupstream_user = \"app\"\n";
        let (_dir, pair) = config_with_userlist(&userlist, users);
        let config = parse(&pair).unwrap();
        let alice = &config.users["alice"];
        assert_eq!(alice.secret, Some(ClientSecret::Plain("pw".into())));
        assert_eq!(alice.upstream_password.as_deref(), Some("pw"));
        let bob = &config.users["bob"];
        assert_eq!(bob.secret, Some(ClientSecret::Plain("own".into())));
        assert_eq!(bob.upstream_user, "app");
    }

    #[test]
    fn malformed_auth_file_lines_are_config_errors_with_line_numbers() {
        let userlist = format!(
            "\"alice\" \"pw\"\nbob {MD5}\n\"carol\" \"md5{}\"\n",
            "z".repeat(32)
        );
        let (_dir, pair) = config_with_userlist(&userlist, "");
        let errors = parse(&pair).unwrap_err().errors;
        let found: Vec<(bool, usize, usize)> = errors
            .iter()
            .map(|e| (e.file.ends_with("userlist.txt"), e.line, e.column))
            .collect();
        assert_eq!(found, vec![(true, 2, 1), (true, 3, 1)]);
        assert!(errors.iter().all(|e| !e.to_string().contains(MD5)));
    }

    #[test]
    fn scram_auth_cannot_use_an_md5_line() {
        let userlist = format!("\"alice\" \"pw\"\n\"bob\" \"{MD5}\"\n");
        let (_dir, pair) = config_with_userlist(&userlist, "");
        let pair = pair.replace("[general]\n", "[general]\nauth_type = \"scram-sha-256\"\n");
        let errors = parse(&pair).unwrap_err().errors;
        assert_eq!((errors.len(), errors[0].line), (1, 2));
        assert!(
            errors[0]
                .message
                .starts_with("an md5 secret cannot be checked")
        );
    }

    #[test]
    fn a_missing_auth_file_names_the_resolved_path() {
        let (dir, pair) = config_with_userlist("", "");
        std::fs::remove_file(dir.path().join("userlist.txt")).unwrap();
        let errors = parse(&pair).unwrap_err().errors;
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[0].field, "general.auth_file");
        let expected = format!(
            "cannot read the auth_file {}",
            dir.path().join("userlist.txt").display()
        );
        assert!(
            errors[0].message.starts_with(&expected),
            "{}",
            errors[0].message
        );
    }
}
