//! RELOAD: which settings a running churnstile can take from a re-read
//! configuration file, and which need a restart. Databases and users are
//! added, removed and changed (a pool whose upstream, credentials or pool
//! mode changed is replaced; the old one closes as its clients let go, and
//! their next transaction runs on the new one); pool sizes and timeouts,
//! secrets, auth_type, admin_users and the TLS settings and files apply to
//! the next checkout, session, login or handshake; listeners and
//! process-wide settings stay as they are, and the administrator is told
//! so.

use std::sync::Arc;

use super::Proxy;
use super::tls::{TlsSetupError, build_tls};
use crate::config::{Config, load_file};

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
    "pool_mode",
    "client_tls_sslmode",
    "client_tls_cert_file",
    "client_tls_key_file",
    "client_tls_ca_file",
    "client_tls_protocols",
    "server_tls_sslmode",
    "server_tls_ca_file",
    "server_tls_cert_file",
    "server_tls_key_file",
    "server_tls_protocols",
    "max_packet_size",
];

/// Why RELOAD changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("RELOAD needs a configuration file: this churnstile was started without --config")]
    NoConfigFile,
    #[error("configuration not reloaded:\n{0}")]
    Invalid(String),
    #[error("configuration not reloaded, the TLS files in force are kept: {0}")]
    Tls(#[from] TlsSetupError),
}

impl Proxy {
    /// Re-reads the configuration file and puts what can change at runtime
    /// in force; returns one note per change that needs a restart.
    /// A refused reload is logged as well as returned, so whoever sent
    /// RELOAD (or SIGHUP) is not the only one who learns why.
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let result = self.try_reload();
        if let Err(error) = &result {
            tracing::warn!(%error, "RELOAD refused; the configuration in force is kept");
        }
        result
    }

    fn try_reload(&self) -> Result<Vec<String>, ReloadError> {
        let path = self.config_file.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let new = load_file(path).map_err(|errors| ReloadError::Invalid(errors.to_string()))?;
        let (merged, notes) = merge(&self.config.load(), &new);
        // New handshakes use the new files; established sessions keep theirs.
        let tls = build_tls(&merged)?;
        self.tls.store(Arc::new(tls));
        self.apply(merged);
        tracing::info!(file = %path.display(), not_applied = ?notes, "configuration reloaded");
        Ok(notes)
    }

    /// Puts `merged` in force: each protocol first builds, keeps or closes
    /// its pools to match it, then new logins and sessions read it.
    fn apply(&self, merged: Config) {
        self.postgres.reload(&merged);
        self.mysql.reload(&merged, &self.tls.load());
        self.config.store(Arc::new(merged));
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
    // Listeners' accepted clients inherit them: one set for the process.
    restart(was.tcp != now.tcp, "the tcp_* keys", &mut notes);
    merged.general.auth_type = now.auth_type;
    merged.general.client_tls = now.client_tls.clone();
    merged.general.observe.admin_users = now.observe.admin_users.clone();
    merged.general.observe.stats_users = now.observe.stats_users.clone();
    merged.pool = new.pool.clone();
    merged.databases = new.databases.clone();
    merged.users = new.users.clone();
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
    fn databases_users_and_pool_modes_apply_and_only_restart_keys_are_named() {
        let old = config(BASE);
        let new = config(
            "[listen]\npostgres = [\"127.0.0.1:7000\"]\n[pool]\npool_mode = \"transaction\"\n\
             [databases.app]\nport = 5433\n[databases.other]\n\
             [users.other]\npassword = \"two\"\n",
        );
        let (merged, notes) = merge(&old, &new);
        assert_eq!(merged.listen, old.listen);
        assert_eq!(merged.databases["app"].port, 5433);
        assert_eq!(merged.pool.pool_mode, new.pool.pool_mode);
        assert!(merged.databases.contains_key("other"));
        assert!(merged.users.contains_key("other"));
        assert!(!merged.users.contains_key("app"));
        assert_eq!(notes, ["[listen] needs a restart"]);
    }

    #[test]
    fn tls_settings_apply() {
        let old = config(BASE);
        let new = config(&format!(
            "[general]\nclient_tls_protocols = \"tlsv1.3\"\n\
             [pool]\nserver_tls_sslmode = \"require\"\n{BASE}"
        ));
        let (merged, notes) = merge(&old, &new);
        assert!(notes.is_empty(), "{notes:?}");
        assert!(!merged.general.client_tls.protocols.tls12);
        assert_eq!(
            merged.databases["app"].pool.server_tls.sslmode,
            crate::config::ServerTlsMode::Require
        );
    }
}
