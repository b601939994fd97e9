//! Reading one TOML table of the configuration: typed getters that
//! deserialize a single value at a time with serde, and report a wrong type,
//! an out-of-range number or an unknown key at its own position instead of
//! stopping.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::Diagnostics;

/// A TOML table together with its dotted path, e.g. `databases.app`.
pub(super) struct Section<'t, 'i> {
    path: String,
    span: Range<usize>,
    table: &'t DeTable<'i>,
}

impl<'t, 'i> Section<'t, 'i> {
    pub(super) fn root(document: &'t Spanned<DeTable<'i>>) -> Self {
        Section {
            path: String::new(),
            span: document.span(),
            table: document.get_ref(),
        }
    }

    /// The sub-table under `key`, or `None` (with an error) when it is not a table.
    pub(super) fn child(
        &self,
        key: &str,
        value: &'t Spanned<DeValue<'i>>,
        diagnostics: &mut Diagnostics,
    ) -> Option<Self> {
        let path = self.field(key);
        match value.get_ref() {
            DeValue::Table(table) => Some(Section {
                path,
                span: value.span(),
                table,
            }),
            other => {
                diagnostics.error(
                    value.span(),
                    path,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// The sub-table under `key` when present.
    pub(super) fn section(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Self> {
        self.table
            .get(key)
            .and_then(|value| self.child(key, value, diagnostics))
    }

    pub(super) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// Dotted path of `key` inside this table.
    pub(super) fn field(&self, key: &str) -> String {
        let key = display_key(key);
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub(super) fn entries(
        &self,
    ) -> impl Iterator<
        Item = (
            &'t Spanned<std::borrow::Cow<'i, str>>,
            &'t Spanned<DeValue<'i>>,
        ),
    > {
        self.table.iter()
    }

    pub(super) fn value_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get(key).map(Spanned::span)
    }

    /// Reports every key not in `allowed`, listing the allowed ones; `kind`
    /// names what a key is here ("key", "section").
    pub(super) fn reject_unknown_keys(
        &self,
        allowed: &[&str],
        kind: &str,
        diagnostics: &mut Diagnostics,
    ) {
        for (key, _) in self.table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                diagnostics.error(
                    key.span(),
                    self.field(key.get_ref()),
                    format!("unknown {kind}; allowed {kind}s: {}", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn string(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Spanned<String>> {
        let value = self.value_of_kind(key, "a string", DeValue::is_str, diagnostics)?;
        self.deserialize(key, value, diagnostics)
    }

    /// A string naming one variant of `T`; serde's message lists the allowed ones.
    pub(super) fn choice<T: DeserializeOwned>(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<T> {
        let value = self.value_of_kind(key, "a string", DeValue::is_str, diagnostics)?;
        self.deserialize(key, value, diagnostics)
            .map(Spanned::into_inner)
    }

    /// `true` or `false`.
    pub(super) fn flag(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<bool> {
        let value = self.value_of_kind(key, "true or false", DeValue::is_bool, diagnostics)?;
        self.deserialize(key, value, diagnostics)
            .map(Spanned::into_inner)
    }

    /// An integer no smaller than `min`.
    pub(super) fn count(
        &self,
        key: &str,
        min: usize,
        diagnostics: &mut Diagnostics,
    ) -> Option<Spanned<usize>> {
        let value = self.integer(key, diagnostics)?;
        match usize::try_from(*value.get_ref()) {
            Ok(count) if count >= min => Some(Spanned::new(value.span(), count)),
            _ => {
                diagnostics.error(
                    value.span(),
                    self.field(key),
                    format!("must be at least {min}, got {}", value.get_ref()),
                );
                None
            }
        }
    }

    /// A TCP port, 1 to 65535.
    pub(super) fn port(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<u16> {
        let value = self.integer(key, diagnostics)?;
        match u16::try_from(*value.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                diagnostics.error(
                    value.span(),
                    self.field(key),
                    format!("port must be between 1 and 65535, got {}", value.get_ref()),
                );
                None
            }
        }
    }

    /// Seconds as an integer or a float; never negative, never infinite.
    pub(super) fn seconds(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Spanned<Duration>> {
        let is_number = |value: &DeValue<'i>| value.is_integer() || value.is_float();
        let value = self.value_of_kind(key, "a number of seconds", is_number, diagnostics)?;
        let seconds: Spanned<f64> = self.deserialize(key, value, diagnostics)?;
        let span = seconds.span();
        let seconds = seconds.into_inner();
        match Duration::try_from_secs_f64(seconds) {
            Ok(duration) => Some(Spanned::new(span, duration)),
            Err(_) => {
                let message = if seconds.is_finite() && seconds > 0.0 {
                    "is too large a number of seconds".to_owned()
                } else {
                    format!("must be a finite, non-negative number of seconds, got {seconds}")
                };
                diagnostics.error(span, self.field(key), message);
                None
            }
        }
    }

    /// An array of strings, each with its own span so a bad element is
    /// reported where it stands; `None` if any element is not a string.
    pub(super) fn strings(
        &self,
        key: &str,
        diagnostics: &mut Diagnostics,
    ) -> Option<Vec<Spanned<String>>> {
        let value =
            self.value_of_kind(key, "an array of strings", DeValue::is_array, diagnostics)?;
        let elements = value.get_ref().as_array()?;
        let mut strings = Vec::with_capacity(elements.len());
        let mut all_strings = true;
        for (index, element) in elements.iter().enumerate() {
            match element.get_ref() {
                DeValue::String(text) => {
                    strings.push(Spanned::new(element.span(), text.to_string()));
                }
                other => {
                    all_strings = false;
                    diagnostics.error(
                        element.span(),
                        format!("{}[{index}]", self.field(key)),
                        format!("expected a string, found {}", other.type_str()),
                    );
                }
            }
        }
        all_strings.then_some(strings)
    }

    fn integer(&self, key: &str, diagnostics: &mut Diagnostics) -> Option<Spanned<i64>> {
        let value = self.value_of_kind(key, "an integer", DeValue::is_integer, diagnostics)?;
        // The kind is right, so the only failure left is a number beyond 64 bits.
        match i64::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(integer) => Some(Spanned::new(value.span(), integer)),
            Err(_) => {
                diagnostics.error(value.span(), self.field(key), "integer is out of range");
                None
            }
        }
    }

    /// The value under `key` if present and of the expected kind.
    fn value_of_kind(
        &self,
        key: &str,
        expected: &str,
        is_kind: impl Fn(&DeValue<'i>) -> bool,
        diagnostics: &mut Diagnostics,
    ) -> Option<&'t Spanned<DeValue<'i>>> {
        let value = self.table.get(key)?;
        if is_kind(value.get_ref()) {
            return Some(value);
        }
        diagnostics.error(
            value.span(),
            self.field(key),
            format!("expected {expected}, found {}", value.get_ref().type_str()),
        );
        None
    }

    fn deserialize<T: DeserializeOwned>(
        &self,
        key: &str,
        value: &Spanned<DeValue<'i>>,
        diagnostics: &mut Diagnostics,
    ) -> Option<Spanned<T>> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(parsed) => Some(Spanned::new(value.span(), parsed)),
            Err(error) => {
                diagnostics.error(value.span(), self.field(key), error.message());
                None
            }
        }
    }
}

/// A key as it would be written in TOML: bare when possible, quoted otherwise.
fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T>(text: &str, read: impl Fn(&Section, &mut Diagnostics) -> T) -> (T, Vec<String>) {
        let document = DeTable::parse(text).unwrap();
        let mut diagnostics = Diagnostics::new("t.toml", text);
        let root = Section::root(&document);
        let section = root.section("s", &mut diagnostics).unwrap();
        let result = read(&section, &mut diagnostics);
        let errors = diagnostics.into_errors().errors;
        let errors = errors.iter().map(ToString::to_string).collect();
        (result, errors)
    }

    #[test]
    fn reads_each_kind() {
        let text = "[s]\nname = \"x\"\nn = 3\nport = 5432\nt = 1.5\nlist = [\"a\", \"b\"]\n";
        let ((name, n, port, t, list), errors) = check(text, |s, d| {
            (
                s.string("name", d).map(Spanned::into_inner),
                s.count("n", 1, d).map(Spanned::into_inner),
                s.port("port", d),
                s.seconds("t", d).map(Spanned::into_inner),
                s.strings("list", d)
                    .map(|l| l.into_iter().map(Spanned::into_inner).collect::<Vec<_>>()),
            )
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(name.as_deref(), Some("x"));
        assert_eq!(n, Some(3));
        assert_eq!(port, Some(5432));
        assert_eq!(t, Some(Duration::from_millis(1500)));
        assert_eq!(list, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn absent_keys_are_none_without_error() {
        let (value, errors) = check("[s]\n", |s, d| s.string("name", d));
        assert!(value.is_none());
        assert!(errors.is_empty());
    }

    #[test]
    fn wrong_values_are_reported_where_they_stand() {
        let text = "[s]\nname = 1\nn = -1\nport = 70000\nt = -2\nu = nan\nlist = [\"a\", 2]\n\
                    big = 99999999999999999999\nlong = 1e300\n";
        let (_, errors) = check(text, |s, d| {
            s.string("name", d);
            s.count("n", 0, d);
            s.port("port", d);
            s.seconds("t", d);
            s.seconds("u", d);
            s.strings("list", d);
            s.count("big", 0, d);
            s.seconds("long", d);
        });
        assert_eq!(
            errors,
            [
                "t.toml:2:8: s.name: expected a string, found integer",
                "t.toml:3:5: s.n: must be at least 0, got -1",
                "t.toml:4:8: s.port: port must be between 1 and 65535, got 70000",
                "t.toml:5:5: s.t: must be a finite, non-negative number of seconds, got -2",
                "t.toml:6:5: s.u: must be a finite, non-negative number of seconds, got NaN",
                "t.toml:7:14: s.list[1]: expected a string, found integer",
                "t.toml:8:7: s.big: integer is out of range",
                "t.toml:9:8: s.long: is too large a number of seconds",
            ]
        );
    }

    #[test]
    fn unknown_keys_list_the_allowed_ones() {
        let (_, errors) = check("[s]\nsize = 1\n", |s, d| {
            s.reject_unknown_keys(&["a", "b"], "key", d)
        });
        assert_eq!(
            errors,
            ["t.toml:2:1: s.size: unknown key; allowed keys: a, b"]
        );
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        assert_eq!(display_key("app_1-x"), "app_1-x");
        assert_eq!(display_key("my.db"), "\"my.db\"");
        assert_eq!(display_key(""), "\"\"");
    }
}
