//! The login packets: the server's HandshakeV10 greeting, the client's
//! HandshakeResponse41 (or SSLRequest), and the AuthSwitchRequest and
//! AuthMoreData steps of plugin authentication.

use bytes::{BufMut, BytesMut};

use super::flags::capability;
use super::lenenc::{
    put_bytes, put_int, read_bytes, read_fixed, read_int, read_null_terminated, read_u8,
    read_u16_le, read_u32_le,
};
use super::{Field, WireError};

/// Auth plugin names as they appear in handshakes and AuthSwitchRequests.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// The only handshake protocol version since MySQL 3.21.
const PROTOCOL_VERSION: u8 = 10;
/// Length of auth-plugin-data part 1.
const SCRAMBLE_PART_1: usize = 8;
/// The 20-byte scramble plus its trailing NUL, as MySQL declares it.
const AUTH_PLUGIN_DATA_LEN: u8 = 21;
/// Reserved bytes after the auth-plugin-data length (MariaDB puts its
/// extended capabilities in the last four).
const HANDSHAKE_RESERVED: usize = 10;
/// Filler between the charset and the user name of a HandshakeResponse41;
/// also why an SSLRequest is exactly 32 bytes.
const RESPONSE_FILLER: usize = 23;
const SSL_REQUEST_LEN: usize = 4 + 4 + 1 + RESPONSE_FILLER;
/// Header byte of AuthSwitchRequest.
const AUTH_SWITCH_HEADER: u8 = 0xFE;

/// Header byte of AuthMoreData, which carries plugin-specific data mid-login.
pub const AUTH_MORE_DATA: u8 = 0x01;
/// caching_sha2 AuthMoreData from the server: fast auth succeeded, an OK follows.
pub const FAST_AUTH_OK: u8 = 3;
/// caching_sha2 AuthMoreData from the server: no cached hash, send the
/// password (in clear over TLS, RSA-encrypted otherwise).
pub const PERFORM_FULL_AUTH: u8 = 4;
/// caching_sha2 client packet asking for the server's RSA public key.
pub const REQUEST_PUBLIC_KEY: u8 = 2;

