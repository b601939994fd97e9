//! Entry points for the fuzz targets in `fuzz/`: each takes untrusted bytes
//! and feeds them to one decoder the way churnstile meets them (a client, a
//! server or a configuration file), ignoring the verdict. A decoder may
//! refuse anything but must never panic, hang or allocate without bound.
//! Hidden from the docs and kept here so the decoders' own modules stay
//! as narrowly `pub` as their callers need.

use std::sync::OnceLock;

use bytes::BytesMut;

use crate::config::{self, ScramVerifier};
use crate::mysql::wire::{command_payload, handshake, lenenc, packet, response};
use crate::postgres::auth::{ScramExchange, scram_verifier_from_password};
use crate::postgres::backend::ServerState;
use crate::postgres::wire::codec::{self, Verdict};
use crate::postgres::wire::messages;

/// A TOML configuration file.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::parse_str(text, "fuzz.toml");
    }
}

/// The zero-config upstream URL (`postgres://USER:PASSWORD@HOST:PORT/DB`),
/// as `--upstream` gives it, with no environment.
pub fn sidecar_url(data: &[u8]) {
    if let Ok(url) = std::str::from_utf8(data) {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 6432));
        let flags = config::Sidecar::new(listen, url);
        let _ = config::sidecar_config(&flags, &|_| None);
    }
}

/// The MySQL HandshakeResponse (or SSLRequest) a client sends at login.
pub fn mysql_handshake_response(data: &[u8]) {
    let _ = handshake::is_ssl_request(data);
    let _ = handshake::HandshakeResponse::decode(data);
}

/// A client's byte stream cut into MySQL packets, each command payload read
/// as a command byte followed by length-encoded fields.
pub fn mysql_command_packets(data: &[u8]) {
    let mut stream = BytesMut::from(data);
    while let Some((_header, payload)) = packet::take_packet(&mut stream) {
        let mut rest = &payload[..];
        let Ok(command) = lenenc::read_u8(&mut rest) else {
            continue;
        };
        let _ = crate::mysql::wire::command::name(command);
        while lenenc::read_bytes(&mut rest).is_ok() && !rest.is_empty() {}
    }
}

/// A COM_CHANGE_USER payload, decoded under the capabilities in its first
/// four bytes.
pub fn mysql_change_user(data: &[u8]) {
    if let Some((caps, payload)) = data.split_first_chunk::<4>() {
        let _ = command_payload::ChangeUser::decode(payload, u32::from_le_bytes(*caps));
    }
}

/// A COM_STMT_EXECUTE payload rewritten for a statement whose parameter
/// count is the first two bytes, with or without stored parameter types.
pub fn mysql_stmt_execute(data: &[u8]) {
    let Some((params, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    // As the session does: the statement id must be there.
    if payload.len() < 5 {
        return;
    }
    let params = u16::from_le_bytes(*params);
    let stored = bytes::Bytes::from(vec![0x08; 2 * usize::from(params)]);
    let _ = command_payload::rewrite_execute(payload, 7, params, None);
    let _ = command_payload::rewrite_execute(payload, 7, params, Some(&stored));
}

/// What a (hostile) MySQL server sends: the initial handshake, auth
/// switches, OK/ERR/EOF and the session-state changes in an OK. The first
/// four bytes are the capabilities the OK is decoded under.
pub fn mysql_server_responses(data: &[u8]) {
    let Some((caps, payload)) = data.split_first_chunk::<4>() else {
        return;
    };
    let capabilities = u32::from_le_bytes(*caps);
    let _ = handshake::ServerHandshake::decode(payload);
    let _ = handshake::AuthSwitchRequest::decode(payload);
    let _ = response::ErrPacket::decode(payload);
    let _ = response::Eof::decode(payload);
    let _ = response::is_terminator(payload);
    if let Ok(ok) = response::OkPacket::decode(payload, capabilities) {
        let _ = ok;
    }
    let _ = response::session_changes(payload);
}

/// The first packets of a PostgreSQL connection: SSLRequest, GSSENCRequest,
/// CancelRequest or StartupMessage.
pub fn pg_startup(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec::decode_initial(&mut buf) {}
}

/// A logged-in client's byte stream, fed to the relay's scanner in two
/// chunks (split at the first byte's value) with Parse and Bind inspected
/// whole, then to the whole-message decoder used before attaching.
pub fn pg_frontend(data: &[u8]) {
    let split = data.first().map_or(0, |&b| usize::from(b).min(data.len()));
    let mut scanner = codec::MessageScanner::default();
    let mut output = BytesMut::new();
    let mut pending = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        pending.extend_from_slice(chunk);
        let scanned = scanner.scan(
            &pending,
            |tag| codec::frontend_framing(tag, b"PB"),
            &mut output,
            |_, _, _| Verdict::Forward,
        );
        match scanned {
            Ok(scanned) => drop(pending.split_to(scanned.consumed)),
            Err(_) => break,
        }
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec::decode_message(&mut buf, codec::MAX_SMALL_MESSAGE) {}
}

/// SCRAM-SHA-256 messages from a client: the client-first-message, then
/// (split at the first NUL) a client-final-message.
pub fn pg_scram_client(data: &[u8]) {
    static VERIFIER: OnceLock<ScramVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| scram_verifier_from_password("fuzz"));
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let mut exchange = ScramExchange::new(verifier.clone());
    if exchange.client_first("SCRAM-SHA-256", first).is_ok() {
        let _ = exchange.client_final(last);
    }
}

/// What a (hostile) PostgreSQL server sends, through the scanner with the
/// server-side framing; error and notice fields are parsed as churnstile
/// reports them.
pub fn pg_backend(data: &[u8]) {
    let mut scanner = codec::MessageScanner::default();
    let mut output = BytesMut::new();
    let _ = scanner.scan(data, ServerState::framing, &mut output, |tag, body, _| {
        if let (b'E' | b'N', Some(body)) = (tag, body) {
            let _ = messages::parse_error_fields(body);
        }
        Verdict::Drop
    });
}
