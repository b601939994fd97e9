//! Moving messages between an attached client and server connection. In
//! session mode bytes pass through untouched (only Terminate is held back).
//! Under transaction and statement pooling the extended protocol is
//! rewritten: client statement names become churnstile's server-side names,
//! statements are prepared lazily where the client landed, closes and
//! prepares of statements the server holds are answered by churnstile, and
//! the response queue keeps what the client sees identical to a direct
//! connection. A message naming a statement whose Parse, in an earlier Sync
//! group, is still unanswered waits for that answer: only then is it known
//! whether the name exists. This file drives both directions; the rewriting
//! of one client message lives in `rewrite.rs`, the responses owed in
//! `queue.rs`.

pub(super) mod queue;
mod rewrite;

use bytes::{Buf, BytesMut};

use self::queue::{Routing, StatementChanges};
use self::rewrite::Rewriter;
use super::backend::ServerState;
use super::prepared::StatementRegistry;
use super::sides::{Attached, ClientSide};
use super::wire::codec::{
    self, Framing, MAX_INSPECTED_MESSAGE, ProtocolError, Verdict, frontend_framing,
};
use crate::config::{PoolMode, PoolSettings};

/// Client message types handled whole when pooling (rewritten or analysed).
const POOLING_INSPECTS: &[u8] = b"XQPBDC";

/// How the relay frames a client message: PostgreSQL's limits, and those
/// it holds whole (`inspect`) no larger than `max_packet_size`.
fn client_framing(tag: u8, inspect: &[u8], max_packet_size: usize) -> Framing {
    match frontend_framing(tag, inspect) {
        Framing::Inspect { limit } => Framing::Inspect {
            limit: limit.min(max_packet_size),
        },
        other => other,
    }
}

/// Message types handled whole in this pool mode.
fn inspected(pooling: bool) -> &'static [u8] {
    if pooling { POOLING_INSPECTS } else { b"X" }
}

/// True when the client's first buffered message can be acted on: its
/// header is there and, for a message handled whole, all of it. A server
/// connection is only taken for a message that can be sent. A message of
/// an unknown type, or declared longer than its limit, is refused as soon
/// as its header arrives, before any of its body is buffered.
pub(super) fn first_message_ready(
    buf: &[u8],
    settings: &PoolSettings,
) -> Result<bool, ProtocolError> {
    let Some(header) = buf.get(..5) else {
        return Ok(false);
    };
    let tag = header[0];
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let pooling = settings.pool_mode != PoolMode::Session;
    let (whole, limit) = match client_framing(tag, inspected(pooling), settings.max_packet_size) {
        Framing::Inspect { limit } => (true, limit),
        Framing::Stream { limit } => (false, limit),
        Framing::Invalid => return Err(ProtocolError::InvalidType(tag)),
    };
    if declared > limit {
        return Err(ProtocolError::TooLarge {
            tag: tag as char,
            len: declared,
            limit,
        });
    }
    Ok(!whole || buf.len() > declared)
}

/// Capacity a relay buffer may keep between uses; one grown past it by a
/// large message is let go rather than held for the rest of the session.
const KEPT_BUFFER_CAPACITY: usize = 64 * 1024;

/// Empties `buf` for its next use, keeping its allocation unless a large
/// message grew it.
pub(super) fn recycle(buf: &mut BytesMut) {
    if buf.capacity() > KEPT_BUFFER_CAPACITY {
        *buf = BytesMut::new();
    } else {
        buf.clear();
    }
}

/// What handling the client's bytes produced. The session keeps one and
/// recycles its buffers, so relaying allocates nothing per message.
#[derive(Debug, Default)]
pub(super) struct ClientOutcome {
    pub(super) to_server: BytesMut,
    /// Responses churnstile gives itself, due now.
    pub(super) to_client: BytesMut,
    /// The client sent Terminate.
    pub(super) terminated: bool,
}

impl ClientOutcome {
    pub(super) fn recycle(&mut self) {
        recycle(&mut self.to_server);
        recycle(&mut self.to_client);
        self.terminated = false;
    }
}

/// Handles the whole messages (and streamed parts) the client has sent,
/// into an empty `outcome`.
pub(super) fn client_to_server(
    client: &mut ClientSide,
    server: &mut Attached,
    registry: &StatementRegistry,
    settings: &PoolSettings,
    outcome: &mut ClientOutcome,
) -> Result<(), ProtocolError> {
    let pooling = settings.pool_mode != PoolMode::Session;
    let inspect = inspected(pooling);
    let max_packet_size = settings.max_packet_size;
    let conn = server.pooled.conn();
    let mut custom_settings = Vec::new();
    let mut rewriter = Rewriter {
        client_statements: &mut client.statements,
        server_statements: &mut conn.statements,
        queue: &mut server.queue,
        registry,
        settings,
        needs_probe: &mut client.needs_probe,
        pins: &mut client.pins,
        custom_settings: &mut custom_settings,
        unnamed_statement: &mut client.unnamed_statement,
        unnamed_is_clients: &mut server.unnamed_is_clients,
    };
    let state = &mut conn.state;
    let traffic = &mut client.traffic;
    let terminated = &mut outcome.terminated;
    let scanned = client.scanner.scan(
        &client.buf,
        |tag| client_framing(tag, inspect, max_packet_size),
        &mut outcome.to_server,
        |tag, body, out| {
            if tag == b'X' {
                *terminated = true;
                return Verdict::StopBefore;
            }
            if state.ignores(tag) {
                // Nothing will answer it, so nothing is owed.
                return Verdict::Forward;
            }
            let verdict = if pooling {
                rewriter.handle(tag, body, out)
            } else {
                Verdict::Forward
            };
            // A message held back (see `Rewriter::handle`) is not sent yet.
            if verdict != Verdict::StopBefore {
                state.note_sent(tag);
                traffic.client_sent(tag);
            }
            verdict
        },
    )?;
    client.buf.advance(scanned.consumed);
    client.note_custom_settings(custom_settings);
    server.queue.emit_ready(&mut outcome.to_client);
    Ok(())
}

