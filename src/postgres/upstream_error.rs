//! Why an upstream PostgreSQL connection could not be opened or used: the
//! error every part of the upstream leg (connect, TLS, login, queries)
//! returns, in words a person can act on.

use std::io;
use std::time::Duration;

use super::wire::codec;
use super::wire::messages::ErrorFields;

/// Why an upstream connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connection to upstream lost: {0}")]
    Io(#[from] io::Error),
    #[error("upstream server refused login: {} (SQLSTATE {})", .0.message, .0.code)]
    Rejected(ErrorFields),
    #[error(
        "upstream server asks for a password for user {0:?} but none is configured (set upstream_password)"
    )]
    PasswordMissing(String),
    #[error(
        "upstream server asks for an authentication method churnstile does not support (code {0})"
    )]
    UnsupportedAuth(i32),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream server did not finish within {0:?}")]
    Timeout(Duration),
    #[error(
        "{target} does not accept TLS (it answered 'N' to SSLRequest) and \
         server_tls_sslmode = \"{sslmode}\" requires it; enable ssl on the server or \
         set server_tls_sslmode = \"prefer\""
    )]
    TlsRefused {
        target: String,
        sslmode: &'static str,
    },
    #[error("TLS with {target} failed (server_tls_sslmode = \"{sslmode}\"): {reason}")]
    TlsHandshake {
        target: String,
        sslmode: &'static str,
        reason: String,
    },
}

impl From<codec::ProtocolError> for UpstreamError {
    fn from(error: codec::ProtocolError) -> Self {
        UpstreamError::Protocol(error.to_string())
    }
}
