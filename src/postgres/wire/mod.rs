//! PostgreSQL wire protocol, sans-IO: message framing and the scanner that
//! forwards a stream without buffering it (`codec`), the backend messages
//! churnstile writes itself (`messages`), and what a StartupMessage asks for
//! (`startup`). Everything here works on bytes already read and is
//! unit-tested without sockets; the session and login own the I/O.

pub mod codec;
pub(crate) mod messages;
pub(super) mod startup;
