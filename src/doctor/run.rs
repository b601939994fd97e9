//! The doctor's entry point: what to check ([`DoctorOptions`], built from a
//! configuration or flags) and [`run_doctor`], which runs every check and
//! assembles the [`Report`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::endpoint_sockets::EndpointSockets;
use super::endpoints::{Sample, summarize};
use super::ephemeral::EphemeralSummary;
use super::listen::{ListenPort, check_listeners};
use super::login_target::LoginCheck;
use super::processes::{ProcessUsage, check_processes};
use super::reachability::{DatabaseLogin, check_logins};
use super::report::{Finding, JSON_VERSION, Severity, Status, worst_first};
use crate::config::{Config, ListenConfig};
use crate::host::EphemeralPorts;

/// Rows shown per table unless `--top` says otherwise.
pub const DEFAULT_TOP: usize = 10;

/// What the doctor checks.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorOptions {
    /// TCP addresses churnstile listens on (or would).
    pub listen: Vec<SocketAddr>,
    /// The Unix socket path churnstile listens on (or would).
    pub unix_socket: Option<PathBuf>,
    /// Upstream logins to try.
    pub logins: Vec<LoginCheck>,
    /// Check only this process's descriptors instead of every process's.
    pub pid: Option<i32>,
    /// Rows per table.
    pub top: usize,
    /// Take two socket samples this far apart, to measure connect rates.
    pub interval: Option<Duration>,
}

impl DoctorOptions {
    /// Checks for what `config` would run: its listeners and every
    /// (database, user) login.
    pub fn for_config(config: &Config) -> DoctorOptions {
        DoctorOptions {
            logins: LoginCheck::for_config(config),
            ..DoctorOptions::for_listeners(&config.listen)
        }
    }

    fn for_listeners(listen: &ListenConfig) -> DoctorOptions {
        DoctorOptions {
            listen: listen
                .postgres
                .iter()
                .chain(&listen.mysql)
                .copied()
                .collect(),
            unix_socket: listen
                .unix_socket_dir
                .as_ref()
                .map(|dir| dir.join(format!(".s.PGSQL.{}", listen.unix_socket_port))),
            logins: Vec::new(),
            pid: None,
            top: DEFAULT_TOP,
            interval: None,
        }
    }
}

/// churnstile's default listeners (127.0.0.1:6432 and
/// /tmp/.s.PGSQL.6432), no logins.
impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions::for_listeners(&ListenConfig::default())
    }
}

/// Everything `churnstile doctor` reports, in the order it is printed.
#[derive(Debug, Serialize)]
pub struct Report {
    /// [`JSON_VERSION`].
    pub(super) version: u32,
    pub status: Status,
    /// Worst first.
    pub(super) findings: Vec<Finding>,
    pub(super) listen: Vec<ListenPort>,
    /// `None` when /proc/sys/net/ipv4 could not be read.
    pub(super) ephemeral: Option<EphemeralSummary>,
    /// Seconds between the two socket samples, when `--interval` was given.
    pub(super) interval_seconds: Option<f64>,
    /// Busiest first, at most `--top`.
    pub(super) endpoints: Vec<EndpointSockets>,
    /// Most troubled first, at most `--top` (or the `--pid` process).
    pub(super) processes: Vec<ProcessUsage>,
    pub(super) databases: Vec<DatabaseLogin>,
}

impl Report {
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// Runs every check. Never fails: what cannot be read becomes a finding.
pub async fn run_doctor(options: &DoctorOptions) -> Report {
    let mut findings = Vec::new();
    let ephemeral = match EphemeralPorts::read() {
        Ok(settings) => Some(settings),
        Err(error) => {
            findings.push(unchecked(
                "ephemeral.unreadable",
                "ephemeral ports",
                error.to_string(),
            ));
            None
        }
    };
    let (listen, listen_findings) = check_listeners(
        &options.listen,
        options.unix_socket.as_deref(),
        ephemeral.as_ref(),
    );
    findings.extend(listen_findings);

    let sampling = async {
        let earlier = match options.interval {
            Some(interval) => {
                let earlier = Sample::take().ok();
                tokio::time::sleep(interval).await;
                earlier
            }
            None => None,
        };
        (earlier, Sample::take())
    };
    let ((earlier, latest), (databases, login_findings)) =
        tokio::join!(sampling, check_logins(&options.logins));
    let endpoints = match latest {
        Ok(latest) => {
            let (endpoints, found) =
                summarize(&latest, earlier.as_ref(), ephemeral.as_ref(), options.top);
            findings.extend(found);
            endpoints
        }
        Err(error) => {
            findings.push(unchecked(
                "sockets.unreadable",
                "sockets",
                error.to_string(),
            ));
            Vec::new()
        }
    };
    let (processes, process_findings) = check_processes(options.pid, options.top);
    findings.extend(process_findings);
    findings.extend(login_findings);

    let findings = worst_first(findings);
    Report {
        version: JSON_VERSION,
        status: Status::of(&findings),
        findings,
        listen,
        ephemeral: ephemeral.as_ref().map(EphemeralSummary::from),
        interval_seconds: options.interval.map(|interval| interval.as_secs_f64()),
        endpoints,
        processes,
        databases,
    }
}

fn unchecked(check: &'static str, subject: &str, error: String) -> Finding {
    Finding {
        severity: Severity::Info,
        check,
        subject: subject.to_owned(),
        summary: error,
        meaning: "these checks were skipped".to_owned(),
        action: "run the doctor where /proc is mounted and readable (on the host, or in the \
                 container that runs churnstile)"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn options_follow_the_config() {
        let config = crate::config::parse_str(
            r#"
            [listen]
            postgres = ["127.0.0.1:7432", "[::1]:7432"]
            unix_socket_dir = "/run/churnstile"
            [databases.app]
            [users.alice]
            password = "a"
            "#,
            "test.toml",
        )
        .unwrap();
        let options = DoctorOptions::for_config(&config);
        assert_eq!(
            options.listen,
            [
                "127.0.0.1:7432".parse().unwrap(),
                "[::1]:7432".parse().unwrap()
            ]
        );
        assert_eq!(
            options.unix_socket,
            Some(PathBuf::from("/run/churnstile/.s.PGSQL.7432"))
        );
        assert_eq!(options.logins.len(), 1);
        assert_eq!(
            (options.pid, options.top, options.interval),
            (None, 10, None)
        );
    }

    #[tokio::test]
    async fn a_held_listen_port_makes_the_report_a_problem() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let own_pid = i32::try_from(std::process::id()).unwrap();
        let options = DoctorOptions {
            listen: vec![held.local_addr().unwrap()],
            unix_socket: None,
            logins: Vec::new(),
            pid: Some(own_pid),
            top: 5,
            interval: Some(Duration::from_millis(50)),
        };
        let report = run_doctor(&options).await;
        assert_eq!(report.status, Status::Problems);
        assert_eq!(report.findings[0].severity, Severity::Problem);
        assert_eq!(
            report.listen[0].owner.as_ref().map(|o| o.pid),
            Some(own_pid)
        );
        assert_eq!(report.processes.len(), 1);
        assert_eq!(report.processes[0].pid, own_pid);
        assert!(report.endpoints.len() <= 5);
        assert_eq!(report.interval_seconds, Some(0.05));
        let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["status"], "problems");
        assert_eq!(json["listen"][0]["state"], "in_use");
    }
}
