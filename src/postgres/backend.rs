//! One upstream PostgreSQL server connection: opening and logging in (trust,
//! cleartext, md5, SCRAM-SHA-256), and the state churnstile tracks on it —
//! parameter values, transaction status, and what is still in flight.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::prepared::ServerStatements;
use super::state::ReportedParams;
pub use super::upstream_error::UpstreamError;
use super::wire::codec::{
    self, Framing, MAX_INSPECTED_MESSAGE, MAX_MESSAGE, Message, MessageScanner, Verdict,
};
use super::wire::messages::{ErrorFields, parse_error_fields};
use crate::stream::Stream;
use crate::tls::UpstreamTls;

/// Where and as whom churnstile logs in upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// Host name or address; a path starting with '/' is a Unix socket directory.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) dbname: String,
    pub(crate) user: String,
    pub(crate) password: Option<String>,
}

impl UpstreamTarget {
    /// `host:port` for messages, or the socket path.
    pub(crate) fn describe(&self) -> String {
        if self.host.starts_with('/') {
            format!("{}/.s.PGSQL.{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a raw stream to the server (for a login or a CancelRequest).
    pub(super) async fn open_stream(&self) -> io::Result<Stream> {
        if self.host.starts_with('/') {
            Ok(Stream::Unix(UnixStream::connect(self.describe()).await?))
        } else {
            Stream::tcp(TcpStream::connect((self.host.as_str(), self.port)).await?)
        }
    }
}

/// Identifies the server process serving a connection, for CancelRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BackendKey {
    pub(super) process_id: i32,
    pub(super) secret_key: i32,
}

/// What churnstile knows of a server connection's protocol state, kept up
/// to date from every message that passes in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Current values of the parameters the server reports (ParameterStatus).
    pub(super) params: ReportedParams,
    /// Status byte of the last ReadyForQuery: 'I', 'T' or 'E'.
    pub(super) tx_status: u8,
    /// ReadyForQuery messages still owed for queries and Syncs sent.
    pub(super) pending_ready: usize,
    /// Extended-protocol messages were sent with no Sync after them.
    pub(super) unsynced: bool,
    /// The server is in COPY FROM STDIN (or COPY BOTH) and wants data.
    pub(super) copy_in: bool,
    /// Syncs sent after the last Execute or Query and before any CopyDone
    /// or CopyFail. Should that statement start COPY FROM STDIN, the server
    /// ignores them: it ignores Sync and Flush until the copy ends, and
    /// libpq and tokio-postgres send a Sync right after the Execute.
    syncs_after_statement: usize,
    /// A CopyDone or CopyFail was sent after the last Execute or Query.
    copy_end_sent: bool,
    /// The last Execute or Query was an Execute (extended protocol).
    statement_extended: bool,
    /// In COPY FROM STDIN and the client has not ended it yet: the server
    /// ignores the Syncs and Flushes it sends.
    client_copying: bool,
}

impl Default for ServerState {
    fn default() -> Self {
        ServerState {
            params: ReportedParams::default(),
            tx_status: b'I',
            pending_ready: 0,
            unsynced: false,
            copy_in: false,
            syncs_after_statement: 0,
            copy_end_sent: false,
            statement_extended: false,
            client_copying: false,
        }
    }
}

impl ServerState {
    /// Server messages churnstile needs whole to track state; all others
    /// stream through, up to PostgreSQL's own message limit.
    pub fn framing(tag: u8) -> Framing {
        match tag {
            b'Z' | b'S' | b'E' => Framing::Inspect {
                limit: MAX_INSPECTED_MESSAGE,
            },
            _ => Framing::Stream { limit: MAX_MESSAGE },
        }
    }

    /// Updates tracked state from a message the server sent.
    pub(super) fn observe(&mut self, tag: u8, body: Option<&[u8]>) {
        match (tag, body) {
            (b'Z', Some(&[status])) => {
                self.tx_status = status;
                self.pending_ready = self.pending_ready.saturating_sub(1);
                self.copy_in = false;
            }
            (b'S', Some(mut body)) => {
                if let (Some(name), Some(value)) =
                    (codec::take_cstr(&mut body), codec::take_cstr(&mut body))
                {
                    self.params.insert(name, value);
                }
            }
            (b'G' | b'W', _) => {
                self.copy_in = true;
                // The Syncs sent since the COPY statement will not be answered.
                let ignored = self.syncs_ignored_if_copy_starts();
                self.pending_ready = self.pending_ready.saturating_sub(ignored);
                self.syncs_after_statement = 0;
                self.client_copying = !self.copy_end_sent;
                if self.statement_extended && self.client_copying {
                    self.unsynced = true;
                }
            }
            // The server left COPY: it answers the client's next Sync again.
            (b'E', _) if self.copy_in => self.client_copying = false,
            _ => {}
        }
    }

