//! The TCP socket tables (/proc/net/tcp and /proc/net/tcp6, or another
//! network namespace's through /proc/PID/net) as small typed entries, with
//! IPv4-mapped IPv6 addresses folded back to IPv4 so one endpoint has one
//! spelling whichever table it came from.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use procfs::net::{TcpNetEntries, TcpNetEntry};
use procfs::{FromReadSI, ProcError, current_system_info};

use super::tcp_state::TcpState;

/// The IPv4 table, which every namespace has, and the IPv6 one, which is
/// missing when IPv6 is disabled.
const TCP_TABLES: [(&str, bool); 2] = [("tcp", true), ("tcp6", false)];

/// One TCP socket as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// Socket inode, matched against `socket:[INODE]` fd links; 0 when no
    /// file holds the socket any more (TIME_WAIT, orphans).
    pub inode: u64,
}

impl From<TcpNetEntry> for SocketEntry {
    fn from(entry: TcpNetEntry) -> Self {
        SocketEntry {
            local: canonical(entry.local_address),
            remote: canonical(entry.remote_address),
            state: entry.state.into(),
            inode: entry.inode,
        }
    }
}

/// A socket table that exists but could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", .table.display())]
pub struct SocketTableError {
    table: PathBuf,
    source: ProcError,
}

/// Every TCP socket in this network namespace, IPv4 and IPv6.
///
/// A missing IPv6 table (IPv6 disabled) counts as empty.
pub fn tcp_sockets() -> Result<Vec<SocketEntry>, SocketTableError> {
    tcp_sockets_in(Path::new("/proc/net"))
}

/// Every TCP socket in the network namespace of process `pid` (a container's,
/// say), whose sockets this namespace's tables do not list. An error once
/// the process is gone.
pub(crate) fn tcp_sockets_seen_by(pid: i32) -> Result<Vec<SocketEntry>, SocketTableError> {
    tcp_sockets_in(&Path::new("/proc").join(pid.to_string()).join("net"))
}

fn tcp_sockets_in(net_dir: &Path) -> Result<Vec<SocketEntry>, SocketTableError> {
    let mut sockets = Vec::new();
    for (name, required) in TCP_TABLES {
        let table = net_dir.join(name);
        let parsed = std::fs::File::open(&table)
            .map_err(ProcError::from)
            .and_then(parse_table);
        match parsed {
            Ok(entries) => sockets.extend(entries),
            Err(ProcError::NotFound(_)) if !required => {}
            Err(source) => return Err(SocketTableError { table, source }),
        }
    }
    Ok(sockets)
}

/// Sockets whose local port is `port`, in any state and on any local address.
///
/// Empty when the tables cannot be read: callers use this to explain a
/// failure, and "nothing visible" is the honest answer then.
pub(super) fn sockets_on_port(port: u16) -> Vec<SocketEntry> {
    let mut sockets = tcp_sockets().unwrap_or_default();
    sockets.retain(|socket| socket.local.port() == port);
    sockets
}

fn parse_table(table: impl Read) -> Result<Vec<SocketEntry>, ProcError> {
    let entries = TcpNetEntries::from_read(table, current_system_info())?;
    Ok(entries.0.into_iter().map(SocketEntry::from).collect())
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, TcpListener};

    const HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// Formats an IPv6 address the way the kernel does: four 32-bit words in
    /// host byte order.
    fn kernel_hex(ip: Ipv6Addr) -> String {
        ip.octets()
            .chunks_exact(4)
            .map(|word| {
                format!(
                    "{:08X}",
                    u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
                )
            })
            .collect()
    }

    fn assert_listed(listener: &TcpListener) {
        let local = listener.local_addr().unwrap();
        let found = sockets_on_port(local.port());
        let entry = found
            .iter()
            .find(|entry| entry.local == local && entry.state == TcpState::Listen)
            .unwrap_or_else(|| panic!("{local} not among {found:?}"));
        assert_ne!(entry.inode, 0);
    }

    #[test]
    fn finds_an_ipv4_listener() {
        assert_listed(&TcpListener::bind("127.0.0.1:0").unwrap());
    }

    #[test]
    fn finds_an_ipv6_listener() {
        assert_listed(&TcpListener::bind("[::1]:0").unwrap());
    }

    #[test]
    fn reads_a_process_namespace_like_our_own() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let own_pid = i32::try_from(std::process::id()).unwrap();
        let seen = tcp_sockets_seen_by(own_pid).unwrap();
        assert!(
            seen.iter()
                .any(|entry| entry.local == local && entry.state == TcpState::Listen),
            "{local} not among {seen:?}"
        );
        assert!(tcp_sockets_seen_by(-1).is_err());
    }

    #[test]
    fn folds_ipv4_mapped_addresses_to_ipv4() {
        let mapped = kernel_hex("::ffff:127.0.0.1".parse().unwrap());
        let any = kernel_hex(Ipv6Addr::UNSPECIFIED);
        let table = format!(
            "{HEADER}   0: {mapped}:1920 {any}:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n"
        );
        let entries = parse_table(table.as_bytes()).unwrap();
        assert_eq!(
            entries,
            vec![SocketEntry {
                local: "127.0.0.1:6432".parse().unwrap(),
                remote: "[::]:0".parse().unwrap(),
                state: TcpState::Listen,
                inode: 4242,
            }]
        );
    }

    #[test]
    fn odd_contents_are_an_error_not_a_panic() {
        for line in [
            "   0: zz:1 00:0 0A",
            "   0: 0100007F:1920",
            "   0: 0100007F:1920 00000000:0000 FF 0:0 0 0 0 0 x",
        ] {
            let table = format!("{HEADER}{line}\n");
            assert!(parse_table(table.as_bytes()).is_err(), "{line}");
        }
    }
}
