//! The `[general]` keys that shape TCP connections, with PgBouncer's names:
//! `tcp_keepalive`, `tcp_keepidle`, `tcp_keepintvl`, `tcp_keepcnt` and
//! `tcp_user_timeout`. They apply to upstream connections and to the
//! listeners, whose accepted clients inherit them.

use std::time::Duration;

use super::error::Diagnostics;
use super::section::Section;

/// The keys this file reads, for `[general]`'s list of allowed keys.
pub(super) const TCP_KEYS: &[&str] = &[
    "tcp_keepalive",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_keepcnt",
    "tcp_user_timeout",
];

/// Keepalive and user timeout of churnstile's TCP sockets; `None` leaves
/// the operating system's default (a 0 in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSettings {
    /// SO_KEEPALIVE: probe idle connections so dead peers are noticed.
    pub keepalive: bool,
    /// Idle time before the first probe (TCP_KEEPIDLE).
    pub keepidle: Option<Duration>,
    /// Time between probes (TCP_KEEPINTVL).
    pub keepintvl: Option<Duration>,
    /// Unanswered probes before the connection is dropped (TCP_KEEPCNT).
    pub keepcnt: Option<u32>,
    /// How long sent data may stay unacknowledged before the connection
    /// is dropped (TCP_USER_TIMEOUT).
    pub user_timeout: Option<Duration>,
}

impl TcpSettings {
    /// Keepalive on, a dead idle peer noticed after 60 + 6 × 10 s = 2
    /// minutes (Linux's own default, 2 hours and 11 minutes, outlives most
    /// outages unnoticed); the user timeout left to the system, as PgBouncer
    /// does.
    pub const DEFAULT: TcpSettings = TcpSettings {
        keepalive: true,
        keepidle: Some(Duration::from_secs(60)),
        keepintvl: Some(Duration::from_secs(10)),
        keepcnt: Some(6),
        user_timeout: None,
    };
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings::DEFAULT
    }
}

/// The TCP keys of `[general]`.
pub(super) fn read_tcp(section: &Section, diagnostics: &mut Diagnostics) -> TcpSettings {
    let mut tcp = TcpSettings::default();
    if let Some(on) = section.boolean("tcp_keepalive", diagnostics) {
        tcp.keepalive = on;
    }
    let seconds = |key: &str, diagnostics: &mut Diagnostics| {
        let value = section.seconds(key, diagnostics)?.into_inner();
        Some((!value.is_zero()).then_some(value))
    };
    if let Some(idle) = seconds("tcp_keepidle", diagnostics) {
        tcp.keepidle = idle;
    }
    if let Some(interval) = seconds("tcp_keepintvl", diagnostics) {
        tcp.keepintvl = interval;
    }
    if let Some(timeout) = seconds("tcp_user_timeout", diagnostics) {
        tcp.user_timeout = timeout;
    }
    if let Some(count) = section.count("tcp_keepcnt", 0, diagnostics) {
        let span = count.span();
        match u32::try_from(count.into_inner()) {
            Ok(0) => tcp.keepcnt = None,
            Ok(count) => tcp.keepcnt = Some(count),
            Err(_) => diagnostics.error(
                span,
                section.field("tcp_keepcnt"),
                "is too large a number of probes",
            ),
        }
    }
    tcp
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::TcpSettings;
    use crate::config::parse_str;

    fn tcp(general: &str) -> TcpSettings {
        let text = format!("[general]\n{general}\n[databases.app]\n");
        parse_str(&text, "c.toml").unwrap().general.tcp
    }

    fn error(general: &str) -> String {
        let text = format!("[general]\n{general}\n[databases.app]\n");
        parse_str(&text, "c.toml").unwrap_err().to_string()
    }

    #[test]
    fn keepalive_is_on_and_notices_a_dead_peer_in_two_minutes_by_default() {
        let settings = tcp("");
        assert_eq!(settings, TcpSettings::default());
        assert!(settings.keepalive);
        assert_eq!(settings.keepidle, Some(Duration::from_secs(60)));
        assert_eq!(settings.keepintvl, Some(Duration::from_secs(10)));
        assert_eq!(settings.keepcnt, Some(6));
        assert_eq!(settings.user_timeout, None);
    }

    #[test]
    fn pgbouncer_names_set_every_value() {
        let settings = tcp(
            "tcp_keepalive = true\ntcp_keepidle = 5\ntcp_keepintvl = 1.5\n\
             tcp_keepcnt = 3\ntcp_user_timeout = 10",
        );
        assert_eq!(
            settings,
            TcpSettings {
                keepalive: true,
                keepidle: Some(Duration::from_secs(5)),
                keepintvl: Some(Duration::from_millis(1500)),
                keepcnt: Some(3),
                user_timeout: Some(Duration::from_secs(10)),
            }
        );
    }

    #[test]
    fn zero_leaves_the_system_default_and_keepalive_can_be_off() {
        let settings = tcp(
            "tcp_keepalive = false\ntcp_keepidle = 0\ntcp_keepintvl = 0\n\
             tcp_keepcnt = 0\ntcp_user_timeout = 0",
        );
        assert_eq!(
            settings,
            TcpSettings {
                keepalive: false,
                keepidle: None,
                keepintvl: None,
                keepcnt: None,
                user_timeout: None,
            }
        );
    }

    #[test]
    fn wrong_kinds_and_negative_values_are_errors_with_their_position() {
        assert_eq!(
            error("tcp_keepalive = \"yes\""),
            "c.toml:2:17: general.tcp_keepalive: expected true or false, found string"
        );
        assert_eq!(
            error("tcp_keepidle = -1"),
            "c.toml:2:16: general.tcp_keepidle: must be a finite, non-negative number of seconds, got -1"
        );
        assert_eq!(
            error("tcp_keepcnt = -2"),
            "c.toml:2:15: general.tcp_keepcnt: must be at least 0, got -2"
        );
    }
}
