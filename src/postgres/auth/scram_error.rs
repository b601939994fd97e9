//! Why a SCRAM-SHA-256 exchange failed: shared by the message parser and
//! the exchange that drives it, so neither has to import the other's error.

/// Why an exchange failed. Every error ends the exchange; the login fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("SCRAM client proof does not match the stored verifier (wrong password)")]
    WrongPassword,
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    #[error("unsupported SASL mechanism {0:?}: only SCRAM-SHA-256 is offered")]
    UnsupportedMechanism(String),
    #[error("SCRAM message arrived out of order (exchange not started or already over)")]
    OutOfOrder,
}
