//! Packet framing: a 4-byte header (3-byte little-endian payload length and
//! a sequence id) before every payload, and the splitting of payloads of
//! 16 MiB or more across several physical packets.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const HEADER_LEN: usize = 4;
/// Largest payload of one physical packet; a payload of exactly this size is continued by the next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// The header of one physical packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u8,
}

impl Header {
    /// Reads the header at the start of `bytes`; None if fewer than 4 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let [a, b, c, seq, ..] = *bytes else {
            return None;
        };
        Some(Header {
            len: usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16,
            seq,
        })
    }

    /// The 4 header bytes. `len` must fit in 3 bytes (at most [`MAX_PAYLOAD`]);
    /// higher bits are dropped.
    pub fn encode(self) -> [u8; 4] {
        let len = self.len.to_le_bytes();
        [len[0], len[1], len[2], self.seq]
    }
}

/// Appends `payload` as one logical packet starting at sequence `seq`, split into MAX_PAYLOAD pieces (with an empty trailing packet when the payload is an exact multiple of MAX_PAYLOAD); returns the next sequence id.
pub fn write_packet(dst: &mut BytesMut, seq: u8, payload: &[u8]) -> u8 {
    dst.reserve(payload.len() + HEADER_LEN * (payload.len() / MAX_PAYLOAD + 1));
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let len = rest.len().min(MAX_PAYLOAD);
        dst.put_slice(&Header { len, seq }.encode());
        dst.put_slice(&rest[..len]);
        rest = &rest[len..];
        // Sequence ids wrap: a 4 GiB payload needs more than 256 packets.
        seq = seq.wrapping_add(1);
        // A full piece tells the reader more follows, so the last piece
        // must be short, if need be empty.
        if len < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// Splits one complete physical packet (header + payload) off the front of `buf`; None when not all of it has arrived.
pub fn take_packet(buf: &mut BytesMut) -> Option<(Header, Bytes)> {
    let header = Header::parse(buf)?;
    if buf.len() < HEADER_LEN + header.len {
        return None;
    }
    let mut packet = buf.split_to(HEADER_LEN + header.len);
    packet.advance(HEADER_LEN);
    Some((header, packet.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_little_endian_length_then_sequence() {
        let header = Header {
            len: 0x01_0203,
            seq: 9,
        };
        assert_eq!(header.encode(), [0x03, 0x02, 0x01, 9]);
        assert_eq!(Header::parse(&[0x03, 0x02, 0x01, 9, 0xAA]), Some(header));
        assert_eq!(Header::parse(&[0x03, 0x02, 0x01]), None);
    }

    #[test]
    fn small_payload_is_one_packet() {
        let mut dst = BytesMut::new();
        let next = write_packet(&mut dst, 0, &[0x03, b'S', b'E', b'L']);
        assert_eq!(next, 1);
        assert_eq!(&dst[..], [4, 0, 0, 0, 0x03, b'S', b'E', b'L']);
    }

    #[test]
    fn empty_payload_is_one_empty_packet() {
        let mut dst = BytesMut::new();
        assert_eq!(write_packet(&mut dst, 5, &[]), 6);
        assert_eq!(&dst[..], [0, 0, 0, 5]);
    }

    #[test]
    fn sequence_ids_wrap() {
        let mut dst = BytesMut::new();
        assert_eq!(write_packet(&mut dst, 255, b"x"), 0);
        assert_eq!(&dst[..4], [1, 0, 0, 255]);
    }

    #[test]
    fn large_payload_splits_at_max_payload() {
        let payload = vec![7u8; MAX_PAYLOAD + 10];
        let mut dst = BytesMut::new();
        assert_eq!(write_packet(&mut dst, 3, &payload), 5);
        let (first, body) = take_packet(&mut dst).expect("first piece");
        assert_eq!(
            first,
            Header {
                len: MAX_PAYLOAD,
                seq: 3
            }
        );
        assert_eq!(body.len(), MAX_PAYLOAD);
        let (second, body) = take_packet(&mut dst).expect("second piece");
        assert_eq!(second, Header { len: 10, seq: 4 });
        assert_eq!(&body[..], [7u8; 10]);
        assert!(dst.is_empty());
    }

    #[test]
    fn exact_multiple_ends_with_an_empty_packet() {
        let payload = vec![1u8; MAX_PAYLOAD];
        let mut dst = BytesMut::new();
        assert_eq!(write_packet(&mut dst, 0, &payload), 2);
        assert_eq!(dst.len(), 2 * HEADER_LEN + MAX_PAYLOAD);
        assert_eq!(&dst[dst.len() - HEADER_LEN..], [0, 0, 0, 1]);
    }

    #[test]
    fn take_packet_waits_for_the_whole_packet() {
        let mut buf = BytesMut::from(&[3u8, 0, 0, 0, b'a', b'b'][..]);
        assert_eq!(take_packet(&mut buf), None);
        assert_eq!(buf.len(), 6, "nothing is consumed while waiting");
        buf.put_slice(b"c\x01\x00");
        let (header, payload) = take_packet(&mut buf).expect("complete");
        assert_eq!(header, Header { len: 3, seq: 0 });
        assert_eq!(&payload[..], b"abc");
        assert_eq!(&buf[..], [1, 0]);
        assert_eq!(take_packet(&mut buf), None);
    }
}
