//! One MySQL client from login to its close: the state machine. A client
//! is idle (no server connection), attached (a server connection carries
//! its state), or pinned (state that cannot move keeps it attached). Under
//! transaction pooling the server connection goes back to the pool when a
//! response ends outside a transaction with autocommit on and nothing
//! holding it; under session pooling it is kept until the client leaves.
//! Each command's handling lives in `commands.rs`.

mod lazy_release;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{ServerConn, UpstreamError};
use super::connector::MyConnector;
use super::io::PacketStream;
use super::kill::{ClientHandle, Serving};
use super::login::{Client, Peer};
use super::prepared::ClientStatements;
use super::relay::{Effects, Expect, ResponseRelay, Step};
use super::service::{MySqlService, PoolKey};
use super::sql::{Kill, PinReason};
use super::state::{self, COLLATION_VARIABLE, SessionState, transition};
use super::wire::command::{COM_PING, COM_QUIT};
use super::wire::errors::{self, ErrorCode};
use super::wire::flags::{capability, status};
use super::wire::packet::MAX_PAYLOAD;
use super::wire::response::ErrPacket;
use crate::config::{Config, PoolMode, PoolSettings};
use crate::metrics::Rejection;
use crate::pool::{CheckoutError, CloseReason, Pooled};
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::registry::LiveClient;

/// Largest command a client may send (MySQL's default max_allowed_packet).
pub const MAX_COMMAND: usize = 64 * 1024 * 1024;

/// How long a server connection may take to finish a reset before it is
/// closed instead of reused.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// COM_QUIT.
    Quit,
    /// The client closed the connection or broke the protocol.
    ClientGone,
    /// The server connection failed mid-command.
    ServerGone(String),
    Killed,
    Shutdown,
    /// The client did not log in again after COM_CHANGE_USER.
    ChangeUserFailed,
    IdleTimeout(Duration),
}

/// What keeps a server connection attached besides pins.
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Statements with an open cursor (COM_STMT_FETCH must reach them).
    pub cursors: HashSet<u32>,
    /// Statements with long data sent for their next execute.
    pub long_data: HashSet<u32>,
    /// `SET TRANSACTION` applies to the next transaction on this connection.
    pub next_transaction: bool,
}

impl Holds {
    fn is_empty(&self) -> bool {
        self.cursors.is_empty() && self.long_data.is_empty() && !self.next_transaction
    }
}

/// What ends a session while it waits for its client.
struct Stops<'a> {
    shutdown: &'a CancellationToken,
    killed: &'a CancellationToken,
    idle_deadline: Option<Instant>,
    idle_limit: Option<std::time::Duration>,
}

pub(super) struct Session {
    pub service: Arc<MySqlService>,
    pub io: PacketStream,
    pub id: u32,
    pub peer: Peer,
    pub client: Client,
    pub settings: PoolSettings,
    pub pool_key: PoolKey,
    /// The state a fresh connection of this client has (COM_RESET_CONNECTION).
    pub initial: SessionState,
    /// The state the client should see.
    pub state: SessionState,
    /// The handshake character set's names are in `state`.
    pub charset_known: bool,
    pub statements: ClientStatements,
    pub server: Option<Pooled<MyConnector>>,
    pub pins: BTreeSet<PinReason>,
    pub holds: Holds,
    pub handle: ClientHandle,
    /// The client's entry in the admin console's registry.
    pub live: LiveClient,
    /// A command was sent to the server and its response is not all read.
    pub in_flight: bool,
    /// The attached server connection is idle, kept between transactions.
    pub kept_idle: bool,
}

