//! Per-process descriptor health: open fds against the soft limit, sockets
//! left in CLOSE_WAIT (the peer closed, the program did not), and TCP socket
//! fds that no /proc/net table lists (lsof's "can't identify protocol", the
//! leak signature). Every process, or only the one `--pid` names.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use serde::Serialize;

use super::report::{Finding, Severity};
use crate::host::{
    ProcessFds, SocketEntry, TcpState, Unreadable, all_pids, own_net_namespace, socket_protocol,
    tcp_sockets, tcp_sockets_seen_by,
};

/// Share of the soft fd limit in use that warns, and that is a problem.
const WARN_FD_USE: f64 = 0.8;
const PROBLEM_FD_USE: f64 = 0.95;
/// A few unlisted TCP sockets are sockets being set up; this many held at
/// once is a leak.
const UNIDENTIFIED_WARNING: usize = 10;
/// Peers named in a CLOSE_WAIT finding; the rest are counted.
const PEERS_SHOWN: usize = 3;

/// One process's descriptors (`processes` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct ProcessUsage {
    pub(super) pid: i32,
    pub(super) command: String,
    pub(super) open_fds: usize,
    /// `None` when unlimited or unreadable.
    pub(super) fd_soft_limit: Option<u64>,
    pub(super) fd_use_percent: Option<f64>,
    pub(super) close_wait: usize,
    /// TCP socket fds in no /proc/net table.
    pub(super) unidentified_sockets: usize,
}

/// What one network namespace's TCP tables say.
#[derive(Default)]
struct NetTables {
    listed: HashSet<u64>,
    close_wait: HashMap<u64, SocketAddr>,
}

impl NetTables {
    fn from_sockets(sockets: Vec<SocketEntry>) -> NetTables {
        let mut tables = NetTables::default();
        for socket in sockets {
            if socket.state == TcpState::CloseWait {
                tables.close_wait.insert(socket.inode, socket.remote);
            }
            tables.listed.insert(socket.inode);
        }
        tables
    }
}

/// Checks every process (or only `pid`) and returns the `top` most troubled
/// with every finding, including those of processes past `top`.
pub(super) fn check_processes(pid: Option<i32>, top: usize) -> (Vec<ProcessUsage>, Vec<Finding>) {
    // The doctor's own fds are a moment's work, not the host's state.
    let own_pid = i32::try_from(std::process::id()).ok();
    let pids = match pid {
        Some(pid) => vec![pid],
        None => all_pids()
            .into_iter()
            .filter(|&pid| Some(pid) != own_pid)
            .collect(),
    };
    let mut scans = Vec::new();
    let mut hidden = 0;
    for &candidate in &pids {
        match ProcessFds::read(candidate) {
            Ok(scan) => scans.push(scan),
            Err(Unreadable::Hidden) => hidden += 1,
            Err(Unreadable::Gone) => {}
        }
    }
    if let (Some(pid), true) = (pid, scans.is_empty()) {
        return (Vec::new(), vec![unreadable_pid(pid, hidden > 0)]);
    }
    // Tables are read after the fds, so a socket connected in between is listed.
    let tables = tables_by_namespace(&scans);
    let mut rows = Vec::new();
    let mut findings = Vec::new();
    for scan in &scans {
        let tables = scan.net_namespace.and_then(|ns| tables.get(&ns));
        let (row, mut found) = judge(scan, tables);
        let worst = found.iter().map(|finding| finding.severity).max();
        rows.push((worst, row));
        findings.append(&mut found);
    }
    if findings.is_empty() {
        findings.push(all_fine(pid, &rows));
    }
    if hidden > 0 && pid.is_none() {
        findings.push(hidden_finding(hidden));
    }
    rows.sort_by(|(worst_a, a), (worst_b, b)| {
        worst_b
            .cmp(worst_a)
            .then(
                b.fd_use_percent
                    .unwrap_or(0.0)
                    .total_cmp(&a.fd_use_percent.unwrap_or(0.0)),
            )
            .then(b.open_fds.cmp(&a.open_fds))
            .then(a.pid.cmp(&b.pid))
    });
    let rows = rows.into_iter().take(top).map(|(_, row)| row).collect();
    (rows, findings)
}

/// Each network namespace's tables, read once through one of its processes.
fn tables_by_namespace(scans: &[ProcessFds]) -> HashMap<u64, NetTables> {
    let own = own_net_namespace();
    let mut tables = HashMap::new();
    for scan in scans {
        let Some(namespace) = scan.net_namespace else {
            continue;
        };
        if tables.contains_key(&namespace) {
            continue;
        }
        let sockets = if Some(namespace) == own {
            tcp_sockets()
        } else {
            tcp_sockets_seen_by(scan.process.pid)
        };
        // Unreadable tables (the process just exited): its sockets go unjudged.
        if let Ok(sockets) = sockets {
            tables.insert(namespace, NetTables::from_sockets(sockets));
        }
    }
    tables
}

