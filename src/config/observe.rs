//! The `[general]` keys that let operators see into churnstile:
//! `metrics_listen` (the Prometheus endpoint), `admin_users` (who may use
//! the admin console) and `log_format`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::error::Diagnostics;
use super::section::Section;
use super::types::{LogFormat, Observability, UserConfig};

/// The keys this file reads, for `[general]`'s list of allowed keys.
pub(super) const OBSERVE_KEYS: &[&str] = &[
    "metrics_listen",
    "admin_users",
    "stats_users",
    "log_format",
    "log_connections",
    "log_disconnections",
    "stats_period",
    "log_pooler_errors",
];

/// The observability keys of `[general]`; the admin users are checked
/// against `users` so a typo is an error, not a console nobody can open.
pub(super) fn read_observability(
    section: &Section,
    users: &BTreeMap<String, UserConfig>,
    diagnostics: &mut Diagnostics,
) -> Observability {
    let mut observe = Observability::default();
    if let Some(addr) = section.string("metrics_listen", diagnostics) {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(parsed) => observe.metrics_listen = Some(parsed),
            Err(_) => diagnostics.error(
                addr.span(),
                section.field("metrics_listen"),
                format!(
                    "{:?} is not an IP address and port such as \"127.0.0.1:9127\"",
                    addr.get_ref()
                ),
            ),
        }
    }
    observe.admin_users = console_users(section, "admin_users", users, diagnostics);
    observe.stats_users = console_users(section, "stats_users", users, diagnostics);
    if let Some(format) = section.choice::<LogFormat>("log_format", diagnostics) {
        observe.log_format = format;
    }
    if let Some(on) = section.boolean("log_connections", diagnostics) {
        observe.log_connections = on;
    }
    if let Some(on) = section.boolean("log_disconnections", diagnostics) {
        observe.log_disconnections = on;
    }
    if let Some(on) = section.boolean("log_pooler_errors", diagnostics) {
        observe.log_pooler_errors = on;
    }
    if let Some(period) = section.seconds("stats_period", diagnostics) {
        observe.stats_period = period.into_inner();
    }
    observe
}

/// The users listed under `key`, each checked against `[users]`.
fn console_users(
    section: &Section,
    key: &str,
    users: &BTreeMap<String, UserConfig>,
    diagnostics: &mut Diagnostics,
) -> Vec<String> {
    let mut listed = Vec::new();
    for user in section.strings(key, diagnostics).unwrap_or_default() {
        if !users.contains_key(user.get_ref()) {
            diagnostics.error(
                user.span(),
                section.field(key),
                format!(
                    "{:?} is not in [users]; console users log in like any other user",
                    user.get_ref()
                ),
            );
        }
        listed.push(user.into_inner());
    }
    listed
}

#[cfg(test)]
mod tests {
    use crate::config::{LogFormat, parse_str};

    const BASE: &str = "[databases.app]\n[users.admin]\npassword = \"x\"\n";

    #[test]
    fn keys_are_read() {
        let text = format!(
            "[general]\nmetrics_listen = \"127.0.0.1:9127\"\nadmin_users = [\"admin\"]\nlog_format = \"json\"\n{BASE}"
        );
        let config = parse_str(&text, "c.toml").unwrap();
        let observe = &config.general.observe;
        assert_eq!(
            observe.metrics_listen,
            Some("127.0.0.1:9127".parse().unwrap())
        );
        assert_eq!(observe.admin_users, ["admin"]);
        assert_eq!(observe.log_format, LogFormat::Json);
    }

    #[test]
    fn log_keys_are_read_and_default_as_pgbouncer() {
        let defaults = parse_str(BASE, "c.toml").unwrap().general.observe;
        assert!(defaults.log_connections && defaults.log_disconnections);
        assert_eq!(defaults.stats_period, std::time::Duration::from_secs(60));
        let text = format!(
            "[general]\nlog_connections = false\nlog_disconnections = false\nstats_period = 1\n{BASE}"
        );
        let observe = parse_str(&text, "c.toml").unwrap().general.observe;
        assert!(!observe.log_connections && !observe.log_disconnections);
        assert_eq!(observe.stats_period, std::time::Duration::from_secs(1));
        let error = parse_str(&format!("[general]\nlog_connections = 1\n{BASE}"), "c.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("general.log_connections"), "{error}");
    }

    #[test]
    fn absent_keys_mean_no_endpoint_no_admins_and_text_logs() {
        let config = parse_str(BASE, "c.toml").unwrap();
        let observe = &config.general.observe;
        assert_eq!(observe.metrics_listen, None);
        assert!(observe.admin_users.is_empty());
        assert_eq!(observe.log_format, LogFormat::Text);
    }

    #[test]
    fn mistakes_point_at_the_value() {
        let text = format!(
            "[general]\nmetrics_listen = \"localhost:9127\"\nadmin_users = [\"root\"]\nlog_format = \"xml\"\n{BASE}"
        );
        let errors: Vec<String> = parse_str(&text, "c.toml")
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("c.toml:2:18: general.metrics_listen: \"localhost:9127\" is not"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("c.toml:3:16: general.admin_users: \"root\" is not in [users]"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].starts_with("c.toml:4:14: general.log_format: unknown variant `xml`"),
            "{}",
            errors[2]
        );
    }
}
