//! The startup phase over the client's socket: reading packets until a
//! StartupMessage or CancelRequest, starting TLS when the client asks for it
//! (`encryption.rs`) and declining GSS encryption, and sending the FATAL
//! that ends a refused connection. What the packets mean is decided in
//! `wire/startup.rs`.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::encryption::{self, ClientTlsError};
use super::wire::codec::{self, InitialPacket};
use super::wire::messages::{self, Severity, sqlstate};
pub(super) use super::wire::startup::{Opening, Startup};
use super::wire::startup::{Refusal, check_version, negotiation, startup_from};
use crate::stream::Stream;
use crate::tls::ClientTlsContext;

/// Why the startup phase ended without a login attempt. Each carries the
/// SQLSTATE and message the client gets.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartupError {
    #[error("client closed the connection during startup")]
    Closed,
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] ClientTlsError),
}

impl From<codec::ProtocolError> for StartupError {
    fn from(error: codec::ProtocolError) -> Self {
        StartupError::Refused {
            code: sqlstate::PROTOCOL_VIOLATION,
            message: error.to_string(),
        }
    }
}

impl From<Refusal> for StartupError {
    fn from(Refusal { code, message }: Refusal) -> Self {
        StartupError::Refused { code, message }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> StartupError {
    StartupError::Refused {
        code,
        message: message.into(),
    }
}

/// Reads packets until a StartupMessage or CancelRequest arrives, starting
/// TLS on the way when `tls` allows it. `buf` keeps bytes the client sent
/// beyond the startup packet.
pub(super) async fn read_opening(
    stream: &mut Stream,
    buf: &mut BytesMut,
    tls: Option<&ClientTlsContext>,
) -> Result<Opening, StartupError> {
    loop {
        let packet = loop {
            if let Some(tls) = tls
                && stream.can_start_tls()
                && encryption::is_direct_tls(buf)
            {
                encryption::accept_direct(stream, buf, tls).await?;
                continue;
            }
            if let Some(packet) = codec::decode_initial(buf)? {
                break packet;
            }
            if stream.read_buf(buf).await? == 0 {
                return Err(StartupError::Closed);
            }
        };
        match packet {
            InitialPacket::SslRequest | InitialPacket::GssEncRequest => {
                // Bytes sent before our answer would be read as if encrypted
                // later (CVE-2021-23222): refuse them.
                if !buf.is_empty() {
                    return Err(refused(
                        sqlstate::PROTOCOL_VIOLATION,
                        "received unencrypted data after encryption request",
                    ));
                }
                if stream.tls_version().is_some() {
                    return Err(refused(
                        sqlstate::PROTOCOL_VIOLATION,
                        "encryption request over a connection already encrypted",
                    ));
                }
                match packet {
                    InitialPacket::SslRequest => {
                        encryption::answer_ssl_request(stream, tls).await?;
                    }
                    _ => stream.write_all(b"N").await?,
                }
            }
            InitialPacket::CancelRequest {
                process_id,
                secret_key,
            } => {
                return Ok(Opening::Cancel {
                    process_id,
                    secret_key,
                });
            }
            InitialPacket::Startup {
                major,
                minor,
                params,
            } => {
                if let Some(message) = encryption::plaintext_refusal(stream, tls) {
                    return Err(refused(sqlstate::INVALID_AUTHORIZATION, message));
                }
                return accept_startup(stream, major, minor, params)
                    .await
                    .map(Opening::Startup);
            }
        }
    }
}

/// Checks the StartupMessage, answering a newer minor version or protocol
/// options with NegotiateProtocolVersion before going on, as PostgreSQL does.
async fn accept_startup(
    stream: &mut Stream,
    major: u16,
    minor: u16,
    params: Vec<(String, String)>,
) -> Result<Startup, StartupError> {
    check_version(major, minor)?;
    if let Some(out) = negotiation(minor, &params) {
        stream.write_all(&out).await?;
    }
    Ok(startup_from(params)?)
}

/// Sends a FATAL ErrorResponse; the caller then closes the connection.
pub(super) async fn send_fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    messages::error_response(&mut out, Severity::Fatal, code, message);
    let _ = stream.write_all(&out).await;
}

/// How long a refused client gets to send its startup packet.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a connection churnstile will not serve (e.g. `max_client_conn`
/// reached) the way PostgreSQL does: after its startup packet, with FATAL.
pub(super) async fn refuse_connection(mut stream: Stream, code: &str, message: &str) {
    let mut buf = BytesMut::new();
    let opening =
        tokio::time::timeout(REFUSE_TIMEOUT, read_opening(&mut stream, &mut buf, None)).await;
    if let Ok(Ok(Opening::Startup(_))) = opening {
        send_fatal(&mut stream, code, message).await;
    }
}
