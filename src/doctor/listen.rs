//! Whether churnstile can listen where it is told to: a trial bind of each
//! TCP address with the options churnstile binds with, the process holding a
//! taken address or Unix socket path, and the ephemeral-range check.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::ephemeral::ListenPortFindings;
use super::report::{Finding, Severity};
use crate::host::{EphemeralPorts, ProcessInfo, port_owner, socket_path_owner};

/// One listen address and what holds it (`listen` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ListenPort {
    /// `IP:port`, or the Unix socket's path.
    address: String,
    state: ListenState,
    /// The process holding the address, when /proc shows it.
    pub(super) owner: Option<ProcessInfo>,
    /// Why the address cannot be used, when it is `unavailable`.
    error: Option<String>,
    /// Whether a client socket may take the port (TCP only).
    inside_ephemeral_range: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ListenState {
    Free,
    InUse,
    /// Not usable for another reason: permission, address not on this host.
    Unavailable,
}

/// Checks each TCP address and the Unix socket path, with the
/// ephemeral-range warnings when the sysctls could be read.
pub(super) fn check_listeners(
    tcp: &[SocketAddr],
    unix_socket: Option<&Path>,
    ephemeral: Option<&EphemeralPorts>,
) -> (Vec<ListenPort>, Vec<Finding>) {
    let mut ports = Vec::new();
    let mut findings = Vec::new();
    for &addr in tcp {
        let (mut port, finding) = check_tcp(addr);
        port.inside_ephemeral_range = ephemeral.map(|settings| settings.is_ephemeral(addr.port()));
        ports.push(port);
        findings.push(finding);
    }
    if let Some(settings) = ephemeral {
        findings.extend(settings.listen_port_findings(tcp));
    }
    if let Some(path) = unix_socket {
        let (port, finding) = check_unix(path);
        ports.push(port);
        findings.push(finding);
    }
    (ports, findings)
}

fn check_tcp(addr: SocketAddr) -> (ListenPort, Finding) {
    let address = addr.to_string();
    match trial_bind(addr) {
        Ok(()) => (free(address.clone()), free_finding(address)),
        Err(error) if error.kind() == ErrorKind::AddrInUse => {
            let owner = port_owner(addr);
            let finding = in_use_finding(&address, owner.as_ref());
            (in_use(address, owner), finding)
        }
        Err(error) => {
            let action = match error.kind() {
                ErrorKind::PermissionDenied => {
                    "ports below 1024 need root or CAP_NET_BIND_SERVICE; use port 1024 or \
                     higher, or grant churnstile that capability"
                        .to_owned()
                }
                ErrorKind::AddrNotAvailable => {
                    "use an address this host has (see `ip -brief addr`), or 0.0.0.0 / [::] for all"
                        .to_owned()
                }
                _ => "fix the address in [listen] postgres (or --listen)".to_owned(),
            };
            let finding = Finding {
                severity: Severity::Problem,
                check: "listen.unavailable",
                subject: format!("listen {address}"),
                summary: format!("cannot bind: {error}"),
                meaning: "churnstile cannot listen here and would exit at startup".to_owned(),
                action,
            };
            let port = ListenPort {
                address,
                state: ListenState::Unavailable,
                owner: None,
                error: Some(error.to_string()),
                inside_ephemeral_range: None,
            };
            (port, finding)
        }
    }
}

