//! Who holds the TCP port we want: the listener (or, failing that, the
//! connection using it as its source port) whose address collides with a
//! bind to `addr`, and the process behind it.

use std::net::{IpAddr, SocketAddr};

use super::owners::{ProcessInfo, owners_of_inodes};
use super::sockets::sockets_on_port;
use super::tcp_state::TcpState;

/// The process holding a socket that keeps `addr` from being bound: same
/// port, and the same IP or a wildcard (`0.0.0.0` / `::`) on either side.
/// IPv6 binds are taken to be IPv6-only, as churnstile makes them.
///
/// A LISTEN socket is the usual holder. Without one, a connection whose
/// source port the kernel took from the ephemeral range also blocks the
/// bind (unless it set SO_REUSEADDR, which /proc does not show).
///
/// `None` when /proc does not show one (another user's process without root,
/// another network namespace, or the holder is already gone).
pub(crate) fn port_owner(addr: SocketAddr) -> Option<ProcessInfo> {
    let wanted = addr.ip().to_canonical();
    let mut holders = sockets_on_port(addr.port());
    // TIME_WAIT sockets have no inode and do not block a SO_REUSEADDR bind.
    holders.retain(|socket| socket.inode != 0 && collides(socket.local.ip(), wanted));
    // A listener explains the failure best, one on the exact address better
    // than a wildcard.
    holders.sort_by_key(|socket| {
        (
            socket.state != TcpState::Listen,
            socket.local.ip() != wanted,
        )
    });
    let inodes: Vec<u64> = holders.iter().map(|socket| socket.inode).collect();
    let owners = owners_of_inodes(&inodes);
    inodes.iter().find_map(|inode| {
        owners
            .iter()
            .find(|(held, _)| held == inode)
            .map(|(_, process)| process.clone())
    })
}

/// Whether a listener on `held` takes the port from a bind to `wanted`;
/// both are canonical (IPv4-mapped addresses already folded to IPv4).
fn collides(held: IpAddr, wanted: IpAddr) -> bool {
    match (held, wanted) {
        (IpAddr::V4(held), IpAddr::V4(wanted)) => {
            held == wanted || held.is_unspecified() || wanted.is_unspecified()
        }
        (IpAddr::V6(held), IpAddr::V6(wanted)) => {
            held == wanted || held.is_unspecified() || wanted.is_unspecified()
        }
        // A dual-stack `::` listener also holds the port on every IPv4 address.
        (IpAddr::V6(held), IpAddr::V4(_)) => held.is_unspecified(),
        // An IPv6-only bind never meets IPv4 listeners.
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn names_this_process_for_a_port_it_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let owner = port_owner(addr).expect("our own listener is visible");
        assert_eq!(owner.pid, i32::try_from(std::process::id()).unwrap());
        let exe = std::env::current_exe().unwrap();
        let binary = exe.file_name().unwrap().to_str().unwrap();
        assert!(owner.command.contains(binary), "{owner}");

        let wildcard = SocketAddr::new(ip("0.0.0.0"), addr.port());
        assert_eq!(port_owner(wildcard), Some(owner));
    }

    #[test]
    fn names_this_process_for_a_source_port_its_connection_uses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        drop(listener);
        let source = client.local_addr().unwrap();
        let owner = port_owner(source).expect("our own connection is visible");
        assert_eq!(owner.pid, i32::try_from(std::process::id()).unwrap());
    }

    #[test]
    fn a_different_address_on_the_port_is_no_conflict() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(port_owner(SocketAddr::new(ip("127.0.0.2"), port)), None);
        assert_eq!(port_owner(SocketAddr::new(ip("::1"), port)), None);
    }

    #[test]
    fn collision_rules() {
        assert!(collides(ip("127.0.0.1"), ip("127.0.0.1")));
        assert!(collides(ip("0.0.0.0"), ip("127.0.0.1")));
        assert!(collides(ip("127.0.0.1"), ip("0.0.0.0")));
        assert!(!collides(ip("127.0.0.1"), ip("10.0.0.1")));
        assert!(collides(ip("::"), ip("::1")));
        assert!(collides(ip("::1"), ip("::")));
        assert!(!collides(ip("::1"), ip("fe80::1")));
        assert!(collides(ip("::"), ip("127.0.0.1")));
        assert!(!collides(ip("::1"), ip("127.0.0.1")));
        assert!(!collides(ip("0.0.0.0"), ip("::")));
    }
}