fn judge(scan: &ProcessFds, tables: Option<&NetTables>) -> (ProcessUsage, Vec<Finding>) {
    let pid = scan.process.pid;
    let mut peers: Vec<SocketAddr> = Vec::new();
    let mut unidentified = 0;
    if let Some(tables) = tables {
        for &(fd, inode) in &scan.sockets {
            if let Some(peer) = tables.close_wait.get(&inode) {
                peers.push(*peer);
            } else if !tables.listed.contains(&inode)
                && socket_protocol(pid, fd).is_some_and(|name| name.starts_with("TCP"))
            {
                unidentified += 1;
            }
        }
    }
    peers.sort_unstable();
    let fd_use = scan
        .fd_soft_limit
        .filter(|&limit| limit > 0)
        .map(|limit| scan.open_fds as f64 / limit as f64);
    let row = ProcessUsage {
        pid,
        command: scan.process.command.clone(),
        open_fds: scan.open_fds,
        fd_soft_limit: scan.fd_soft_limit,
        fd_use_percent: fd_use.map(|share| (share * 1000.0).round() / 10.0),
        close_wait: peers.len(),
        unidentified_sockets: unidentified,
    };
    let subject = scan.process.to_string();
    let mut findings = Vec::new();
    if let (Some(share), Some(limit)) = (fd_use, scan.fd_soft_limit)
        && share >= WARN_FD_USE
    {
        findings.push(Finding {
            severity: if share >= PROBLEM_FD_USE {
                Severity::Problem
            } else {
                Severity::Warning
            },
            check: "process.fds",
            subject: subject.clone(),
            summary: format!(
                "{} of {limit} fds open ({:.1}%)",
                scan.open_fds,
                share * 100.0
            ),
            meaning: "at its limit, accept() and connect() fail with EMFILE (\"Too many open \
                      files\"): new clients wait or are refused"
                .to_owned(),
            action: format!(
                "raise its limit (LimitNOFILE= in its systemd unit, `ulimit -n` before starting \
                 it, or `prlimit --pid {pid} --nofile=SOFT:HARD` now), and check it does not \
                 leak fds (CLOSE_WAIT or unidentified sockets)"
            ),
        });
    }
    if !peers.is_empty() {
        findings.push(Finding {
            severity: Severity::Warning,
            check: "process.close_wait",
            subject: subject.clone(),
            summary: format!(
                "{} sockets in CLOSE_WAIT ({})",
                peers.len(),
                peer_list(&peers)
            ),
            meaning: "the peer closed these connections and the program has not closed its \
                      side; each keeps an fd until it does, so a count that stays or grows is a \
                      descriptor leak that ends in EMFILE"
                .to_owned(),
            action: format!(
                "find where the program stops reading a connection without closing it (an \
                 error path, or a pool that never notices dead connections); restarting pid \
                 {pid} frees them now"
            ),
        });
    }
    if unidentified > 0 {
        findings.push(Finding {
            severity: if unidentified >= UNIDENTIFIED_WARNING {
                Severity::Warning
            } else {
                Severity::Info
            },
            check: "process.unidentified_sockets",
            subject,
            summary: format!(
                "{unidentified} TCP socket fds that no /proc/net table lists (lsof: \"can't \
                 identify protocol\")"
            ),
            meaning: "sockets the kernel has already torn down (reset by the peer, or never \
                      connected) that the program still holds: the classic descriptor-leak \
                      signature when they add up; a few are sockets being set up"
                .to_owned(),
            action: format!(
                "look for error paths that drop a connection without closing its fd; \
                 restarting pid {pid} frees them now"
            ),
        });
    }
    (row, findings)
}

fn peer_list(peers: &[SocketAddr]) -> String {
    let shown: Vec<String> = peers
        .iter()
        .take(PEERS_SHOWN)
        .map(ToString::to_string)
        .collect();
    let mut list = format!("peers {}", shown.join(", "));
    if peers.len() > PEERS_SHOWN {
        list.push_str(&format!(" and {} more", peers.len() - PEERS_SHOWN));
    }
    list
}

