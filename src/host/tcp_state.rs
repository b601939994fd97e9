//! The TCP states the kernel reports in /proc/net/tcp, named as `ss` and the
//! kernel sources name them so reports read the way operators expect.

use std::fmt;

/// The state of one TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    /// The kernel's name for the state, e.g. `TIME_WAIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<procfs::net::TcpState> for TcpState {
    fn from(state: procfs::net::TcpState) -> Self {
        use procfs::net::TcpState as Proc;
        match state {
            Proc::Established => TcpState::Established,
            Proc::SynSent => TcpState::SynSent,
            Proc::SynRecv => TcpState::SynRecv,
            Proc::FinWait1 => TcpState::FinWait1,
            Proc::FinWait2 => TcpState::FinWait2,
            Proc::TimeWait => TcpState::TimeWait,
            Proc::Close => TcpState::Close,
            Proc::CloseWait => TcpState::CloseWait,
            Proc::LastAck => TcpState::LastAck,
            Proc::Listen => TcpState::Listen,
            Proc::Closing => TcpState::Closing,
            Proc::NewSynRecv => TcpState::NewSynRecv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_the_kernel_name() {
        assert_eq!(TcpState::TimeWait.to_string(), "TIME_WAIT");
        assert_eq!(
            TcpState::from(procfs::net::TcpState::CloseWait),
            TcpState::CloseWait
        );
    }
}