    /// How many Syncs already sent the server ignores if the CopyInResponse
    /// (or CopyBothResponse) it is sending now is for the last statement.
    pub(super) fn syncs_ignored_if_copy_starts(&self) -> usize {
        self.syncs_after_statement
    }

    /// The server ignores this message: a Sync or Flush sent while the
    /// client is in COPY FROM STDIN.
    pub(super) fn ignores(&self, tag: u8) -> bool {
        self.client_copying && matches!(tag, b'S' | b'H')
    }

    /// Updates in-flight tracking for a message sent to the server.
    pub(super) fn note_sent(&mut self, tag: u8) {
        if self.ignores(tag) {
            return;
        }
        match tag {
            b'Q' | b'F' => self.pending_ready += 1,
            b'S' => {
                self.pending_ready += 1;
                self.unsynced = false;
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => self.unsynced = true,
            b'c' | b'f' => {
                self.copy_end_sent = true;
                self.client_copying = false;
            }
            _ => {}
        }
        match tag {
            b'Q' | b'E' => {
                self.syncs_after_statement = 0;
                self.copy_end_sent = false;
                self.statement_extended = tag == b'E';
            }
            b'S' if !self.copy_end_sent => self.syncs_after_statement += 1,
            _ => {}
        }
    }

    /// True when nothing is in flight and no transaction is open.
    pub(super) fn is_idle(&self) -> bool {
        self.pending_ready == 0 && !self.unsynced && !self.copy_in && self.tx_status == b'I'
    }
}

/// A logged-in server connection and what churnstile knows of its state.
pub struct ServerConn {
    pub(super) stream: Stream,
    /// Bytes read from the server and not yet forwarded or consumed.
    pub(super) read_buf: BytesMut,
    /// Message boundaries in what the server sends; shared by the session
    /// (forwarding) and the reset (draining), so neither loses its place.
    pub(super) scanner: MessageScanner,
    pub(super) target: Arc<UpstreamTarget>,
    pub(super) key: BackendKey,
    pub(super) state: ServerState,
    /// Session settings churnstile applied (names as `pg_settings` spells
    /// them), so the next client's settings are applied as a difference.
    pub(super) applied: BTreeMap<String, String>,
    /// Prepared statements churnstile created here (transaction pooling).
    pub(super) statements: ServerStatements,
    /// NotificationResponses that arrived while churnstile ran its own
    /// queries: a listening client's, owed to it after them.
    pub(super) notifications: BytesMut,
}

impl ServerConn {
    /// Opens a connection, over TLS when `tls` says so (never over a Unix
    /// socket), and logs in as the target user.
    pub(crate) async fn connect(
        target: &Arc<UpstreamTarget>,
        tls: Option<&UpstreamTls>,
    ) -> Result<ServerConn, UpstreamError> {
        let mut stream = target
            .open_stream()
            .await
            .map_err(|source| UpstreamError::Connect {
                target: target.describe(),
                source,
            })?;
        if let Some(tls) = tls
            && stream.can_start_tls()
        {
            super::encryption::negotiate_upstream(&mut stream, &target.describe(), tls).await?;
        }
        let mut conn = ServerConn {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            target: Arc::clone(target),
            key: BackendKey {
                process_id: 0,
                secret_key: 0,
            },
            scanner: MessageScanner::default(),
            state: ServerState::default(),
            applied: BTreeMap::new(),
            statements: ServerStatements::default(),
            notifications: BytesMut::new(),
        };
        conn.login().await?;
        Ok(conn)
    }