fn all_fine(pid: Option<i32>, rows: &[(Option<Severity>, ProcessUsage)]) -> Finding {
    let (subject, summary) = match (pid, rows.first()) {
        (Some(_), Some((_, row))) => (
            format!("pid {} {:?}", row.pid, row.command),
            match row.fd_soft_limit {
                Some(limit) => format!(
                    "{} of {limit} fds open, no CLOSE_WAIT or unidentified sockets",
                    row.open_fds
                ),
                None => format!(
                    "{} fds open (no limit), no CLOSE_WAIT or unidentified sockets",
                    row.open_fds
                ),
            },
        ),
        _ => (
            "processes".to_owned(),
            format!(
                "{} processes: none near its fd limit, none with CLOSE_WAIT or unidentified \
                 sockets",
                rows.len()
            ),
        ),
    };
    Finding {
        severity: Severity::Ok,
        check: "process.fds",
        subject,
        summary,
        meaning: "no sign of descriptor exhaustion or leaks".to_owned(),
        action: "nothing to do".to_owned(),
    }
}

fn unreadable_pid(pid: i32, hidden: bool) -> Finding {
    let (summary, action) = if hidden {
        (
            "its fds are hidden from this user",
            "run the doctor as root or as the process's user",
        )
    } else {
        ("no such process", "check the pid (`pgrep -a NAME`)")
    };
    Finding {
        severity: Severity::Problem,
        check: "process.unreadable",
        subject: format!("pid {pid}"),
        summary: summary.to_owned(),
        meaning: "its descriptors could not be checked".to_owned(),
        action: action.to_owned(),
    }
}

fn hidden_finding(hidden: usize) -> Finding {
    Finding {
        severity: Severity::Info,
        check: "process.hidden",
        subject: "processes".to_owned(),
        summary: format!("{hidden} processes' fds are hidden from this user"),
        meaning: "their descriptors were not checked".to_owned(),
        action: "run the doctor as root to check every process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn own_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    fn scan(open_fds: usize, limit: Option<u64>) -> ProcessFds {
        ProcessFds {
            process: crate::host::ProcessInfo {
                pid: 42,
                command: "app".into(),
            },
            open_fds,
            sockets: Vec::new(),
            fd_soft_limit: limit,
            net_namespace: None,
        }
    }

    #[test]
    fn fd_use_against_the_soft_limit() {
        let cases = [
            (799, Some(1000), None),
            (800, Some(1000), Some(Severity::Warning)),
            (950, Some(1000), Some(Severity::Problem)),
            (5000, None, None),
        ];
        for (open, limit, expected) in cases {
            let (row, findings) = judge(&scan(open, limit), None);
            assert_eq!(row.open_fds, open);
            assert_eq!(
                findings.first().map(|f| f.severity),
                expected,
                "{open}/{limit:?}"
            );
        }
        let (row, findings) = judge(&scan(950, Some(1000)), None);
        assert_eq!(row.fd_use_percent, Some(95.0));
        assert_eq!(findings[0].summary, "950 of 1000 fds open (95.0%)");
        assert_eq!(findings[0].subject, "pid 42 \"app\"");
        assert!(findings[0].action.contains("prlimit --pid 42"));
    }

    #[test]
    fn peers_are_listed_then_counted() {
        let peers: Vec<SocketAddr> = (1..=5)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        assert_eq!(
            peer_list(&peers),
            "peers 127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3 and 2 more"
        );
        assert_eq!(peer_list(&peers[..1]), "peers 127.0.0.1:1");
    }

    #[test]
    fn a_missing_pid_is_a_problem() {
        let (rows, findings) = check_processes(Some(-1), 10);
        assert!(rows.is_empty());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].check, "process.unreadable");
        assert_eq!(findings[0].summary, "no such process");
    }

    /// Sockets the peer reset are gone from /proc/net/tcp while we hold them.
    #[test]
    fn finds_reset_sockets_this_process_still_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut reset = Vec::new();
        for _ in 0..UNIDENTIFIED_WARNING {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            // Linger 0: close sends RST instead of FIN.
            socket2::SockRef::from(&accepted)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(accepted);
            reset.push(client);
        }
        // A read waits for the RST.
        for client in &mut reset {
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut sink = [0u8; 1];
            let error = client.read(&mut sink).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        }
        let (rows, findings) = check_processes(Some(own_pid()), 10);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].pid, own_pid());
        // Other tests in this process may hold a few such sockets at once.
        assert!(
            rows[0].unidentified_sockets >= UNIDENTIFIED_WARNING,
            "{rows:?}"
        );
        let leak = findings
            .iter()
            .find(|f| f.check == "process.unidentified_sockets")
            .unwrap_or_else(|| panic!("{findings:?}"));
        assert_eq!(leak.severity, Severity::Warning);
        assert!(leak.summary.contains("can't identify protocol"));
        drop(reset);
    }
}
