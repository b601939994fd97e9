//! PgBouncer's `[pgbouncer]` settings mapped to churnstile's `[listen]`,
//! `[general]` and `[pool]` keys; each one churnstile cannot honour is
//! dropped with the reason.

use super::ini::{Setting, relative_to};
use super::output::{Dropped, Table};

/// PgBouncer's default port and Unix socket directory.
pub const DEFAULT_PORT: &str = "6432";
pub const DEFAULT_SOCKET_DIR: &str = "/tmp";

/// `[pool]` keys whose PgBouncer meaning, units (seconds) and zero are
/// churnstile's too; the bool says whether the value is a number.
const POOL: &[(&str, bool)] = &[
    ("pool_mode", false),
    ("default_pool_size", true),
    ("min_pool_size", true),
    ("server_lifetime", true),
    ("server_idle_timeout", true),
    ("query_wait_timeout", true),
    ("client_idle_timeout", true),
    ("client_login_timeout", true),
    ("server_connect_timeout", true),
    ("server_reset_query", false),
    ("max_prepared_statements", true),
];

/// The tables `[pgbouncer]` fills.
#[derive(Debug, Default)]
pub struct Mapped {
    pub listen: Table,
    pub general: Table,
    pub pool: Table,
    /// Where PgBouncer's servers without `host` are: its socket directory.
    pub socket_dir: String,
}

/// Maps every `[pgbouncer]` setting (later ones win, as in PgBouncer).
pub fn map_settings(settings: &[&Setting], dropped: &mut Vec<Dropped>) -> Mapped {
    let mut mapped = Mapped {
        socket_dir: DEFAULT_SOCKET_DIR.to_owned(),
        ..Mapped::default()
    };
    let last = |key: &str| settings.iter().rev().find(|s| s.key == key).copied();
    let port = last("listen_port").map_or(DEFAULT_PORT, |s| s.value.as_str());
    map_listen(last("listen_addr"), port, &mut mapped, dropped);
    for setting in settings {
        if last(&setting.key) != Some(*setting) {
            continue;
        }
        map_one(setting, &mut mapped, dropped);
    }
    mapped
}

fn map_one(setting: &Setting, mapped: &mut Mapped, dropped: &mut Vec<Dropped>) {
    let (key, value) = (setting.key.as_str(), setting.value.as_str());
    let mut drop = |reason: &str| {
        dropped.push(Dropped::new(setting, format!("[pgbouncer] {key}"), reason));
    };
    if let Some((_, number)) = POOL.iter().find(|(name, _)| *name == key) {
        if *number {
            mapped.pool.number(key, value);
        } else {
            mapped.pool.string(key, value);
        }
        return;
    }
    match key {
        "listen_addr" | "listen_port" => {}
        "unix_socket_dir" => {
            mapped.listen.string("unix_socket_dir", value);
            mapped.socket_dir = value.to_owned();
        }
        "max_client_conn" => mapped.general.number(key, value),
        "auth_type" => match value {
            "md5" | "scram-sha-256" | "trust" => mapped.general.string(key, value),
            _ => drop(auth_type_reason(value)),
        },
        "auth_file" => {
            // Absolute, so the TOML may be written anywhere.
            let path = relative_to(&setting.file, value);
            let path = std::path::absolute(&path).unwrap_or(path);
            mapped.general.string(key, &path.display().to_string());
        }
        "admin_users" | "stats_users" => mapped.general.strings(key, &list(value)),
        other => drop(dropped_reason(other)),
    }
}

/// `listen_addr` (a comma-separated list; `*` is every IPv4 address) and
/// `listen_port` as `[listen] postgres` addresses; `unix_socket_port`
/// follows `listen_port`, as PgBouncer names its socket after it.
fn map_listen(addr: Option<&Setting>, port: &str, mapped: &mut Mapped, dropped: &mut Vec<Dropped>) {
    mapped.listen.number("unix_socket_port", port);
    let Some(addr) = addr else {
        // PgBouncer without listen_addr listens on its Unix socket only.
        mapped.listen.strings("postgres", &[]);
        return;
    };
    let mut addresses = Vec::new();
    for host in list(&addr.value) {
        let ip = match host.as_str() {
            "*" => "0.0.0.0".to_owned(),
            "localhost" => "127.0.0.1".to_owned(),
            ip if ip.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{ip}]"),
            ip if ip.parse::<std::net::Ipv4Addr>().is_ok() => ip.to_owned(),
            name => {
                dropped.push(Dropped::new(
                    addr,
                    format!("[pgbouncer] listen_addr {name}"),
                    "churnstile listens on IP addresses only; write the address this name resolves to",
                ));
                continue;
            }
        };
        addresses.push(format!("{ip}:{port}"));
    }
    mapped.listen.strings("postgres", &addresses);
}

/// A comma- or space-separated list, as PgBouncer writes user lists.
fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' ', '\t'])
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn auth_type_reason(value: &str) -> &'static str {
    match value {
        "plain" => {
            "churnstile never asks clients for a cleartext password; auth_type md5 (the default) accepts the same users"
        }
        "any" => {
            "churnstile has no auth_type any (any user name, forced database user); use trust with the users listed"
        }
        "hba" | "cert" | "peer" | "pam" | "ldap" => {
            "churnstile supports auth_type trust, md5 and scram-sha-256 only; md5 (the default) is used"
        }
        _ => "unknown auth_type; md5 (the default) is used",
    }
}

fn dropped_reason(key: &str) -> &'static str {
    match key {
        "logfile" | "syslog" | "syslog_facility" | "syslog_ident" => {
            "churnstile logs to stderr (log_format text or json); let the service manager keep the log"
        }
        "pidfile" => "churnstile does not write a pid file; the service manager knows its pid",
        "user" => "churnstile does not switch users; run it as the right user",
        "auth_user" | "auth_query" | "auth_dbname" => {
            "churnstile does not look passwords up in the database yet; put the users in auth_file or [users]"
        }
        "auth_hba_file" | "auth_ident_file" => {
            "churnstile has no hba rules; it authenticates with auth_type"
        }
        "reserve_pool_size" | "reserve_pool_timeout" => {
            "churnstile has no reserve pool; raise default_pool_size instead"
        }
        "max_db_connections"
        | "max_user_connections"
        | "max_db_client_connections"
        | "max_user_client_connections" => {
            "churnstile limits server connections per (database, user) pool only (default_pool_size)"
        }
        "log_connections" | "log_disconnections" | "log_pooler_errors" | "log_stats"
        | "verbose" | "stats_period" => {
            "churnstile logs at a level set by RUST_LOG and exports statistics as Prometheus metrics (metrics_listen)"
        }
        key if key.starts_with("client_tls_") || key.starts_with("server_tls_") => {
            "churnstile has no TLS settings; terminate TLS in front of it"
        }
        key if key.starts_with("tcp_") || key.starts_with("dns_") => {
            "churnstile uses the kernel's defaults for this"
        }
        _ => "no churnstile equivalent",
    }
}
