//! Host diagnostics built on what `host/` reads from /proc: which sockets
//! exist in which state, which process holds them, how close each
//! destination is to running out of ephemeral ports and each process to
//! running out of descriptors, and whether churnstile can listen and log in
//! upstream. `run_doctor` gathers it all into a [`Report`] for
//! `churnstile doctor`. Everything here is best effort: what cannot be read
//! becomes a finding, never a failure.

mod endpoint_sockets;
mod endpoints;
mod ephemeral;
mod listen;
mod login_advice;
mod login_target;
mod pressure;
mod processes;
mod reachability;
mod report;
mod run;
mod text;

pub(crate) use ephemeral::ListenPortFindings;
pub use login_target::LoginCheck;
pub use report::Status;
pub use run::{DEFAULT_TOP, DoctorOptions, Report, run_doctor};
pub use text::render as render_text;
