//! The server error codes and SQLSTATEs churnstile sends in its own ERR
//! packets, chosen so clients react as they would to the same failure
//! reported by MySQL itself.

/// A MySQL error number with the SQLSTATE the server pairs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u16,
    pub sql_state: &'static str,
}

/// `ER_CON_COUNT_ERROR`: the client limit is reached.
pub const TOO_MANY_CONNECTIONS: ErrorCode = ErrorCode {
    code: 1040,
    sql_state: "08004",
};
/// `ER_HANDSHAKE_ERROR`: the login exchange went wrong.
pub const HANDSHAKE_ERROR: ErrorCode = ErrorCode {
    code: 1043,
    sql_state: "08S01",
};
/// `ER_ACCESS_DENIED_ERROR`: wrong user or password.
pub const ACCESS_DENIED: ErrorCode = ErrorCode {
    code: 1045,
    sql_state: "28000",
};
/// `ER_NO_DB_ERROR`: the command needs a default database and none is selected.
pub const NO_DB_SELECTED: ErrorCode = ErrorCode {
    code: 1046,
    sql_state: "3D000",
};
/// `ER_UNKNOWN_COM_ERROR`: a command byte the proxy does not handle.
pub const UNKNOWN_COMMAND: ErrorCode = ErrorCode {
    code: 1047,
    sql_state: "08S01",
};
/// `ER_BAD_DB_ERROR`: no such database.
pub const BAD_DB: ErrorCode = ErrorCode {
    code: 1049,
    sql_state: "42000",
};
/// `ER_SERVER_SHUTDOWN`: the proxy is shutting down.
pub const SERVER_SHUTDOWN: ErrorCode = ErrorCode {
    code: 1053,
    sql_state: "08S01",
};
/// `ER_NO_SUCH_THREAD`: `KILL` named a connection id that does not exist.
pub const NO_SUCH_THREAD: ErrorCode = ErrorCode {
    code: 1094,
    sql_state: "HY000",
};
/// `ER_KILL_DENIED_ERROR`: `KILL` named a connection the client does not own.
pub const KILL_DENIED: ErrorCode = ErrorCode {
    code: 1095,
    sql_state: "HY000",
};
/// `ER_UNKNOWN_ERROR`: anything without a more specific code, such as an
/// unreachable upstream server.
pub const UNKNOWN_ERROR: ErrorCode = ErrorCode {
    code: 1105,
    sql_state: "HY000",
};
/// `ER_NET_PACKET_TOO_LARGE`: a packet over the size limit.
pub const NET_PACKET_TOO_LARGE: ErrorCode = ErrorCode {
    code: 1153,
    sql_state: "08S01",
};
/// `ER_NET_PACKETS_OUT_OF_ORDER`: a sequence id out of step.
pub const NET_PACKETS_OUT_OF_ORDER: ErrorCode = ErrorCode {
    code: 1156,
    sql_state: "08S01",
};
/// `ER_NET_READ_ERROR`: reading from the peer failed.
pub const NET_READ_ERROR: ErrorCode = ErrorCode {
    code: 1158,
    sql_state: "08S01",
};
/// `ER_LOCK_WAIT_TIMEOUT`: waited too long for a server connection, so
/// clients retry it as they retry any lock wait timeout.
pub const LOCK_WAIT_TIMEOUT: ErrorCode = ErrorCode {
    code: 1205,
    sql_state: "HY000",
};
/// `ER_NOT_SUPPORTED_YET`: a feature the proxy cannot offer under pooling.
pub const NOT_SUPPORTED_YET: ErrorCode = ErrorCode {
    code: 1235,
    sql_state: "42000",
};
/// `ER_UNKNOWN_STMT_HANDLER`: a prepared-statement id the proxy does not know.
pub const UNKNOWN_STMT_HANDLER: ErrorCode = ErrorCode {
    code: 1243,
    sql_state: "HY000",
};
/// `ER_QUERY_INTERRUPTED`: the statement was cancelled.
pub const QUERY_INTERRUPTED: ErrorCode = ErrorCode {
    code: 1317,
    sql_state: "70100",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_states_are_five_ascii_characters() {
        let all = [
            TOO_MANY_CONNECTIONS,
            HANDSHAKE_ERROR,
            ACCESS_DENIED,
            NO_DB_SELECTED,
            UNKNOWN_COMMAND,
            BAD_DB,
            SERVER_SHUTDOWN,
            NO_SUCH_THREAD,
            KILL_DENIED,
            UNKNOWN_ERROR,
            NET_PACKET_TOO_LARGE,
            NET_PACKETS_OUT_OF_ORDER,
            NET_READ_ERROR,
            LOCK_WAIT_TIMEOUT,
            NOT_SUPPORTED_YET,
            UNKNOWN_STMT_HANDLER,
            QUERY_INTERRUPTED,
        ];
        for error in all {
            assert_eq!(error.sql_state.len(), 5, "{error:?}");
            assert!(error.sql_state.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
