//! Server side of PostgreSQL client authentication, sans-IO: checking the
//! MD5 challenge response and running the SCRAM-SHA-256 exchange against the
//! secrets in the configuration, or against mock secrets for users it does
//! not know. The session owns the sockets and the
//! Authentication* messages; this module only turns client bytes into
//! verdicts and reply bytes.

mod crypto;
mod md5;
mod mock;
mod scram;
mod scram_error;
mod scram_messages;
mod scram_verifier;

pub use md5::{new_md5_salt, verify_md5_response};
pub use mock::{mock_md5_secret, mock_scram_verifier};
pub use scram::ScramExchange;
pub use scram_error::ScramError;
pub use scram_verifier::scram_verifier_from_password;
