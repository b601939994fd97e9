//! Host diagnostics read straight from /proc: which sockets exist in which
//! state, and which process holds them. Everything here is best effort: a
//! process that vanishes or denies access is skipped, never a failure.

mod owners;
mod path_owner;
mod port_owner;
mod sockets;
mod tcp_state;

pub use owners::{ProcessInfo, owners_of_inodes};
pub use path_owner::socket_path_owner;
pub use port_owner::port_owner;
pub use sockets::{SocketEntry, SocketTableError, sockets_on_port, tcp_sockets, tcp_sockets_seen_by};
pub use tcp_state::TcpState;
