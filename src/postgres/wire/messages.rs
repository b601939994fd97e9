//! Builders for the backend messages churnstile itself sends to clients
//! (authentication, parameters, errors), and a reader for the fields of
//! ErrorResponse/NoticeResponse bodies.

use bytes::{BufMut, BytesMut};

/// SQLSTATE codes churnstile reports, named as in PostgreSQL's errcodes.
pub mod sqlstate {
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const CONFIG_FILE_ERROR: &str = "F0000";
}

/// ErrorResponse severities churnstile sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Starts a message: tag and a length placeholder; returns where it begins.
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_u32(0);
    start
}

/// Fills in the length of the message begun at `start`.
fn finish(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start - 1) as u32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, text: &str) {
    buf.put_slice(text.as_bytes());
    buf.put_u8(0);
}

/// ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    let start = begin(buf, b'E');
    for (field, value) in [
        (b'S', severity.as_str()),
        (b'V', severity.as_str()),
        (b'C', code),
        (b'M', message),
    ] {
        buf.put_u8(field);
        put_cstr(buf, value);
    }
    buf.put_u8(0);
    finish(buf, start);
}

/// AuthenticationOk, AuthenticationMD5Password, SASL and friends share the 'R' tag.
fn authentication(buf: &mut BytesMut, code: i32, payload: &[u8]) {
    let start = begin(buf, b'R');
    buf.put_i32(code);
    buf.put_slice(payload);
    finish(buf, start);
}

pub fn authentication_ok(buf: &mut BytesMut) {
    authentication(buf, 0, &[]);
}

pub fn authentication_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    authentication(buf, 5, &salt);
}

/// AuthenticationSASL offering SCRAM-SHA-256 only (no channel binding: the
/// client leg has no TLS).
pub fn authentication_sasl(buf: &mut BytesMut) {
    authentication(buf, 10, b"SCRAM-SHA-256\0\0");
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    authentication(buf, 11, data);
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    authentication(buf, 12, data);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let start = begin(buf, b'S');
    put_cstr(buf, name);
    put_cstr(buf, value);
    finish(buf, start);
}

pub fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    let start = begin(buf, b'K');
    buf.put_i32(process_id);
    buf.put_i32(secret_key);
    finish(buf, start);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let start = begin(buf, b'Z');
    buf.put_u8(status);
    finish(buf, start);
}

/// NegotiateProtocolVersion: the newest minor version supported and the
/// protocol options (`_pq_.*`) not recognised.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: i32, unrecognised: &[&str]) {
    let start = begin(buf, b'v');
    buf.put_i32(newest_minor);
    buf.put_i32(unrecognised.len() as i32);
    for option in unrecognised {
        put_cstr(buf, option);
    }
    finish(buf, start);
}

/// The fields of an ErrorResponse or NoticeResponse body that churnstile uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    severity: String,
    pub code: String,
    pub message: String,
}

/// Reads severity (non-localised when present), SQLSTATE and message.
pub fn parse_error_fields(mut body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    while let Some((&field, rest)) = body.split_first() {
        if field == 0 {
            break;
        }
        body = rest;
        let Some(value) = super::codec::take_cstr(&mut body) else {
            break;
        };
        match field {
            b'V' => fields.severity = value.to_owned(),
            b'S' if fields.severity.is_empty() => fields.severity = value.to_owned(),
            b'C' => fields.code = value.to_owned(),
            b'M' => fields.message = value.to_owned(),
            _ => {}
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::wire::codec::decode_message;

    #[test]
    fn error_response_round_trips() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            sqlstate::INVALID_PASSWORD,
            "nope",
        );
        let msg = decode_message(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(msg.tag, b'E');
        assert_eq!(
            parse_error_fields(&msg.body),
            ErrorFields {
                severity: "FATAL".into(),
                code: "28P01".into(),
                message: "nope".into()
            }
        );
    }

    #[test]
    fn lengths_are_filled_in() {
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, b'I');
        assert_eq!(&buf[..], &[b'Z', 0, 0, 0, 5, b'I']);
        let mut buf = BytesMut::new();
        negotiate_protocol_version(&mut buf, 0, &["_pq_.x"]);
        assert_eq!(&buf[1..5], &(4u32 + 4 + 4 + 7).to_be_bytes());
    }

    #[test]
    fn parse_error_fields_survives_truncation() {
        assert_eq!(parse_error_fields(b"SFATAL"), ErrorFields::default());
    }
}
