//! Capability flags (negotiated once, in the handshake) and server status
//! flags (carried by every OK and EOF packet), with the values MySQL and
//! MariaDB share.

/// `CLIENT_*` capability bits of the handshake and HandshakeResponse41.
pub mod capability {
    /// `CLIENT_LONG_PASSWORD`; MariaDB calls it `CLIENT_MYSQL` and leaves it
    /// clear to tell MariaDB-aware clients to read its extended capabilities.
    pub const LONG_PASSWORD: u32 = 1;
    /// Affected rows counts rows matched, not rows changed.
    pub const FOUND_ROWS: u32 = 2;
    pub const LONG_FLAG: u32 = 4;
    /// The HandshakeResponse41 names a default database.
    pub const CONNECT_WITH_DB: u32 = 8;
    pub const NO_SCHEMA: u32 = 16;
    /// Packets are zlib-compressed after the handshake.
    pub const COMPRESS: u32 = 32;
    pub const ODBC: u32 = 64;
    /// `LOAD DATA LOCAL INFILE` may ask the client for a file.
    pub const LOCAL_FILES: u32 = 128;
    pub const IGNORE_SPACE: u32 = 256;
    /// The 4.1 protocol: SQLSTATEs in ERR packets, warnings in OK and EOF.
    pub const PROTOCOL_41: u32 = 512;
    pub const INTERACTIVE: u32 = 1024;
    /// TLS: the client sends an SSLRequest and starts TLS before logging in.
    pub const SSL: u32 = 2048;
    pub const IGNORE_SIGPIPE: u32 = 4096;
    /// Status flags (and so transaction state) in OK packets.
    pub const TRANSACTIONS: u32 = 8192;
    pub const RESERVED: u32 = 16384;
    /// The auth response is length-prefixed rather than NUL-terminated.
    pub const SECURE_CONNECTION: u32 = 32768;
    /// One COM_QUERY may hold several statements.
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    /// Handshake and response name an authentication plugin.
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    /// The HandshakeResponse41 carries connection attributes.
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    /// The auth response is a length-encoded string, so it may exceed 255 bytes.
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    /// OK packets may carry session-state-change information.
    pub const SESSION_TRACK: u32 = 1 << 23;
    /// Result sets end with an OK packet (header 0xFE) instead of EOF packets.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// `SERVER_*` status bits of OK and EOF packets.
pub mod status {
    /// A transaction is open: the server connection cannot be shared yet.
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    /// Another result set follows this one.
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const NO_GOOD_INDEX_USED: u16 = 16;
    pub const NO_INDEX_USED: u16 = 32;
    /// A cursor opened by COM_STMT_EXECUTE stays open on this connection.
    pub const CURSOR_EXISTS: u16 = 64;
    pub const LAST_ROW_SENT: u16 = 128;
    pub const DB_DROPPED: u16 = 256;
    pub const NO_BACKSLASH_ESCAPES: u16 = 512;
    pub const METADATA_CHANGED: u16 = 1024;
    pub const QUERY_WAS_SLOW: u16 = 2048;
    pub const PS_OUT_PARAMS: u16 = 4096;
    /// The open transaction is read-only.
    pub const IN_TRANS_READONLY: u16 = 8192;
    /// The OK packet carries session-state-change information.
    pub const SESSION_STATE_CHANGED: u16 = 16384;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::constants::{CapabilityFlags as Client, StatusFlags as Server};

    #[test]
    fn capability_bits_match_mysql_common() {
        let pairs = [
            (capability::LONG_PASSWORD, Client::CLIENT_LONG_PASSWORD),
            (capability::FOUND_ROWS, Client::CLIENT_FOUND_ROWS),
            (capability::LONG_FLAG, Client::CLIENT_LONG_FLAG),
            (capability::CONNECT_WITH_DB, Client::CLIENT_CONNECT_WITH_DB),
            (capability::NO_SCHEMA, Client::CLIENT_NO_SCHEMA),
            (capability::COMPRESS, Client::CLIENT_COMPRESS),
            (capability::ODBC, Client::CLIENT_ODBC),
            (capability::LOCAL_FILES, Client::CLIENT_LOCAL_FILES),
            (capability::IGNORE_SPACE, Client::CLIENT_IGNORE_SPACE),
            (capability::PROTOCOL_41, Client::CLIENT_PROTOCOL_41),
            (capability::INTERACTIVE, Client::CLIENT_INTERACTIVE),
            (capability::SSL, Client::CLIENT_SSL),
            (capability::IGNORE_SIGPIPE, Client::CLIENT_IGNORE_SIGPIPE),
            (capability::TRANSACTIONS, Client::CLIENT_TRANSACTIONS),
            (capability::RESERVED, Client::CLIENT_RESERVED),
            (
                capability::SECURE_CONNECTION,
                Client::CLIENT_SECURE_CONNECTION,
            ),
            (
                capability::MULTI_STATEMENTS,
                Client::CLIENT_MULTI_STATEMENTS,
            ),
            (capability::MULTI_RESULTS, Client::CLIENT_MULTI_RESULTS),
            (
                capability::PS_MULTI_RESULTS,
                Client::CLIENT_PS_MULTI_RESULTS,
            ),
            (capability::PLUGIN_AUTH, Client::CLIENT_PLUGIN_AUTH),
            (capability::CONNECT_ATTRS, Client::CLIENT_CONNECT_ATTRS),
            (
                capability::PLUGIN_AUTH_LENENC_DATA,
                Client::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
            ),
            (
                capability::CAN_HANDLE_EXPIRED_PASSWORDS,
                Client::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS,
            ),
            (capability::SESSION_TRACK, Client::CLIENT_SESSION_TRACK),
            (capability::DEPRECATE_EOF, Client::CLIENT_DEPRECATE_EOF),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs.bits(), "{theirs:?}");
        }
    }

    #[test]
    fn status_bits_match_mysql_common() {
        let pairs = [
            (status::IN_TRANS, Server::SERVER_STATUS_IN_TRANS),
            (status::AUTOCOMMIT, Server::SERVER_STATUS_AUTOCOMMIT),
            (
                status::MORE_RESULTS_EXISTS,
                Server::SERVER_MORE_RESULTS_EXISTS,
            ),
            (
                status::NO_GOOD_INDEX_USED,
                Server::SERVER_STATUS_NO_GOOD_INDEX_USED,
            ),
            (status::NO_INDEX_USED, Server::SERVER_STATUS_NO_INDEX_USED),
            (status::CURSOR_EXISTS, Server::SERVER_STATUS_CURSOR_EXISTS),
            (status::LAST_ROW_SENT, Server::SERVER_STATUS_LAST_ROW_SENT),
            (status::DB_DROPPED, Server::SERVER_STATUS_DB_DROPPED),
            (
                status::NO_BACKSLASH_ESCAPES,
                Server::SERVER_STATUS_NO_BACKSLASH_ESCAPES,
            ),
            (
                status::METADATA_CHANGED,
                Server::SERVER_STATUS_METADATA_CHANGED,
            ),
            (status::QUERY_WAS_SLOW, Server::SERVER_QUERY_WAS_SLOW),
            (status::PS_OUT_PARAMS, Server::SERVER_PS_OUT_PARAMS),
            (
                status::IN_TRANS_READONLY,
                Server::SERVER_STATUS_IN_TRANS_READONLY,
            ),
            (
                status::SESSION_STATE_CHANGED,
                Server::SERVER_SESSION_STATE_CHANGED,
            ),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs.bits(), "{theirs:?}");
        }
    }
}