/// The server's greeting (HandshakeV10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    pub server_version: String,
    pub connection_id: u32,
    /// auth-plugin-data parts 1+2 (without the trailing NUL).
    pub scramble: [u8; 20],
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl ServerHandshake {
    /// Appends the payload (no packet header), with the auth-plugin-data
    /// length 21 as MySQL writes it. Part 2 of the scramble (and its NUL)
    /// and the plugin name are written under SECURE_CONNECTION and
    /// PLUGIN_AUTH, the flags under which clients read them.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(PROTOCOL_VERSION);
        dst.put_slice(self.server_version.as_bytes());
        dst.put_u8(0);
        dst.put_u32_le(self.connection_id);
        dst.put_slice(&self.scramble[..SCRAMBLE_PART_1]);
        dst.put_u8(0);
        dst.put_u16_le(self.capabilities as u16);
        dst.put_u8(self.charset);
        dst.put_u16_le(self.status);
        dst.put_u16_le((self.capabilities >> 16) as u16);
        dst.put_u8(AUTH_PLUGIN_DATA_LEN);
        dst.put_bytes(0, HANDSHAKE_RESERVED);
        if self.capabilities & capability::SECURE_CONNECTION != 0 {
            put_nul_terminated(dst, &self.scramble[SCRAMBLE_PART_1..]);
        }
        if self.capabilities & capability::PLUGIN_AUTH != 0 {
            put_nul_terminated(dst, self.auth_plugin.as_bytes());
        }
    }

    /// Parses a HandshakeV10 payload. A scramble of other than 20 bytes is
    /// cut or zero-padded to 20; without PLUGIN_AUTH the plugin is
    /// `mysql_native_password`, which is what clients then assume.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        match read_u8(&mut buf).field("protocol version")? {
            PROTOCOL_VERSION => {}
            0xFF => {
                return Err(WireError::Malformed(
                    "server sent an ERR packet instead of its handshake",
                ));
            }
            _ => return Err(WireError::Malformed("handshake protocol version is not 10")),
        }
        let server_version = read_null_terminated(&mut buf).field("server version")?;
        let connection_id = read_u32_le(&mut buf).field("connection id")?;
        let part_1 = read_fixed(&mut buf, SCRAMBLE_PART_1).field("auth-plugin-data part 1")?;
        read_u8(&mut buf).field("handshake filler")?;
        let capabilities_low = read_u16_le(&mut buf).field("capability flags")?;
        let charset = read_u8(&mut buf).field("character set")?;
        let status = read_u16_le(&mut buf).field("status flags")?;
        let capabilities_high = read_u16_le(&mut buf).field("capability flags")?;
        let auth_data_len = read_u8(&mut buf).field("auth-plugin-data length")?;
        read_fixed(&mut buf, HANDSHAKE_RESERVED).field("handshake reserved bytes")?;
        let capabilities = u32::from(capabilities_low) | u32::from(capabilities_high) << 16;

        let part_2 = if capabilities & capability::SECURE_CONNECTION != 0 {
            // The declared length covers both parts; part 2 is never shorter
            // than 13 bytes (12 of scramble and a NUL).
            let len = usize::from(auth_data_len)
                .saturating_sub(SCRAMBLE_PART_1)
                .max(13);
            read_fixed(&mut buf, len).field("auth-plugin-data part 2")?
        } else {
            &[]
        };
        let auth_plugin = if capabilities & capability::PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(read_to_nul_or_end(&mut buf)).into_owned()
        } else {
            NATIVE_PASSWORD.to_owned()
        };

        let part_2 = part_2.strip_suffix(&[0]).unwrap_or(part_2);
        let mut scramble = [0u8; 20];
        for (slot, byte) in scramble.iter_mut().zip(part_1.iter().chain(part_2)) {
            *slot = *byte;
        }
        Ok(ServerHandshake {
            server_version: String::from_utf8_lossy(server_version).into_owned(),
            connection_id,
            scramble,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// The client's login packet (HandshakeResponse41).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet_size: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    /// Only when CONNECT_WITH_DB; an empty name decodes as None, since the
    /// server selects no database for it either.
    pub database: Option<String>,
    /// Only when PLUGIN_AUTH; an empty name decodes as None.
    pub auth_plugin: Option<String>,
    /// Only when CONNECT_ATTRS.
    pub attributes: Vec<(String, String)>,
}

impl HandshakeResponse {
    /// Appends the payload, laid out as `self.capabilities` say: the auth
    /// response length-encoded under PLUGIN_AUTH_LENENC_DATA, else after a
    /// 1-byte length under SECURE_CONNECTION (cut to 255 bytes, all that
    /// length can say), else NUL-terminated; the database, plugin name and
    /// attributes only under their flags (a None written as an empty name).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u32_le(self.capabilities);
        dst.put_u32_le(self.max_packet_size);
        dst.put_u8(self.charset);
        dst.put_bytes(0, RESPONSE_FILLER);
        put_nul_terminated(dst, self.user.as_bytes());
        if self.capabilities & capability::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_bytes(dst, &self.auth_response);
        } else if self.capabilities & capability::SECURE_CONNECTION != 0 {
            let len = self.auth_response.len().min(usize::from(u8::MAX));
            dst.put_u8(len as u8);
            dst.put_slice(&self.auth_response[..len]);
        } else {
            put_nul_terminated(dst, &self.auth_response);
        }
        if self.capabilities & capability::CONNECT_WITH_DB != 0 {
            put_nul_terminated(dst, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & capability::PLUGIN_AUTH != 0 {
            put_nul_terminated(dst, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & capability::CONNECT_ATTRS != 0 {
            let mut attributes = BytesMut::new();
            for (key, value) in &self.attributes {
                put_bytes(&mut attributes, key.as_bytes());
                put_bytes(&mut attributes, value.as_bytes());
            }
            put_int(dst, attributes.len() as u64);
            dst.put_slice(&attributes);
        }
    }

    /// Parses a HandshakeResponse41. Requires PROTOCOL_41. A database or
    /// plugin name missing its NUL at the end of the packet, and a missing
    /// plugin name or attribute block, are accepted: some clients send them
    /// that way. User and database names must be UTF-8, so two different
    /// byte strings never become the same account or schema.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        let capabilities = read_u32_le(&mut buf).field("client capability flags")?;
        if capabilities & capability::PROTOCOL_41 == 0 {
            return Err(WireError::Malformed(
                "client does not speak protocol 4.1 (CLIENT_PROTOCOL_41 is clear)",
            ));
        }
        let max_packet_size = read_u32_le(&mut buf).field("max packet size")?;
        let charset = read_u8(&mut buf).field("character set")?;
        read_fixed(&mut buf, RESPONSE_FILLER).field("handshake response filler")?;
        let user = read_null_terminated(&mut buf).field("user name")?;
        let user = utf8(user, "user name is not UTF-8")?;
        let auth_response = if capabilities & capability::PLUGIN_AUTH_LENENC_DATA != 0 {
            read_bytes(&mut buf)
        } else if capabilities & capability::SECURE_CONNECTION != 0 {
            read_u8(&mut buf).and_then(|len| read_fixed(&mut buf, usize::from(len)))
        } else {
            read_null_terminated(&mut buf)
        }
        .field("auth response")?
        .to_vec();

        let database = if capabilities & capability::CONNECT_WITH_DB != 0 {
            non_empty(read_to_nul_or_end(&mut buf), "database name is not UTF-8")?
        } else {
            None
        };
        let auth_plugin = if capabilities & capability::PLUGIN_AUTH != 0 {
            non_empty(
                read_to_nul_or_end(&mut buf),
                "auth plugin name is not UTF-8",
            )?
        } else {
            None
        };
        let attributes = if capabilities & capability::CONNECT_ATTRS != 0 && !buf.is_empty() {
            decode_attributes(&mut buf)?
        } else {
            Vec::new()
        };
        Ok(HandshakeResponse {
            capabilities,
            max_packet_size,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }
}

/// Connection attributes: a length-encoded total, then key/value pairs of
/// length-encoded strings. They are informational, so bytes that are not
/// UTF-8 are replaced rather than refused.
fn decode_attributes(buf: &mut &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let total = read_int(buf).field("connection attributes length")?;
    let mut block = usize::try_from(total)
        .ok()
        .and_then(|total| read_fixed(buf, total).ok())
        .ok_or(WireError::Truncated("connection attributes"))?;
    let mut attributes = Vec::new();
    while !block.is_empty() {
        let key = read_bytes(&mut block).field("connection attribute name")?;
        let value = read_bytes(&mut block).field("connection attribute value")?;
        attributes.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(attributes)
}

/// True when the client's first packet is an SSLRequest (exactly 32 bytes with CLIENT_SSL set) rather than a HandshakeResponse.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    let mut buf = payload;
    payload.len() == SSL_REQUEST_LEN
        && read_u32_le(&mut buf).is_ok_and(|capabilities| capabilities & capability::SSL != 0)
}

/// The server asks the client to authenticate again with another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitchRequest {
    pub plugin: String,
    pub data: Vec<u8>,
}

impl AuthSwitchRequest {
    /// Appends 0xFE, the plugin name, then the data with a trailing NUL, as
    /// servers send a scramble.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(AUTH_SWITCH_HEADER);
        put_nul_terminated(dst, self.plugin.as_bytes());
        put_nul_terminated(dst, &self.data);
    }

    /// Parses an AuthSwitchRequest, stripping one trailing NUL from the data.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        if read_u8(&mut buf).field("AuthSwitchRequest header")? != AUTH_SWITCH_HEADER {
            return Err(WireError::Malformed(
                "AuthSwitchRequest does not start with 0xFE",
            ));
        }
        let plugin = read_null_terminated(&mut buf).field("auth plugin name")?;
        Ok(AuthSwitchRequest {
            plugin: String::from_utf8_lossy(plugin).into_owned(),
            data: buf.strip_suffix(&[0]).unwrap_or(buf).to_vec(),
        })
    }
}

