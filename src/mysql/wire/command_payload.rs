//! The client command payloads churnstile decodes or rewrites rather than
//! forwards: COM_CHANGE_USER (who the client becomes) and COM_STMT_EXECUTE
//! (the statement id and parameter types churnstile rewrites). Sans-IO and
//! never panicking on short or odd payloads.

use bytes::{BufMut, Bytes, BytesMut};

use super::flags::capability;

/// A decoded COM_CHANGE_USER.
pub struct ChangeUser {
    pub user: String,
    pub database: Option<String>,
    pub charset: Option<u8>,
    pub plugin: Option<String>,
}

impl ChangeUser {
    /// `None` when the payload is too short for its fields.
    pub fn decode(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
        let mut rest = payload.get(1..)?;
        let user = take_cstr(&mut rest)?;
        if capabilities & capability::SECURE_CONNECTION != 0 {
            let len = usize::from(*rest.first()?);
            rest = rest.get(1 + len..)?;
        } else {
            take_cstr(&mut rest)?;
        }
        let database = take_cstr(&mut rest).filter(|db| !db.is_empty());
        let charset = rest.first().copied();
        rest = rest.get(2..).unwrap_or_default();
        let plugin = if capabilities & capability::PLUGIN_AUTH != 0 {
            take_cstr(&mut rest)
        } else {
            None
        };
        Some(ChangeUser {
            user,
            database,
            charset,
            plugin,
        })
    }
}

fn take_cstr(rest: &mut &[u8]) -> Option<String> {
    let end = rest.iter().position(|&b| b == 0)?;
    let text = String::from_utf8_lossy(&rest[..end]).into_owned();
    *rest = &rest[end + 1..];
    Some(text)
}

/// COM_STMT_EXECUTE (at least 5 bytes: command and statement id) with the
/// server's statement id and the types of its `params` parameters always
/// bound, from `stored` when the client did not bind them here (the server
/// connection may never have seen them). Returns the packet and the types
/// the client bound in it, if it did.
pub fn rewrite_execute(
    payload: &[u8],
    server_id: u32,
    params: u16,
    stored: Option<&Bytes>,
) -> (BytesMut, Option<Bytes>) {
    let mut packet = BytesMut::from(payload);
    packet[1..5].copy_from_slice(&server_id.to_le_bytes());
    let params = usize::from(params);
    if params == 0 {
        return (packet, None);
    }
    let flag_at = 10 + params.div_ceil(8);
    let types_len = 2 * params;
    match packet.get(flag_at) {
        Some(1) => {
            let types = packet
                .get(flag_at + 1..flag_at + 1 + types_len)
                .map(Bytes::copy_from_slice);
            (packet, types)
        }
        Some(0) => match stored {
            Some(types) => {
                let mut bound = BytesMut::with_capacity(packet.len() + types_len);
                bound.put_slice(&packet[..flag_at]);
                bound.put_u8(1);
                bound.put_slice(types);
                bound.put_slice(&packet[flag_at + 1..]);
                (bound, None)
            }
            None => (packet, None),
        },
        _ => (packet, None),
    }
}
