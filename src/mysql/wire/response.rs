//! The generic server responses: OK (and its 0xFE result-set-terminator
//! form), the old EOF packet, ERR, and the session-state-change data an OK
//! carries when the client asked for SESSION_TRACK. All assume protocol 4.1,
//! which is all churnstile speaks.

use bytes::{BufMut, BytesMut};

use super::flags::{capability, status};
use super::lenenc::{put_bytes, put_int, read_bytes, read_int, read_u8, read_u16_le};
use super::packet::MAX_PAYLOAD;
use super::{Field, WireError, errors};

pub const OK_HEADER: u8 = 0x00;
pub const EOF_HEADER: u8 = 0xFE;
pub const ERR_HEADER: u8 = 0xFF;
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;

/// SQLSTATE of an ERR packet that carries none (sent before the client's
/// capabilities are known) or whose state is not five characters.
const GENERAL_ERROR_STATE: &str = "HY000";
/// Marks the SQLSTATE in an ERR packet.
const SQL_STATE_MARKER: u8 = b'#';

/// An OK packet (header 0x00, or 0xFE when it ends a result set under DEPRECATE_EOF).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkPacket<'a> {
    pub header: u8,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: &'a [u8],
    /// Raw session-state-change data; only present when the connection negotiated SESSION_TRACK and status has SESSION_STATE_CHANGED.
    pub session_state: Option<&'a [u8]>,
}

impl<'a> OkPacket<'a> {
    /// `capabilities` are the ones negotiated on the connection the packet
    /// came from. The info text is length-encoded either way (MySQL and
    /// MariaDB write it so, whatever older documentation says); SESSION_TRACK
    /// adds the session state after it, and lets a server leave out an empty
    /// info altogether.
    pub fn decode(payload: &'a [u8], capabilities: u32) -> Result<Self, WireError> {
        let mut buf = payload;
        let header = read_u8(&mut buf).field("OK packet header")?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(WireError::Malformed(
                "OK packet header is neither 0x00 nor 0xFE",
            ));
        }
        let affected_rows = read_int(&mut buf).field("affected rows")?;
        let last_insert_id = read_int(&mut buf).field("last insert id")?;
        let status = read_u16_le(&mut buf).field("status flags")?;
        let warnings = read_u16_le(&mut buf).field("warning count")?;
        let info = if buf.is_empty() {
            &[]
        } else {
            read_bytes(&mut buf).field("OK packet info")?
        };
        let session_state = if capabilities & capability::SESSION_TRACK != 0
            && status & status::SESSION_STATE_CHANGED != 0
            && !buf.is_empty()
        {
            Some(read_bytes(&mut buf).field("session state information")?)
        } else {
            None
        };
        Ok(OkPacket {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
            session_state,
        })
    }

    /// Encodes for a connection with these capabilities: drops session_state (and clears SESSION_STATE_CHANGED from status) when SESSION_TRACK is absent.
    /// With SESSION_TRACK, SESSION_STATE_CHANGED is set exactly when there
    /// is session state to send, since a client reads the state by that bit.
    pub fn encode(&self, dst: &mut BytesMut, capabilities: u32) {
        let session_state = self
            .session_state
            .filter(|_| capabilities & capability::SESSION_TRACK != 0);
        let status = match session_state {
            Some(_) => self.status | status::SESSION_STATE_CHANGED,
            None => self.status & !status::SESSION_STATE_CHANGED,
        };
        dst.put_u8(self.header);
        put_int(dst, self.affected_rows);
        put_int(dst, self.last_insert_id);
        dst.put_u16_le(status);
        dst.put_u16_le(self.warnings);
        // As servers do: the info only when there is some, or when the state
        // that follows needs it as a placeholder.
        if !self.info.is_empty() || session_state.is_some() {
            put_bytes(dst, self.info);
        }
        if let Some(state) = session_state {
            put_bytes(dst, state);
        }
    }
}

/// A plain OK (header 0x00, no info, no session state).
pub fn ok_payload(affected_rows: u64, last_insert_id: u64, status: u16, warnings: u16) -> BytesMut {
    let mut dst = BytesMut::new();
    let ok = OkPacket {
        header: OK_HEADER,
        affected_rows,
        last_insert_id,
        status,
        warnings,
        ..OkPacket::default()
    };
    ok.encode(&mut dst, 0);
    dst
}

/// The EOF packet that ends column definitions and rows without DEPRECATE_EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eof {
    pub warnings: u16,
    pub status: u16,
}

