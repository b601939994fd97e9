//! TLS in PostgreSQL's words, on both legs. Upstream: an SSLRequest, then
//! the handshake when the server answers 'S'; 'N' is fine under `prefer`
//! and an error under `require`. From clients: 'S' to an SSLRequest when
//! client TLS is configured, PostgreSQL 17's direct TLS (a ClientHello as
//! the first bytes, ALPN `postgresql` required), and plaintext clients
//! refused under `client_tls_sslmode = require`.

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::upstream_error::UpstreamError;
use crate::metrics::{PROTOCOL_POSTGRES, tls_handshake_done, tls_handshake_failed};
use crate::stream::Stream;
use crate::tls::{ClientTlsContext, POSTGRES_ALPN, UpstreamTls};

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Asks the server for TLS and starts it when the server agrees.
pub(super) async fn negotiate_upstream(
    stream: &mut Stream,
    target: &str,
    tls: &UpstreamTls,
) -> Result<(), UpstreamError> {
    let mut out = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut out);
    stream.write_all(&out).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let started = stream
                .start_tls_client(Arc::clone(&tls.config), tls.server_name.clone())
                .await;
            if let Err(source) = started {
                tls_handshake_failed(PROTOCOL_POSTGRES, "server", "handshake");
                return Err(UpstreamError::TlsHandshake {
                    target: target.to_owned(),
                    sslmode: tls.sslmode,
                    reason: source.to_string(),
                });
            }
            tls_handshake_done(PROTOCOL_POSTGRES, "server", version(stream));
            Ok(())
        }
        b'N' if !tls.required => Ok(()),
        b'N' => {
            tls_handshake_failed(PROTOCOL_POSTGRES, "server", "refused_by_server");
            Err(UpstreamError::TlsRefused {
                target: target.to_owned(),
                sslmode: tls.sslmode,
            })
        }
        other => Err(UpstreamError::Protocol(format!(
            "the server answered SSLRequest with {other:#04x} instead of 'S' or 'N'"
        ))),
    }
}

/// Whether `buf` starts with a TLS record: a client using direct TLS.
pub(super) fn is_direct_tls(buf: &[u8]) -> bool {
    buf.first() == Some(&TLS_HANDSHAKE_RECORD)
}

/// Why a client's TLS could not start; the connection is closed without a
/// message, as there is no channel left to send one on.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientTlsError {
    #[error("{0}")]
    Handshake(#[from] crate::stream::HandshakeError),
    #[error("direct TLS without ALPN \"postgresql\"")]
    NoAlpn,
}

impl ClientTlsError {
    /// The `reason` label of the failure metric.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            ClientTlsError::Handshake(_) => "handshake",
            ClientTlsError::NoAlpn => "no_alpn",
        }
    }
}

fn version(stream: &Stream) -> &'static str {
    stream.tls_version().unwrap_or("TLS")
}

/// Does the handshake of a client that sent a ClientHello first (`buf`
/// holds what was read of it); PostgreSQL requires ALPN `postgresql` there.
pub(super) async fn accept_direct(
    stream: &mut Stream,
    buf: &mut BytesMut,
    tls: &ClientTlsContext,
) -> Result<(), ClientTlsError> {
    let already_read = buf.split();
    stream
        .start_tls_server(Arc::clone(&tls.postgres), &already_read)
        .await?;
    if stream.alpn_protocol() != Some(POSTGRES_ALPN) {
        return Err(ClientTlsError::NoAlpn);
    }
    tls_handshake_done(PROTOCOL_POSTGRES, "client", version(stream));
    Ok(())
}

/// Answers an SSLRequest: 'S' and the handshake when client TLS is
/// configured and TLS can run on this connection, else 'N'.
pub(super) async fn answer_ssl_request(
    stream: &mut Stream,
    tls: Option<&ClientTlsContext>,
) -> Result<(), ClientTlsError> {
    match tls {
        Some(tls) if stream.can_start_tls() => {
            stream
                .write_all(b"S")
                .await
                .map_err(crate::stream::HandshakeError::Failed)?;
            stream
                .start_tls_server(Arc::clone(&tls.postgres), b"")
                .await?;
            tls_handshake_done(PROTOCOL_POSTGRES, "client", version(stream));
            Ok(())
        }
        _ => {
            stream
                .write_all(b"N")
                .await
                .map_err(crate::stream::HandshakeError::Failed)?;
            Ok(())
        }
    }
}

/// The refusal a plaintext TCP client gets under `client_tls_sslmode =
/// require` and stricter; Unix-socket clients are local and exempt.
pub(super) fn plaintext_refusal(stream: &Stream, tls: Option<&ClientTlsContext>) -> Option<String> {
    let tls = tls.filter(|tls| tls.required)?;
    stream.can_start_tls().then(|| {
        format!(
            "TLS is required (client_tls_sslmode = \"{}\"); connect with sslmode=require \
             or stricter",
            tls.sslmode
        )
    })
}
