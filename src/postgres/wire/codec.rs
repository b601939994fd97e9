//! PostgreSQL wire framing, sans-IO: the untyped startup-phase packets, whole
//! tagged messages, and a scanner that finds message boundaries in a stream
//! being forwarded without buffering the bodies nobody needs to look at.

use bytes::{Buf, Bytes, BytesMut};

/// Request code of an SSLRequest packet.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Request code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Request code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_PACKET: usize = 10_000;
/// PostgreSQL's limit on any message (PQ_LARGE_MESSAGE_LIMIT): one gigabyte.
pub const MAX_MESSAGE: usize = (1 << 30) - 1;
/// Largest message churnstile buffers whole to look inside.
pub const MAX_INSPECTED_MESSAGE: usize = 1 << 20;
/// PostgreSQL's limit on frontend messages that carry no user data
/// (PQ_SMALL_MESSAGE_LIMIT).
pub const MAX_SMALL_MESSAGE: usize = 10_000;

/// How a [`MessageScanner`] treats one message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Made whole for the callback to read; longer is a violation.
    Inspect { limit: usize },
    /// Forwarded as it arrives; a longer declared length is a violation.
    Stream { limit: usize },
    /// Not a message type this direction of the protocol allows.
    Invalid,
}

/// Frontend messages after login, with PostgreSQL's own length limits, so
/// churnstile refuses what the server would refuse instead of forwarding it.
/// `inspect` names the types the caller needs whole (a Bind or Parse is then
/// buffered whole, as PostgreSQL itself does).
pub fn frontend_framing(tag: u8, inspect: &[u8]) -> Framing {
    let limit = match tag {
        b'Q' | b'F' | b'B' | b'P' | b'd' => MAX_MESSAGE,
        b'X' | b'C' | b'D' | b'E' | b'H' | b'S' | b'c' | b'f' => MAX_SMALL_MESSAGE,
        _ => return Framing::Invalid,
    };
    if inspect.contains(&tag) {
        Framing::Inspect { limit }
    } else {
        Framing::Stream { limit }
    }
}

/// Framing violations; each is reported to the peer as SQLSTATE 08P01.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid length of startup packet: {0} bytes")]
    StartupLength(usize),
    #[error("invalid message length {len} for message type '{tag}'")]
    MessageLength { tag: char, len: usize },
    #[error("message type '{tag}' is {len} bytes, over the {limit} byte limit")]
    TooLarge { tag: char, len: usize, limit: usize },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("invalid frontend message type {0}")]
    InvalidType(u8),
}

/// The first packet of a connection, which carries no type byte.
#[derive(Debug, PartialEq, Eq)]
pub enum InitialPacket {
    SslRequest,
    GssEncRequest,
    CancelRequest {
        process_id: i32,
        secret_key: i32,
    },
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

/// Takes one startup-phase packet off the front of `buf` once it is whole.
pub fn decode_initial(buf: &mut BytesMut) -> Result<Option<InitialPacket>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProtocolError::StartupLength(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len).freeze();
    packet.advance(4);
    let code = packet.get_i32();
    let decoded = match code {
        SSL_REQUEST_CODE => InitialPacket::SslRequest,
        GSSENC_REQUEST_CODE => InitialPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => {
            if packet.len() != 8 {
                return Err(ProtocolError::Malformed("CancelRequest"));
            }
            InitialPacket::CancelRequest {
                process_id: packet.get_i32(),
                secret_key: packet.get_i32(),
            }
        }
        version => {
            let major = (version >> 16) as u16;
            // Other major versions lay the body out differently (2.0 uses
            // fixed-size fields); like PostgreSQL, refuse the version, not
            // the layout, so the client learns why.
            let params = if major == 3 {
                decode_startup_params(&packet)?
            } else {
                Vec::new()
            };
            InitialPacket::Startup {
                major,
                minor: (version & 0xffff) as u16,
                params,
            }
        }
    };
    Ok(Some(decoded))
}

/// Decodes the NUL-terminated name/value pairs of a StartupMessage.
fn decode_startup_params(mut body: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut body).ok_or(ProtocolError::Malformed("startup packet"))?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body).ok_or(ProtocolError::Malformed("startup packet"))?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if body.is_empty() {
        Ok(params)
    } else {
        Err(ProtocolError::Malformed("startup packet"))
    }
}