    async fn login(&mut self) -> Result<(), UpstreamError> {
        let mut out = BytesMut::new();
        let params = [
            ("user", self.target.user.as_str()),
            ("database", self.target.dbname.as_str()),
        ];
        frontend::startup_message(params, &mut out)?;
        self.stream.write_all(&out).await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = self.read_message().await?;
            out.clear();
            match message.tag {
                b'R' => {
                    let mut body = message.body.clone();
                    if body.len() < 4 {
                        return Err(UpstreamError::Protocol(
                            "short authentication request".into(),
                        ));
                    }
                    match body.get_i32() {
                        0 => {}
                        3 => frontend::password_message(self.password()?.as_bytes(), &mut out)?,
                        5 => {
                            let salt: [u8; 4] = body
                                .get(..4)
                                .and_then(|s| s.try_into().ok())
                                .ok_or_else(|| UpstreamError::Protocol("short md5 salt".into()))?;
                            let hash = md5_hash(
                                self.target.user.as_bytes(),
                                self.password()?.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut out)?;
                        }
                        10 => {
                            let client = ScramSha256::new(
                                self.password()?.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                "SCRAM-SHA-256",
                                client.message(),
                                &mut out,
                            )?;
                            scram = Some(client);
                        }
                        11 => {
                            let client = scram.as_mut().ok_or_else(|| {
                                UpstreamError::Protocol("SASL continue before start".into())
                            })?;
                            client.update(&body)?;
                            frontend::sasl_response(client.message(), &mut out)?;
                        }
                        12 => {
                            let client = scram.as_mut().ok_or_else(|| {
                                UpstreamError::Protocol("SASL final before start".into())
                            })?;
                            client.finish(&body)?;
                        }
                        code => return Err(UpstreamError::UnsupportedAuth(code)),
                    }
                    if !out.is_empty() {
                        self.stream.write_all(&out).await?;
                    }
                }
                b'K' => {
                    let mut body = message.body.clone();
                    if body.len() < 8 {
                        return Err(UpstreamError::Protocol("short BackendKeyData".into()));
                    }
                    self.key = BackendKey {
                        process_id: body.get_i32(),
                        secret_key: body.get_i32(),
                    };
                }
                b'E' => return Err(UpstreamError::Rejected(parse_error_fields(&message.body))),
                b'Z' => {
                    self.state.observe(b'Z', Some(&message.body));
                    return Ok(());
                }
                tag => {
                    self.state.observe(tag, Some(&message.body));
                }
            }
        }
    }

    fn password(&self) -> Result<&str, UpstreamError> {
        self.target
            .password
            .as_deref()
            .ok_or_else(|| UpstreamError::PasswordMissing(self.target.user.clone()))
    }

