//! Relaying one command's response from a server connection to a client,
//! sans-IO: finds where the response ends (multiple result sets included),
//! renumbers packets for the client, translates between the server's and
//! the client's EOF dialect (DEPRECATE_EOF) and session tracking, and
//! collects what pooling needs to know: status flags, session changes,
//! LAST_INSERT_ID, a prepared statement's server id, an opened cursor.

use bytes::{BufMut, BytesMut};

use super::wire::WireError;
use super::wire::flags::{capability, status};
use super::wire::lenenc;
use super::wire::packet::{Header, MAX_PAYLOAD};
use super::wire::response::{
    EOF_HEADER, ERR_HEADER, Eof, ErrPacket, LOCAL_INFILE_HEADER, OK_HEADER, OkPacket,
    SessionChange, is_terminator, session_changes,
};

/// Length of a classic EOF packet's payload.
const EOF_LEN: usize = 5;

/// What kind of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// COM_QUERY: OK, ERR, LOCAL INFILE request, or text result sets.
    Query,
    /// COM_STMT_PREPARE; the statement id is rewritten to `client_id`.
    Prepare { client_id: u32 },
    /// COM_STMT_EXECUTE: OK, ERR or binary result sets.
    Execute,
    /// COM_STMT_FETCH: rows up to a terminator.
    Fetch,
    /// COM_FIELD_LIST: column definitions up to a terminator.
    FieldList,
    /// One packet (OK, ERR, EOF, or COM_STATISTICS' text).
    Single,
}

/// What the relay needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Feed the next server packet.
    More,
    /// The server asked for a local file: relay the client's file packets
    /// (up to an empty one) to the server, then feed again.
    LocalInfile,
    /// The response is complete.
    Done,
}

/// A statement the server prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prepared {
    pub(super) server_id: u32,
    columns: u16,
    pub(super) params: u16,
}

/// What the response told churnstile.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Status flags of the last OK or EOF.
    pub(super) status: Option<u16>,
    /// The error code, when the response ended with ERR.
    pub(super) error: Option<u16>,
    /// The last non-zero LAST_INSERT_ID an OK reported.
    pub(super) last_insert_id: Option<u64>,
    /// Session variables that changed, in order.
    pub(super) variables: Vec<(String, String)>,
    pub(super) schema: Option<String>,
    /// The server reported a session state change.
    pub(super) state_changed: bool,
    pub(super) prepared: Option<Prepared>,
    /// An execute left a cursor open (rows come with COM_STMT_FETCH).
    pub(super) cursor_opened: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first packet of a (next) result.
    First,
    /// Column definitions of a result set.
    Columns {
        left: u64,
    },
    /// The EOF a non-DEPRECATE_EOF server sends after column definitions.
    ColumnsEof,
    /// After the column definitions of a DEPRECATE_EOF server, which sends
    /// no EOF there: a client that expects one gets it with the first row,
    /// or, when an execute opened a cursor, with the cursor's status.
    FirstRow,
    Rows,
    /// A prepared statement's parameter then column definitions.
    PrepareParams {
        left: u16,
        columns: u16,
    },
    PrepareParamsEof {
        columns: u16,
    },
    PrepareColumns {
        left: u16,
    },
    PrepareColumnsEof,
    FieldList,
    Done,
}

/// Relays one response.
#[derive(Debug)]
pub(super) struct ResponseRelay {
    expect: Expect,
    phase: Phase,
    server_caps: u32,
    client_caps: u32,
    /// Sequence id of the next packet to the client.
    client_seq: u8,
    /// The previous packet was a full 16 MB one: this one continues it.
    continuing: bool,
    /// Status flags as last known, for EOF packets churnstile inserts.
    last_status: u16,
    pub(super) effects: Effects,
}

impl ResponseRelay {
    /// `status` is the server connection's last known status flags;
    /// `client_seq` is the sequence id the client expects next (one more
    /// than its command's).
    pub(super) fn new(
        expect: Expect,
        server_caps: u32,
        client_caps: u32,
        status: u16,
        client_seq: u8,
    ) -> Self {
        ResponseRelay {
            expect,
            phase: match expect {
                Expect::Fetch => Phase::Rows,
                Expect::FieldList => Phase::FieldList,
                _ => Phase::First,
            },
            server_caps,
            client_caps,
            client_seq,
            continuing: false,
            last_status: status,
            effects: Effects::default(),
        }
    }

