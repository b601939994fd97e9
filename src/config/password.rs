//! Passwords kept out of the configuration file: a password value may name
//! environment variables as `${NAME}`, and `password_file` (or
//! `upstream_password_file`) reads it from a file, such as a mounted
//! Kubernetes Secret or a systemd credential. A variable that is not set or
//! a file that cannot be read is an error at its line and column, which
//! names the variable or file but never a password.

use std::ops::Range;

use toml::Spanned;

use super::error::Diagnostics;
use super::section::Section;

/// The password under `key`, or read from the file `file_key` names;
/// `None` when neither is given or when either is wrong (reported).
pub(super) fn read_password(
    section: &Section,
    key: &str,
    file_key: &str,
    diagnostics: &mut Diagnostics,
) -> Option<Spanned<String>> {
    let value = section.string(key, diagnostics);
    let file = section.string(file_key, diagnostics);
    match (value, file) {
        (Some(_), Some(file)) => {
            diagnostics.error(
                file.span(),
                section.field(file_key),
                format!("give {key} or {file_key}, not both"),
            );
            None
        }
        (Some(value), None) => {
            let span = value.span();
            interpolate(value.get_ref(), &|name| std::env::var(name).ok())
                .map(|password| Spanned::new(span.clone(), password))
                .map_err(|message| diagnostics.error(span, section.field(key), message))
                .ok()
        }
        (None, Some(file)) => read_file(file.get_ref(), file.span())
            .map_err(|message| diagnostics.error(file.span(), section.field(file_key), message))
            .ok(),
        (None, None) => None,
    }
}

/// `text` with each `${NAME}` replaced by `lookup(NAME)`.
fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        result.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or("\"${\" without a closing \"}\"; write ${NAME} to read the variable NAME")?;
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| {
            format!("environment variable {name} is not set (the value reads ${{{name}}})")
        })?;
        result.push_str(&value);
        rest = &after[end + 1..];
    }
    result.push_str(rest);
    Ok(result)
}

/// The file's contents without the one line ending editors add.
fn read_file(path: &str, span: Range<usize>) -> Result<Spanned<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let password = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(&text);
    Ok(Spanned::new(span, password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "DB_PASSWORD").then(|| "s3cret".to_owned())
    }

    #[test]
    fn variables_are_replaced_and_other_text_kept() {
        assert_eq!(interpolate("${DB_PASSWORD}", &lookup).unwrap(), "s3cret");
        assert_eq!(
            interpolate("a$b${DB_PASSWORD}-${DB_PASSWORD}", &lookup).unwrap(),
            "a$bs3cret-s3cret"
        );
        assert_eq!(interpolate("plain", &lookup).unwrap(), "plain");
    }

    #[test]
    fn a_missing_variable_or_brace_is_named() {
        assert_eq!(
            interpolate("${NOPE}", &lookup).unwrap_err(),
            "environment variable NOPE is not set (the value reads ${NOPE})"
        );
        assert!(interpolate("${DB_PASSWORD", &lookup).is_err());
    }

    #[test]
    fn a_file_loses_one_trailing_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        for (written, read) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw", "pw"),
            ("pw\n\n", "pw\n"),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, written).unwrap();
            let password = read_file(path.to_str().unwrap(), 0..0).unwrap();
            assert_eq!(password.get_ref(), read, "{written:?}");
        }
        let missing = dir.path().join("missing");
        let error = read_file(missing.to_str().unwrap(), 0..0).unwrap_err();
        assert!(
            error.starts_with(&format!("cannot read {}: ", missing.display())),
            "{error}"
        );
    }
}