    /// Reads one whole message (only for small protocol messages).
    async fn read_message(&mut self) -> Result<Message, UpstreamError> {
        loop {
            if let Some(message) = codec::decode_message(&mut self.read_buf, MAX_INSPECTED_MESSAGE)?
            {
                return Ok(message);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(UpstreamError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Sends a simple query and reads to its ReadyForQuery within `limit`,
    /// discarding rows; returns the first error the server reported.
    pub(super) async fn simple_query(
        &mut self,
        sql: &str,
        limit: Duration,
    ) -> Result<Option<ErrorFields>, UpstreamError> {
        self.send_query(sql).await?;
        Ok(self.read_until_ready(limit, false).await?.error)
    }

    /// Sends a simple query and returns its rows (text columns) within
    /// `limit`, or the server's error.
    pub(super) async fn query_rows(
        &mut self,
        sql: &str,
        limit: Duration,
    ) -> Result<Result<Vec<Row>, ErrorFields>, UpstreamError> {
        self.send_query(sql).await?;
        let outcome = self.read_until_ready(limit, true).await?;
        Ok(match outcome.error {
            Some(error) => Err(error),
            None => Ok(outcome.rows),
        })
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), UpstreamError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.stream.write_all(&out).await?;
        self.state.note_sent(b'Q');
        Ok(())
    }

    /// Writes raw protocol bytes to the server.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads and discards server output until every owed ReadyForQuery has
    /// arrived, within `limit`; returns the first error reported meanwhile.
    /// Notifications are kept in `notifications`.
    pub(super) async fn drain(
        &mut self,
        limit: Duration,
    ) -> Result<Option<ErrorFields>, UpstreamError> {
        Ok(self.read_until_ready(limit, false).await?.error)
    }

    async fn read_until_ready(
        &mut self,
        limit: Duration,
        keep_rows: bool,
    ) -> Result<Drained, UpstreamError> {
        tokio::time::timeout(limit, self.read_until_ready_unbounded(keep_rows))
            .await
            .map_err(|_| UpstreamError::Timeout(limit))?
    }

    async fn read_until_ready_unbounded(
        &mut self,
        keep_rows: bool,
    ) -> Result<Drained, UpstreamError> {
        let mut drained = Drained::default();
        let framing = |tag| match tag {
            b'D' if keep_rows => Framing::Inspect {
                limit: MAX_INSPECTED_MESSAGE,
            },
            tag => ServerState::framing(tag),
        };
        while self.state.pending_ready > 0 {
            let state = &mut self.state;
            let scanned = self.scanner.scan(
                &self.read_buf,
                framing,
                &mut self.notifications,
                |tag, body, _| {
                    match (tag, body) {
                        (b'E', Some(body)) if drained.error.is_none() => {
                            drained.error = Some(parse_error_fields(body))
                        }
                        (b'D', Some(body)) => drained.rows.push(parse_data_row(body)),
                        _ => {}
                    }
                    state.observe(tag, body);
                    // A NOTIFY from another session can arrive during any
                    // query; it is the listening client's, not ours.
                    if tag == b'A' {
                        Verdict::Forward
                    } else {
                        Verdict::Drop
                    }
                },
            )?;
            self.read_buf.advance(scanned.consumed);
            if self.state.pending_ready == 0 {
                break;
            }
            if self.state.copy_in && !self.state.copy_end_sent {
                // A COPY FROM STDIN began with no client left to feed it
                // (it left before the server's CopyInResponse arrived):
                // end it now rather than wait for data that never comes.
                let mut out = BytesMut::new();
                frontend::copy_fail("client disconnected during COPY", &mut out)?;
                self.state.note_sent(b'f');
                self.stream.write_all(&out).await?;
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(UpstreamError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(drained)
    }

    /// Asks the server, over a separate connection, to cancel what it runs.
    pub(super) async fn send_cancel(&self) -> io::Result<()> {
        send_cancel_request(&self.target, &self.key).await
    }

    /// True when the server has sent nothing and not closed the connection
    /// while idle: anything else (a FATAL after a server restart, EOF) means
    /// the connection must not be handed out.
    pub(super) fn is_healthy(&mut self) -> bool {
        let mut probe = [0u8; 64];
        self.read_buf.is_empty() && matches!(self.stream.try_read_now(&mut probe), Ok(None))
    }

    /// Sends Terminate if it can be written at once; the socket closes on drop.
    pub(crate) fn terminate(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.try_write_now(&out);
    }
}

/// One result row, each column as text (`None` for NULL).
pub(super) type Row = Vec<Option<String>>;

/// What reading to ReadyForQuery found.
#[derive(Debug, Default)]
struct Drained {
    error: Option<ErrorFields>,
    rows: Vec<Row>,
}

/// Decodes a DataRow body; malformed columns read as NULL.
fn parse_data_row(body: &[u8]) -> Row {
    let mut rest = body;
    let mut row = Vec::new();
    if rest.len() < 2 {
        return row;
    }
    let columns = rest.get_i16();
    for _ in 0..columns.max(0) {
        if rest.len() < 4 {
            row.push(None);
            continue;
        }
        let len = rest.get_i32();
        match usize::try_from(len) {
            Ok(len) if len <= rest.len() => {
                row.push(Some(String::from_utf8_lossy(&rest[..len]).into_owned()));
                rest.advance(len);
            }
            _ => row.push(None),
        }
    }
    row
}

/// Sends a CancelRequest for `key` over a fresh connection to `target`.
pub(super) async fn send_cancel_request(
    target: &UpstreamTarget,
    key: &BackendKey,
) -> io::Result<()> {
    let mut stream = target.open_stream().await?;
    let mut out = BytesMut::new();
    frontend::cancel_request(key.process_id, key.secret_key, &mut out);
    stream.write_all(&out).await?;
    // The server closes once it has read the request; wait for that so the
    // request is not lost to an early reset.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(state: &mut ServerState, tags: &[u8]) {
        for &tag in tags {
            state.note_sent(tag);
        }
    }

    #[test]
    fn syncs_sent_into_copy_from_stdin_are_owed_nothing() {
        // As libpq and tokio-postgres do: Bind, Execute, Sync, then the data.
        let mut state = ServerState::default();
        sent(&mut state, b"BES");
        assert_eq!(state.pending_ready, 1);
        state.observe(b'G', None);
        assert_eq!(state.pending_ready, 0);
        assert!(state.unsynced && state.ignores(b'S') && state.ignores(b'H'));
        sent(&mut state, b"ddSHc");
        assert!(!state.ignores(b'S'));
        sent(&mut state, b"S");
        assert_eq!(state.pending_ready, 1);
        state.observe(b'C', None);
        state.observe(b'Z', Some(b"I"));
        assert!(state.is_idle());
    }

    #[test]
    fn a_sync_after_copy_done_sent_before_the_copy_began_is_answered() {
        let mut state = ServerState::default();
        sent(&mut state, b"BESdcS");
        assert_eq!(state.pending_ready, 2);
        state.observe(b'G', None);
        assert_eq!(state.pending_ready, 1);
        assert!(!state.ignores(b'S'));
    }

    #[test]
    fn simple_query_copy_and_failed_copies_keep_their_syncs() {
        let mut state = ServerState::default();
        sent(&mut state, b"Q");
        state.observe(b'G', None);
        assert_eq!(state.pending_ready, 1);
        assert!(!state.unsynced);

        let mut state = ServerState::default();
        sent(&mut state, b"BES");
        state.observe(b'G', None);
        // Bad data: the server leaves COPY and waits for a Sync.
        state.observe(b'E', None);
        sent(&mut state, b"S");
        assert_eq!(state.pending_ready, 1);
    }
}
