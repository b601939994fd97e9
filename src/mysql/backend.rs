//! One upstream MySQL/MariaDB connection: where it goes, opening it and
//! checking the server can be pooled, switching on session tracking, and
//! the few commands churnstile runs on it itself (state transitions,
//! resets, lookups). Logging in lives in `backend/login.rs`.

mod login;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::{TcpStream, UnixStream};

use super::packet_stream::PacketStream;
use super::prepared::ServerStatements;
use super::state::{BASELINE_CHARSET, BASELINE_COLLATION, SessionState, Transition};
use super::wire::command::{COM_INIT_DB, COM_QUERY, COM_RESET_CONNECTION, COM_SET_OPTION};
use super::wire::errors;
use super::wire::flags::{capability, status};
use super::wire::handshake::ServerHandshake;
use super::wire::response::{
    EOF_HEADER, ERR_HEADER, ErrPacket, OK_HEADER, OkPacket, SessionChange, is_terminator,
    session_changes,
};
use super::wire::{WireError, lenenc};
use crate::config::{DatabaseConfig, UserConfig};
use crate::stream::Stream;
use crate::tls::UpstreamTls;

/// Capabilities churnstile asks every upstream server for.
pub(super) const UPSTREAM_CAPABILITIES: u32 = capability::LONG_PASSWORD
    | capability::LONG_FLAG
    | capability::CONNECT_WITH_DB
    | capability::LOCAL_FILES
    | capability::PROTOCOL_41
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_STATEMENTS
    | capability::MULTI_RESULTS
    | capability::PS_MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::CONNECT_ATTRS
    | capability::PLUGIN_AUTH_LENENC_DATA
    | capability::SESSION_TRACK
    | capability::DEPRECATE_EOF;

/// Capabilities without which churnstile cannot pool a server.
const REQUIRED_CAPABILITIES: u32 =
    capability::PROTOCOL_41 | capability::SECURE_CONNECTION | capability::SESSION_TRACK;

/// Where one database's server is and who to log in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// Host name or IP address, or the path of a Unix socket (starting with '/').
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The schema selected at login.
    pub(crate) dbname: String,
    pub(crate) user: String,
    pub(super) password: Option<String>,
    /// Log in with CLIENT_FOUND_ROWS, for clients that asked for it: the
    /// flag decides what UPDATE's affected rows count, per connection.
    pub(super) found_rows: bool,
    /// TLS as server_tls_sslmode asks (MySQL's ssl-mode); `None` in plaintext.
    pub(crate) tls: Option<UpstreamTls>,
}

impl UpstreamTarget {
    /// Where the pool of `db` for `user` logs in, and as whom.
    pub(crate) fn for_pool(
        db: &DatabaseConfig,
        user: &UserConfig,
        found_rows: bool,
        tls: Option<UpstreamTls>,
    ) -> Self {
        let (login, password) = db.upstream_login(user);
        UpstreamTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: login.to_owned(),
            password: password.map(str::to_owned),
            found_rows,
            tls,
        }
    }

    pub(crate) fn describe(&self) -> String {
        if self.host.starts_with('/') {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// Opens a raw stream to the server.
    pub(super) async fn open_stream(&self) -> io::Result<Stream> {
        if self.is_unix_socket() {
            Ok(Stream::Unix(UnixStream::connect(&self.host).await?))
        } else {
            Stream::tcp(TcpStream::connect((self.host.as_str(), self.port)).await?)
        }
    }
}

/// Why an upstream connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot reach {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connection to upstream lost: {0}")]
    Io(#[from] io::Error),
    #[error("upstream server refused: {} (error {}, SQLSTATE {})", .0.message, .0.code, .0.sql_state)]
    Rejected(ErrPacket),
    #[error("upstream server sent a malformed packet: {0}")]
    Malformed(#[from] WireError),
    #[error("upstream server {0}")]
    Unsupported(String),
    #[error("upstream server did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "{target} does not offer TLS (no CLIENT_SSL in its greeting) and server_tls_sslmode = \
         \"{sslmode}\" (ssl-mode {mysql_sslmode}) requires it; give the server ssl_cert and \
         ssl_key, or set server_tls_sslmode = \"prefer\""
    )]
    TlsRefused {
        target: String,
        sslmode: &'static str,
        mysql_sslmode: &'static str,
    },
    #[error("TLS with {target} failed (server_tls_sslmode = \"{sslmode}\"): {reason}")]
    TlsHandshake {
        target: String,
        sslmode: &'static str,
        reason: String,
    },
}

