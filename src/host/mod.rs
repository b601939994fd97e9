//! What the host's /proc says: TCP sockets and their states, which process
//! owns a socket (by port or Unix socket path), the ephemeral-port
//! settings, and each process's descriptors against its limit. Plain
//! readings, no verdicts: `doctor/` judges them, `metrics/` publishes them,
//! `server/` names who holds a port it cannot bind. Imports nothing else of
//! churnstile's, and is best effort: a process that vanishes or denies
//! access is skipped, never a failure.

mod ephemeral;
mod fd_scan;
mod owners;
mod path_owner;
mod port_owner;
mod secrets;
mod sockets;
mod tcp_state;

pub(crate) use ephemeral::EphemeralPorts;
pub use ephemeral::TIME_WAIT;
pub(crate) use fd_scan::{ProcessFds, Unreadable, all_pids, own_net_namespace, socket_protocol};
pub use owners::ProcessInfo;
pub(crate) use path_owner::socket_path_owner;
pub(crate) use port_owner::port_owner;
pub(crate) use sockets::tcp_sockets_seen_by;
pub use sockets::{SocketEntry, SocketTableError, tcp_sockets};
pub use tcp_state::TcpState;