/// Handles what the server sent; appends the bytes for the client to `out`.
pub(super) fn server_to_client(
    client: &mut ClientSide,
    server: &mut Attached,
    pooling: bool,
    out: &mut BytesMut,
) -> Result<(), ProtocolError> {
    let conn = server.pooled.conn();
    out.reserve(conn.read_buf.len() + 16);
    let mut changes = StatementChanges::default();
    let framing = |tag| match tag {
        b'1' | b'3' if pooling => Framing::Inspect {
            limit: MAX_INSPECTED_MESSAGE,
        },
        tag => ServerState::framing(tag),
    };
    let state = &mut conn.state;
    let queue = &mut server.queue;
    let seen_params = &mut client.seen_params;
    let traffic = &mut client.traffic;
    let scanned = conn
        .scanner
        .scan(&conn.read_buf, framing, out, |tag, body, out| {
            let ignored_syncs = match tag {
                b'G' | b'W' => state.syncs_ignored_if_copy_starts(),
                _ => 0,
            };
            state.observe(tag, body);
            if pooling {
                queue.forget_syncs(ignored_syncs);
            }
            if let (b'Z', Some(&[status])) = (tag, body) {
                traffic.ready_for_query(status, state.pending_ready > 0);
            }
            if let (b'S', Some(mut body)) = (tag, body)
                && let (Some(name), Some(value)) =
                    (codec::take_cstr(&mut body), codec::take_cstr(&mut body))
            {
                seen_params.insert(name, value);
            }
            if !pooling {
                return Verdict::Forward;
            }
            match queue.route(tag, out, &mut changes) {
                Routing::Forward => Verdict::Forward,
                Routing::Swallow => Verdict::Drop,
            }
        })?;
    conn.read_buf.advance(scanned.consumed);
    if pooling {
        server.queue.emit_ready(out);
        let capacity = usize::MAX;
        for name in changes.not_prepared {
            conn.statements.forget(&name);
        }
        for name in changes.still_prepared {
            conn.statements.insert(&name, capacity);
        }
        for parse in changes.unbound {
            if client
                .statements
                .get(&parse.name)
                .is_some_and(|def| def.server_name == parse.server_name)
            {
                client.statements.remove(&parse.name);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(pool_mode: PoolMode) -> PoolSettings {
        PoolSettings {
            pool_mode,
            max_packet_size: 1024,
            ..PoolSettings::default()
        }
    }

    #[test]
    fn a_server_is_taken_only_for_a_message_that_can_be_sent() {
        let pooling = mode(PoolMode::Transaction);
        let ready =
            |buf: &[u8], settings: &PoolSettings| first_message_ready(buf, settings).unwrap();
        let query = [b'Q', 0, 0, 0, 8, b'S', b'E', b'L', 0];
        assert!(!ready(&query[..4], &pooling));
        assert!(!ready(&query[..8], &pooling), "a query is analysed whole");
        assert!(ready(&query, &pooling));
        assert!(
            ready(&query[..6], &mode(PoolMode::Session)),
            "session mode streams it"
        );
        assert!(
            ready(&[b'd', 0, 0, 0, 100, 1], &pooling),
            "COPY data streams"
        );
    }

    #[test]
    fn an_oversized_or_unknown_first_message_is_refused_from_its_header() {
        let pooling = mode(PoolMode::Transaction);
        let huge_query = [b'Q', 0x3f, 0xff, 0xff, 0xff];
        assert_eq!(
            first_message_ready(&huge_query, &pooling),
            Err(ProtocolError::TooLarge {
                tag: 'Q',
                len: (1 << 30) - 1,
                limit: 1024
            }),
            "over max_packet_size when held whole"
        );
        assert_eq!(
            first_message_ready(&huge_query, &mode(PoolMode::Session)),
            Ok(true),
            "streamed in session mode, within PostgreSQL's limit"
        );
        let over_protocol = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            first_message_ready(&over_protocol, &mode(PoolMode::Session)),
            Err(ProtocolError::TooLarge { limit, .. }) if limit == codec::MAX_MESSAGE
        ));
        assert_eq!(
            first_message_ready(&[b'!', 0, 0, 0, 4], &pooling),
            Err(ProtocolError::InvalidType(b'!'))
        );
    }
}