impl UpstreamError {
    /// True for a failure that may go away by itself.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Io(_) | UpstreamError::Timeout(_) => {
                true
            }
            // Too many connections, shutting down, or host temporarily blocked.
            UpstreamError::Rejected(error) => matches!(error.code, 1040 | 1053 | 1129 | 1203),
            _ => false,
        }
    }
}

/// The SSLRequest (the first 32 bytes of a HandshakeResponse41, with
/// CLIENT_SSL), then the TLS handshake; the login goes on inside TLS.
async fn start_tls(
    io: &mut PacketStream,
    target: &UpstreamTarget,
    tls: &UpstreamTls,
    capabilities: u32,
    seq: u8,
) -> Result<(), UpstreamError> {
    let mut request = Vec::with_capacity(32);
    request.extend_from_slice(&capabilities.to_le_bytes());
    request.extend_from_slice(&(1u32 << 30).to_le_bytes());
    request.push(login::BASELINE_CHARSET_ID);
    request.resize(32, 0);
    io.send(seq, &request).await?;
    let started = io
        .stream
        .start_tls_client(Arc::clone(&tls.config), tls.server_name.clone())
        .await;
    started.map_err(|error| UpstreamError::TlsHandshake {
        target: target.describe(),
        sslmode: tls.sslmode,
        reason: error.to_string(),
    })
}

/// What a command churnstile ran itself came back with.
pub(super) type Reply = Result<(), ErrPacket>;

/// An open, logged-in server connection.
pub(crate) struct ServerConn {
    pub(super) io: PacketStream,
    pub(super) target: Arc<UpstreamTarget>,
    /// The server's id for this connection (what `KILL` takes).
    pub(super) thread_id: u32,
    /// Capabilities both sides agreed on.
    pub(super) capabilities: u32,
    /// Status flags from the server's last OK or EOF.
    pub(super) status: u16,
    /// Session state as it is on the server now.
    pub(super) state: SessionState,
    /// Prepared statements open on this connection.
    pub(super) statements: ServerStatements,
    /// The greeting's scramble and the plugin churnstile answered it with,
    /// for COM_CHANGE_USER.
    scramble: [u8; 20],
    auth_plugin: String,
    /// The server does not know COM_RESET_CONNECTION.
    reset_by_change_user: bool,
}

impl ServerConn {
    /// Connects, logs in and switches on session tracking.
    pub(crate) async fn connect(target: &Arc<UpstreamTarget>) -> Result<ServerConn, UpstreamError> {
        let stream = target
            .open_stream()
            .await
            .map_err(|source| UpstreamError::Connect {
                target: target.describe(),
                source,
            })?;
        let mut io = PacketStream::new(stream);
        let (header, payload) = io.read_packet().await?;
        if payload.first() == Some(&ERR_HEADER) {
            return Err(UpstreamError::Rejected(ErrPacket::decode(&payload)?));
        }
        let greeting = ServerHandshake::decode(&payload)?;
        let missing = REQUIRED_CAPABILITIES & !greeting.capabilities;
        if missing != 0 {
            return Err(UpstreamError::Unsupported(format!(
                "{} lacks capabilities churnstile needs (flags {missing:#x}: protocol 4.1, \
                 secure connection, session tracking); MySQL 5.7+ or MariaDB 10.2+ is required",
                greeting.server_version
            )));
        }
        let found_rows = if target.found_rows {
            capability::FOUND_ROWS
        } else {
            0
        };
        let mut capabilities = (UPSTREAM_CAPABILITIES | found_rows) & greeting.capabilities;
        let mut seq = header.seq.wrapping_add(1);
        if let Some(tls) = &target.tls
            && io.stream.can_start_tls()
        {
            if greeting.capabilities & capability::SSL != 0 {
                capabilities |= capability::SSL;
                start_tls(&mut io, target, tls, capabilities, seq).await?;
                seq = seq.wrapping_add(1);
            } else if tls.required {
                return Err(UpstreamError::TlsRefused {
                    target: target.describe(),
                    sslmode: tls.sslmode,
                    mysql_sslmode: tls.mysql_sslmode,
                });
            }
        }
        let mut conn = ServerConn {
            io,
            target: Arc::clone(target),
            thread_id: greeting.connection_id,
            capabilities,
            status: greeting.status,
            state: SessionState::baseline(Some(target.dbname.clone())),
            statements: ServerStatements::default(),
            scramble: greeting.scramble,
            auth_plugin: String::new(),
            reset_by_change_user: false,
        };
        conn.log_in(&greeting, seq).await?;
        conn.set_baseline().await?;
        Ok(conn)
    }

