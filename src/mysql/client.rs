//! One MySQL client connection from accept to close: who is on the other
//! end, its login (bounded by `client_login_timeout`, refused with an ERR
//! packet), then its session.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::login::{self, Client, LoginError, Peer};
use super::packet_stream::PacketStream;
use super::service::MySqlService;
use super::session;
use super::wire::errors;
use super::wire::packet::write_packet;
use super::wire::response::ErrPacket;
use crate::stream::Stream;

/// Serves one accepted client connection until it closes.
pub(crate) async fn serve(service: Arc<MySqlService>, stream: Stream, addr: String) {
    let peer = Peer::of(&stream, addr);
    let mut io = PacketStream::new(stream);
    let id = service.new_connection_id();
    // The databases' settings are taken as they were when the login began.
    let config = service.config.load_full();
    let outcome = log_in(
        &service,
        &mut io,
        id,
        &peer,
        config.pool.client_login_timeout,
    );
    if let Some(client) = outcome.await {
        session::run(service, &config, io, id, peer, client).await;
    }
}

/// Runs the login; a refused client is told why and gets `None`.
async fn log_in(
    service: &MySqlService,
    io: &mut PacketStream,
    id: u32,
    peer: &Peer,
    timeout: Option<Duration>,
) -> Option<Client> {
    let login = login::log_in(io, service, id, &peer.host, peer.secure_transport);
    let outcome = match timeout {
        Some(limit) => {
            (tokio::time::timeout(limit, login).await).unwrap_or_else(|_| Err((too_slow(limit), 2)))
        }
        None => login.await,
    };
    let (error, seq) = match outcome {
        Ok(client) => return Some(client),
        Err(refusal) => refusal,
    };
    crate::metrics::login_refused("28000");
    if let LoginError::Refused(packet) = &error {
        tracing::info!(peer = %peer.addr, error = %packet.message, "MySQL login refused");
        let mut payload = BytesMut::new();
        packet.encode(&mut payload);
        let _ = io.send(seq, &payload).await;
    }
    None
}

fn too_slow(limit: Duration) -> LoginError {
    LoginError::Refused(ErrPacket::new(
        errors::HANDSHAKE_ERROR,
        format!("client did not log in within client_login_timeout ({limit:?})"),
    ))
}

/// Tells a client over `max_client_conn` so, as MySQL does, with an ERR
/// packet in place of the greeting.
pub(crate) async fn refuse_too_many(mut stream: Stream) {
    use tokio::io::AsyncWriteExt;
    let mut payload = bytes::BytesMut::new();
    ErrPacket::new(
        errors::TOO_MANY_CONNECTIONS,
        "Too many connections (max_client_conn)",
    )
    .encode(&mut payload);
    let mut out = bytes::BytesMut::new();
    write_packet(&mut out, 0, &payload);
    let _ = stream.write_all(&out).await;
}