/// Serves a logged-in client: it starts idle, with the state a fresh
/// server connection of its database would give it.
pub(super) async fn run(
    service: Arc<MySqlService>,
    config: &Config,
    io: PacketStream,
    id: u32,
    peer: Peer,
    client: Client,
) {
    let Some(db) = config.databases.get(&client.database) else {
        return;
    };
    let mut initial = SessionState::baseline(Some(db.dbname.clone()));
    initial.multi_statements = client.capabilities & capability::MULTI_STATEMENTS != 0;
    let pool_key = (
        client.database.clone(),
        client.user.clone(),
        client.capabilities & capability::FOUND_ROWS != 0,
    );
    let live = service.registry.logged_in(
        crate::metrics::PROTOCOL_MYSQL,
        &client.database,
        &client.user,
        &client.program_name,
        &io.stream,
    );
    let handle = service
        .clients
        .register(id, &client.user, live.kill_switch());
    let mut session = Session {
        io,
        id,
        peer,
        charset_known: client.charset == 45,
        settings: db.pool.clone(),
        pool_key,
        state: initial.clone(),
        initial,
        statements: ClientStatements::default(),
        server: None,
        pins: BTreeSet::new(),
        holds: Holds::default(),
        handle,
        live,
        in_flight: false,
        kept_idle: false,
        client,
        service: Arc::clone(&service),
    };
    let ending = session.serve().await;
    session.finish(ending).await;
    service.clients.unregister(id);
}

impl Session {
    pub fn pooling(&self) -> bool {
        self.settings.pool_mode != PoolMode::Session
    }

    /// Reads and handles commands until the session ends.
    async fn serve(&mut self) -> Ending {
        let shutdown = self.service.shutdown.clone();
        // Reset each time a server connection is kept between transactions.
        let mut kept_until = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        loop {
            // Read each turn: COM_CHANGE_USER replaces it.
            let killed = self.handle.killed.clone();
            let idle = self
                .server
                .as_mut()
                .is_none_or(|server| !server.conn().in_transaction());
            let idle_limit = self.settings.client_idle_timeout;
            let stops = Stops {
                shutdown: &shutdown,
                killed: &killed,
                idle_deadline: idle_limit.map(|limit| Instant::now() + limit),
                idle_limit,
            };
            if self.kept_idle
                && self.io.buf.is_empty()
                && let Err(ending) = self.wait_keeping(kept_until.as_mut(), &stops).await
            {
                return ending;
            }
            let command = tokio::select! {
                () = shutdown.cancelled(), if idle => return Ending::Shutdown,
                () = killed.cancelled() => return Ending::Killed,
                () = sleep_until_or_forever(stops.idle_deadline) => {
                    return Ending::IdleTimeout(idle_limit.unwrap_or_default());
                }
                command = self.read_command() => command,
            };
            let (seq, payload) = match command {
                Ok(command) => command,
                Err(ending) => return ending,
            };
            if self.kept_idle && !matches!(payload.first(), Some(&(COM_PING | COM_QUIT))) {
                self.reuse_kept().await;
            }
            if let Err(ending) = self.handle_command(seq, payload).await {
                return ending;
            }
            if let Some(deadline) = self.release_if_done().await {
                kept_until.as_mut().reset(deadline);
            }
        }
    }

    /// Reads one command, joining a command longer than one packet.
    async fn read_command(&mut self) -> Result<(u8, Bytes), Ending> {
        let (header, first) = self
            .io
            .read_packet()
            .await
            .map_err(|_| Ending::ClientGone)?;
        if header.len < MAX_PAYLOAD {
            return Ok((header.seq, first));
        }
        let mut whole = BytesMut::from(&first[..]);
        loop {
            let (header, more) = self
                .io
                .read_packet()
                .await
                .map_err(|_| Ending::ClientGone)?;
            let seq = header.seq;
            if whole.len() + more.len() > MAX_COMMAND {
                self.send_error(
                    seq.wrapping_add(1),
                    errors::NET_PACKET_TOO_LARGE,
                    format!("Got a packet bigger than 'max_allowed_packet' bytes ({MAX_COMMAND})"),
                )
                .await?;
                return Err(Ending::ClientGone);
            }
            whole.extend_from_slice(&more);
            if header.len < MAX_PAYLOAD {
                return Ok((seq, whole.freeze()));
            }
        }
    }