impl Eof {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        if read_u8(&mut buf).field("EOF packet header")? != EOF_HEADER {
            return Err(WireError::Malformed("EOF packet header is not 0xFE"));
        }
        Ok(Eof {
            warnings: read_u16_le(&mut buf).field("warning count")?,
            status: read_u16_le(&mut buf).field("status flags")?,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(EOF_HEADER);
        dst.put_u16_le(self.warnings);
        dst.put_u16_le(self.status);
    }
}

/// True for a payload that ends a result set: header 0xFE and shorter than 0xFFFFFF (an 0xFE-led row is always a >16 MB multi-packet one). Under DEPRECATE_EOF this is an OK packet, otherwise an EOF packet.
pub fn is_terminator(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < MAX_PAYLOAD
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sql_state: String,
    pub message: String,
}

impl ErrPacket {
    pub fn new(code: errors::ErrorCode, message: impl Into<String>) -> Self {
        ErrPacket {
            code: code.code,
            sql_state: code.sql_state.to_owned(),
            message: message.into(),
        }
    }

    /// Parses an ERR packet; one without `#` and a SQLSTATE (as servers send
    /// before they know the client speaks protocol 4.1) gets HY000.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        if read_u8(&mut buf).field("ERR packet header")? != ERR_HEADER {
            return Err(WireError::Malformed("ERR packet header is not 0xFF"));
        }
        let code = read_u16_le(&mut buf).field("error code")?;
        let sql_state = match buf {
            [SQL_STATE_MARKER, state @ ..] if state.len() >= 5 => {
                let (state, message) = state.split_at(5);
                buf = message;
                String::from_utf8_lossy(state).into_owned()
            }
            _ => GENERAL_ERROR_STATE.to_owned(),
        };
        Ok(ErrPacket {
            code,
            sql_state,
            message: String::from_utf8_lossy(buf).into_owned(),
        })
    }

    /// Appends 0xFF, the code, `#`, the SQLSTATE and the message. A state
    /// that is not exactly five bytes is sent as HY000 so the packet stays
    /// parseable.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(ERR_HEADER);
        dst.put_u16_le(self.code);
        dst.put_u8(SQL_STATE_MARKER);
        let state = if self.sql_state.len() == 5 {
            &self.sql_state
        } else {
            GENERAL_ERROR_STATE
        };
        dst.put_slice(state.as_bytes());
        dst.put_slice(self.message.as_bytes());
    }
}

/// Session-state-change entry types (`SESSION_TRACK_*`).
const TRACK_SYSTEM_VARIABLES: u8 = 0;
const TRACK_SCHEMA: u8 = 1;
const TRACK_STATE_CHANGE: u8 = 2;
const TRACK_GTIDS: u8 = 3;
const TRACK_TRANSACTION_CHARACTERISTICS: u8 = 4;
const TRACK_TRANSACTION_STATE: u8 = 5;

