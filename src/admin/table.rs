//! Result sets the console sends, as bytes (sans-IO): RowDescription with
//! typed columns, one DataRow per row, CommandComplete; plus the other
//! small backend messages only the console needs.

use bytes::{BufMut, BytesMut};

/// Column types, so psql aligns numbers; values are always sent as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Int,
    Float,
}

impl Kind {
    /// PostgreSQL type OID and length.
    fn oid_and_len(self) -> (i32, i16) {
        match self {
            Kind::Text => (25, -1),
            Kind::Int => (20, 8),
            Kind::Float => (701, 8),
        }
    }
}

/// A result set under construction.
#[derive(Debug)]
pub(super) struct Table {
    columns: Vec<(&'static str, Kind)>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub(super) fn new(columns: &[(&'static str, Kind)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub(super) fn push(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// RowDescription, DataRows and CommandComplete with `tag`.
    pub(super) fn encode(&self, tag: &str, out: &mut BytesMut) {
        let start = begin(out, b'T');
        out.put_i16(self.columns.len() as i16);
        for (name, kind) in &self.columns {
            let (oid, len) = kind.oid_and_len();
            put_cstr(out, name);
            out.put_i32(0);
            out.put_i16(0);
            out.put_i32(oid);
            out.put_i16(len);
            out.put_i32(-1);
            out.put_i16(0);
        }
        finish(out, start);
        for row in &self.rows {
            let start = begin(out, b'D');
            out.put_i16(row.len() as i16);
            for cell in row {
                match cell {
                    Some(text) => {
                        out.put_i32(text.len() as i32);
                        out.put_slice(text.as_bytes());
                    }
                    None => out.put_i32(-1),
                }
            }
            finish(out, start);
        }
        command_complete(out, tag);
    }
}

/// A text cell.
pub(super) fn text(value: impl Into<String>) -> Option<String> {
    Some(value.into())
}

/// A number cell.
pub(super) fn num(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

pub(super) fn command_complete(out: &mut BytesMut, tag: &str) {
    let start = begin(out, b'C');
    put_cstr(out, tag);
    finish(out, start);
}

pub(super) fn empty_query_response(out: &mut BytesMut) {
    let start = begin(out, b'I');
    finish(out, start);
}

/// NoticeResponse with severity NOTICE and SQLSTATE 00000.
pub(super) fn notice(out: &mut BytesMut, message: &str) {
    let start = begin(out, b'N');
    for (field, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
    ] {
        out.put_u8(field);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish(out, start);
}

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    let start = out.len();
    out.put_u8(tag);
    out.put_u32(0);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::wire::codec::decode_message;

    #[test]
    fn a_table_is_row_description_data_rows_and_command_complete() {
        let mut table = Table::new(&[("name", Kind::Text), ("count", Kind::Int)]);
        table.push(vec![text("app"), num(3)]);
        table.push(vec![None, num(0)]);
        let mut out = BytesMut::new();
        table.encode("SHOW", &mut out);
        let tags: Vec<u8> = std::iter::from_fn(|| decode_message(&mut out, 1 << 20).unwrap())
            .map(|message| {
                if message.tag == b'D' {
                    assert_eq!(&message.body[..2], &[0, 2]);
                }
                message.tag
            })
            .collect();
        assert_eq!(tags, b"TDDC");
    }

    #[test]
    fn row_description_carries_names_and_types() {
        let mut out = BytesMut::new();
        Table::new(&[("maxwait", Kind::Int)]).encode("SHOW", &mut out);
        let description = decode_message(&mut out, 1 << 20).unwrap().unwrap();
        let body = &description.body[..];
        assert_eq!(&body[..2], &[0, 1]);
        assert_eq!(&body[2..10], b"maxwait\0");
        assert_eq!(&body[16..20], &20i32.to_be_bytes());
        let complete = decode_message(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(&complete.body[..], b"SHOW\0");
    }
}
