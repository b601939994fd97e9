//! What an import produces: churnstile TOML tables built key by key (in the
//! order the reference lists them), and the list of what was dropped and why.

use std::fmt;

use super::ini::Setting;

/// A setting that could not be carried over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// `file:line` of the setting.
    place: String,
    /// `[section] key`, or more precise (`[databases] app: connect_query`).
    what: String,
    reason: String,
}

impl Dropped {
    pub(super) fn new(setting: &Setting, what: String, reason: impl Into<String>) -> Self {
        Dropped {
            place: setting.place(),
            what,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: not carried over: {}",
            self.place, self.what, self.reason
        )
    }
}

/// One TOML table's `key = value` lines, values already in TOML syntax.
#[derive(Debug, Default, Clone)]
pub struct Table {
    entries: Vec<(String, String)>,
}

impl Table {
    /// A key set again keeps its place and takes the new value.
    fn set(&mut self, key: &str, value: String) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub(super) fn string(&mut self, key: &str, value: &str) {
        self.set(key, toml::Value::String(value.to_owned()).to_string());
    }

    /// An integer or a float as written; anything else stays a string, so
    /// check-config reports it at its place rather than the import guessing.
    pub(super) fn number(&mut self, key: &str, value: &str) {
        let value = value.trim();
        let rendered = if value.parse::<i64>().is_ok() {
            value.to_owned()
        } else if let Ok(float) = value.parse::<f64>() {
            toml::Value::Float(float).to_string()
        } else {
            toml::Value::String(value.to_owned()).to_string()
        };
        self.set(key, rendered);
    }

    pub(super) fn strings(&mut self, key: &str, values: &[String]) {
        let array = values.iter().cloned().map(toml::Value::String).collect();
        self.set(key, toml::Value::Array(array).to_string());
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    pub(super) fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// `[header]` and its lines; nothing for an empty table.
    pub(super) fn render(&self, header: &str, out: &mut String) {
        if self.entries.is_empty() {
            return;
        }
        out.push_str(&format!("\n[{header}]\n"));
        for (key, value) in &self.entries {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
}

/// A database name as a TOML key: bare when it can be, quoted otherwise.
pub(super) fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_toml() {
        let mut table = Table::default();
        table.string("host", "a \"b\"");
        table.number("port", "5432");
        table.number("server_lifetime", "0.5");
        table.number("default_pool_size", "lots");
        table.strings("admin_users", &["x".into(), "y".into()]);
        table.number("port", "6000");
        let mut out = String::new();
        table.render("databases.\"my db\"", &mut out);
        assert_eq!(
            out,
            "\n[databases.\"my db\"]\nhost = 'a \"b\"'\nport = 6000\nserver_lifetime = 0.5\n\
             default_pool_size = \"lots\"\nadmin_users = [\"x\", \"y\"]\n"
        );
        assert_eq!(toml_key("app_1-x"), "app_1-x");
        assert_eq!(toml_key("my.db"), "\"my.db\"");
    }
}