    /// Continues after the client's file was sent: the server's reply
    /// follows the client's numbering.
    pub(super) fn resume_after_file(&mut self, client_seq: u8) {
        self.client_seq = client_seq;
    }

    fn server_deprecates_eof(&self) -> bool {
        self.server_caps & capability::DEPRECATE_EOF != 0
    }

    fn client_deprecates_eof(&self) -> bool {
        self.client_caps & capability::DEPRECATE_EOF != 0
    }

    /// Handles one physical packet from the server, appending what the
    /// client gets to `out`.
    pub(super) fn feed(
        &mut self,
        header: Header,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<Step, WireError> {
        if self.continuing {
            self.continuing = header.len == MAX_PAYLOAD;
            self.forward(payload, out);
            return Ok(self.step());
        }
        if header.len == MAX_PAYLOAD {
            // Only a row can be this large; the rest of it is not looked at.
            self.start_rows(out);
            self.continuing = true;
            self.forward(payload, out);
            return Ok(self.step());
        }
        if payload.first() == Some(&ERR_HEADER) && self.phase != Phase::Done {
            self.start_rows(out);
            let error = ErrPacket::decode(payload)?;
            self.effects.error = Some(error.code);
            self.forward(payload, out);
            self.phase = Phase::Done;
            return Ok(Step::Done);
        }
        match self.phase {
            Phase::First => return self.first(payload, out),
            Phase::Columns { left } => {
                self.forward(payload, out);
                if left > 1 {
                    self.phase = Phase::Columns { left: left - 1 };
                } else if self.server_deprecates_eof() {
                    self.phase = Phase::FirstRow;
                } else {
                    self.phase = Phase::ColumnsEof;
                }
            }
            Phase::ColumnsEof => {
                let eof = Eof::decode(payload)?;
                self.last_status = eof.status;
                if !self.client_deprecates_eof() {
                    self.eof(out, eof.warnings, eof.status);
                }
                if eof.status & status::CURSOR_EXISTS != 0 && self.expect == Expect::Execute {
                    self.effects.cursor_opened = true;
                    self.end_of_result(eof.status);
                } else {
                    self.phase = Phase::Rows;
                }
            }
            Phase::FirstRow => {
                if self.opens_cursor(payload)? {
                    let status = self.terminator(payload, out)?;
                    self.effects.cursor_opened = true;
                    self.end_of_result(status);
                } else {
                    self.start_rows(out);
                    self.row_or_terminator(payload, out)?;
                }
            }
            Phase::Rows => self.row_or_terminator(payload, out)?,
            Phase::PrepareParams { left, columns } => {
                self.forward(payload, out);
                if left > 1 {
                    self.phase = Phase::PrepareParams {
                        left: left - 1,
                        columns,
                    };
                } else {
                    self.after_definitions(out, Phase::PrepareParamsEof { columns }, columns);
                }
            }
            Phase::PrepareParamsEof { columns } => {
                self.definitions_eof(payload, out)?;
                self.prepare_columns(columns);
            }
            Phase::PrepareColumns { left } => {
                self.forward(payload, out);
                if left > 1 {
                    self.phase = Phase::PrepareColumns { left: left - 1 };
                } else {
                    self.after_definitions(out, Phase::PrepareColumnsEof, 0);
                }
            }
            Phase::PrepareColumnsEof => {
                self.definitions_eof(payload, out)?;
                self.phase = Phase::Done;
            }
            Phase::FieldList => {
                if is_terminator(payload) {
                    let status = self.terminator(payload, out)?;
                    self.last_status = status;
                    self.phase = Phase::Done;
                } else {
                    self.forward(payload, out);
                }
            }
            Phase::Done => {
                return Err(WireError::Malformed("server sent more than its response"));
            }
        }
        Ok(self.step())
    }

    /// Leaves `FirstRow` for `Rows`: a client that expects an EOF after the
    /// column definitions gets it now.
    fn start_rows(&mut self, out: &mut BytesMut) {
        if self.phase == Phase::FirstRow {
            if !self.client_deprecates_eof() {
                self.eof(out, 0, self.last_status);
            }
            self.phase = Phase::Rows;
        }
    }

    /// Whether `payload`, right after an execute's column definitions, is
    /// the terminator saying a cursor was opened (its rows come with
    /// COM_STMT_FETCH).
    fn opens_cursor(&self, payload: &[u8]) -> Result<bool, WireError> {
        if self.expect != Expect::Execute || !is_terminator(payload) {
            return Ok(false);
        }
        let status = if payload.len() == EOF_LEN {
            Eof::decode(payload)?.status
        } else {
            OkPacket::decode(payload, self.server_caps)?.status
        };
        Ok(status & status::CURSOR_EXISTS != 0)
    }

    fn row_or_terminator(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), WireError> {
        if is_terminator(payload) {
            let status = self.terminator(payload, out)?;
            if status & status::CURSOR_EXISTS != 0 && self.expect == Expect::Execute {
                self.effects.cursor_opened = true;
            }
            self.end_of_result(status);
        } else {
            self.forward(payload, out);
        }
        Ok(())
    }

    fn step(&self) -> Step {
        if self.phase == Phase::Done && !self.continuing {
            Step::Done
        } else {
            Step::More
        }
    }

    /// The first packet of a response or of a further result.
    fn first(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<Step, WireError> {
        match (self.expect, payload.first()) {
            (Expect::Single, Some(&OK_HEADER)) => {
                let status = self.ok(payload, out)?;
                self.last_status = status;
                self.phase = Phase::Done;
            }
            (Expect::Single, Some(&EOF_HEADER)) if payload.len() < 9 => {
                let eof = Eof::decode(payload)?;
                self.note_status(eof.status);
                self.forward(payload, out);
                self.phase = Phase::Done;
            }
            (Expect::Single, _) => {
                self.forward(payload, out);
                self.phase = Phase::Done;
            }
            (Expect::Prepare { client_id }, Some(&OK_HEADER)) => {
                let prepared = prepare_ok(payload)?;
                self.effects.prepared = Some(prepared);
                let mut rewritten = BytesMut::from(payload);
                rewritten[1..5].copy_from_slice(&client_id.to_le_bytes());
                self.forward(&rewritten, out);
                if prepared.params > 0 {
                    self.phase = Phase::PrepareParams {
                        left: prepared.params,
                        columns: prepared.columns,
                    };
                } else {
                    self.prepare_columns(prepared.columns);
                }
            }
            (Expect::Prepare { .. }, _) => {
                return Err(WireError::Malformed("unexpected reply to COM_STMT_PREPARE"));
            }
            (_, Some(&OK_HEADER)) => {
                let status = self.ok(payload, out)?;
                self.end_of_result(status);
            }
            (Expect::Query, Some(&LOCAL_INFILE_HEADER)) => {
                self.forward(payload, out);
                return Ok(Step::LocalInfile);
            }
            _ => {
                let columns = lenenc::read_int(&mut &payload[..])?;
                if columns == 0 {
                    return Err(WireError::Malformed("result set with no columns"));
                }
                self.forward(payload, out);
                self.phase = Phase::Columns { left: columns };
            }
        }
        Ok(self.step())
    }

    /// After a result: another follows when the server says so.
    fn end_of_result(&mut self, status: u16) {
        self.last_status = status;
        self.phase = if status & status::MORE_RESULTS_EXISTS != 0 {
            Phase::First
        } else {
            Phase::Done
        };
    }

    fn prepare_columns(&mut self, columns: u16) {
        self.phase = if columns > 0 {
            Phase::PrepareColumns { left: columns }
        } else {
            Phase::Done
        };
    }

    /// After the last definition of a prepared statement's group: the
    /// server's EOF follows unless it deprecates EOF, and the client gets
    /// one unless it does.
    fn after_definitions(&mut self, out: &mut BytesMut, eof_phase: Phase, columns: u16) {
        if self.server_deprecates_eof() {
            if !self.client_deprecates_eof() {
                self.eof(out, 0, self.last_status);
            }
            if eof_phase == Phase::PrepareColumnsEof {
                self.phase = Phase::Done;
            } else {
                self.prepare_columns(columns);
            }
        } else {
            self.phase = eof_phase;
        }
    }

    fn definitions_eof(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), WireError> {
        let eof = Eof::decode(payload)?;
        if !self.client_deprecates_eof() {
            self.eof(out, eof.warnings, eof.status);
        }
        Ok(())
    }

    /// A result set's terminator, in the client's dialect; returns its status.
    fn terminator(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<u16, WireError> {
        // An OK is at least 7 bytes; a 5-byte terminator is a classic EOF,
        // which some replies (COM_FIELD_LIST) keep under DEPRECATE_EOF.
        if self.server_deprecates_eof() && payload.len() != EOF_LEN {
            let ok = OkPacket::decode(payload, self.server_caps)?;
            self.note_ok(&ok)?;
            if self.client_deprecates_eof() {
                self.ok_for_client(&ok, payload, out);
            } else {
                self.eof(out, ok.warnings, ok.status);
            }
            Ok(ok.status)
        } else {
            let eof = Eof::decode(payload)?;
            self.note_status(eof.status);
            if self.client_deprecates_eof() {
                let ok = OkPacket {
                    header: EOF_HEADER,
                    status: eof.status,
                    warnings: eof.warnings,
                    ..OkPacket::default()
                };
                let mut encoded = BytesMut::new();
                ok.encode(&mut encoded, self.client_caps);
                self.forward(&encoded, out);
            } else {
                self.forward(payload, out);
            }
            Ok(eof.status)
        }
    }

    /// An OK packet (not a terminator); returns its status.
    fn ok(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<u16, WireError> {
        let ok = OkPacket::decode(payload, self.server_caps)?;
        self.note_ok(&ok)?;
        self.ok_for_client(&ok, payload, out);
        Ok(ok.status)
    }

    /// Passes an OK on, re-encoded only when the client cannot read its
    /// session-state data.
    fn ok_for_client(&mut self, ok: &OkPacket<'_>, payload: &[u8], out: &mut BytesMut) {
        if ok.session_state.is_some() && self.client_caps & capability::SESSION_TRACK == 0 {
            let mut encoded = BytesMut::with_capacity(payload.len());
            ok.encode(&mut encoded, self.client_caps);
            self.forward(&encoded, out);
        } else {
            self.forward(payload, out);
        }
    }

    fn note_status(&mut self, status: u16) {
        self.last_status = status;
        self.effects.status = Some(status);
    }

    fn note_ok(&mut self, ok: &OkPacket<'_>) -> Result<(), WireError> {
        self.note_status(ok.status);
        if ok.last_insert_id != 0 {
            self.effects.last_insert_id = Some(ok.last_insert_id);
        }
        if let Some(data) = ok.session_state {
            for change in session_changes(data)? {
                match change {
                    SessionChange::SystemVariable { name, value } => self.effects.variables.push((
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    )),
                    SessionChange::Schema(schema) => {
                        self.effects.schema = Some(String::from_utf8_lossy(schema).into_owned());
                    }
                    SessionChange::StateChange(changed) => {
                        self.effects.state_changed |= changed;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// An EOF packet for a client that expects them (status flags it cannot
    /// interpret are cleared).
    fn eof(&mut self, out: &mut BytesMut, warnings: u16, status: u16) {
        let status = if self.client_caps & capability::SESSION_TRACK == 0 {
            status & !status::SESSION_STATE_CHANGED
        } else {
            status
        };
        let mut encoded = BytesMut::with_capacity(5);
        Eof { warnings, status }.encode(&mut encoded);
        self.forward(&encoded, out);
    }

    fn forward(&mut self, payload: &[u8], out: &mut BytesMut) {
        out.reserve(payload.len() + 4);
        out.put_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        out.put_u8(self.client_seq);
        out.put_slice(payload);
        self.client_seq = self.client_seq.wrapping_add(1);
    }
}

/// Decodes COM_STMT_PREPARE_OK.
fn prepare_ok(payload: &[u8]) -> Result<Prepared, WireError> {
    if payload.len() < 12 {
        return Err(WireError::Truncated("COM_STMT_PREPARE_OK"));
    }
    Ok(Prepared {
        server_id: u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]),
        columns: u16::from_le_bytes([payload[5], payload[6]]),
        params: u16::from_le_bytes([payload[7], payload[8]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::wire::packet::take_packet;

    const CLASSIC: u32 = capability::PROTOCOL_41;
    const MODERN: u32 =
        capability::PROTOCOL_41 | capability::DEPRECATE_EOF | capability::SESSION_TRACK;

    fn header(payload: &[u8]) -> Header {
        Header {
            len: payload.len(),
            seq: 0,
        }
    }

    /// Feeds `packets` and returns (steps, payloads the client got with their seq).
    fn run(relay: &mut ResponseRelay, packets: &[Vec<u8>]) -> (Vec<Step>, Vec<(u8, Vec<u8>)>) {
        let mut out = BytesMut::new();
        let steps = packets
            .iter()
            .map(|p| relay.feed(header(p), p, &mut out).unwrap())
            .collect();
        let mut sent = Vec::new();
        while let Some((h, payload)) = take_packet(&mut out) {
            sent.push((h.seq, payload.to_vec()));
        }
        (steps, sent)
    }

    fn column_def(name: &str) -> Vec<u8> {
        let mut def = BytesMut::new();
        for part in ["def", "", "", "", name, name] {
            lenenc::put_bytes(&mut def, part.as_bytes());
        }
        def.put_slice(&[0x0c, 0x21, 0, 0x0b, 0, 0, 0, 0xfd, 0, 0, 0x27, 0, 0]);
        def.to_vec()
    }

    fn ok_terminator(status: u16) -> Vec<u8> {
        let mut payload = BytesMut::new();
        OkPacket {
            header: EOF_HEADER,
            status,
            ..OkPacket::default()
        }
        .encode(&mut payload, MODERN);
        payload.to_vec()
    }

    #[test]
    fn a_cursor_opened_for_a_classic_client_is_one_eof_with_cursor_exists() {
        let mut relay = ResponseRelay::new(Expect::Execute, MODERN, CLASSIC, status::AUTOCOMMIT, 1);
        let cursor = status::AUTOCOMMIT | status::CURSOR_EXISTS;
        let packets = vec![vec![1], column_def("a"), ok_terminator(cursor)];
        let (steps, sent) = run(&mut relay, &packets);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert!(relay.effects.cursor_opened);
        let eofs: Vec<&Vec<u8>> = sent
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p[0] == EOF_HEADER)
            .collect();
        assert_eq!(eofs.len(), 1, "{sent:?}");
        assert_eq!(Eof::decode(eofs[0]).unwrap().status, cursor);
    }

    #[test]
    fn deprecate_eof_server_to_classic_client_gains_eof_packets() {
        let mut relay = ResponseRelay::new(Expect::Query, MODERN, CLASSIC, status::AUTOCOMMIT, 1);
        let packets = vec![
            vec![1],
            column_def("a"),
            vec![1, b'7'],
            ok_terminator(status::AUTOCOMMIT),
        ];
        let (steps, sent) = run(&mut relay, &packets);
        assert_eq!(steps.last(), Some(&Step::Done));
        let seqs: Vec<u8> = sent.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        // count, definition, inserted EOF, row, EOF instead of the OK.
        assert_eq!(sent[2].1, [0xfe, 0, 0, 2, 0]);
        assert_eq!(sent[3].1, [1, b'7']);
        assert_eq!(sent[4].1, [0xfe, 0, 0, 2, 0]);
        assert_eq!(relay.effects.status, Some(status::AUTOCOMMIT));
    }

    #[test]
    fn classic_server_to_deprecate_eof_client_loses_eof_packets() {
        let mut relay = ResponseRelay::new(Expect::Query, CLASSIC, MODERN, 0, 1);
        let eof = vec![0xfe, 0, 0, 2, 0];
        let packets = vec![vec![1], column_def("a"), eof.clone(), vec![1, b'7'], eof];
        let (steps, sent) = run(&mut relay, &packets);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(sent.len(), 4);
        let last = OkPacket::decode(&sent[3].1, MODERN).unwrap();
        assert_eq!((last.header, last.status), (EOF_HEADER, status::AUTOCOMMIT));
    }

    #[test]
    fn multiple_result_sets_continue_until_the_last() {
        let mut relay = ResponseRelay::new(Expect::Query, MODERN, MODERN, 0, 1);
        let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
        let packets = vec![
            vec![1],
            column_def("a"),
            vec![1, b'1'],
            ok_terminator(more),
            vec![1],
            column_def("b"),
            ok_terminator(status::AUTOCOMMIT),
        ];
        let (steps, sent) = run(&mut relay, &packets);
        assert_eq!(steps[3], Step::More);
        assert_eq!(steps[6], Step::Done);
        assert_eq!(sent.len(), 7);
    }

    #[test]
    fn session_state_is_collected_and_stripped_for_clients_without_tracking() {
        let mut state = BytesMut::new();
        let mut entry = BytesMut::new();
        lenenc::put_bytes(&mut entry, b"time_zone");
        lenenc::put_bytes(&mut entry, b"+02:00");
        state.put_u8(0);
        lenenc::put_bytes(&mut state, &entry);
        let ok = OkPacket {
            header: OK_HEADER,
            affected_rows: 1,
            last_insert_id: 42,
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            session_state: Some(&state),
            ..OkPacket::default()
        };
        let mut payload = BytesMut::new();
        ok.encode(&mut payload, MODERN);
        let mut relay = ResponseRelay::new(Expect::Query, MODERN, CLASSIC, 0, 1);
        let (steps, sent) = run(&mut relay, &[payload.to_vec()]);
        assert_eq!(steps, [Step::Done]);
        let seen = OkPacket::decode(&sent[0].1, CLASSIC).unwrap();
        assert_eq!((seen.affected_rows, seen.last_insert_id), (1, 42));
        assert_eq!(seen.session_state, None);
        assert_eq!(seen.status & status::SESSION_STATE_CHANGED, 0);
        assert_eq!(relay.effects.last_insert_id, Some(42));
        assert_eq!(
            relay.effects.variables,
            [("time_zone".to_owned(), "+02:00".to_owned())]
        );
    }

    #[test]
    fn prepare_ok_gets_the_client_id_and_eofs_in_the_clients_dialect() {
        let mut relay = ResponseRelay::new(Expect::Prepare { client_id: 7 }, MODERN, CLASSIC, 0, 1);
        let mut prepare_ok = vec![0, 99, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        prepare_ok[1] = 99;
        let packets = vec![prepare_ok, column_def("?"), column_def("a")];
        let (steps, sent) = run(&mut relay, &packets);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(&sent[0].1[1..5], &7u32.to_le_bytes());
        // prepare OK, param def, EOF, column def, EOF.
        assert_eq!(sent.len(), 5);
        assert_eq!(sent[2].1[0], 0xfe);
        assert_eq!(
            relay.effects.prepared,
            Some(Prepared {
                server_id: 99,
                columns: 1,
                params: 1
            })
        );
    }

    #[test]
    fn an_error_ends_the_response_and_local_infile_asks_for_the_file() {
        let mut relay = ResponseRelay::new(Expect::Query, MODERN, MODERN, 0, 1);
        let mut err = BytesMut::new();
        ErrPacket::new(crate::mysql::wire::errors::BAD_DB, "Unknown database 'x'").encode(&mut err);
        let (steps, _) = run(&mut relay, &[err.to_vec()]);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(relay.effects.error, Some(1049));

        let mut relay = ResponseRelay::new(Expect::Query, MODERN, MODERN, 0, 1);
        let (steps, sent) = run(&mut relay, &[b"\xfbdata.csv".to_vec()]);
        assert_eq!(steps, [Step::LocalInfile]);
        assert_eq!(sent[0].1, b"\xfbdata.csv");
    }
}
