//! Reading PgBouncer's INI format: `[section]` headers, `key = value`
//! lines, `;` and `#` comment lines, and `%include FILE` (relative to the
//! including file) followed in place, as PgBouncer reads its configuration.

use std::path::{Path, PathBuf};

/// Includes nested deeper than this are refused: a file including itself
/// would otherwise never end. PgBouncer's own limit is 10.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One `key = value` line, with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Lowercased section name, e.g. `pgbouncer`, `databases`.
    pub section: String,
    /// Lowercased for `[pgbouncer]` keys (PgBouncer ignores their case);
    /// as written for database and user names.
    pub key: String,
    pub value: String,
    /// The file it came from, as the including file named it.
    pub file: PathBuf,
    /// 1-based.
    line: usize,
}

impl Setting {
    /// `file:line` for messages.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Why the INI files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Every setting of `path` and the files it includes, in reading order.
pub fn read_ini(path: &Path) -> Result<Vec<Setting>, IniError> {
    let mut settings = Vec::new();
    let mut section = String::new();
    read_into(path, 0, &mut section, &mut settings)?;
    Ok(settings)
}

fn read_into(
    path: &Path,
    depth: usize,
    section: &mut String,
    settings: &mut Vec<Setting>,
) -> Result<(), IniError> {
    let text = std::fs::read_to_string(path).map_err(|error| IniError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let syntax = |line: usize, message: String| IniError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        if let Some(target) = trimmed.strip_prefix("%include") {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(syntax(
                    line,
                    format!(
                        "%include nested more than {MAX_INCLUDE_DEPTH} deep; does a file include itself?"
                    ),
                ));
            }
            let included = relative_to(path, target.trim());
            read_into(&included, depth + 1, section, settings)?;
        } else if let Some(name) = trimmed.strip_prefix('[') {
            let name = name.strip_suffix(']').ok_or_else(|| {
                syntax(
                    line,
                    format!("section header {trimmed:?} has no closing ']'"),
                )
            })?;
            *section = name.trim().to_ascii_lowercase();
        } else {
            let (key, value) = trimmed.split_once('=').ok_or_else(|| {
                syntax(
                    line,
                    "expected `key = value`, a [section] or %include".to_owned(),
                )
            })?;
            let key = key.trim();
            let key = if section == "pgbouncer" {
                key.to_ascii_lowercase()
            } else {
                key.to_owned()
            };
            settings.push(Setting {
                section: section.clone(),
                key,
                value: value.trim().to_owned(),
                file: path.to_path_buf(),
                line,
            });
        }
    }
    Ok(())
}

/// `target` as seen from the directory of `file` when relative.
pub fn relative_to(file: &Path, target: &str) -> PathBuf {
    let target = Path::new(target);
    match file.parent() {
        Some(dir) if target.is_relative() => dir.join(target),
        _ => target.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn sections_comments_and_includes_in_reading_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        write(
            &dir.path().join("conf.d"),
            "dbs.ini",
            "[databases]\nb = host=/tmp\n",
        );
        let main = write(
            dir.path(),
            "main.ini",
            "; c\n# c\n[databases]\na = dbname=x\n%include conf.d/dbs.ini\n[PgBouncer]\nPool_Mode = transaction\n",
        );
        let settings = read_ini(&main).unwrap();
        let seen: Vec<(&str, &str, &str, usize)> = settings
            .iter()
            .map(|s| (s.section.as_str(), s.key.as_str(), s.value.as_str(), s.line))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("databases", "a", "dbname=x", 4),
                ("databases", "b", "host=/tmp", 2),
                ("pgbouncer", "pool_mode", "transaction", 7),
            ]
        );
        assert!(settings[1].file.ends_with("conf.d/dbs.ini"));
    }

    #[test]
    fn self_inclusion_and_bad_lines_are_errors_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let looping = write(dir.path(), "loop.ini", "%include loop.ini\n");
        assert!(
            read_ini(&looping)
                .unwrap_err()
                .to_string()
                .contains("nested more than 10")
        );
        let bad = write(dir.path(), "bad.ini", "[pgbouncer]\njust words\n");
        let error = read_ini(&bad).unwrap_err().to_string();
        assert!(
            error.ends_with("bad.ini:2: expected `key = value`, a [section] or %include"),
            "{error}"
        );
        let missing = write(dir.path(), "m.ini", "%include nowhere.ini\n");
        assert!(
            read_ini(&missing)
                .unwrap_err()
                .to_string()
                .contains("nowhere.ini")
        );
    }
}
