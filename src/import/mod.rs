//! `churnstile import-pgbouncer`: reads a `pgbouncer.ini` (and what it
//! `%include`s), writes the equivalent churnstile TOML, and lists every
//! setting it could not carry over with the reason. The result is checked
//! the way `check-config` checks a file before it is handed back.

mod databases;
mod ini;
mod output;
mod settings;

use std::path::Path;

pub use ini::IniError;
pub use output::Dropped;

use crate::config::{ConfigErrors, parse_str};
use databases::database;
use ini::{Setting, read_ini};
use output::toml_key;
use settings::map_settings;

/// The converted configuration and what it leaves behind.
#[derive(Debug)]
pub struct Import {
    /// churnstile TOML, ready for `check-config`.
    pub toml: String,
    /// In file order; empty when everything was carried over.
    pub dropped: Vec<Dropped>,
    /// Why `toml` does not pass check-config (it is still written, for the
    /// operator to finish by hand); `None` when it does.
    pub invalid: Option<ConfigErrors>,
}

/// Converts the PgBouncer configuration at `path`; `output` is where the
/// TOML will be written, so relative paths in it are checked from there.
pub fn import_pgbouncer(path: &Path, output: &Path) -> Result<Import, IniError> {
    let settings = read_ini(path)?;
    let mut dropped = Vec::new();
    let in_section =
        |name: &str| -> Vec<&Setting> { settings.iter().filter(|s| s.section == name).collect() };
    let mapped = map_settings(&in_section("pgbouncer"), &mut dropped);
    let mut toml = format!(
        "# Imported from {} by churnstile import-pgbouncer.\n",
        path.display()
    );
    mapped.listen.render("listen", &mut toml);
    mapped.general.render("general", &mut toml);
    mapped.pool.render("pool", &mut toml);
    for entry in last_of_each(&in_section("databases")) {
        if let Some((name, table)) = database(entry, &mapped.socket_dir, &mut dropped) {
            table.render(&format!("databases.{}", toml_key(&name)), &mut toml);
        }
    }
    for user in in_section("users") {
        let what = format!("[users] {}", user.key);
        dropped.push(Dropped::new(
            user,
            what,
            "churnstile has no per-user pool settings; they come from [pool] and the database",
        ));
    }
    for other in settings
        .iter()
        .filter(|s| !["pgbouncer", "databases", "users"].contains(&s.section.as_str()))
    {
        let what = format!("[{}] {}", other.section, other.key);
        dropped.push(Dropped::new(
            other,
            what,
            "PgBouncer has no such section either",
        ));
    }
    let invalid = parse_str(&toml, &output.display().to_string()).err();
    Ok(Import {
        toml,
        dropped,
        invalid,
    })
}

/// Each name once, at its last definition (a later `%include` overrides).
fn last_of_each<'s>(entries: &[&'s Setting]) -> Vec<&'s Setting> {
    let mut kept: Vec<&Setting> = Vec::new();
    for entry in entries {
        kept.retain(|earlier| earlier.key != entry.key);
        kept.push(entry);
    }
    kept
}
