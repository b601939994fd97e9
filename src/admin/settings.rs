//! SHOW CONFIG's rows: every global setting as text, beside its default
//! and whether RELOAD changes it.

use std::time::Duration;

use std::path::PathBuf;

use crate::config::{
    ClientTls, Config, GeneralConfig, ListenConfig, LogFormat, PinPolicy, PoolMode, PoolSettings,
    ServerTls, TlsVersions,
};

/// A configuration with every default and nothing configured.
pub(super) fn default_config() -> Config {
    Config {
        listen: ListenConfig::default(),
        general: GeneralConfig::default(),
        pool: PoolSettings::default(),
        databases: Default::default(),
        users: Default::default(),
    }
}

fn seconds(duration: Duration) -> String {
    let value = duration.as_secs_f64();
    if value.fract() == 0.0 {
        format!("{}", duration.as_secs())
    } else {
        format!("{value}")
    }
}

/// As PgBouncer shows a boolean setting.
fn flag(on: bool) -> String {
    u8::from(on).to_string()
}

fn optional_seconds(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "0".to_owned(), seconds)
}

/// Every global setting as (key, value text), in SHOW CONFIG's order.
pub(super) fn config_settings(config: &Config) -> Vec<(&'static str, String)> {
    let listen = &config.listen;
    let general = &config.general;
    let pool = &config.pool;
    let addresses: Vec<String> = listen.postgres.iter().map(ToString::to_string).collect();
    let mut settings = vec![
        ("listen_postgres", addresses.join(", ")),
        (
            "unix_socket_dir",
            listen
                .unix_socket_dir
                .as_ref()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default(),
        ),
        ("unix_socket_port", listen.unix_socket_port.to_string()),
        ("auth_type", general.auth_type.to_string()),
        ("max_client_conn", general.max_client_conn.to_string()),
        ("shutdown_timeout", seconds(general.shutdown_timeout)),
        ("worker_threads", general.worker_threads.to_string()),
        ("tcp_keepalive", general.tcp.keepalive.to_string()),
        ("tcp_keepidle", optional_seconds(general.tcp.keepidle)),
        ("tcp_keepintvl", optional_seconds(general.tcp.keepintvl)),
        ("tcp_keepcnt", general.tcp.keepcnt.unwrap_or(0).to_string()),
        (
            "tcp_user_timeout",
            optional_seconds(general.tcp.user_timeout),
        ),
        ("so_reuseport", flag(general.so_reuseport)),
        (
            "metrics_listen",
            general
                .observe
                .metrics_listen
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
        ),
        ("admin_users", general.observe.admin_users.join(", ")),
        (
            "log_format",
            match general.observe.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_owned(),
        ),
        ("log_connections", flag(general.observe.log_connections)),
        (
            "log_disconnections",
            flag(general.observe.log_disconnections),
        ),
        ("stats_period", seconds(general.observe.stats_period)),
        ("log_pooler_errors", flag(general.observe.log_pooler_errors)),
        ("pool_mode", pool_mode_name(pool.pool_mode).to_owned()),
        ("default_pool_size", pool.default_pool_size.to_string()),
        ("min_pool_size", pool.min_pool_size.to_string()),
        ("server_lifetime", seconds(pool.server_lifetime)),
        (
            "server_idle_timeout",
            optional_seconds(pool.server_idle_timeout),
        ),
        (
            "query_wait_timeout",
            optional_seconds(pool.query_wait_timeout),
        ),
        (
            "client_idle_timeout",
            optional_seconds(pool.client_idle_timeout),
        ),
        (
            "client_login_timeout",
            optional_seconds(pool.client_login_timeout),
        ),
        (
            "server_connect_timeout",
            seconds(pool.server_connect_timeout),
        ),
        ("server_reset_query", pool.server_reset_query.clone()),
        (
            "max_prepared_statements",
            pool.max_prepared_statements.to_string(),
        ),
        (
            "pin_policy",
            match pool.pin_policy {
                PinPolicy::Pin => "pin",
                PinPolicy::Reject => "reject",
            }
            .to_owned(),
        ),
        ("max_packet_size", pool.max_packet_size.to_string()),
    ];
    settings.extend(client_tls_settings(&general.client_tls));
    settings.extend(server_tls_settings(&pool.server_tls));
    settings
}

fn client_tls_settings(tls: &ClientTls) -> [(&'static str, String); 5] {
    [
        ("client_tls_sslmode", tls.sslmode.name().to_owned()),
        ("client_tls_cert_file", path(&tls.cert_file)),
        ("client_tls_key_file", path(&tls.key_file)),
        ("client_tls_ca_file", path(&tls.ca_file)),
        ("client_tls_protocols", protocols(tls.protocols)),
    ]
}

fn server_tls_settings(tls: &ServerTls) -> [(&'static str, String); 5] {
    [
        ("server_tls_sslmode", tls.sslmode.name().to_owned()),
        ("server_tls_ca_file", path(&tls.ca_file)),
        ("server_tls_cert_file", path(&tls.cert_file)),
        ("server_tls_key_file", path(&tls.key_file)),
        ("server_tls_protocols", protocols(tls.protocols)),
    ]
}

fn path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// PgBouncer's spelling: `secure` for TLS 1.2 and 1.3.
fn protocols(versions: TlsVersions) -> String {
    match (versions.tls12, versions.tls13) {
        (true, true) => "secure",
        (true, false) => "tlsv1.2",
        _ => "tlsv1.3",
    }
    .to_owned()
}

pub(super) fn pool_mode_name(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
        PoolMode::Statement => "statement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::CHANGEABLE;

    #[test]
    fn settings_list_every_key_with_seconds_as_numbers() {
        let settings = config_settings(&default_config());
        let get = |key| {
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("server_lifetime"), Some("3600"));
        assert_eq!(get("client_idle_timeout"), Some("0"));
        assert_eq!(get("pool_mode"), Some("session"));
        assert_eq!(get("client_tls_sslmode"), Some("disable"));
        assert_eq!(get("server_tls_sslmode"), Some("prefer"));
        assert_eq!(get("server_tls_protocols"), Some("secure"));
        assert_eq!(get("client_tls_cert_file"), Some(""));
        assert_eq!(get("tcp_keepidle"), Some("60"));
        assert_eq!(get("tcp_user_timeout"), Some("0"));
        assert_eq!(get("max_packet_size"), Some("67108864"));
        for key in CHANGEABLE {
            assert!(get(key).is_some(), "{key}");
        }
    }
}
