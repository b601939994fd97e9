//! RELOAD: which settings a running churnstile can take from a re-read
//! configuration file, and which need a restart. Pool sizes and timeouts,
//! users' secrets, auth_type and admin_users apply to the next checkout,
//! session or login; listeners, upstream addresses and credentials, pool
//! modes and the set of databases and users stay as they are, and the
//! administrator is told so.

use std::sync::Arc;

use super::Proxy;
use crate::config::{Config, PoolSettings, load_file};
use crate::pool::PoolLimits;

/// Keys RELOAD changes, as SHOW CONFIG names them.
pub const CHANGEABLE: &[&str] = &[
    "auth_type",
    "admin_users",
    "default_pool_size",
    "min_pool_size",
    "server_lifetime",
    "server_idle_timeout",
    "query_wait_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "server_connect_timeout",
    "server_reset_query",
    "max_prepared_statements",
    "pin_policy",
];

/// Why RELOAD changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("RELOAD needs a configuration file: this churnstile was started without --config")]
    NoConfigFile,
    #[error("configuration not reloaded:\n{0}")]
    Invalid(String),
}

impl Proxy {
    /// Re-reads the configuration file and puts what can change at runtime
    /// in force; returns one note per change that needs a restart.
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let path = self.config_file.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let new = load_file(path).map_err(|errors| ReloadError::Invalid(errors.to_string()))?;
        let (merged, notes) = merge(&self.config.load(), &new);
        self.apply(merged);
        tracing::info!(file = %path.display(), not_applied = ?notes, "configuration reloaded");
        Ok(notes)
    }

    /// Puts `merged` in force: new logins and sessions read it, and every
    /// pool (PostgreSQL and MySQL) takes its database's sizes and timeouts.
    fn apply(&self, merged: Config) {
        for pool in self.pools() {
            if let Some(db) = merged.databases.get(pool.database) {
                let limits = PoolLimits::from(&db.pool);
                if *pool.control.limits() != limits {
                    pool.control.set_limits(limits);
                }
            }
        }
        let merged = Arc::new(merged);
        self.config.store(Arc::clone(&merged));
        self.postgres.reloaded(&merged);
        self.mysql.reloaded();
    }
}

/// Pool settings from `new`, keeping the pool mode of `old` (server
/// connections are shared by the pool's clients, who expect one mode).
fn pool_settings(
    old: &PoolSettings,
    new: &PoolSettings,
    context: &str,
    notes: &mut Vec<String>,
) -> PoolSettings {
    if old.pool_mode != new.pool_mode {
        notes.push(format!("{context}pool_mode needs a restart"));
    }
    PoolSettings {
        pool_mode: old.pool_mode,
        ..new.clone()
    }
}

/// The configuration to run with after reading `new` while running `old`,
/// and one note per change that was not applied because it needs a restart.
fn merge(old: &Config, new: &Config) -> (Config, Vec<String>) {
    let mut notes = Vec::new();
    let mut merged = old.clone();
    let restart = |changed: bool, what: &str, notes: &mut Vec<String>| {
        if changed {
            notes.push(format!("{what} needs a restart"));
        }
    };
    restart(old.listen != new.listen, "[listen]", &mut notes);
    let (was, now) = (&old.general, &new.general);
    restart(
        was.max_client_conn != now.max_client_conn,
        "max_client_conn",
        &mut notes,
    );
    restart(
        was.shutdown_timeout != now.shutdown_timeout,
        "shutdown_timeout",
        &mut notes,
    );
    restart(
        was.worker_threads != now.worker_threads,
        "worker_threads",
        &mut notes,
    );
    restart(
        was.observe.metrics_listen != now.observe.metrics_listen,
        "metrics_listen",
        &mut notes,
    );
    restart(
        was.observe.log_format != now.observe.log_format,
        "log_format",
        &mut notes,
    );
    merged.general.auth_type = now.auth_type;
    merged.general.observe.admin_users = now.observe.admin_users.clone();
    merged.general.observe.stats_users = now.observe.stats_users.clone();
    merged.pool = pool_settings(&old.pool, &new.pool, "[pool] ", &mut notes);

    for (name, db) in &mut merged.databases {
        let Some(new_db) = new.databases.get(name) else {
            notes.push(format!("removing database {name:?} needs a restart"));
            continue;
        };
        let moved = (&db.host, db.port, &db.dbname) != (&new_db.host, new_db.port, &new_db.dbname);
        restart(
            moved,
            &format!("database {name:?}: host, port or dbname"),
            &mut notes,
        );
        db.pool = pool_settings(
            &db.pool,
            &new_db.pool,
            &format!("database {name:?}: "),
            &mut notes,
        );
    }
    for name in new
        .databases
        .keys()
        .filter(|name| !old.databases.contains_key(*name))
    {
        notes.push(format!("adding database {name:?} needs a restart"));
    }
    for (name, user) in &mut merged.users {
        let Some(new_user) = new.users.get(name) else {
            notes.push(format!("removing user {name:?} needs a restart"));
            continue;
        };
        let upstream_changed = (&user.upstream_user, &user.upstream_password)
            != (&new_user.upstream_user, &new_user.upstream_password);
        restart(
            upstream_changed,
            &format!("user {name:?}: upstream_user or upstream_password"),
            &mut notes,
        );
        user.secret = new_user.secret.clone();
    }
    for name in new
        .users
        .keys()
        .filter(|name| !old.users.contains_key(*name))
    {
        notes.push(format!("adding user {name:?} needs a restart"));
    }
    (merged, notes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::parse_str;

    const BASE: &str = "[databases.app]\nport = 5432\n[users.app]\npassword = \"one\"\nupstream_password = \"up\"\n";

    fn config(text: &str) -> Config {
        parse_str(text, "c.toml").unwrap()
    }

    #[test]
    fn sizes_timeouts_and_secrets_apply() {
        let old = config(BASE);
        let new = config(&format!(
            "[pool]\ndefault_pool_size = 3\nquery_wait_timeout = 1\n{}",
            BASE.replace("\"one\"", "\"two\"")
        ));
        let (merged, notes) = merge(&old, &new);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(merged.databases["app"].pool.default_pool_size, 3);
        assert_eq!(merged.pool.query_wait_timeout, Some(Duration::from_secs(1)));
        assert_eq!(merged.users["app"].secret, new.users["app"].secret);
    }

    #[test]
    fn what_needs_a_restart_is_kept_and_named() {
        let old = config(BASE);
        let new = config(
            "[listen]\npostgres = [\"127.0.0.1:7000\"]\n[pool]\npool_mode = \"transaction\"\n\
             [databases.app]\nport = 5433\n[databases.other]\n\
             [users.app]\npassword = \"one\"\nupstream_password = \"up\"\n",
        );
        let (merged, notes) = merge(&old, &new);
        assert_eq!(merged.listen, old.listen);
        assert_eq!(merged.databases["app"].port, 5432);
        assert_eq!(merged.databases["app"].pool.pool_mode, old.pool.pool_mode);
        assert!(!merged.databases.contains_key("other"));
        assert_eq!(
            notes,
            [
                "[listen] needs a restart",
                "[pool] pool_mode needs a restart",
                "database \"app\": host, port or dbname needs a restart",
                "database \"app\": pool_mode needs a restart",
                "adding database \"other\" needs a restart",
            ]
        );
    }
}
