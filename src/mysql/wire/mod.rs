//! MySQL/MariaDB wire protocol, sans-IO: packet framing, the handshake and
//! login packets, the generic responses, and the constants they carry. Every
//! decoder works on one payload already taken off the stream and reports a
//! short or inconsistent payload as a [`WireError`], never a panic.

pub mod command;
pub mod command_payload;
pub mod errors;
pub mod flags;
pub mod handshake;
pub mod lenenc;
pub mod packet;
pub mod response;

#[cfg(test)]
mod robustness;

/// A packet payload that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("packet ended early while reading {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Names the field a read was for, so a short packet's error says which part
/// of which packet was missing rather than which primitive ran out.
pub(crate) trait Field<T> {
    fn field(self, name: &'static str) -> Result<T, WireError>;
}

impl<T> Field<T> for Result<T, WireError> {
    fn field(self, name: &'static str) -> Result<T, WireError> {
        self.map_err(|error| match error {
            WireError::Truncated(_) => WireError::Truncated(name),
            malformed => malformed,
        })
    }
}