/// Splits a NUL-terminated UTF-8 string off the front of `body`.
pub fn take_cstr<'a>(body: &mut &'a [u8]) -> Option<&'a str> {
    let end = body.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&body[..end]).ok()?;
    *body = &body[end + 1..];
    Some(text)
}

/// One whole tagged message, body without the length word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub tag: u8,
    pub body: Bytes,
}

/// Reads a message header at the front of `buf`: tag and body length.
fn header(buf: &[u8], limit: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(ProtocolError::MessageLength {
            tag: tag as char,
            len,
        });
    }
    if len > limit {
        return Err(ProtocolError::TooLarge {
            tag: tag as char,
            len,
            limit,
        });
    }
    Ok(Some((tag, len - 4)))
}

/// Takes one whole message off the front of `buf` once complete; messages
/// longer than `limit` are refused before any of their body is buffered.
pub fn decode_message(buf: &mut BytesMut, limit: usize) -> Result<Option<Message>, ProtocolError> {
    let Some((tag, body_len)) = header(buf, limit)? else {
        return Ok(None);
    };
    if buf.len() < 5 + body_len {
        buf.reserve(5 + body_len - buf.len());
        return Ok(None);
    }
    buf.advance(5);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(Message { tag, body }))
}

/// What a [`MessageScanner`] caller wants done with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it to the output.
    Forward,
    /// Consume it without output (the callback may have written a
    /// replacement).
    Drop,
    /// Stop scanning before it: it is neither output nor consumed.
    StopBefore,
}

/// How far a scan got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes at the front of the input that were consumed.
    pub consumed: usize,
    /// The scan stopped at a message the caller asked to stop before.
    stopped: bool,
}

/// Finds message boundaries in a forwarded byte stream. Messages the caller
/// inspects are made whole before the callback sees them; all others are
/// passed on as their bytes arrive, so a 1 GB row never sits in memory.
#[derive(Debug, Default, Clone)]
pub struct MessageScanner {
    /// Body bytes of a streamed message still to come.
    pending_body: usize,
    /// Those bytes are being dropped rather than passed on.
    dropping: bool,
}

impl MessageScanner {
    /// True when the bytes consumed so far end exactly at a message end.
    pub fn at_boundary(&self) -> bool {
        self.pending_body == 0
    }

