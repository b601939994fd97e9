//! The primitive field encodings of the protocol: length-encoded integers
//! and strings, NUL-terminated strings, and fixed-size little-endian
//! integers. Readers take `&mut &[u8]` and advance it past what they read
//! (a failed read leaves it where it was); they borrow from the payload and
//! never allocate, so a forged length can only make a read fail.

use bytes::{BufMut, BytesMut};

use super::WireError;

/// Prefix of a 2-byte length-encoded integer.
const PREFIX_U16: u8 = 0xFC;
/// Prefix of a 3-byte length-encoded integer.
const PREFIX_U24: u8 = 0xFD;
/// Prefix of an 8-byte length-encoded integer.
const PREFIX_U64: u8 = 0xFE;

/// Reads a length-encoded integer. 0xFB (NULL in a result row) and 0xFF
/// (an ERR packet's header) are not integers, so they are Malformed.
pub fn read_int(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut rest = *buf;
    let first = read_u8(&mut rest).map_err(|_| WireError::Truncated("length-encoded integer"))?;
    let width = match first {
        0..=0xFA => {
            *buf = rest;
            return Ok(u64::from(first));
        }
        PREFIX_U16 => 2,
        PREFIX_U24 => 3,
        PREFIX_U64 => 8,
        0xFB => {
            return Err(WireError::Malformed(
                "NULL (0xFB) where a length was expected",
            ));
        }
        0xFF => return Err(WireError::Malformed("0xFF where a length was expected")),
    };
    let bytes =
        read_fixed(&mut rest, width).map_err(|_| WireError::Truncated("length-encoded integer"))?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    *buf = rest;
    Ok(u64::from_le_bytes(le))
}

/// Reads a length-encoded string.
pub fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let mut rest = *buf;
    let len = read_int(&mut rest)?;
    let value = usize::try_from(len)
        .ok()
        .and_then(|len| read_fixed(&mut rest, len).ok())
        .ok_or(WireError::Truncated("length-encoded string"))?;
    *buf = rest;
    Ok(value)
}

/// Reads up to the next NUL and skips the NUL; a missing NUL is Truncated.
pub fn read_null_terminated<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(WireError::Truncated("NUL-terminated string"))?;
    let value = &buf[..end];
    *buf = &buf[end + 1..];
    Ok(value)
}

/// Reads exactly `n` bytes.
pub fn read_fixed<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError::Truncated("fixed-length field"));
    }
    let (value, rest) = buf.split_at(n);
    *buf = rest;
    Ok(value)
}

pub fn read_u8(buf: &mut &[u8]) -> Result<u8, WireError> {
    let (&value, rest) = buf
        .split_first()
        .ok_or(WireError::Truncated("1-byte integer"))?;
    *buf = rest;
    Ok(value)
}

