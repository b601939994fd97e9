//! The doctor's view of the ephemeral ports: the settings as reported
//! ([`EphemeralSummary`]) and a warning for each listen port a client
//! socket may take, with the sysctl line that reserves it. The settings
//! themselves are read in `host::ephemeral`.

use std::net::SocketAddr;

use serde::Serialize;

use super::report::{Finding, Severity};
use crate::host::{EphemeralPorts, TIME_WAIT};

const RESERVED_KEY: &str = "net.ipv4.ip_local_reserved_ports";

/// The settings as reported (`ephemeral` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct EphemeralSummary {
    pub(super) port_range: [u16; 2],
    /// Ports in the range minus the reserved ones among them.
    pub(super) available_ports: u32,
    pub(super) reserved_ports: String,
    pub(super) tcp_tw_reuse: u8,
    pub(super) time_wait_seconds: u64,
    /// `available_ports / time_wait_seconds`: new connections per second one
    /// destination can take for ever without tcp_tw_reuse.
    pub(super) sustainable_connects_per_second: f64,
}

impl From<&EphemeralPorts> for EphemeralSummary {
    fn from(ports: &EphemeralPorts) -> EphemeralSummary {
        EphemeralSummary {
            port_range: [ports.low, ports.high],
            available_ports: ports.available(),
            reserved_ports: ports.reserved_text().to_owned(),
            tcp_tw_reuse: ports.tw_reuse,
            time_wait_seconds: TIME_WAIT.as_secs(),
            sustainable_connects_per_second: (ports.sustainable_rate() * 10.0).round() / 10.0,
        }
    }
}

/// Listen ports judged against the ephemeral range; the doctor and the
/// startup checks both warn with these findings.
pub(crate) trait ListenPortFindings {
    /// A warning for each listen address whose port a client socket may
    /// take, all with the one sysctl line that reserves every such port.
    fn listen_port_findings(&self, addrs: &[SocketAddr]) -> Vec<Finding>;
}

impl ListenPortFindings for EphemeralPorts {
    fn listen_port_findings(&self, addrs: &[SocketAddr]) -> Vec<Finding> {
        let exposed: Vec<u16> = addrs
            .iter()
            .map(SocketAddr::port)
            .filter(|&port| port != 0 && self.is_ephemeral(port))
            .collect();
        let value = self.reserved_with(&exposed);
        addrs
            .iter()
            .filter(|addr| exposed.contains(&addr.port()))
            .map(|addr| Finding {
                severity: Severity::Warning,
                check: "listen.ephemeral",
                subject: format!("listen {addr}"),
                summary: format!(
                    "port {} is inside net.ipv4.ip_local_port_range ({}-{}) and not in \
                     {RESERVED_KEY}",
                    addr.port(),
                    self.low,
                    self.high
                ),
                meaning: "the kernel may give this port to an outgoing connection as its source \
                          port; while such a connection exists, churnstile cannot listen there and \
                          a start or restart fails with \"address already in use\""
                    .to_owned(),
                action: format!(
                    "reserve it now with `sysctl -w {RESERVED_KEY}={value}` and keep it across \
                     reboots with the line `{RESERVED_KEY} = {value}` in \
                     /etc/sysctl.d/90-churnstile.conf; or listen on a port below {}",
                    self.low
                ),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_rounds_the_sustainable_rate() {
        let parsed = EphemeralPorts::parse("32768\t60999\n", "\n", "2\n").unwrap();
        assert_eq!(
            EphemeralSummary::from(&parsed).sustainable_connects_per_second,
            470.5
        );
    }

    #[test]
    fn a_listen_port_in_the_range_gets_the_sysctl_line() {
        let settings = EphemeralPorts::parse("32768 60999", "6000", "2").unwrap();
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:40000",
            "127.0.0.1:6432",
            "[::1]:40000",
            "0.0.0.0:0",
        ]
        .iter()
        .map(|addr| addr.parse().unwrap())
        .collect();
        let findings = settings.listen_port_findings(&addrs);
        let subjects: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(subjects, ["listen 127.0.0.1:40000", "listen [::1]:40000"]);
        let finding = &findings[0];
        assert_eq!(finding.severity, Severity::Warning);
        assert_eq!(finding.check, "listen.ephemeral");
        assert!(
            finding
                .action
                .contains("`sysctl -w net.ipv4.ip_local_reserved_ports=6000,40000`"),
            "{}",
            finding.action
        );
        assert!(
            finding
                .action
                .contains("`net.ipv4.ip_local_reserved_ports = 6000,40000`"),
            "{}",
            finding.action
        );
    }
}