/// One entry of an OK packet's session-state-change data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange<'a> {
    SystemVariable {
        name: &'a [u8],
        value: &'a [u8],
    },
    Schema(&'a [u8]),
    StateChange(bool),
    /// The GTID set text, after the encoding-specification byte.
    Gtids(&'a [u8]),
    TransactionCharacteristics(&'a [u8]),
    TransactionState(&'a [u8]),
    /// An entry type this code does not know; its data is skipped.
    Unknown(u8),
}

/// Decodes all entries of session-state-change data (OkPacket::session_state).
/// Each entry is a type byte and length-encoded data; a system-variable
/// entry may hold several name/value pairs, each becoming its own item.
pub fn session_changes(data: &[u8]) -> Result<Vec<SessionChange<'_>>, WireError> {
    let mut buf = data;
    let mut changes = Vec::new();
    while !buf.is_empty() {
        let kind = read_u8(&mut buf).field("session state type")?;
        let mut entry = read_bytes(&mut buf).field("session state entry")?;
        match kind {
            TRACK_SYSTEM_VARIABLES => {
                while !entry.is_empty() {
                    let name = read_bytes(&mut entry).field("system variable name")?;
                    let value = read_bytes(&mut entry).field("system variable value")?;
                    changes.push(SessionChange::SystemVariable { name, value });
                }
            }
            TRACK_SCHEMA => {
                let schema = read_bytes(&mut entry).field("schema name")?;
                changes.push(SessionChange::Schema(schema));
            }
            TRACK_STATE_CHANGE => {
                // MySQL and MariaDB send the flag as the entry's one byte
                // ('1'), not as the length-encoded string the manual shows;
                // both forms are read.
                let flag = match entry {
                    [len, flag @ ..] if usize::from(*len) == flag.len() && !flag.is_empty() => flag,
                    flag => flag,
                };
                changes.push(SessionChange::StateChange(flag == b"1"));
            }
            TRACK_GTIDS => {
                read_u8(&mut entry).field("GTID encoding specification")?;
                let gtids = read_bytes(&mut entry).field("GTID set")?;
                changes.push(SessionChange::Gtids(gtids));
            }
            TRACK_TRANSACTION_CHARACTERISTICS => {
                let text = read_bytes(&mut entry).field("transaction characteristics")?;
                changes.push(SessionChange::TransactionCharacteristics(text));
            }
            TRACK_TRANSACTION_STATE => {
                let state = read_bytes(&mut entry).field("transaction state")?;
                changes.push(SessionChange::TransactionState(state));
            }
            unknown => changes.push(SessionChange::Unknown(unknown)),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use mysql_common::constants::CapabilityFlags;
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::{
        self, CommonOkPacket, OkPacketDeserializer, ServerError, SessionStateInfo, SqlState,
    };
    use mysql_common::proto::MySerialize;

    use super::*;

    const TRACKING: u32 = capability::PROTOCOL_41 | capability::SESSION_TRACK;

    /// A schema change to `shop` and the start of `autocommit` set to `OFF`,
    /// as a server tracking both reports them; [`session_state`] completes it.
    const SESSION_STATE: [u8; 21] = [
        0x01, 0x05, 0x04, b's', b'h', b'o', b'p', // SESSION_TRACK_SCHEMA
        0x00, 0x0f, 0x0a, b'a', b'u', b't', b'o', b'c', b'o', b'm', b'm', b'i', b't',
        0x03, // SESSION_TRACK_SYSTEM_VARIABLES, value cut here
    ];

    fn encoded(ok: &OkPacket<'_>, capabilities: u32) -> Vec<u8> {
        let mut dst = BytesMut::new();
        ok.encode(&mut dst, capabilities);
        dst.to_vec()
    }

    fn session_state() -> Vec<u8> {
        let mut state = SESSION_STATE.to_vec();
        state.extend_from_slice(b"OFF");
        state
    }

    #[test]
    fn decodes_a_plain_ok() {
        let payload = [0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00];
        let ok = OkPacket::decode(&payload, capability::PROTOCOL_41).expect("valid OK");
        assert_eq!(
            ok,
            OkPacket {
                header: OK_HEADER,
                affected_rows: 1,
                status: status::AUTOCOMMIT,
                ..OkPacket::default()
            }
        );
        assert_eq!(encoded(&ok, capability::PROTOCOL_41), payload);
    }

    #[test]
    fn info_is_length_encoded_with_or_without_session_track() {
        let mut payload = vec![0x00, 0x03, 0x00, 0x02, 0x00, 0x01, 0x00, 40];
        payload.extend_from_slice(b"Rows matched: 3  Changed: 3  Warnings: 1");
        for capabilities in [capability::PROTOCOL_41, TRACKING] {
            let ok = OkPacket::decode(&payload, capabilities).expect("valid OK");
            assert_eq!(ok.info, &payload[8..]);
            assert_eq!(ok.warnings, 1);
            assert_eq!(ok.session_state, None);
            assert_eq!(encoded(&ok, capabilities), payload);
        }
    }

    #[test]
    fn session_state_follows_the_info_under_session_track() {
        let state = session_state();
        let ok = OkPacket {
            header: OK_HEADER,
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            session_state: Some(&state),
            ..OkPacket::default()
        };
        let bytes = encoded(&ok, TRACKING);
        assert_eq!(bytes[..7], [0x00, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00]);
        assert_eq!(bytes[7], 0x00, "empty info kept as a placeholder");
        assert_eq!(usize::from(bytes[8]), state.len());
        assert_eq!(OkPacket::decode(&bytes, TRACKING), Ok(ok));

        let theirs: OkPacketDeserializer<'_, CommonOkPacket> = ParseBuf(&bytes)
            .parse(CapabilityFlags::from_bits_truncate(TRACKING))
            .expect("mysql_common parses it");
        let theirs = theirs.into_inner();
        assert_eq!(theirs.session_state_info_ref(), Some(&state[..]));
        let entries: Vec<SessionStateInfo<'_>> =
            theirs.session_state_info().expect("entries parse");
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn session_state_is_dropped_for_clients_without_session_track() {
        let state = session_state();
        let ok = OkPacket {
            header: OK_HEADER,
            status: status::SESSION_STATE_CHANGED | status::IN_TRANS,
            session_state: Some(&state),
            ..OkPacket::default()
        };
        let bytes = encoded(&ok, capability::PROTOCOL_41);
        assert_eq!(bytes, [0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn state_changed_bit_follows_the_session_state() {
        let ok = OkPacket {
            status: status::SESSION_STATE_CHANGED,
            ..OkPacket::default()
        };
        assert_eq!(encoded(&ok, TRACKING), [0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn state_changed_bit_without_session_track_reads_no_state() {
        let payload = [0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x01, b'x'];
        let ok = OkPacket::decode(&payload, capability::PROTOCOL_41).expect("valid OK");
        assert_eq!(ok.info, b"x");
        assert_eq!(ok.session_state, None);
    }

    #[test]
    fn ok_payload_parses_with_mysql_common() {
        let bytes = ok_payload(
            300,
            70_000,
            status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            2,
        );
        assert_eq!(
            bytes[..],
            [
                0x00, 0xFC, 0x2C, 0x01, 0xFD, 0x70, 0x11, 0x01, 0x02, 0x00, 0x02, 0x00
            ]
        );
        let theirs: OkPacketDeserializer<'_, CommonOkPacket> = ParseBuf(&bytes)
            .parse(CapabilityFlags::from_bits_truncate(TRACKING))
            .expect("mysql_common parses it");
        let theirs = theirs.into_inner();
        assert_eq!(theirs.affected_rows(), 300);
        assert_eq!(theirs.last_insert_id(), Some(70_000));
        assert_eq!(theirs.warnings(), 2);
    }

    #[test]
    fn result_set_terminator_is_an_ok_with_header_fe() {
        let payload = [0xFE, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00];
        assert!(is_terminator(&payload));
        let ok = OkPacket::decode(&payload, capability::DEPRECATE_EOF).expect("valid");
        assert_eq!(ok.header, EOF_HEADER);
        assert_eq!(ok.status, status::AUTOCOMMIT | status::NO_INDEX_USED);
        assert_eq!(encoded(&ok, capability::DEPRECATE_EOF), payload);
    }

    #[test]
    fn eof_packet_round_trips() {
        let payload = [0xFE, 0x01, 0x00, 0x0A, 0x00];
        let eof = Eof::decode(&payload).expect("valid EOF");
        assert_eq!(
            eof,
            Eof {
                warnings: 1,
                status: status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS,
            }
        );
        let mut dst = BytesMut::new();
        eof.encode(&mut dst);
        assert_eq!(dst[..], payload);
        assert_eq!(
            Eof::decode(&payload[..3]),
            Err(WireError::Truncated("status flags"))
        );
        assert!(matches!(
            Eof::decode(&[0x00, 0, 0, 0, 0]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn only_short_fe_packets_terminate_a_result_set() {
        assert!(is_terminator(&[0xFE, 0, 0, 2, 0]));
        assert!(!is_terminator(&[0x00, 0, 0, 2, 0]));
        assert!(!is_terminator(&[]));
        let mut huge_row = vec![0u8; MAX_PAYLOAD];
        huge_row[0] = 0xFE;
        assert!(!is_terminator(&huge_row));
        huge_row.truncate(MAX_PAYLOAD - 1);
        assert!(is_terminator(&huge_row));
    }

    #[test]
    fn err_packet_round_trips_with_mysql_common() {
        let ours = ErrPacket::new(errors::ACCESS_DENIED, "Access denied for user 'app'");
        let mut dst = BytesMut::new();
        ours.encode(&mut dst);
        assert_eq!(
            dst[..9],
            [0xFF, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0']
        );
        assert_eq!(&dst[9..], b"Access denied for user 'app'");

        let theirs: packets::ErrPacket<'_> = ParseBuf(&dst)
            .parse(CapabilityFlags::CLIENT_PROTOCOL_41)
            .expect("mysql_common parses it");
        let theirs = theirs.server_error();
        assert_eq!(theirs.error_code(), 1045);
        assert_eq!(
            theirs.sql_state_ref().map(SqlState::as_bytes),
            Some(*b"28000")
        );
        assert_eq!(ErrPacket::decode(&dst), Ok(ours));

        let theirs = packets::ErrPacket::Error(ServerError::new(
            1205,
            Some(SqlState::new(*b"HY000")),
            &b"timeout"[..],
        ));
        let mut bytes = Vec::new();
        theirs.serialize(&mut bytes);
        let decoded = ErrPacket::decode(&bytes).expect("decodes");
        assert_eq!(decoded.code, 1205);
        assert_eq!(decoded.message, "timeout");
    }

    #[test]
    fn err_packet_without_sql_state_gets_hy000() {
        let payload = b"\xFF\x10\x04Too many connections";
        let err = ErrPacket::decode(payload).expect("valid ERR");
        assert_eq!(err.code, 1040);
        assert_eq!(err.sql_state, "HY000");
        assert_eq!(err.message, "Too many connections");
        let short = ErrPacket::decode(b"\xFF\x10\x04#08").expect("too short for a state");
        assert_eq!(short.sql_state, "HY000");
        assert_eq!(short.message, "#08");
    }

    #[test]
    fn err_packet_with_a_bad_state_encodes_hy000() {
        let err = ErrPacket {
            code: 1105,
            sql_state: "bad".to_owned(),
            message: String::new(),
        };
        let mut dst = BytesMut::new();
        err.encode(&mut dst);
        assert_eq!(dst[..], *b"\xFF\x51\x04#HY000");
    }

    #[test]
    fn session_changes_decode_every_entry_type() {
        let mut data = session_state();
        // A second variable in its own entry, then the rest of the types.
        data.extend_from_slice(&[0x00, 0x0e, 0x08]);
        data.extend_from_slice(b"sql_mode\x04ANSI");
        data.extend_from_slice(&[0x02, 0x01, b'1']);
        data.extend_from_slice(&[0x03, 0x08, 0x00, 0x06]);
        data.extend_from_slice(b"uuid:1");
        data.extend_from_slice(&[0x04, 0x0c, 0x0b]);
        data.extend_from_slice(b"START TRANS");
        data.extend_from_slice(&[0x05, 0x09, 0x08]);
        data.extend_from_slice(b"T_______");
        data.extend_from_slice(&[0x2A, 0x01, 0xAB]);
        let changes = session_changes(&data).expect("valid state");
        assert_eq!(
            changes,
            [
                SessionChange::Schema(b"shop"),
                SessionChange::SystemVariable {
                    name: b"autocommit",
                    value: b"OFF"
                },
                SessionChange::SystemVariable {
                    name: b"sql_mode",
                    value: b"ANSI"
                },
                SessionChange::StateChange(true),
                SessionChange::Gtids(b"uuid:1"),
                SessionChange::TransactionCharacteristics(b"START TRANS"),
                SessionChange::TransactionState(b"T_______"),
                SessionChange::Unknown(0x2A),
            ]
        );
    }

    #[test]
    fn state_change_flag_is_read_raw_or_length_encoded() {
        // MySQL's and MariaDB's trackers write the bare byte.
        assert_eq!(
            session_changes(b"\x02\x01\x31"),
            Ok(vec![SessionChange::StateChange(true)])
        );
        assert_eq!(
            session_changes(b"\x02\x01\x30"),
            Ok(vec![SessionChange::StateChange(false)])
        );
        assert_eq!(
            session_changes(b"\x02\x02\x01\x31"),
            Ok(vec![SessionChange::StateChange(true)])
        );
    }

    #[test]
    fn one_variable_entry_may_hold_several_pairs() {
        let data = b"\x00\x0a\x01a\x01b\x02cc\x02dd";
        assert_eq!(
            session_changes(data),
            Ok(vec![
                SessionChange::SystemVariable {
                    name: b"a",
                    value: b"b"
                },
                SessionChange::SystemVariable {
                    name: b"cc",
                    value: b"dd"
                },
            ])
        );
    }

    #[test]
    fn session_changes_match_mysql_common() {
        let state = session_state();
        let mut buf = ParseBuf(&state);
        let mut theirs = Vec::new();
        while !buf.is_empty() {
            let info: SessionStateInfo<'_> = buf.parse(()).expect("entry");
            theirs.push(info.data_ref().to_vec());
        }
        assert_eq!(theirs.len(), 2);
        assert_eq!(session_changes(&state).map(|c| c.len()), Ok(2));
    }

    #[test]
    fn truncated_session_state_is_an_error() {
        assert_eq!(
            session_changes(&SESSION_STATE),
            Err(WireError::Truncated("session state entry"))
        );
        assert_eq!(
            session_changes(&[0x00, 0x02, 0x01, b'a']),
            Err(WireError::Truncated("system variable value"))
        );
    }
}