    /// Scans `input`, appending what is forwarded to `output`. `framing(tag)`
    /// says which messages the callback needs whole and how long others may
    /// be. `on_message` sees every message once — with its body when
    /// inspected, otherwise with `None` as soon as its header arrives — and
    /// may append its own bytes to `output` before deciding.
    pub fn scan(
        &mut self,
        input: &[u8],
        framing: impl Fn(u8) -> Framing,
        output: &mut BytesMut,
        mut on_message: impl FnMut(u8, Option<&[u8]>, &mut BytesMut) -> Verdict,
    ) -> Result<Scanned, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.pending_body > 0 {
                let take = self.pending_body.min(input.len() - pos);
                if !self.dropping {
                    output.extend_from_slice(&input[pos..pos + take]);
                }
                self.pending_body -= take;
                pos += take;
                if self.pending_body > 0 {
                    return Ok(Scanned {
                        consumed: pos,
                        stopped: false,
                    });
                }
            }
            let rest = &input[pos..];
            let Some(&tag) = rest.first() else {
                return Ok(Scanned {
                    consumed: pos,
                    stopped: false,
                });
            };
            let (inspect, limit) = match framing(tag) {
                Framing::Inspect { limit } => (true, limit),
                Framing::Stream { limit } => (false, limit),
                Framing::Invalid => return Err(ProtocolError::InvalidType(tag)),
            };
            let Some((tag, body_len)) = header(rest, limit)? else {
                return Ok(Scanned {
                    consumed: pos,
                    stopped: false,
                });
            };
            if inspect && rest.len() < 5 + body_len {
                return Ok(Scanned {
                    consumed: pos,
                    stopped: false,
                });
            }
            let body = inspect.then(|| &rest[5..5 + body_len]);
            match on_message(tag, body, output) {
                Verdict::StopBefore => {
                    return Ok(Scanned {
                        consumed: pos,
                        stopped: true,
                    });
                }
                verdict if inspect => {
                    if verdict == Verdict::Forward {
                        output.extend_from_slice(&rest[..5 + body_len]);
                    }
                    pos += 5 + body_len;
                }
                verdict => {
                    self.dropping = verdict == Verdict::Drop;
                    if !self.dropping {
                        output.extend_from_slice(&rest[..5]);
                    }
                    pos += 5;
                    self.pending_body = body_len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn decodes_startup_with_params() {
        let mut body = BytesMut::new();
        body.put_i32(PROTOCOL_3_0);
        body.put_slice(b"user\0alice\0database\0app\0\0");
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32 + 4);
        buf.put_slice(&body);
        let packet = decode_initial(&mut buf).unwrap().unwrap();
        assert_eq!(
            packet,
            InitialPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "app".into())
                ],
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_whole_startup_and_rejects_bad_lengths() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 16, 0x04, 0xd2][..]);
        assert_eq!(decode_initial(&mut buf), Ok(None));
        let mut huge = BytesMut::from(&[0x7f_u8, 0xff, 0xff, 0xff, 0, 0, 0, 0][..]);
        assert_eq!(
            decode_initial(&mut huge),
            Err(ProtocolError::StartupLength(0x7fff_ffff))
        );
        let mut tiny = BytesMut::from(&[0u8, 0, 0, 4][..]);
        assert_eq!(
            decode_initial(&mut tiny),
            Err(ProtocolError::StartupLength(4))
        );
    }

    #[test]
    fn decodes_cancel_and_ssl_requests() {
        let mut buf = BytesMut::new();
        buf.put_u32(16);
        buf.put_i32(CANCEL_REQUEST_CODE);
        buf.put_i32(7);
        buf.put_i32(-9);
        buf.put_u32(8);
        buf.put_i32(SSL_REQUEST_CODE);
        assert_eq!(
            decode_initial(&mut buf).unwrap(),
            Some(InitialPacket::CancelRequest {
                process_id: 7,
                secret_key: -9
            })
        );
        assert_eq!(
            decode_initial(&mut buf).unwrap(),
            Some(InitialPacket::SslRequest)
        );
    }

    #[test]
    fn unterminated_startup_params_are_malformed() {
        let mut buf = BytesMut::new();
        buf.put_u32(4 + 4 + 5);
        buf.put_i32(PROTOCOL_3_0);
        buf.put_slice(b"user\0");
        assert_eq!(
            decode_initial(&mut buf),
            Err(ProtocolError::Malformed("startup packet"))
        );
    }

    #[test]
    fn protocol_2_startup_decodes_to_its_version() {
        let mut buf = BytesMut::new();
        buf.put_u32(4 + 4 + 288);
        buf.put_i32(2 << 16);
        let mut fields = b"app".to_vec();
        fields.resize(288, 0);
        buf.put_slice(&fields);
        assert_eq!(
            decode_initial(&mut buf),
            Ok(Some(InitialPacket::Startup {
                major: 2,
                minor: 0,
                params: Vec::new(),
            }))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_message_needs_whole_body_and_checks_limit() {
        let bytes = message(b'Q', b"SELECT 1\0");
        let mut buf = BytesMut::from(&bytes[..7]);
        assert_eq!(decode_message(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&bytes[7..]);
        let msg = decode_message(&mut buf, 100).unwrap().unwrap();
        assert_eq!((msg.tag, &msg.body[..]), (b'Q', &b"SELECT 1\0"[..]));
        let mut big = BytesMut::from(&message(b'Q', &[b'x'; 200])[..]);
        assert!(matches!(
            decode_message(&mut big, 100),
            Err(ProtocolError::TooLarge { tag: 'Q', .. })
        ));
        let mut short = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(
            decode_message(&mut short, 100),
            Err(ProtocolError::MessageLength { len: 3, .. })
        ));
    }

    fn only_z(tag: u8) -> Framing {
        if tag == b'Z' {
            Framing::Inspect {
                limit: MAX_INSPECTED_MESSAGE,
            }
        } else {
            Framing::Stream { limit: MAX_MESSAGE }
        }
    }

    #[test]
    fn frontend_limits_follow_postgres() {
        let mut scanner = MessageScanner::default();
        let mut out = BytesMut::new();
        let framing = |t| frontend_framing(t, b"");
        let mut sync_too_long = vec![b'S'];
        sync_too_long.extend_from_slice(&(MAX_SMALL_MESSAGE as u32 + 1).to_be_bytes());
        assert!(matches!(
            scanner.scan(&sync_too_long, framing, &mut out, |_, _, _| {
                Verdict::Forward
            }),
            Err(ProtocolError::TooLarge { tag: 'S', .. })
        ));
        assert_eq!(
            scanner.scan(b"Z\0\0\0\x05I", framing, &mut out, |_, _, _| {
                Verdict::Forward
            }),
            Err(ProtocolError::InvalidType(b'Z'))
        );
        let query = message(b'Q', b"SELECT 1\0");
        let scanned = scanner
            .scan(&query, framing, &mut out, |_, _, _| Verdict::Forward)
            .unwrap();
        assert_eq!(scanned.consumed, query.len());
        assert_eq!(&out[..], &query[..]);
    }

    #[test]
    fn scanner_streams_uninspected_bodies_as_they_arrive() {
        let row = message(b'D', &[7u8; 1000]);
        let ready = message(b'Z', b"I");
        let mut scanner = MessageScanner::default();
        let mut seen = Vec::new();
        let mut out = BytesMut::new();
        let mut record = |t: u8, b: Option<&[u8]>, _: &mut BytesMut| {
            seen.push((t, b.map(<[u8]>::to_vec)));
            Verdict::Forward
        };
        let first = scanner
            .scan(&row[..300], only_z, &mut out, &mut record)
            .unwrap();
        assert_eq!(first.consumed, 300);
        assert!(!scanner.at_boundary());
        let mut rest = row[300..].to_vec();
        rest.extend_from_slice(&ready[..3]);
        let second = scanner.scan(&rest, only_z, &mut out, &mut record).unwrap();
        assert_eq!(second.consumed, 705, "partial Z waits for its body");
        assert!(scanner.at_boundary());
        let third = scanner.scan(&ready, only_z, &mut out, &mut record).unwrap();
        assert_eq!(third.consumed, ready.len());
        assert_eq!(seen, vec![(b'D', None), (b'Z', Some(b"I".to_vec()))]);
        let mut expected = row.clone();
        expected.extend_from_slice(&ready);
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn scanner_drops_and_replaces_messages() {
        let mut input = message(b'D', &[1u8; 10]);
        input.extend_from_slice(&message(b'1', b""));
        input.extend_from_slice(&message(b'Z', b"I"));
        let mut scanner = MessageScanner::default();
        let mut out = BytesMut::new();
        let inspect_all = |_| Framing::Inspect { limit: 100 };
        scanner
            .scan(&input, inspect_all, &mut out, |tag, _, out| match tag {
                b'D' => Verdict::Drop,
                b'1' => {
                    out.extend_from_slice(b"x");
                    Verdict::Drop
                }
                _ => Verdict::Forward,
            })
            .unwrap();
        let mut expected = b"x".to_vec();
        expected.extend_from_slice(&message(b'Z', b"I"));
        assert_eq!(&out[..], &expected[..]);
        let mut streamed = MessageScanner::default();
        let mut out = BytesMut::new();
        let row = message(b'D', &[1u8; 10]);
        streamed
            .scan(&row[..8], only_z, &mut out, |_, _, _| Verdict::Drop)
            .unwrap();
        streamed
            .scan(&row[8..], only_z, &mut out, |_, _, _| Verdict::Drop)
            .unwrap();
        assert!(out.is_empty() && streamed.at_boundary());
    }

    #[test]
    fn scanner_stops_before_requested_message() {
        let mut stream = message(b'Q', b"SELECT 1\0");
        stream.extend_from_slice(&message(b'X', b""));
        let mut scanner = MessageScanner::default();
        let mut out = BytesMut::new();
        let result = scanner
            .scan(
                &stream,
                |t| frontend_framing(t, b"X"),
                &mut out,
                |t, _, _| {
                    if t == b'X' {
                        Verdict::StopBefore
                    } else {
                        Verdict::Forward
                    }
                },
            )
            .unwrap();
        assert_eq!(
            result,
            Scanned {
                consumed: 14,
                stopped: true
            }
        );
        assert_eq!(out.len(), 14);
    }

    #[test]
    fn scanner_rejects_oversized_inspected_message() {
        let mut header = vec![b'Z'];
        header.extend_from_slice(&(MAX_INSPECTED_MESSAGE as u32 + 10).to_be_bytes());
        let mut scanner = MessageScanner::default();
        assert!(matches!(
            scanner.scan(&header, only_z, &mut BytesMut::new(), |_, _, _| {
                Verdict::Forward
            }),
            Err(ProtocolError::TooLarge { tag: 'Z', .. })
        ));
    }
}