fn put_nul_terminated(dst: &mut BytesMut, value: &[u8]) {
    dst.put_slice(value);
    dst.put_u8(0);
}

/// A NUL-terminated string that may also just run to the end of the packet.
fn read_to_nul_or_end<'a>(buf: &mut &'a [u8]) -> &'a [u8] {
    read_null_terminated(buf).unwrap_or_else(|_| std::mem::take(buf))
}

fn utf8(bytes: &[u8], problem: &'static str) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed(problem))
}

fn non_empty(bytes: &[u8], problem: &'static str) -> Result<Option<String>, WireError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    utf8(bytes, problem).map(Some)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use mysql_common::constants::{CapabilityFlags, StatusFlags};
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::{self, AuthPlugin};
    use mysql_common::proto::MySerialize;

    use super::*;
    use crate::mysql::wire::flags::status;

    /// The HandshakeV10 example of the MySQL protocol documentation: a
    /// 5.5.2 server without PLUGIN_AUTH.
    const DOCS_HANDSHAKE: [u8; 54] = [
        0x0a, 0x35, 0x2e, 0x35, 0x2e, 0x32, 0x2d, 0x6d, 0x32, 0x00, 0x52, 0x00, 0x00, 0x00, 0x22,
        0x3d, 0x4e, 0x50, 0x29, 0x75, 0x39, 0x56, 0x00, 0xff, 0xff, 0x08, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x29, 0x64, 0x40, 0x52,
        0x5c, 0x55, 0x78, 0x7a, 0x7c, 0x21, 0x29, 0x4b, 0x00,
    ];

    /// The HandshakeResponse41 example of the MySQL protocol documentation.
    const DOCS_RESPONSE: [u8; 84] = [
        0x8d, 0xa6, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x70, 0x61, 0x6d, 0x00, 0x14, 0xab, 0x09, 0xee, 0xf6, 0xbc, 0xb1, 0x32, 0x3e,
        0x61, 0x14, 0x38, 0x65, 0xc0, 0x99, 0x1d, 0x95, 0x7d, 0x75, 0xd4, 0x47, 0x74, 0x65, 0x73,
        0x74, 0x00, 0x6d, 0x79, 0x73, 0x71, 0x6c, 0x5f, 0x6e, 0x61, 0x74, 0x69, 0x76, 0x65, 0x5f,
        0x70, 0x61, 0x73, 0x73, 0x77, 0x6f, 0x72, 0x64, 0x00,
    ];

    const MODERN_CLIENT: u32 = capability::LONG_PASSWORD
        | capability::PROTOCOL_41
        | capability::TRANSACTIONS
        | capability::SECURE_CONNECTION
        | capability::PLUGIN_AUTH
        | capability::PLUGIN_AUTH_LENENC_DATA
        | capability::CONNECT_ATTRS
        | capability::CONNECT_WITH_DB
        | capability::DEPRECATE_EOF;

    fn mysql8_handshake() -> ServerHandshake {
        ServerHandshake {
            server_version: "8.0.36-churnstile".to_owned(),
            connection_id: 0x0102_0304,
            scramble: *b"abcdefghijklmnopqrst",
            capabilities: MODERN_CLIENT | capability::SSL | capability::SESSION_TRACK,
            charset: 255,
            status: status::AUTOCOMMIT,
            auth_plugin: CACHING_SHA2_PASSWORD.to_owned(),
        }
    }

    fn encode_with(encode: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode(&mut dst);
        dst.to_vec()
    }

    #[test]
    fn decodes_the_documented_handshake() {
        let handshake = ServerHandshake::decode(&DOCS_HANDSHAKE).expect("valid handshake");
        assert_eq!(handshake.server_version, "5.5.2-m2");
        assert_eq!(handshake.connection_id, 0x52);
        assert_eq!(
            handshake.scramble,
            [
                0x22, 0x3d, 0x4e, 0x50, 0x29, 0x75, 0x39, 0x56, 0x29, 0x64, 0x40, 0x52, 0x5c, 0x55,
                0x78, 0x7a, 0x7c, 0x21, 0x29, 0x4b
            ]
        );
        assert_eq!(handshake.capabilities, 0xffff);
        assert_eq!(handshake.charset, 8);
        assert_eq!(handshake.status, status::AUTOCOMMIT);
        assert_eq!(
            handshake.auth_plugin, NATIVE_PASSWORD,
            "implied without PLUGIN_AUTH"
        );
    }

    #[test]
    fn encoded_handshake_has_mysqls_layout() {
        let bytes = encode_with(|dst| mysql8_handshake().encode(dst));
        let version_end = 1 + "8.0.36-churnstile".len();
        assert_eq!(bytes[0], 10);
        assert_eq!(bytes[version_end], 0);
        let fixed = &bytes[version_end + 1..];
        assert_eq!(fixed[..4], [0x04, 0x03, 0x02, 0x01]);
        assert_eq!(&fixed[4..12], b"abcdefgh");
        assert_eq!(fixed[12], 0, "filler");
        assert_eq!(fixed[20], 21, "auth-plugin-data length");
        assert_eq!(fixed[21..31], [0; 10], "reserved");
        assert_eq!(&fixed[31..44], b"ijklmnopqrst\0");
        assert_eq!(&fixed[44..], b"caching_sha2_password\0");
    }

    #[test]
    fn encoded_handshake_parses_with_mysql_common() {
        let ours = mysql8_handshake();
        let bytes = encode_with(|dst| ours.encode(dst));
        let theirs: packets::HandshakePacket<'_> =
            ParseBuf(&bytes).parse(()).expect("mysql_common parses it");
        assert_eq!(theirs.protocol_version(), 10);
        assert_eq!(theirs.server_version_ref(), ours.server_version.as_bytes());
        assert_eq!(theirs.connection_id(), ours.connection_id);
        assert_eq!(theirs.nonce(), ours.scramble);
        assert_eq!(theirs.capabilities().bits(), ours.capabilities);
        assert_eq!(theirs.default_collation(), 255);
        assert_eq!(theirs.status_flags(), StatusFlags::SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(theirs.auth_plugin(), Some(AuthPlugin::CachingSha2Password));
        assert_eq!(ServerHandshake::decode(&bytes), Ok(ours));
    }

    #[test]
    fn handshake_from_mysql_common_decodes() {
        let theirs = packets::HandshakePacket::new(
            10,
            &b"10.11.6-MariaDB"[..],
            77,
            *b"12345678",
            Some(&b"9abcdefghijk\0"[..]),
            CapabilityFlags::from_bits_truncate(MODERN_CLIENT),
            45,
            StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            Some(&b"mysql_native_password"[..]),
        );
        let mut bytes = Vec::new();
        theirs.serialize(&mut bytes);
        let ours = ServerHandshake::decode(&bytes).expect("decodes");
        assert_eq!(ours.server_version, "10.11.6-MariaDB");
        assert_eq!(ours.connection_id, 77);
        assert_eq!(&ours.scramble, b"123456789abcdefghijk");
        assert_eq!(ours.charset, 45);
        assert_eq!(ours.auth_plugin, NATIVE_PASSWORD);
    }

    #[test]
    fn scramble_is_cut_or_padded_to_20_bytes() {
        let mut handshake = mysql8_handshake();
        handshake.capabilities &= !capability::PLUGIN_AUTH;
        let mut bytes = encode_with(|dst| handshake.encode(dst));
        let part_2 = bytes.len() - 13;
        // Declare 24 bytes, so part 2 is 16, with no NUL at the end.
        bytes[part_2 - HANDSHAKE_RESERVED - 1] = 24;
        bytes.pop();
        bytes.extend_from_slice(b"XYZW");
        let long = ServerHandshake::decode(&bytes).expect("long scramble");
        assert_eq!(&long.scramble, b"abcdefghijklmnopqrst");

        // Without SECURE_CONNECTION there is no part 2 at all.
        handshake.capabilities &= !capability::SECURE_CONNECTION;
        let bytes = encode_with(|dst| handshake.encode(dst));
        assert_eq!(bytes.len(), part_2);
        let short = ServerHandshake::decode(&bytes).expect("short scramble");
        assert_eq!(&short.scramble, b"abcdefgh\0\0\0\0\0\0\0\0\0\0\0\0");
    }

    #[test]
    fn plugin_name_without_its_nul_is_accepted() {
        let mut bytes = encode_with(|dst| mysql8_handshake().encode(dst));
        bytes.pop();
        let handshake = ServerHandshake::decode(&bytes).expect("decodes");
        assert_eq!(handshake.auth_plugin, CACHING_SHA2_PASSWORD);
    }

    #[test]
    fn other_protocol_versions_and_errors_are_refused() {
        let mut bytes = DOCS_HANDSHAKE;
        bytes[0] = 9;
        assert!(matches!(
            ServerHandshake::decode(&bytes),
            Err(WireError::Malformed(_))
        ));
        let err = [0xFF, 0x10, 0x04, b'T', b'o', b'o'];
        assert_eq!(
            ServerHandshake::decode(&err),
            Err(WireError::Malformed(
                "server sent an ERR packet instead of its handshake"
            ))
        );
    }

    #[test]
    fn truncated_handshake_names_the_missing_field() {
        assert_eq!(
            ServerHandshake::decode(&DOCS_HANDSHAKE[..12]),
            Err(WireError::Truncated("connection id"))
        );
        assert_eq!(
            ServerHandshake::decode(&DOCS_HANDSHAKE[..50]),
            Err(WireError::Truncated("auth-plugin-data part 2"))
        );
    }

    #[test]
    fn decodes_the_documented_handshake_response() {
        let response = HandshakeResponse::decode(&DOCS_RESPONSE).expect("valid response");
        assert_eq!(response.capabilities, 0x000f_a68d);
        assert_eq!(response.max_packet_size, 1 << 24);
        assert_eq!(response.charset, 8);
        assert_eq!(response.user, "pam");
        assert_eq!(response.auth_response, DOCS_RESPONSE[37..57]);
        assert_eq!(response.database.as_deref(), Some("test"));
        assert_eq!(response.auth_plugin.as_deref(), Some(NATIVE_PASSWORD));
        assert!(response.attributes.is_empty());
        let reencoded = encode_with(|dst| response.encode(dst));
        assert_eq!(reencoded, DOCS_RESPONSE);
    }

    fn modern_response() -> HandshakeResponse {
        HandshakeResponse {
            capabilities: MODERN_CLIENT,
            max_packet_size: 16 * 1024 * 1024,
            charset: 255,
            user: "app".to_owned(),
            auth_response: (0..32).collect(),
            database: Some("orders".to_owned()),
            auth_plugin: Some(CACHING_SHA2_PASSWORD.to_owned()),
            attributes: vec![
                ("_client_name".to_owned(), "libmysql".to_owned()),
                ("program_name".to_owned(), "mysql".to_owned()),
            ],
        }
    }

    #[test]
    fn encoded_response_parses_with_mysql_common() {
        let ours = modern_response();
        let bytes = encode_with(|dst| ours.encode(dst));
        let theirs: packets::HandshakeResponse<'_> =
            ParseBuf(&bytes).parse(()).expect("mysql_common parses it");
        assert_eq!(theirs.capabilities().bits(), MODERN_CLIENT);
        assert_eq!(theirs.collation(), 255);
        assert_eq!(theirs.user(), b"app");
        assert_eq!(theirs.scramble_buf(), ours.auth_response);
        assert_eq!(theirs.db_name(), Some(&b"orders"[..]));
        assert_eq!(theirs.auth_plugin(), Some(&AuthPlugin::CachingSha2Password));
        let attributes = theirs.connect_attributes().expect("attributes");
        assert_eq!(attributes.len(), 2);
        assert_eq!(attributes["program_name"], "mysql");
        assert_eq!(HandshakeResponse::decode(&bytes), Ok(ours));
    }

    #[test]
    fn response_from_mysql_common_decodes() {
        let attributes = HashMap::from([("_pid".to_owned(), "4242".to_owned())]);
        let theirs = packets::HandshakeResponse::new(
            Some(&[9u8; 20][..]),
            (8, 0, 36),
            Some(&b"reporting"[..]),
            None::<&[u8]>,
            Some(AuthPlugin::MysqlNativePassword),
            CapabilityFlags::from_bits_truncate(
                capability::PROTOCOL_41 | capability::SECURE_CONNECTION,
            ),
            Some(attributes),
            1 << 30,
        );
        let mut bytes = Vec::new();
        theirs.serialize(&mut bytes);
        let ours = HandshakeResponse::decode(&bytes).expect("decodes");
        assert_eq!(ours.user, "reporting");
        assert_eq!(ours.auth_response, [9u8; 20]);
        assert_eq!(ours.database, None);
        assert_eq!(ours.auth_plugin.as_deref(), Some(NATIVE_PASSWORD));
        assert_eq!(ours.attributes, [("_pid".to_owned(), "4242".to_owned())]);
        assert_eq!(ours.max_packet_size, 1 << 30);
    }

    #[test]
    fn auth_response_layout_follows_the_capabilities() {
        let user_end = 32 + b"app\0".len();
        let mut response = modern_response();
        response.capabilities = capability::PROTOCOL_41 | capability::SECURE_CONNECTION;
        response.auth_response = vec![0xAA; 3];
        let bytes = encode_with(|dst| response.encode(dst));
        assert_eq!(bytes[user_end..], [3, 0xAA, 0xAA, 0xAA]);

        response.capabilities = capability::PROTOCOL_41;
        let bytes = encode_with(|dst| response.encode(dst));
        assert_eq!(bytes[user_end..], [0xAA, 0xAA, 0xAA, 0]);

        response.capabilities = capability::PROTOCOL_41 | capability::PLUGIN_AUTH_LENENC_DATA;
        response.auth_response = vec![0xBB; 256];
        let bytes = encode_with(|dst| response.encode(dst));
        assert_eq!(bytes[user_end..user_end + 3], [0xFC, 0x00, 0x01]);
        assert_eq!(
            HandshakeResponse::decode(&bytes).map(|r| r.auth_response.len()),
            Ok(256)
        );
    }

    #[test]
    fn missing_plugin_name_and_attributes_are_tolerated() {
        let mut response = modern_response();
        response.attributes.clear();
        let full = encode_with(|dst| response.encode(dst));
        // No attribute block at all, then no plugin NUL, then no plugin.
        let without_attributes = &full[..full.len() - 1];
        let decoded = HandshakeResponse::decode(without_attributes).expect("no attributes");
        assert_eq!(decoded.auth_plugin.as_deref(), Some(CACHING_SHA2_PASSWORD));
        let without_nul = &without_attributes[..without_attributes.len() - 1];
        let decoded = HandshakeResponse::decode(without_nul).expect("no plugin NUL");
        assert_eq!(decoded.auth_plugin.as_deref(), Some(CACHING_SHA2_PASSWORD));
        let without_plugin = &full[..full.len() - 1 - CACHING_SHA2_PASSWORD.len() - 1];
        let decoded = HandshakeResponse::decode(without_plugin).expect("no plugin");
        assert_eq!(decoded.auth_plugin, None);
        assert_eq!(decoded.database.as_deref(), Some("orders"));
    }

    #[test]
    fn response_without_protocol_41_is_refused() {
        let mut bytes = DOCS_RESPONSE;
        bytes[1] &= !((capability::PROTOCOL_41 >> 8) as u8);
        assert!(matches!(
            HandshakeResponse::decode(&bytes),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn user_names_must_be_utf8() {
        let mut bytes = DOCS_RESPONSE;
        bytes[32] = 0xFF;
        assert_eq!(
            HandshakeResponse::decode(&bytes),
            Err(WireError::Malformed("user name is not UTF-8"))
        );
    }

    #[test]
    fn attribute_block_longer_than_the_packet_is_truncated() {
        let response = modern_response();
        let mut bytes = encode_with(|dst| response.encode(dst));
        bytes.truncate(bytes.len() - 3);
        assert_eq!(
            HandshakeResponse::decode(&bytes),
            Err(WireError::Truncated("connection attributes"))
        );
    }

    #[test]
    fn ssl_request_is_a_bare_32_byte_prefix_with_ssl_set() {
        let mut response = modern_response();
        response.capabilities |= capability::SSL;
        let full = encode_with(|dst| response.encode(dst));
        assert!(is_ssl_request(&full[..32]));
        assert!(
            !is_ssl_request(&full),
            "a full response is not an SSLRequest"
        );
        assert!(!is_ssl_request(&DOCS_RESPONSE[..32]), "SSL bit clear");
        assert!(!is_ssl_request(&[]));

        let theirs = packets::SslRequest::new(
            CapabilityFlags::from_bits_truncate(MODERN_CLIENT | capability::SSL),
            1 << 24,
            255,
        );
        let mut bytes = Vec::new();
        theirs.serialize(&mut bytes);
        assert!(is_ssl_request(&bytes));
    }

    #[test]
    fn auth_switch_request_matches_what_servers_send() {
        let request = AuthSwitchRequest {
            plugin: NATIVE_PASSWORD.to_owned(),
            data: b"01234567890123456789".to_vec(),
        };
        let bytes = encode_with(|dst| request.encode(dst));
        assert_eq!(bytes[0], 0xFE);
        assert_eq!(&bytes[1..23], b"mysql_native_password\0");
        assert_eq!(&bytes[23..], b"01234567890123456789\0");

        let theirs: packets::AuthSwitchRequest<'_> =
            ParseBuf(&bytes).parse(()).expect("mysql_common parses it");
        assert_eq!(theirs.auth_plugin(), AuthPlugin::MysqlNativePassword);
        assert_eq!(theirs.plugin_data(), request.data);
        assert_eq!(AuthSwitchRequest::decode(&bytes), Ok(request));
    }

    #[test]
    fn auth_switch_request_strips_only_one_nul() {
        let decoded = AuthSwitchRequest::decode(b"\xFEclient_ed25519\0salt\0\0").expect("decodes");
        assert_eq!(decoded.plugin, "client_ed25519");
        assert_eq!(decoded.data, b"salt\0");
        let no_nul = AuthSwitchRequest::decode(b"\xFEx\0data").expect("decodes");
        assert_eq!(no_nul.data, b"data");
        assert!(matches!(
            AuthSwitchRequest::decode(b"\x00x\0"),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            AuthSwitchRequest::decode(b"\xFE"),
            Err(WireError::Truncated("auth plugin name"))
        );
    }
}