/// Binds (without listening, so no client can connect meanwhile) with
/// SO_REUSEADDR and IPV6_V6ONLY, as churnstile's listeners do, and closes.
fn trial_bind(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

fn check_unix(path: &Path) -> (ListenPort, Finding) {
    let address = path.display().to_string();
    match socket_path_owner(path) {
        Some(owner) => {
            let finding = in_use_finding(&address, Some(&owner));
            (in_use(address, Some(owner)), finding)
        }
        // A socket file nobody listens on is stale; churnstile replaces it.
        None => (free(address.clone()), free_finding(address)),
    }
}

fn free(address: String) -> ListenPort {
    ListenPort {
        address,
        state: ListenState::Free,
        owner: None,
        error: None,
        inside_ephemeral_range: None,
    }
}

fn in_use(address: String, owner: Option<ProcessInfo>) -> ListenPort {
    ListenPort {
        address,
        state: ListenState::InUse,
        owner,
        error: None,
        inside_ephemeral_range: None,
    }
}

fn free_finding(address: String) -> Finding {
    Finding {
        severity: Severity::Ok,
        check: "listen.free",
        subject: format!("listen {address}"),
        summary: "free".to_owned(),
        meaning: "churnstile can listen here".to_owned(),
        action: "nothing to do".to_owned(),
    }
}

fn in_use_finding(address: &str, owner: Option<&ProcessInfo>) -> Finding {
    let subject = format!("listen {address}");
    match owner {
        Some(process) if is_churnstile(process) => Finding {
            severity: Severity::Info,
            check: "listen.churnstile",
            subject,
            summary: format!("churnstile is listening here ({process})"),
            meaning: "a churnstile already serves this address; a second one would fail to start"
                .to_owned(),
            action: format!(
                "nothing to do if it is the instance you are checking; otherwise stop it \
                 (kill -TERM {}) before starting another",
                process.pid
            ),
        },
        Some(process) => Finding {
            severity: Severity::Problem,
            check: "listen.in_use",
            subject,
            summary: format!("in use by {process}"),
            meaning: "churnstile cannot listen here: it would exit at startup with \
                      \"address already in use\""
                .to_owned(),
            action: format!(
                "stop pid {} or move it to another port, or point churnstile's [listen] \
                 postgres (or --listen) at a free address",
                process.pid
            ),
        },
        None => Finding {
            severity: Severity::Problem,
            check: "listen.in_use",
            subject,
            summary: "in use (owner not visible in /proc)".to_owned(),
            meaning: "churnstile cannot listen here: it would exit at startup with \
                      \"address already in use\""
                .to_owned(),
            action: "run the doctor as root to see every process's sockets (the holder may \
                     belong to another user or network namespace), or choose another address"
                .to_owned(),
        },
    }
}

fn is_churnstile(process: &ProcessInfo) -> bool {
    process.command.split_whitespace().next() == Some("churnstile")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn own_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    #[test]
    fn a_free_port_is_ok() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (port, finding) = check_tcp(addr);
        assert_eq!(port.state, ListenState::Free);
        assert_eq!(port.owner, None);
        assert_eq!(finding.severity, Severity::Ok);
        assert_eq!(finding.subject, format!("listen {addr}"));
    }

    #[test]
    fn a_held_port_names_its_owner() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let (port, finding) = check_tcp(addr);
        assert_eq!(port.state, ListenState::InUse);
        assert_eq!(port.owner.as_ref().map(|owner| owner.pid), Some(own_pid()));
        assert_eq!(finding.severity, Severity::Problem);
        assert_eq!(finding.check, "listen.in_use");
        assert!(
            finding
                .summary
                .starts_with(&format!("in use by pid {} \"", own_pid())),
            "{}",
            finding.summary
        );
        assert!(finding.action.contains(&format!("stop pid {}", own_pid())));
    }

    #[test]
    fn an_address_not_on_this_host_is_unavailable() {
        let (port, finding) = check_tcp("192.0.2.1:6432".parse().unwrap());
        assert_eq!(port.state, ListenState::Unavailable);
        assert_eq!(finding.check, "listen.unavailable");
        assert_eq!(finding.severity, Severity::Problem);
        assert!(
            finding.action.contains("ip -brief addr"),
            "{}",
            finding.action
        );
    }

    #[test]
    fn a_unix_socket_someone_listens_on_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.6432");
        let (port, _) = check_unix(&path);
        assert_eq!(port.state, ListenState::Free);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (port, finding) = check_unix(&path);
        assert_eq!(port.state, ListenState::InUse);
        assert_eq!(port.owner.map(|owner| owner.pid), Some(own_pid()));
        assert_eq!(finding.severity, Severity::Problem);
    }

    #[test]
    fn churnstile_itself_is_recognised() {
        let process = |command: &str| ProcessInfo {
            pid: 7,
            command: command.to_owned(),
        };
        assert!(is_churnstile(&process(
            "churnstile --config /etc/churnstile.toml"
        )));
        assert!(!is_churnstile(&process("churnstile-doctor")));
        assert!(!is_churnstile(&process("python3 churnstile")));
        let finding = in_use_finding("127.0.0.1:6432", Some(&process("churnstile")));
        assert_eq!(finding.severity, Severity::Info);
        assert_eq!(finding.check, "listen.churnstile");
    }
}