    /// Puts the connection in the state every pooled connection starts
    /// from: churnstile's character set and full session tracking.
    async fn set_baseline(&mut self) -> Result<(), UpstreamError> {
        let sql = baseline_statement();
        self.run(&query_payload(&sql))
            .await?
            .map_err(UpstreamError::Rejected)?;
        self.state = SessionState::baseline(self.state.schema.clone());
        Ok(())
    }

    /// Resets everything a client may have left (COM_RESET_CONNECTION:
    /// transaction, variables, temporary tables, locks, prepared
    /// statements) and sets the baseline again; both commands go in one
    /// write. A server without COM_RESET_CONNECTION gets COM_CHANGE_USER.
    pub(super) async fn reset(&mut self) -> Result<(), UpstreamError> {
        if self.reset_by_change_user {
            return self.change_user_reset().await;
        }
        self.io.queue(0, &[COM_RESET_CONNECTION]);
        self.io.queue(0, &query_payload(&baseline_statement()));
        self.io.flush().await?;
        let reset = self.read_reply().await?;
        self.read_reply().await?.map_err(UpstreamError::Rejected)?;
        match reset {
            Ok(()) => {}
            Err(error) if error.code == errors::UNKNOWN_COMMAND.code => {
                self.reset_by_change_user = true;
                return self.change_user_reset().await;
            }
            Err(error) => return Err(UpstreamError::Rejected(error)),
        }
        let schema = self.state.schema.clone();
        // COM_RESET_CONNECTION leaves the COM_SET_OPTION multi-statement
        // setting as it was (MariaDB and MySQL alike).
        let multi_statements = self.state.multi_statements;
        self.state = SessionState::baseline(schema);
        self.state.multi_statements = multi_statements;
        self.statements = ServerStatements::default();
        Ok(())
    }

    /// Runs what makes this connection's state the client's: the commands
    /// go in one write and their replies are read in order. The first
    /// error is returned (the client's state could not be set up here).
    pub(super) async fn apply(&mut self, transition: &Transition) -> Result<Reply, UpstreamError> {
        let mut expected = 0;
        if let Some(sql) = &transition.set_statement {
            self.io.queue(0, &query_payload(sql));
            expected += 1;
        }
        if let Some(schema) = &transition.schema {
            let mut payload = BytesMut::with_capacity(1 + schema.len());
            payload.put_u8(COM_INIT_DB);
            payload.put_slice(schema.as_bytes());
            self.io.queue(0, &payload);
            expected += 1;
        }
        if let Some(on) = transition.multi_statements {
            // MYSQL_OPTION_MULTI_STATEMENTS_ON is 0, _OFF is 1.
            let option: u16 = if on { 0 } else { 1 };
            let mut payload = BytesMut::with_capacity(3);
            payload.put_u8(COM_SET_OPTION);
            payload.put_u16_le(option);
            self.io.queue(0, &payload);
            expected += 1;
        }
        self.io.flush().await?;
        let mut outcome = Ok(());
        for _ in 0..expected {
            let reply = self.read_reply().await?;
            if outcome.is_ok() {
                outcome = reply;
            }
        }
        Ok(outcome)
    }

    /// Sends one command and reads its OK/ERR/EOF reply.
    pub(super) async fn run(&mut self, payload: &[u8]) -> Result<Reply, UpstreamError> {
        self.io.send(0, payload).await?;
        self.read_reply().await
    }

