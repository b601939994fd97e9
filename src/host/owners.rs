//! Which processes hold which sockets: a scan of every /proc/PID/fd for
//! `socket:[INODE]` links, and the short command line (passwords hidden)
//! that names a process in a one-line message.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use procfs::process::FDTarget;

use super::secrets::redact_secrets;

/// Longest command shown; error messages stay one readable line.
const MAX_COMMAND_CHARS: usize = 80;

/// A process, named the way an operator would recognise it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The command line joined by spaces (program shown by file name),
    /// passwords in it replaced by `***`, cut to about 80 characters; the
    /// kernel's `comm` name when the command line is empty (kernel threads,
    /// zombies).
    pub command: String,
}

impl ProcessInfo {
    /// Reads the command of `pid`; `None` once the process is gone.
    pub fn of_pid(pid: i32) -> Option<ProcessInfo> {
        let dir = Path::new("/proc").join(pid.to_string());
        let command = std::fs::read(dir.join("cmdline"))
            .ok()
            .and_then(|raw| command_line(&raw))
            .or_else(|| {
                let comm = std::fs::read(dir.join("comm")).ok()?;
                let comm = String::from_utf8_lossy(&comm).trim().to_owned();
                (!comm.is_empty()).then_some(comm)
            })?;
        Some(ProcessInfo {
            pid,
            command: shorten(redact_secrets(&command)),
        })
    }
}

/// `pid 1234 "postgres -D /var/lib/..."`; the command is quoted and escaped
/// so odd bytes in it cannot break the line.
impl fmt::Display for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} {:?}", self.pid, self.command)
    }
}

/// Every (inode, process) pair where the process has an fd on one of the
/// socket `inodes`, sorted by inode then pid. Processes that vanish or deny
/// access (other users' fds without root) are skipped.
pub(super) fn owners_of_inodes(inodes: &[u64]) -> Vec<(u64, ProcessInfo)> {
    let wanted: HashSet<u64> = inodes.iter().copied().filter(|&inode| inode != 0).collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut owners = Vec::new();
    for process in processes.flatten() {
        let Ok(fds) = process.fd() else {
            continue;
        };
        let mut held: Vec<u64> = fds
            .flatten()
            .filter_map(|fd| match fd.target {
                FDTarget::Socket(inode) if wanted.contains(&inode) => Some(inode),
                _ => None,
            })
            .collect();
        // dup()ed descriptors name the same socket more than once.
        held.sort_unstable();
        held.dedup();
        if held.is_empty() {
            continue;
        }
        if let Some(info) = ProcessInfo::of_pid(process.pid()) {
            owners.extend(held.into_iter().map(|inode| (inode, info.clone())));
        }
    }
    owners.sort_by_key(|(inode, info)| (*inode, info.pid));
    owners
}

/// Joins NUL-separated arguments; `None` when there are none.
fn command_line(raw: &[u8]) -> Option<String> {
    let mut args = raw
        .split(|&byte| byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy);
    let program = args.next()?;
    // A plain path is shown by its file name (`postgres`, not
    // `/usr/lib/postgresql/16/bin/postgres`); programs that rewrite their
    // title ("postgres: checkpointer") contain spaces and are kept whole.
    let program = match program.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() && !program.contains(char::is_whitespace) => {
            name.to_owned()
        }
        _ => program.into_owned(),
    };
    let command = args.fold(program, |mut line, arg| {
        line.push(' ');
        line.push_str(&arg);
        line
    });
    let command = command.trim();
    (!command.is_empty()).then(|| command.to_owned())
}

fn shorten(command: String) -> String {
    if command.chars().count() <= MAX_COMMAND_CHARS {
        return command;
    }
    let mut short: String = command.chars().take(MAX_COMMAND_CHARS - 3).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    fn own_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    fn socket_inode(socket: &impl AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).unwrap();
        let link = link.to_str().unwrap();
        link.strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn finds_this_process_holding_its_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(&listener);
        let owners = owners_of_inodes(&[inode, 0]);
        assert!(
            owners
                .iter()
                .any(|(found, info)| *found == inode && info.pid == own_pid()),
            "{owners:?}"
        );
    }

    #[test]
    fn no_inodes_means_no_scan() {
        assert!(owners_of_inodes(&[]).is_empty());
        assert!(owners_of_inodes(&[0]).is_empty());
    }

    #[test]
    fn names_this_process_by_its_binary() {
        let me = ProcessInfo::of_pid(own_pid()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(me.command.starts_with(name), "{me}");
        assert!(me.to_string().starts_with(&format!("pid {} \"", own_pid())));
    }

    #[test]
    fn vanished_process_has_no_info() {
        assert_eq!(ProcessInfo::of_pid(-1), None);
    }

    #[test]
    fn command_line_shapes() {
        assert_eq!(
            command_line(b"/usr/bin/python3\0-m\0http.server\0"),
            Some("python3 -m http.server".into())
        );
        assert_eq!(
            command_line(b"postgres: checkpointer   \0\0"),
            Some("postgres: checkpointer".into())
        );
        assert_eq!(
            command_line(b"nginx: master process /usr/sbin/nginx\0"),
            Some("nginx: master process /usr/sbin/nginx".into())
        );
        assert_eq!(command_line(b"caf\xe9\0"), Some("caf\u{fffd}".into()));
        assert_eq!(command_line(b"\0\0"), None);
        assert_eq!(command_line(b""), None);
    }

    #[test]
    fn long_commands_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let short = shorten(long);
        assert_eq!(short.chars().count(), MAX_COMMAND_CHARS);
        assert!(short.ends_with("..."));
        assert_eq!(shorten("short".into()), "short");
    }
}