pub fn read_u16_le(buf: &mut &[u8]) -> Result<u16, WireError> {
    let bytes = read_fixed(buf, 2).map_err(|_| WireError::Truncated("2-byte integer"))?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

pub fn read_u32_le(buf: &mut &[u8]) -> Result<u32, WireError> {
    let bytes = read_fixed(buf, 4).map_err(|_| WireError::Truncated("4-byte integer"))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Appends `value` as a length-encoded integer, in its shortest form.
pub fn put_int(dst: &mut BytesMut, value: u64) {
    let le = value.to_le_bytes();
    match int_len(value) {
        1 => dst.put_u8(le[0]),
        3 => {
            dst.put_u8(PREFIX_U16);
            dst.put_slice(&le[..2]);
        }
        4 => {
            dst.put_u8(PREFIX_U24);
            dst.put_slice(&le[..3]);
        }
        _ => {
            dst.put_u8(PREFIX_U64);
            dst.put_slice(&le);
        }
    }
}

/// Appends `value` as a length-encoded string.
pub fn put_bytes(dst: &mut BytesMut, value: &[u8]) {
    put_int(dst, value.len() as u64);
    dst.put_slice(value);
}

/// How many bytes [`put_int`] writes for `value`.
pub fn int_len(value: u64) -> usize {
    match value {
        0..=0xFA => 1,
        0xFB..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each side of every width change, and the extremes.
    const BOUNDARIES: [u64; 9] = [
        0,
        250,
        251,
        0xFFFF,
        0x1_0000,
        0xFF_FFFF,
        0x100_0000,
        u64::MAX - 1,
        u64::MAX,
    ];

    fn encoded(value: u64) -> Vec<u8> {
        let mut dst = BytesMut::new();
        put_int(&mut dst, value);
        dst.to_vec()
    }

    #[test]
    fn integers_use_the_shortest_prefix() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(250), [0xFA]);
        assert_eq!(encoded(251), [0xFC, 0xFB, 0x00]);
        assert_eq!(encoded(0xFFFF), [0xFC, 0xFF, 0xFF]);
        assert_eq!(encoded(0x1_0000), [0xFD, 0x00, 0x00, 0x01]);
        assert_eq!(encoded(0xFF_FFFF), [0xFD, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            encoded(0x100_0000),
            [0xFE, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(u64::MAX),
            [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
    }

    #[test]
    fn integers_round_trip_at_every_boundary() {
        for value in BOUNDARIES {
            let bytes = encoded(value);
            assert_eq!(bytes.len(), int_len(value), "{value}");
            let mut buf = &bytes[..];
            assert_eq!(read_int(&mut buf), Ok(value));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn integers_match_mysql_common() {
        use mysql_common::io::BufMutExt;
        for value in BOUNDARIES {
            let mut theirs = Vec::new();
            theirs.put_lenenc_int(value);
            assert_eq!(encoded(value), theirs, "{value}");
        }
    }

    #[test]
    fn null_and_err_markers_are_not_lengths() {
        assert!(matches!(
            read_int(&mut &[0xFB][..]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            read_int(&mut &[0xFF][..]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn short_integers_are_truncated() {
        for bytes in [
            &[][..],
            &[0xFC, 0x01],
            &[0xFD, 0, 0],
            &[0xFE, 1, 2, 3, 4, 5, 6, 7],
        ] {
            let mut buf = bytes;
            assert!(
                matches!(read_int(&mut buf), Err(WireError::Truncated(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn failed_reads_leave_the_input_alone() {
        let bytes = [0xFD, 0x01, 0x00];
        let mut buf = &bytes[..];
        assert!(read_int(&mut buf).is_err());
        assert_eq!(buf, bytes);
        let bytes = [0x05, b'a', b'b'];
        let mut buf = &bytes[..];
        assert!(read_bytes(&mut buf).is_err());
        assert_eq!(buf, bytes);
    }

    #[test]
    fn strings_round_trip_and_advance() {
        let mut dst = BytesMut::new();
        put_bytes(&mut dst, b"schema");
        put_bytes(&mut dst, &[b'x'; 300]);
        dst.put_u8(7);
        let mut buf = &dst[..];
        assert_eq!(read_bytes(&mut buf), Ok(&b"schema"[..]));
        assert_eq!(read_bytes(&mut buf), Ok(&[b'x'; 300][..]));
        assert_eq!(buf, [7]);
    }

    #[test]
    fn a_length_beyond_the_payload_is_truncated_not_allocated() {
        let mut buf = &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, b'a'][..];
        assert_eq!(
            read_bytes(&mut buf),
            Err(WireError::Truncated("length-encoded string"))
        );
    }

    #[test]
    fn null_terminated_strings_stop_at_the_first_nul() {
        let mut buf = &b"root\0secret\0"[..];
        assert_eq!(read_null_terminated(&mut buf), Ok(&b"root"[..]));
        assert_eq!(read_null_terminated(&mut buf), Ok(&b"secret"[..]));
        assert!(buf.is_empty());
        assert!(read_null_terminated(&mut &b"no end"[..]).is_err());
    }

    #[test]
    fn fixed_integers_are_little_endian() {
        let mut buf = &[0x2A, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 0xFF][..];
        assert_eq!(read_u8(&mut buf), Ok(0x2A));
        assert_eq!(read_u16_le(&mut buf), Ok(0x1234));
        assert_eq!(read_u32_le(&mut buf), Ok(0x1234_5678));
        assert_eq!(
            read_u16_le(&mut buf),
            Err(WireError::Truncated("2-byte integer"))
        );
        assert_eq!(buf, [0xFF], "a failed read leaves the input alone");
        assert_eq!(
            read_u32_le(&mut buf),
            Err(WireError::Truncated("4-byte integer"))
        );
        assert_eq!(read_fixed(&mut buf, 1), Ok(&[0xFF][..]));
        assert_eq!(
            read_u8(&mut buf),
            Err(WireError::Truncated("1-byte integer"))
        );
    }
}
