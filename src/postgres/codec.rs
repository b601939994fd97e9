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

/// What a [`MessageScanner`] caller wants done with a message it inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it along with the rest.
    Forward,
    /// Stop scanning before it: it is neither forwarded nor consumed.
    StopBefore,
}

/// How far a scan got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes at the front of the buffer that may be forwarded now.
    pub forward: usize,
    /// The scan stopped at a message the caller asked to stop before.
    pub stopped: bool,
}

/// Finds message boundaries in a forwarded byte stream. Messages whose tag
/// the caller inspects are made whole before the callback sees them; all
/// others are forwarded as their bytes arrive, so a 1 GB row never sits in
/// memory.
#[derive(Debug, Default, Clone)]
pub struct MessageScanner {
    /// Body bytes of a passed-through message still to come.
    pending_body: usize,
}

impl MessageScanner {
    /// True when the bytes forwarded so far end exactly at a message end.
    pub fn at_boundary(&self) -> bool {
        self.pending_body == 0
    }

    /// Scans `buf`; `inspects(tag)` says which messages the caller needs
    /// whole. `on_message` sees every message once: with its body when
    /// inspected, otherwise with `None` as soon as its header arrives.
    pub fn scan(
        &mut self,
        buf: &[u8],
        inspects: impl Fn(u8) -> bool,
        mut on_message: impl FnMut(u8, Option<&[u8]>) -> Verdict,
    ) -> Result<Scanned, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.pending_body > 0 {
                let take = self.pending_body.min(buf.len() - pos);
                self.pending_body -= take;
                pos += take;
                if self.pending_body > 0 {
                    return Ok(Scanned {
                        forward: pos,
                        stopped: false,
                    });
                }
            }
            let rest = &buf[pos..];
            let limit = match rest.first() {
                Some(&tag) if inspects(tag) => MAX_INSPECTED_MESSAGE,
                Some(_) => MAX_MESSAGE,
                None => {
                    return Ok(Scanned {
                        forward: pos,
                        stopped: false,
                    });
                }
            };
            let Some((tag, body_len)) = header(rest, limit)? else {
                return Ok(Scanned {
                    forward: pos,
                    stopped: false,
                });
            };
            if inspects(tag) {
                if rest.len() < 5 + body_len {
                    return Ok(Scanned {
                        forward: pos,
                        stopped: false,
                    });
                }
                if on_message(tag, Some(&rest[5..5 + body_len])) == Verdict::StopBefore {
                    return Ok(Scanned {
                        forward: pos,
                        stopped: true,
                    });
                }
                pos += 5 + body_len;
            } else {
                if on_message(tag, None) == Verdict::StopBefore {
                    return Ok(Scanned {
                        forward: pos,
                        stopped: true,
                    });
                }
                pos += 5;
                self.pending_body = body_len;
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

    #[test]
    fn scanner_forwards_uninspected_bodies_as_they_arrive() {
        let row = message(b'D', &[7u8; 1000]);
        let ready = message(b'Z', b"I");
        let mut scanner = MessageScanner::default();
        let mut seen = Vec::new();
        let first = scanner
            .scan(
                &row[..300],
                |t| t == b'Z',
                |t, b| {
                    seen.push((t, b.map(<[u8]>::to_vec)));
                    Verdict::Forward
                },
            )
            .unwrap();
        assert_eq!(first.forward, 300);
        assert!(!scanner.at_boundary());
        let mut rest = row[300..].to_vec();
        rest.extend_from_slice(&ready[..3]);
        let second = scanner
            .scan(
                &rest,
                |t| t == b'Z',
                |t, b| {
                    seen.push((t, b.map(<[u8]>::to_vec)));
                    Verdict::Forward
                },
            )
            .unwrap();
        assert_eq!(second.forward, 705, "partial Z waits for its body");
        assert!(scanner.at_boundary());
        let third = scanner
            .scan(
                &ready,
                |t| t == b'Z',
                |t, b| {
                    seen.push((t, b.map(<[u8]>::to_vec)));
                    Verdict::Forward
                },
            )
            .unwrap();
        assert_eq!(third.forward, ready.len());
        assert_eq!(seen, vec![(b'D', None), (b'Z', Some(b"I".to_vec()))]);
    }

    #[test]
    fn scanner_stops_before_requested_message() {
        let mut stream = message(b'Q', b"SELECT 1\0");
        stream.extend_from_slice(&message(b'X', b""));
        let mut scanner = MessageScanner::default();
        let result = scanner
            .scan(
                &stream,
                |t| t == b'X',
                |t, _| {
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
                forward: 14,
                stopped: true
            }
        );
    }

    #[test]
    fn scanner_rejects_oversized_inspected_message() {
        let mut header = vec![b'Z'];
        header.extend_from_slice(&(MAX_INSPECTED_MESSAGE as u32 + 10).to_be_bytes());
        let mut scanner = MessageScanner::default();
        assert!(matches!(
            scanner.scan(&header, |t| t == b'Z', |_, _| Verdict::Forward),
            Err(ProtocolError::TooLarge { tag: 'Z', .. })
        ));
    }
}
