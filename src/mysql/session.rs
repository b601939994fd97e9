//! A logged-in MySQL client's session, as a state machine read top to
//! bottom: **idle** (no server connection) → **attached** (a server
//! connection from the pool, with the client's session state moved onto
//! it) → **in transaction** (the server says so) → back to idle when a
//! response ends outside a transaction with autocommit on and nothing
//! holding the connection (under transaction pooling; session pooling
//! keeps it until the client leaves), or **kept** idle until the pool
//! wants it back (see `lazy_release`). State that cannot move **pins** the
//! client to its connection. **Releasing** when the client leaves: the
//! server connection goes back clean, reset, or closed.
//!
//! Each command's handling lives in `commands.rs` (prepared statements in
//! `statements.rs`, COM_CHANGE_USER in `change_user.rs`); relaying a
//! response and learning from it in `response.rs`.

mod change_user;
mod commands;
mod lazy_release;
mod response;
mod statements;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{ServerConn, UpstreamError};
use super::connector::MyConnector;
use super::kill::{ClientHandle, Serving};
use super::login::{Client, Peer};
use super::packet_stream::PacketStream;
use super::prepared::ClientStatements;
use super::service::{MySqlService, PoolKey};
use super::sql::PinReason;
use super::state::{SessionState, transition};
use super::wire::command::{COM_PING, COM_QUIT};
use super::wire::errors::{self, ErrorCode};
use super::wire::flags::{capability, status};
use super::wire::packet::MAX_PAYLOAD;
use super::wire::response::ErrPacket;
use crate::config::{Config, PoolMode, PoolSettings};
use crate::pool::{CheckoutError, CloseReason, Lease};
use crate::ratelimit::{Suppressed, WARNINGS};
use crate::registry::LiveClient;

/// Largest command a client may send (MySQL's default max_allowed_packet).
const MAX_COMMAND: usize = 64 * 1024 * 1024;

/// How long a server connection may take to finish a reset before it is
/// closed instead of reused.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug)]
enum Ending {
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

impl Ending {
    /// Why the client was disconnected, for `log_disconnections`.
    fn reason(&self) -> &'static str {
        match self {
            Ending::Quit => "client sent COM_QUIT",
            Ending::ClientGone => "client closed the connection",
            Ending::ServerGone(_) => "server connection lost",
            Ending::Killed => "killed",
            Ending::Shutdown => "shutdown",
            Ending::ChangeUserFailed => "COM_CHANGE_USER failed",
            Ending::IdleTimeout(_) => "client_idle_timeout",
        }
    }
}

/// What keeps a server connection attached besides pins.
#[derive(Debug, Default)]
struct Holds {
    /// Statements with an open cursor (COM_STMT_FETCH must reach them).
    cursors: HashSet<u32>,
    /// Statements with long data sent for their next execute.
    long_data: HashSet<u32>,
    /// `SET TRANSACTION` applies to the next transaction on this connection.
    next_transaction: bool,
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

struct Session {
    service: Arc<MySqlService>,
    io: PacketStream,
    id: u32,
    peer: Peer,
    client: Client,
    settings: PoolSettings,
    pool_key: PoolKey,
    /// The state a fresh connection of this client has (COM_RESET_CONNECTION).
    initial: SessionState,
    /// The state the client should see.
    state: SessionState,
    /// The handshake character set's names are in `state`.
    charset_known: bool,
    statements: ClientStatements,
    server: Option<Lease<MyConnector>>,
    pins: BTreeSet<PinReason>,
    holds: Holds,
    handle: ClientHandle,
    /// The client's entry in the admin console's registry.
    live: LiveClient,
    /// A command was sent to the server and its response is not all read.
    in_flight: bool,
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
        client,
        service: Arc::clone(&service),
    };
    let ending = session.serve().await;
    session.live.ending(ending.reason());
    session.finish(ending).await;
    service.clients.unregister(id);
}

