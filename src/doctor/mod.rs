//! Host diagnostics read straight from /proc: which sockets exist in which
//! state, which process holds them, how close each destination is to running
//! out of ephemeral ports and each process to running out of descriptors,
//! and whether churnstile can listen and log in upstream. `run_doctor`
//! gathers it all into a [`Report`] for `churnstile doctor`. Everything here
//! is best effort: a process that vanishes or denies access is skipped,
//! never a failure.

mod endpoint_sockets;
mod endpoints;
mod ephemeral;
mod fd_scan;
mod listen;
mod login_advice;
mod login_target;
mod owners;
mod path_owner;
mod port_owner;
mod pressure;
mod processes;
mod reachability;
mod report;
mod run;
mod secrets;
mod sockets;
mod tcp_state;
mod text;

pub use endpoint_sockets::{Direction, EndpointSockets};
pub use ephemeral::{EphemeralError, EphemeralPorts, EphemeralSummary, TIME_WAIT};
pub use listen::{ListenPort, ListenState};
pub use login_target::{LoginCheck, LoginTarget};
pub use owners::{ProcessInfo, owners_of_inodes};
pub use path_owner::socket_path_owner;
pub use port_owner::port_owner;
pub use processes::ProcessUsage;
pub use reachability::DatabaseLogin;
pub use report::{Finding, JSON_VERSION, Severity, Status};
pub use run::{DEFAULT_TOP, DoctorOptions, Report, run_doctor};
pub use sockets::{
    SocketEntry, SocketTableError, sockets_on_port, tcp_sockets, tcp_sockets_seen_by,
};
pub use tcp_state::TcpState;
pub use text::render as render_text;
