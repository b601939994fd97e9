//! The first packets of a client connection: SSL/GSS encryption requests
//! (declined), CancelRequest, and the StartupMessage with protocol version
//! negotiation.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, InitialPacket};
use super::messages::{self, Severity, sqlstate};
use crate::stream::Stream;

/// What a new connection turned out to be.
#[derive(Debug)]
pub enum Opening {
    Startup(Startup),
    Cancel { process_id: i32, secret_key: i32 },
}

/// A client's StartupMessage.
#[derive(Debug, Clone)]
pub struct Startup {
    pub user: String,
    pub database: String,
    pub params: Vec<(String, String)>,
}

/// Why the startup phase ended without a login attempt. Each carries the
/// SQLSTATE and message the client gets.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("client closed the connection during startup")]
    Closed,
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<codec::ProtocolError> for StartupError {
    fn from(error: codec::ProtocolError) -> Self {
        StartupError::Refused {
            code: sqlstate::PROTOCOL_VIOLATION,
            message: error.to_string(),
        }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> StartupError {
    StartupError::Refused {
        code,
        message: message.into(),
    }
}

/// Reads packets until a StartupMessage or CancelRequest arrives. `buf`
/// keeps bytes the client sent beyond the startup packet.
pub async fn read_opening(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Opening, StartupError> {
    loop {
        let packet = loop {
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
                stream.write_all(b"N").await?;
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
                return accept_startup(stream, major, minor, params)
                    .await
                    .map(Opening::Startup);
            }
        }
    }
}

async fn accept_startup(
    stream: &mut Stream,
    major: u16,
    minor: u16,
    params: Vec<(String, String)>,
) -> Result<Startup, StartupError> {
    if major != 3 {
        return Err(refused(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"),
        ));
    }
    let unrecognised: Vec<&str> = params
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.starts_with("_pq_."))
        .collect();
    if minor > 0 || !unrecognised.is_empty() {
        let mut out = BytesMut::new();
        messages::negotiate_protocol_version(&mut out, 0, &unrecognised);
        stream.write_all(&out).await?;
    }
    if params.iter().any(|(name, value)| {
        name == "replication" && value != "false" && value != "0" && value != "off"
    }) {
        return Err(refused(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through churnstile",
        ));
    }
    let value = |key: &str| {
        params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, v)| v.clone())
    };
    let user = value("user")
        .filter(|user| !user.is_empty())
        .ok_or_else(|| {
            refused(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let database = value("database")
        .filter(|db| !db.is_empty())
        .unwrap_or_else(|| user.clone());
    Ok(Startup {
        user,
        database,
        params,
    })
}

/// Sends a FATAL ErrorResponse; the caller then closes the connection.
pub async fn send_fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    messages::error_response(&mut out, Severity::Fatal, code, message);
    let _ = stream.write_all(&out).await;
}

/// How long a refused client gets to send its startup packet.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a connection churnstile will not serve (e.g. `max_client_conn`
/// reached) the way PostgreSQL does: after its startup packet, with FATAL.
pub async fn refuse_connection(mut stream: Stream, code: &str, message: &str) {
    let mut buf = BytesMut::new();
    let opening = tokio::time::timeout(REFUSE_TIMEOUT, read_opening(&mut stream, &mut buf)).await;
    if let Ok(Ok(Opening::Startup(_))) = opening {
        send_fatal(&mut stream, code, message).await;
    }
}
