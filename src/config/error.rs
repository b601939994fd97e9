//! Configuration errors and where they point: each error carries the file,
//! the 1-based line and column, the dotted field path and what to fix.
//! `Diagnostics` collects them while a file is checked, so one run reports
//! every mistake instead of the first.

use std::fmt;
use std::ops::Range;

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error is about the file as a whole (it could not be read).
    pub line: usize,
    /// 1-based, counted in characters; 0 together with `line`.
    pub column: usize,
    /// Dotted path such as `databases.app.default_pool_size`; empty for
    /// TOML syntax errors and read errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every mistake found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

/// Collects errors for one file, turning byte spans into line and column.
pub(super) struct Diagnostics<'a> {
    origin: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str) -> Self {
        Diagnostics {
            origin,
            text,
            errors: Vec::new(),
        }
    }

    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.origin.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// An error found in another file (an `auth_file`), already located.
    pub(super) fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// `value` when nothing was wrong, else every error in file order.
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// The errors collected so far, in file order.
    pub(super) fn into_errors(self) -> ConfigErrors {
        let mut errors = self.errors;
        // The configuration's own errors first, then those of an auth_file.
        let origin = self.origin;
        errors.sort_by_key(|error| (error.file != origin, error.line, error.column));
        ConfigErrors { errors }
    }
}

/// 1-based line and character column of a byte offset; offsets past the end
/// or inside a character are clamped rather than trusted.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "ab\nçd = 1\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 4), (2, 1));
        assert_eq!(line_column(text, 999), (3, 1));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn errors_come_out_in_file_order_one_per_line() {
        let mut diagnostics = Diagnostics::new("c.toml", "a = 1\nb = 2\n");
        diagnostics.error(6..7, "b", "second");
        diagnostics.error(0..1, "a", "first");
        let errors = diagnostics.finish(()).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "c.toml:1:1: a: first\nc.toml:2:1: b: second"
        );
    }

    #[test]
    fn whole_file_errors_omit_position_and_field() {
        let error = ConfigError {
            file: "/nope.toml".to_owned(),
            line: 0,
            column: 0,
            field: String::new(),
            message: "cannot read".to_owned(),
        };
        assert_eq!(error.to_string(), "/nope.toml: cannot read");
        assert_eq!(Diagnostics::new("x", "").finish(7), Ok(7));
    }
}