impl Session {
    /// Reads and handles commands until the session ends.
    async fn serve(&mut self) -> Ending {
        let shutdown = self.service.shutdown.clone();
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
            if self.keeps_idle()
                && self.io.buf.is_empty()
                && let Err(ending) = self.wait_keeping(&stops).await
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
            if self.keeps_idle() && !matches!(payload.first(), Some(&(COM_PING | COM_QUIT))) {
                self.reuse_kept().await;
            }
            if let Err(ending) = self.handle_command(seq, payload).await {
                return ending;
            }
            self.release_if_done().await;
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

    /// Idle → attached: makes sure a server connection carries the
    /// client's state; the inner error is what the client is told when
    /// none could be had.
    async fn attach(&mut self) -> Result<Result<(), ErrPacket>, Ending> {
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
        if !self.charset_known {
            self.learn_charset(pooled.conn()).await?;
        }
        let pooled = match self.move_state(pooled).await? {
            Ok(pooled) => pooled,
            Err(error) => return Ok(Err(error)),
        };
        self.server = Some(pooled);
        self.mark_serving().await;
        Ok(Ok(()))
    }

    /// Learns the names of the client's handshake character set from the
    /// server's catalogue, once per collation id for the whole proxy.
    async fn learn_charset(&mut self, conn: &mut ServerConn) -> Result<(), Ending> {
        let id = self.client.charset;
        let names = match self.service.collation(id) {
            Some(names) => names,
            None => {
                let names = collation_names(conn, id).await?;
                self.service.remember_collation(id, names.clone());
                names
            }
        };
        if let Some((charset, collation)) = names {
            self.initial.set_charset(&charset, &collation);
            self.state.set_charset(&charset, &collation);
        }
        self.charset_known = true;
        Ok(())
    }

    /// Moves the client's session state onto a server connection just
    /// checked out. One that refuses it is closed, and the client is told.
    async fn move_state(
        &self,
        mut pooled: Lease<MyConnector>,
    ) -> Result<Result<Lease<MyConnector>, ErrPacket>, Ending> {
        let conn = pooled.conn();
        let moves = transition(&conn.state, &self.state);
        if moves.is_empty() {
            return Ok(Ok(pooled));
        }
        match conn.apply(&moves).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(peer = %self.peer.addr, error = %error.message, "could not move the client's session state to a server connection");
                pooled.conn().state = SessionState::default();
                pooled.discard(CloseReason::ResetFailure);
                return Ok(Err(error));
            }
            Err(error) => {
                pooled.discard(CloseReason::Error);
                return Err(Ending::ServerGone(error.to_string()));
            }
        }
        pooled.conn().state = self.state.clone();
        Ok(Ok(pooled))
    }

    /// Where a `KILL` of this client goes from now on, and what the admin
    /// console shows: the attached server connection.
    async fn mark_serving(&mut self) {
        let Some(conn) = self.conn() else {
            return;
        };
        let serving = Serving {
            target: Arc::clone(&conn.target),
            thread_id: conn.thread_id,
        };
        let thread_id = i32::try_from(conn.thread_id).unwrap_or(i32::MAX);
        *self.handle.serving.lock().await = Some(serving);
        self.live.active(thread_id);
    }

    /// What the client is told when it got no server connection (the one
    /// place a checkout failure becomes a MySQL error): the command fails,
    /// the session goes on.
    fn no_server(&self, error: CheckoutError<UpstreamError>) -> ErrPacket {
        error.count_rejection();
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

    /// Attached → idle: under transaction pooling, gives the server
    /// connection back (or keeps it until the pool wants it, see
    /// `lazy_release`) when nothing keeps it: no transaction, no pins, no
    /// cursor or long data.
    async fn release_if_done(&mut self) {
        if !self.pooling() || !self.pins.is_empty() || !self.holds.is_empty() || self.keeps_idle() {
            return;
        }
        let Some(server) = self.server.as_mut() else {
            return;
        };
        if server.conn().in_transaction() {
            return;
        }
        self.keep_or_give_back().await;
    }

    /// Takes the server connection off the client; kills in flight for it
    /// are delivered first.
    async fn detach(&mut self) -> Lease<MyConnector> {
        *self.handle.serving.lock().await = None;
        self.live.idle();
        self.server
            .take()
            .expect("detach with a server connection attached")
    }

    /// Releasing, when the client leaves: the server connection goes back
    /// as it is if it is clean, after COM_RESET_CONNECTION if the client
    /// left state or a transaction on it, closed if that fails or a command
    /// was cut off.
    async fn finish(&mut self, ending: Ending) {
        match &ending {
            // As MariaDB tells its idle clients when it shuts down: an ERR
            // with sequence id 0, the start of the next exchange.
            Ending::Shutdown => {
                let _ =
                    (self.send_error(0, errors::SERVER_SHUTDOWN, "Server shutdown in progress"))
                        .await;
            }
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
    async fn return_server_after_reset(&mut self) {
        if self.server.is_none() {
            return;
        }
        let mut server = self.detach().await;
        match tokio::time::timeout(RESET_TIMEOUT, server.conn().reset()).await {
            Ok(Ok(())) => server.release(),
            _ => server.discard(CloseReason::ResetFailure),
        }
    }

    fn pooling(&self) -> bool {
        self.settings.pool_mode != PoolMode::Session
    }

    /// The attached server connection.
    fn conn(&mut self) -> Option<&mut ServerConn> {
        self.server.as_mut().map(Lease::conn)
    }

    /// The status flags the client should see now.
    fn status(&mut self) -> u16 {
        match self.conn() {
            Some(conn) => {
                conn.status & (status::IN_TRANS | status::AUTOCOMMIT | status::IN_TRANS_READONLY)
            }
            None => status::AUTOCOMMIT,
        }
    }

    /// Sends an ERR packet to the client.
    async fn send_error(
        &mut self,
        seq: u8,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), Ending> {
        self.send_err_packet(seq, &ErrPacket::new(code, message))
            .await
    }

    async fn send_err_packet(&mut self, seq: u8, packet: &ErrPacket) -> Result<(), Ending> {
        if self.service.config.load().general.observe.log_pooler_errors {
            tracing::info!(peer = %self.peer.addr, db = %self.client.database, user = %self.client.user, code = packet.code, "pooler error: {}", packet.message);
        }
        let mut payload = BytesMut::new();
        packet.encode(&mut payload);
        self.io
            .send(seq, &payload)
            .await
            .map_err(|_| Ending::ClientGone)?;
        Ok(())
    }

    /// Sends an OK packet with the session's status.
    async fn send_ok(&mut self, seq: u8) -> Result<(), Ending> {
        let payload = super::wire::response::ok_payload(0, 0, self.status(), 0);
        self.io
            .send(seq, &payload)
            .await
            .map_err(|_| Ending::ClientGone)?;
        Ok(())
    }
}

/// The character set and collation the server names collation `id` by,
/// if it knows it.
async fn collation_names(
    conn: &mut ServerConn,
    id: u8,
) -> Result<Option<(String, String)>, Ending> {
    let sql = format!(
        "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLLATIONS WHERE ID = {id}"
    );
    let rows = (conn.query_rows(&sql).await).map_err(|e| Ending::ServerGone(e.to_string()))?;
    let row = rows.ok().and_then(|rows| rows.into_iter().next());
    Ok(row.and_then(|row| {
        match (
            row.first().cloned().flatten(),
            row.get(1).cloned().flatten(),
        ) {
            (Some(charset), Some(collation)) => Some((charset, collation)),
            _ => None,
        }
    }))
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
