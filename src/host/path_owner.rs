//! Who holds a Unix socket path: the listening entry for it in
//! /proc/net/unix, and the process with an fd on that inode.

use std::path::Path;

use procfs::net::UnixState;

use super::owners::{ProcessInfo, owners_of_inodes};

/// The process listening on the Unix socket bound at `path`, matched by the
/// path exactly as the listener spelled it when binding. `None` when /proc
/// does not show one.
pub(crate) fn socket_path_owner(path: &Path) -> Option<ProcessInfo> {
    let sockets = procfs::net::unix().ok()?;
    // Listening sockets stay UNCONNECTED; accepted connections also carry
    // the path but are CONNECTED.
    let inodes: Vec<u64> = sockets
        .into_iter()
        .filter(|socket| {
            socket.state == UnixState::UNCONNECTED && socket.path.as_deref() == Some(path)
        })
        .map(|socket| socket.inode)
        .collect();
    owners_of_inodes(&inodes)
        .into_iter()
        .next()
        .map(|(_, process)| process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn names_this_process_for_a_socket_it_listens_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.5432");
        let _listener = UnixListener::bind(&path).unwrap();
        let owner = socket_path_owner(&path).expect("our own listener is visible");
        assert_eq!(owner.pid, i32::try_from(std::process::id()).unwrap());
    }

    #[test]
    fn an_unbound_path_has_no_owner() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(socket_path_owner(&dir.path().join(".s.PGSQL.5432")), None);
    }
}