    /// Sends an ERR packet to the client.
    pub async fn send_error(
        &mut self,
        seq: u8,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), Ending> {
        self.send_err_packet(seq, &ErrPacket::new(code, message))
            .await
    }

    pub async fn send_err_packet(&mut self, seq: u8, packet: &ErrPacket) -> Result<(), Ending> {
        let mut payload = BytesMut::new();
        packet.encode(&mut payload);
        self.io
            .send(seq, &payload)
            .await
            .map_err(|_| Ending::ClientGone)?;
        Ok(())
    }

    /// Sends an OK packet with the session's status.
    pub async fn send_ok(&mut self, seq: u8) -> Result<(), Ending> {
        let payload = super::wire::response::ok_payload(0, 0, self.status(), 0);
        self.io
            .send(seq, &payload)
            .await
            .map_err(|_| Ending::ClientGone)?;
        Ok(())
    }

    /// The status flags the client should see now.
    pub fn status(&mut self) -> u16 {
        match self.conn() {
            Some(conn) => {
                conn.status & (status::IN_TRANS | status::AUTOCOMMIT | status::IN_TRANS_READONLY)
            }
            None => status::AUTOCOMMIT,
        }
    }

    /// Makes sure a server connection carries the client's state; the
    /// inner error is what the client is told when none could be had.
    pub async fn attach(&mut self) -> Result<Result<(), ErrPacket>, Ending> {
        if self.server.is_some() {
            return Ok(Ok(()));
        }
        let Some(pool) = self.service.pool(&self.pool_key) else {
            return Ok(Err(ErrPacket::new(
                errors::BAD_DB,
                "database is not configured for this user",
            )));
        };
        self.live.waiting();
        let mut pooled = match pool.checkout(self.settings.query_wait_timeout).await {
            Ok(pooled) => pooled,
            Err(error) => {
                self.live.idle();
                return Ok(Err(self.no_server(error)));
            }
        };
        let conn = pooled.conn();
        if !self.charset_known {
            let sql = format!(
                "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLLATIONS WHERE ID = {}",
                self.client.charset
            );
            let names =
                match self.service.collation(self.client.charset) {
                    Some(names) => names,
                    None => {
                        let rows = conn
                            .query_rows(&sql)
                            .await
                            .map_err(|e| Ending::ServerGone(e.to_string()))?;
                        let names = rows.ok().and_then(|rows| rows.into_iter().next()).and_then(
                            |row| match (
                                row.first().cloned().flatten(),
                                row.get(1).cloned().flatten(),
                            ) {
                                (Some(charset), Some(collation)) => Some((charset, collation)),
                                _ => None,
                            },
                        );
                        self.service
                            .remember_collation(self.client.charset, names.clone());
                        names
                    }
                };
            if let Some((charset, collation)) = names {
                self.initial.set_charset(&charset, &collation);
                self.state.set_charset(&charset, &collation);
            }
            self.charset_known = true;
        }
        let moves = transition(&conn.state, &self.state);
        if !moves.is_empty() {
            match conn.apply(&moves).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(peer = %self.peer.addr, error = %error.message, "could not move the client's session state to a server connection");
                    pooled.conn().state = crate::mysql::state::SessionState::default();
                    pooled.discard(CloseReason::ResetFailure);
                    return Ok(Err(error));
                }
                Err(error) => {
                    pooled.discard(CloseReason::Error);
                    return Err(Ending::ServerGone(error.to_string()));
                }
            }
            pooled.conn().state = self.state.clone();
        }
        let conn = pooled.conn();
        *self.handle.serving.lock().await = Some(Serving {
            target: Arc::clone(&conn.target),
            thread_id: conn.thread_id,
        });
        self.live
            .active(i32::try_from(conn.thread_id).unwrap_or(i32::MAX));
        self.server = Some(pooled);
        Ok(Ok(()))
    }

    /// What the client is told when it got no server connection: the
    /// command fails, the session goes on.
    fn no_server(&self, error: CheckoutError<UpstreamError>) -> ErrPacket {
        crate::metrics::client_rejected(match &error {
            CheckoutError::WaitTimeout(_) => Rejection::QueryWaitTimeout,
            CheckoutError::UpstreamDown { .. } => Rejection::UpstreamDown,
            CheckoutError::Closed => Rejection::Shutdown,
            CheckoutError::Connect(_) | CheckoutError::ConnectTimeout(_) => {
                Rejection::UpstreamError
            }
        });
        if let Some(suppressed) =
            WARNINGS.check("client got no server connection", &self.client.database)
        {
            tracing::warn!(peer = %self.peer.addr, db = %self.client.database, user = %self.client.user, %error, "MySQL client got no server connection{}", Suppressed(suppressed));
        }
        match &error {
            CheckoutError::Connect(UpstreamError::Rejected(upstream)) => upstream.clone(),
            CheckoutError::WaitTimeout(_) => {
                ErrPacket::new(errors::TOO_MANY_CONNECTIONS, error.to_string())
            }
            _ => ErrPacket::new(errors::UNKNOWN_ERROR, format!("churnstile: {error}")),
        }
    }

    /// The attached server connection.
    pub fn conn(&mut self) -> Option<&mut ServerConn> {
        self.server.as_mut().map(Pooled::conn)
    }

    /// Relays the response to the command just sent to the server,
    /// including a LOAD DATA LOCAL file from the client; returns what the
    /// response told.
    pub async fn relay(&mut self, expect: Expect, client_seq: u8) -> Result<Effects, Ending> {
        let client_caps = self.client.capabilities;
        let pooling = self.pooling();
        let Some(server) = self.server.as_mut() else {
            return Err(Ending::ServerGone("no server connection attached".into()));
        };
        let conn = server.conn();
        let mut relay = ResponseRelay::new(
            expect,
            conn.capabilities,
            client_caps,
            conn.status,
            client_seq,
        );
        // The response is built in the client stream's own buffer, kept
        // from one command to the next.
        let client_gone = |_| Ending::ClientGone;
        let mut client_open = true;
        loop {
            let read = conn.io.read_packet();
            let packet = if client_open {
                tokio::select! {
                    packet = read => packet,
                    () = closed(&mut self.io) => {
                        // Stopped, not left to hold the server connection
                        // until it ends by itself; its end is read as usual.
                        client_open = false;
                        tracing::info!(peer = %self.peer.addr, "MySQL client closed its connection mid-query; killing the query");
                        let stop = Kill { id: self.id, query_only: true };
                        let _ = self.service.clients.kill(&self.client.user, stop).await;
                        continue;
                    }
                }
            } else {
                read.await
            };
            let (header, payload) = packet.map_err(|e| Ending::ServerGone(e.to_string()))?;
            let step = relay
                .feed(header, &payload, &mut self.io.out)
                .map_err(|e| {
                    Ending::ServerGone(format!("server sent a malformed response: {e}"))
                })?;
            match step {
                Step::More => {
                    if self.io.out.len() >= 64 * 1024 {
                        self.io.flush().await.map_err(client_gone)?;
                    }
                }
                Step::Done => {
                    self.in_flight = false;
                    break;
                }
                Step::LocalInfile => {
                    self.io.flush().await.map_err(client_gone)?;
                    let next = load_local_file(&mut self.io, conn, header.seq, client_caps).await?;
                    relay.resume_after_file(next);
                }
            }
        }
        self.io.flush().await.map_err(client_gone)?;
        let effects = relay.effects;
        if let Some(status) = effects.status {
            conn.status = status;
        }
        for (name, value) in &effects.variables {
            note_reported(&mut conn.state, &mut self.state, name, value);
        }
        if let Some(schema) = &effects.schema {
            conn.state.schema = Some(schema.clone());
            self.state.schema = Some(schema.clone());
        }
        if let Some(id) = effects.last_insert_id {
            conn.state.last_insert_id = id;
            self.state.last_insert_id = id;
        }
        let flags = conn.status;
        if changes_charset_not_collation(&effects.variables) {
            // MariaDB reports the character sets `SET NAMES x COLLATE y`
            // changes but not the collation: moving the character set alone
            // would bring its default collation instead of `y`.
            self.reread_variables(&[COLLATION_VARIABLE]).await?;
        }
        let explained = !effects.variables.is_empty() || effects.schema.is_some();
        let unmovable = (effects.variables.iter()).any(|(name, _)| state::is_unmovable(name));
        if (unmovable || effects.state_changed && !explained)
            && pooling
            && self.pins.insert(PinReason::ServerState)
        {
            tracing::debug!(peer = %self.peer.addr, "client pinned: the server reported session state churnstile cannot name or move");
            crate::metrics::mysql_client_pinned(PinReason::ServerState.label());
        }
        if flags & status::AUTOCOMMIT == 0 && flags & status::IN_TRANS == 0 {
            if pooling && self.pins.insert(PinReason::Autocommit) {
                crate::metrics::mysql_client_pinned(PinReason::Autocommit.label());
            }
        } else if flags & status::AUTOCOMMIT != 0 {
            self.pins.remove(&PinReason::Autocommit);
        }
        Ok(effects)
    }

    /// Records the values `names` have on the attached server connection
    /// as the client's and the connection's, where the server's report is
    /// not what a statement left behind.
    pub async fn reread_variables(&mut self, names: &[&str]) -> Result<(), Ending> {
        // Names come from the server's reports; anything but a plain
        // identifier is left alone rather than put in SQL.
        let names: Vec<&str> = (names.iter().copied())
            .filter(|name| (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .collect();
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        if names.is_empty() {
            return Ok(());
        }
        let conn = server.conn();
        let selected: Vec<String> = (names.iter())
            .map(|name| format!("@@SESSION.{name}"))
            .collect();
        let rows = conn
            .query_rows(&format!("SELECT {}", selected.join(", ")))
            .await
            .map_err(|e| Ending::ServerGone(e.to_string()))?;
        let Some(row) = rows.ok().and_then(|rows| rows.into_iter().next()) else {
            return Ok(());
        };
        for (name, value) in names.iter().zip(row) {
            // The server reports NULL (character_set_results) as empty.
            let value = value.unwrap_or_default();
            note_reported(&mut conn.state, &mut self.state, name, &value);
        }
        Ok(())
    }

    /// Under transaction pooling, gives the server connection back (or
    /// keeps it until the pool wants it, see `lazy_release`) when nothing
    /// keeps it: no transaction, no pins, no cursor or long data. Returns
    /// when a kept connection must go back even unasked.
    async fn release_if_done(&mut self) -> Option<Instant> {
        if !self.pooling() || !self.pins.is_empty() || !self.holds.is_empty() || self.kept_idle {
            return None;
        }
        if self.server.as_mut()?.conn().in_transaction() {
            return None;
        }
        self.keep_or_give_back().await
    }

    /// Takes the server connection off the client; kills in flight for it
    /// are delivered first.
    pub(super) async fn detach(&mut self) -> Pooled<MyConnector> {
        *self.handle.serving.lock().await = None;
        self.live.idle();
        self.server
            .take()
            .expect("detach with a server connection attached")
    }

    /// Gives back the server connection when the client leaves: as it is if
    /// it is clean, after COM_RESET_CONNECTION if the client left state or a
    /// transaction on it, closed if that fails or a command was cut off.
    async fn finish(&mut self, ending: Ending) {
        match &ending {
            Ending::ServerGone(reason) => {
                tracing::info!(peer = %self.peer.addr, %reason, "MySQL session ended: server connection lost");
            }
            Ending::IdleTimeout(limit) => {
                tracing::info!(peer = %self.peer.addr, ?limit, "MySQL client closed: idle longer than client_idle_timeout");
            }
            _ => {}
        }
        if self.server.is_none() {
            return;
        }
        let clean = self.pooling()
            && self.pins.is_empty()
            && self.holds.is_empty()
            && !self.in_flight
            && self
                .server
                .as_mut()
                .is_some_and(|s| !s.conn().in_transaction())
            && !self.statements_left_open();
        let mut server = self.detach().await;
        // A command cut off in the middle leaves the server connection at
        // an unknown place in its protocol.
        if self.in_flight || matches!(ending, Ending::ServerGone(_)) {
            server.discard(CloseReason::Error);
            return;
        }
        if clean {
            server.release();
            return;
        }
        match tokio::time::timeout(RESET_TIMEOUT, server.conn().reset()).await {
            Ok(Ok(())) => server.release(),
            _ => server.discard(CloseReason::ResetFailure),
        }
    }

    /// Session pooling keeps the client's prepared statements on the
    /// server connection: they must be reset before another client comes.
    fn statements_left_open(&self) -> bool {
        !self.pooling()
    }

    /// Before COM_CHANGE_USER: the old session's server connection goes
    /// back to the pool reset.
    pub async fn return_server_after_reset(&mut self) {
        if self.server.is_none() {
            return;
        }
        let mut server = self.detach().await;
        match tokio::time::timeout(RESET_TIMEOUT, server.conn().reset()).await {
            Ok(Ok(())) => server.release(),
            _ => server.discard(CloseReason::ResetFailure),
        }
    }
}

/// Records a variable's value the server reported, or that churnstile read,
/// as the server connection's and the client's.
fn note_reported(conn: &mut SessionState, client: &mut SessionState, name: &str, value: &str) {
    conn.note_variable(name, value);
    client.note_variable(name, value);
    if let Some(id) = state::reported_last_insert_id(name, value) {
        conn.last_insert_id = id;
        client.last_insert_id = id;
    }
}

/// The server reported a new `character_set_connection` without the
/// `collation_connection` that came with it.
fn changes_charset_not_collation(variables: &[(String, String)]) -> bool {
    let reported =
        |wanted: &str| (variables.iter()).any(|(name, _)| name.eq_ignore_ascii_case(wanted));
    reported("character_set_connection") && !reported(COLLATION_VARIABLE)
}

/// Most a client may send ahead while its command's response is relayed.
const MAX_SENT_AHEAD: usize = 64 * 1024;

/// Completes when the client closes its connection (or it fails); what the
/// client sends meanwhile stays buffered for the next command.
async fn closed(client: &mut PacketStream) {
    while client.buf.len() < MAX_SENT_AHEAD {
        if client.fill().await.is_err() {
            return;
        }
    }
    std::future::pending().await
}

/// Relays a LOAD DATA LOCAL INFILE file from the client to the server;
/// returns the sequence id the client expects next. A client that did not
/// allow local files gets none asked of it: the server is sent an empty file.
async fn load_local_file(
    client: &mut PacketStream,
    conn: &mut ServerConn,
    server_seq: u8,
    client_caps: u32,
) -> Result<u8, Ending> {
    let mut server_seq = server_seq.wrapping_add(1);
    if client_caps & capability::LOCAL_FILES == 0 {
        conn.io
            .send(server_seq, &[])
            .await
            .map_err(|e| Ending::ServerGone(e.to_string()))?;
        return Ok(0);
    }
    loop {
        let (header, chunk) = client.read_packet().await.map_err(|_| Ending::ClientGone)?;
        conn.io.queue_physical(server_seq, &chunk);
        server_seq = server_seq.wrapping_add(1);
        if conn.io.out.len() >= 64 * 1024 || header.len == 0 {
            conn.io
                .flush()
                .await
                .map_err(|e| Ending::ServerGone(e.to_string()))?;
        }
        if header.len == 0 {
            return Ok(header.seq.wrapping_add(1));
        }
    }
}

pub(super) async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