    /// Reads a reply that is one OK, EOF or ERR packet, noting status and
    /// session changes.
    async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        let (_, packet) = self.io.read_packet().await?;
        match packet.first() {
            Some(&ERR_HEADER) => Ok(Err(ErrPacket::decode(&packet)?)),
            Some(&OK_HEADER) => {
                self.note_ok(&packet)?;
                Ok(Ok(()))
            }
            Some(&EOF_HEADER) if is_terminator(&packet) => {
                if packet.len() >= 5 {
                    self.status = u16::from_le_bytes([packet[3], packet[4]]);
                }
                Ok(Ok(()))
            }
            _ => Err(UpstreamError::Malformed(WireError::Malformed(
                "expected an OK, EOF or ERR reply",
            ))),
        }
    }

    /// Takes status, schema and variable changes from an OK packet.
    pub(super) fn note_ok(&mut self, packet: &[u8]) -> Result<(), WireError> {
        let ok = OkPacket::decode(packet, self.capabilities)?;
        self.status = ok.status;
        if let Some(data) = ok.session_state {
            for change in session_changes(data)? {
                match change {
                    SessionChange::SystemVariable { name, value } => self.state.note_variable(
                        &String::from_utf8_lossy(name),
                        &String::from_utf8_lossy(value),
                    ),
                    SessionChange::Schema(schema) => {
                        self.state.schema = Some(String::from_utf8_lossy(schema).into_owned());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Runs a query and returns its rows as text (`None` for NULL).
    pub(super) async fn query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Vec<Option<String>>>, ErrPacket>, UpstreamError> {
        self.io.send(0, &query_payload(sql)).await?;
        let (_, first) = self.io.read_packet().await?;
        match first.first() {
            Some(&ERR_HEADER) => return Ok(Err(ErrPacket::decode(&first)?)),
            Some(&OK_HEADER) => {
                self.note_ok(&first)?;
                return Ok(Ok(Vec::new()));
            }
            _ => {}
        }
        let columns = lenenc::read_int(&mut &first[..])?;
        for _ in 0..columns {
            self.io.read_packet().await?;
        }
        if self.capabilities & capability::DEPRECATE_EOF == 0 {
            self.io.read_packet().await?;
        }
        let mut rows = Vec::new();
        loop {
            let (_, packet) = self.io.read_packet().await?;
            if packet.first() == Some(&ERR_HEADER) {
                return Ok(Err(ErrPacket::decode(&packet)?));
            }
            if is_terminator(&packet) {
                if self.capabilities & capability::DEPRECATE_EOF != 0 {
                    self.note_ok(&packet)?;
                }
                return Ok(Ok(rows));
            }
            rows.push(text_row(&packet, columns)?);
        }
    }

    /// Whether the server is in a transaction, by its last status flags.
    pub(super) fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0
    }

    /// Cheap check that an idle connection is still usable: nothing
    /// unexpected arrived and the server has not closed it.
    pub(super) fn is_healthy(&mut self) -> bool {
        let mut probe = [0u8; 64];
        self.io.buf.is_empty() && matches!(self.io.stream.try_read_now(&mut probe), Ok(None))
    }

    /// Sends COM_QUIT if it can be written at once; the socket closes on drop.
    pub(crate) fn quit(mut self) {
        let mut out = BytesMut::new();
        super::wire::packet::write_packet(&mut out, 0, &[super::wire::command::COM_QUIT]);
        let _ = self.io.stream.try_write_now(&out);
    }
}

/// The statement that sets churnstile's baseline on a server connection.
fn baseline_statement() -> String {
    format!(
        "SET NAMES {BASELINE_CHARSET} COLLATE {BASELINE_COLLATION}, \
         SESSION session_track_system_variables = '*', \
         SESSION session_track_schema = ON, SESSION session_track_state_change = ON"
    )
}

/// A COM_QUERY payload.
pub(super) fn query_payload(sql: &str) -> Bytes {
    let mut payload = BytesMut::with_capacity(1 + sql.len());
    payload.put_u8(COM_QUERY);
    payload.put_slice(sql.as_bytes());
    payload.freeze()
}

/// Decodes a text-protocol row of `columns` values.
fn text_row(packet: &[u8], columns: u64) -> Result<Vec<Option<String>>, WireError> {
    let mut rest = packet;
    let mut row = Vec::new();
    for _ in 0..columns {
        if rest.first() == Some(&0xFB) {
            rest = &rest[1..];
            row.push(None);
        } else {
            let value = lenenc::read_bytes(&mut rest)?;
            row.push(Some(String::from_utf8_lossy(value).into_owned()));
        }
    }
    Ok(row)
}
