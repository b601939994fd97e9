//! What one process holds, read from /proc/PID: how many fds it has open,
//! which are sockets (with their inodes), its soft open-files limit, its
//! network namespace, and the kernel's protocol name for a socket fd.

use std::io::ErrorKind;
use std::path::Path;

use procfs::ProcError;
use procfs::process::{FDTarget, LimitValue, Process};

use super::owners::ProcessInfo;

/// One process's descriptors: how many, which are sockets, and its limit.
#[derive(Debug, Clone)]
pub(crate) struct ProcessFds {
    pub(crate) process: ProcessInfo,
    pub(crate) open_fds: usize,
    /// `(fd, socket inode)` for every socket fd.
    pub(crate) sockets: Vec<(i32, u64)>,
    /// `None` when unlimited or unreadable.
    pub(crate) fd_soft_limit: Option<u64>,
    /// The inode of /proc/PID/ns/net; processes that share it see the same
    /// /proc/net tables.
    pub(crate) net_namespace: Option<u64>,
}

/// Why a process could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// It exited (or never existed).
    Gone,
    /// Its fds are hidden from us: another user's process without root.
    Hidden,
}

impl ProcessFds {
    pub(crate) fn read(pid: i32) -> Result<ProcessFds, Unreadable> {
        let process = Process::new(pid).map_err(unreadable)?;
        let mut open_fds = 0;
        let mut sockets = Vec::new();
        for fd in process.fd().map_err(unreadable)? {
            open_fds += 1;
            // An fd closed while we list is still counted, as it was open.
            if let Ok(info) = fd
                && let FDTarget::Socket(inode) = info.target
            {
                sockets.push((info.fd, inode));
            }
        }
        let fd_soft_limit =
            process
                .limits()
                .ok()
                .and_then(|limits| match limits.max_open_files.soft_limit {
                    LimitValue::Value(limit) => Some(limit),
                    LimitValue::Unlimited => None,
                });
        Ok(ProcessFds {
            process: ProcessInfo::of_pid(pid).ok_or(Unreadable::Gone)?,
            open_fds,
            sockets,
            fd_soft_limit,
            net_namespace: net_namespace(Path::new(&format!("/proc/{pid}/ns/net"))),
        })
    }
}

/// Every process id in /proc, in ascending order.
pub(crate) fn all_pids() -> Vec<i32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = processes.flatten().map(|process| process.pid()).collect();
    pids.sort_unstable();
    pids
}

/// The network namespace of this process (churnstile or its doctor).
pub(crate) fn own_net_namespace() -> Option<u64> {
    net_namespace(Path::new("/proc/self/ns/net"))
}

/// The kernel's protocol name for socket `fd` of `pid` (`TCP`, `TCPv6`,
/// `UNIX-STREAM`, ...), which sockfs reports as the extended attribute
/// `system.sockprotoname` even for sockets no /proc/net table lists.
pub(crate) fn socket_protocol(pid: i32, fd: i32) -> Option<String> {
    let mut name = [0u8; 64];
    let path = format!("/proc/{pid}/fd/{fd}");
    let len = rustix::fs::getxattr(path.as_str(), "system.sockprotoname", &mut name[..]).ok()?;
    let name = name.get(..len)?;
    let name = name.strip_suffix(&[0]).unwrap_or(name);
    Some(String::from_utf8_lossy(name).into_owned())
}

/// `net:[4026531840]` → 4026531840.
fn net_namespace(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    target
        .to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn unreadable(error: ProcError) -> Unreadable {
    match error {
        ProcError::PermissionDenied(_) => Unreadable::Hidden,
        ProcError::Io(io, _) if io.kind() == ErrorKind::PermissionDenied => Unreadable::Hidden,
        _ => Unreadable::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    fn own_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    #[test]
    fn reads_this_process() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let me = ProcessFds::read(own_pid()).unwrap();
        assert_eq!(me.process.pid, own_pid());
        assert!(me.sockets.iter().any(|&(held, _)| held == fd), "{me:?}");
        assert!(me.open_fds >= me.sockets.len());
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(me.fd_soft_limit, limit.current);
        assert_eq!(me.net_namespace, own_net_namespace());
        assert!(me.net_namespace.is_some());
    }

    #[test]
    fn a_vanished_process_is_gone() {
        assert_eq!(ProcessFds::read(-1).unwrap_err(), Unreadable::Gone);
        assert!(all_pids().contains(&own_pid()));
    }

    #[test]
    fn names_socket_protocols() {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let name = |fd: i32| socket_protocol(own_pid(), fd);
        assert_eq!(name(v4.as_raw_fd()).as_deref(), Some("TCP"));
        assert_eq!(name(v6.as_raw_fd()).as_deref(), Some("TCPv6"));
        // `UNIX` before Linux 5.14.
        assert!(name(unix.as_raw_fd()).unwrap().starts_with("UNIX"));
        assert_eq!(socket_protocol(own_pid(), -1), None);
    }
}
