//! The command byte that opens every client packet after login, and the
//! names logs and errors give them.

pub const COM_SLEEP: u8 = 0x00;
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_CREATE_DB: u8 = 0x05;
pub const COM_DROP_DB: u8 = 0x06;
pub const COM_REFRESH: u8 = 0x07;
pub const COM_SHUTDOWN: u8 = 0x08;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0a;
pub const COM_CONNECT: u8 = 0x0b;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_DEBUG: u8 = 0x0d;
pub const COM_PING: u8 = 0x0e;
pub const COM_TIME: u8 = 0x0f;
pub const COM_DELAYED_INSERT: u8 = 0x10;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_TABLE_DUMP: u8 = 0x13;
pub const COM_CONNECT_OUT: u8 = 0x14;
pub const COM_REGISTER_SLAVE: u8 = 0x15;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_DAEMON: u8 = 0x1d;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;

/// The `COM_*` name of a command byte, or `"unknown"`.
pub fn name(command: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "COM_SLEEP",
        "COM_QUIT",
        "COM_INIT_DB",
        "COM_QUERY",
        "COM_FIELD_LIST",
        "COM_CREATE_DB",
        "COM_DROP_DB",
        "COM_REFRESH",
        "COM_SHUTDOWN",
        "COM_STATISTICS",
        "COM_PROCESS_INFO",
        "COM_CONNECT",
        "COM_PROCESS_KILL",
        "COM_DEBUG",
        "COM_PING",
        "COM_TIME",
        "COM_DELAYED_INSERT",
        "COM_CHANGE_USER",
        "COM_BINLOG_DUMP",
        "COM_TABLE_DUMP",
        "COM_CONNECT_OUT",
        "COM_REGISTER_SLAVE",
        "COM_STMT_PREPARE",
        "COM_STMT_EXECUTE",
        "COM_STMT_SEND_LONG_DATA",
        "COM_STMT_CLOSE",
        "COM_STMT_RESET",
        "COM_SET_OPTION",
        "COM_STMT_FETCH",
        "COM_DAEMON",
        "COM_BINLOG_DUMP_GTID",
        "COM_RESET_CONNECTION",
    ];
    NAMES
        .get(usize::from(command))
        .copied()
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_byte_has_its_own_name() {
        let commands = [
            (COM_SLEEP, "COM_SLEEP"),
            (COM_QUIT, "COM_QUIT"),
            (COM_INIT_DB, "COM_INIT_DB"),
            (COM_QUERY, "COM_QUERY"),
            (COM_FIELD_LIST, "COM_FIELD_LIST"),
            (COM_CREATE_DB, "COM_CREATE_DB"),
            (COM_DROP_DB, "COM_DROP_DB"),
            (COM_REFRESH, "COM_REFRESH"),
            (COM_SHUTDOWN, "COM_SHUTDOWN"),
            (COM_STATISTICS, "COM_STATISTICS"),
            (COM_PROCESS_INFO, "COM_PROCESS_INFO"),
            (COM_CONNECT, "COM_CONNECT"),
            (COM_PROCESS_KILL, "COM_PROCESS_KILL"),
            (COM_DEBUG, "COM_DEBUG"),
            (COM_PING, "COM_PING"),
            (COM_TIME, "COM_TIME"),
            (COM_DELAYED_INSERT, "COM_DELAYED_INSERT"),
            (COM_CHANGE_USER, "COM_CHANGE_USER"),
            (COM_BINLOG_DUMP, "COM_BINLOG_DUMP"),
            (COM_TABLE_DUMP, "COM_TABLE_DUMP"),
            (COM_CONNECT_OUT, "COM_CONNECT_OUT"),
            (COM_REGISTER_SLAVE, "COM_REGISTER_SLAVE"),
            (COM_STMT_PREPARE, "COM_STMT_PREPARE"),
            (COM_STMT_EXECUTE, "COM_STMT_EXECUTE"),
            (COM_STMT_SEND_LONG_DATA, "COM_STMT_SEND_LONG_DATA"),
            (COM_STMT_CLOSE, "COM_STMT_CLOSE"),
            (COM_STMT_RESET, "COM_STMT_RESET"),
            (COM_SET_OPTION, "COM_SET_OPTION"),
            (COM_STMT_FETCH, "COM_STMT_FETCH"),
            (COM_DAEMON, "COM_DAEMON"),
            (COM_BINLOG_DUMP_GTID, "COM_BINLOG_DUMP_GTID"),
            (COM_RESET_CONNECTION, "COM_RESET_CONNECTION"),
        ];
        for (byte, expected) in commands {
            assert_eq!(name(byte), expected, "command byte {byte:#04x}");
        }
    }

    #[test]
    fn command_bytes_match_mysql_common() {
        use mysql_common::constants::Command;
        assert_eq!(COM_QUERY, Command::COM_QUERY as u8);
        assert_eq!(COM_CHANGE_USER, Command::COM_CHANGE_USER as u8);
        assert_eq!(COM_STMT_PREPARE, Command::COM_STMT_PREPARE as u8);
        assert_eq!(COM_RESET_CONNECTION, Command::COM_RESET_CONNECTION as u8);
    }

    #[test]
    fn bytes_past_the_last_command_are_unknown() {
        assert_eq!(name(0x20), "unknown");
        assert_eq!(name(0xff), "unknown");
    }
}
