//! What the session does with each command a client sends: forwarded to
//! the attached server connection (attaching one first), rewritten
//! (statement ids, parameter types), or answered by churnstile itself
//! (COM_PING while idle, COM_SET_OPTION, KILL, COM_RESET_CONNECTION,
//! COM_CHANGE_USER).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::auth;
use super::login::{self, Attempt};
use super::prepared::{ClientStatement, statement_key};
use super::relay::{Effects, Expect, ResponseRelay, Step};
use super::session::{Ending, Holds, Session};
use super::sql::{self, Kill};
use super::state::{SessionState, Transition};
use super::wire::command::*;
use super::wire::errors::{self, ErrorCode};
use super::wire::flags::{capability, status};
use super::wire::handshake::{AuthSwitchRequest, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD};
use super::wire::packet::write_packet;
use super::wire::response::{Eof, ErrPacket, OkPacket};
use crate::config::{ClientSecret, PinPolicy};

/// ER_STMT_HAS_NO_OPEN_CURSOR.
const NO_OPEN_CURSOR: ErrorCode = ErrorCode {
    code: 1421,
    sql_state: "HY000",
};

/// MYSQL_OPTION_MULTI_STATEMENTS_ON / _OFF.
const MULTI_STATEMENTS_ON: u16 = 0;
const MULTI_STATEMENTS_OFF: u16 = 1;

impl Session {
    /// Handles one command; `seq` is the client's sequence id for it.
    pub(super) async fn handle_command(&mut self, seq: u8, payload: Bytes) -> Result<(), Ending> {
        let reply = seq.wrapping_add(1);
        let Some(&command) = payload.first() else {
            return self
                .send_error(reply, errors::UNKNOWN_COMMAND, "empty command packet")
                .await;
        };
        match command {
            COM_QUIT => Err(Ending::Quit),
            COM_PING if self.server.is_none() || self.kept_idle => self.send_ok(reply).await,
            COM_PING | COM_INIT_DB | COM_STATISTICS => self
                .forward(reply, &payload, Expect::Single)
                .await
                .map(drop),
            COM_QUERY => self.query(reply, &payload).await,
            COM_FIELD_LIST => self
                .forward(reply, &payload, Expect::FieldList)
                .await
                .map(drop),
            COM_PROCESS_INFO => self.forward(reply, &payload, Expect::Query).await.map(drop),
            COM_STMT_PREPARE => self.prepare(reply, &payload).await,
            COM_STMT_EXECUTE => self.execute(reply, &payload).await,
            COM_STMT_SEND_LONG_DATA => self.send_long_data(&payload).await,
            COM_STMT_CLOSE => self.close_statement(&payload).await,
            COM_STMT_RESET => self.reset_statement(reply, &payload).await,
            COM_STMT_FETCH => self.fetch(reply, &payload).await,
            COM_RESET_CONNECTION => self.reset_connection(reply).await,
            COM_CHANGE_USER => self.change_user(reply, &payload).await,
            COM_SET_OPTION => self.set_option(reply, &payload).await,
            COM_PROCESS_KILL => match statement_id(&payload) {
                Some(id) => {
                    self.kill(
                        reply,
                        Kill {
                            id,
                            query_only: false,
                        },
                    )
                    .await
                }
                None => self.malformed(reply, command).await,
            },
            other => {
                self.send_error(
                    reply,
                    errors::UNKNOWN_COMMAND,
                    format!("churnstile does not relay {}", name(other)),
                )
                .await
            }
        }
    }

    async fn malformed(&mut self, reply: u8, command: u8) -> Result<(), Ending> {
        self.send_error(
            reply,
            errors::UNKNOWN_ERROR,
            format!("malformed {} packet", name(command)),
        )
        .await
    }

    /// Attaches a server connection, or tells the client why none came.
    /// `Ok(false)`: the client got an error and the command is over.
    async fn attached(&mut self, reply: u8) -> Result<bool, Ending> {
        match self.attach().await? {
            Ok(()) => Ok(true),
            Err(packet) => {
                self.send_err_packet(reply, &packet).await?;
                Ok(false)
            }
        }
    }

    /// Sends the command as it is and relays the response.
    async fn forward(
        &mut self,
        reply: u8,
        payload: &[u8],
        expect: Expect,
    ) -> Result<Option<Effects>, Ending> {
        if !self.attached(reply).await? {
            return Ok(None);
        }
        self.send_to_server(payload).await?;
        self.relay(expect, reply).await.map(Some)
    }

    async fn send_to_server(&mut self, payload: &[u8]) -> Result<(), Ending> {
        self.in_flight = true;
        let Some(conn) = self.conn() else {
            return Err(Ending::ServerGone("no server connection attached".into()));
        };
        conn.io.out.clear();
        write_packet(&mut conn.io.out, 0, payload);
        conn.io
            .flush()
            .await
            .map_err(|e| Ending::ServerGone(e.to_string()))
    }

    async fn query(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let analysis = sql::analyze(&payload[1..]);
        if let Some(kill) = analysis.kill {
            return self.kill(reply, kill).await;
        }
        if self.pooling() && !analysis.pins.is_empty() {
            if self.settings.pin_policy == PinPolicy::Reject {
                let reasons: Vec<_> = analysis.pins.iter().map(|r| r.describe()).collect();
                return self
                    .send_error(
                        reply,
                        errors::NOT_SUPPORTED_YET,
                        format!(
                            "churnstile refused the statement: {} cannot move between server \
                             connections under pool_mode = transaction (pin_policy = reject)",
                            reasons.join(", ")
                        ),
                    )
                    .await;
            }
            for reason in &analysis.pins {
                if self.pins.insert(*reason) {
                    crate::metrics::mysql_client_pinned(reason.label());
                }
            }
        }
        let next_transaction_pending = self.holds.next_transaction;
        let Some(effects) = self.forward(reply, payload, Expect::Query).await? else {
            return Ok(());
        };
        if analysis.per_statement_settings && self.server.is_some() {
            let names: Vec<&str> = (effects.variables.iter())
                .map(|(name, _)| name.as_str())
                .collect();
            self.reread_variables(&names).await?;
        }
        if analysis.sets_last_insert_id && self.server.is_some() {
            self.reread_variables(&["last_insert_id"]).await?;
        }
        let in_transaction = self.conn().is_some_and(|conn| conn.in_transaction());
        if next_transaction_pending && !in_transaction {
            self.holds.next_transaction = false;
        }
        if effects.error.is_none() {
            if analysis.sets_next_transaction {
                self.holds.next_transaction = true;
            }
            if analysis.unlocks_tables {
                self.pins.remove(&sql::PinReason::LockTables);
            }
        }
        Ok(())
    }

    async fn prepare(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let sql: Arc<str> = String::from_utf8_lossy(&payload[1..]).into();
        let key = statement_key(&self.state, &sql);
        let client_id = self.statements.next_id();
        let Some(effects) = self
            .forward(reply, payload, Expect::Prepare { client_id })
            .await?
        else {
            return Ok(());
        };
        if let Some(prepared) = effects.prepared {
            self.statements.add(ClientStatement {
                sql,
                key: Arc::clone(&key),
                params: prepared.params,
                columns: prepared.columns,
                param_types: None,
            });
            self.remember_server_statement(key, prepared.server_id)
                .await?;
        }
        Ok(())
    }

    /// Records a statement the server prepared, closing a duplicate or the
    /// least recently used ones beyond `max_prepared_statements`.
    async fn remember_server_statement(
        &mut self,
        key: Arc<str>,
        server_id: u32,
    ) -> Result<(), Ending> {
        let limit = self.settings.max_prepared_statements;
        let Some(conn) = self.conn() else {
            return Ok(());
        };
        let to_close = match conn.statements.lookup(&key) {
            Some(_) => vec![server_id],
            None => conn.statements.insert(key, server_id, limit),
        };
        for id in to_close {
            let mut close = [0u8; 5];
            close[0] = COM_STMT_CLOSE;
            close[1..].copy_from_slice(&id.to_le_bytes());
            conn.io.queue(0, &close);
        }
        conn.io
            .flush()
            .await
            .map_err(|e| Ending::ServerGone(e.to_string()))
    }

    /// The server's id for the client's statement, preparing it on this
    /// server connection first if it never was.
    async fn server_statement(
        &mut self,
        statement: &ClientStatement,
    ) -> Result<Result<u32, ErrPacket>, Ending> {
        let client_caps = self.client.capabilities;
        let Some(conn) = self.conn() else {
            return Err(Ending::ServerGone("no server connection attached".into()));
        };
        if let Some(id) = conn.statements.lookup(&statement.key) {
            return Ok(Ok(id));
        }
        let mut payload = BytesMut::with_capacity(1 + statement.sql.len());
        payload.put_u8(COM_STMT_PREPARE);
        payload.put_slice(statement.sql.as_bytes());
        self.send_to_server(&payload).await?;
        let (effects, out) = self
            .swallow(Expect::Prepare { client_id: 0 }, client_caps)
            .await?;
        if effects.error.is_some() {
            let error = ErrPacket::decode(out.get(4..).unwrap_or_default()).unwrap_or_else(|_| {
                ErrPacket::new(errors::UNKNOWN_ERROR, "re-preparing the statement failed")
            });
            return Ok(Err(error));
        }
        let Some(prepared) = effects.prepared else {
            return Err(Ending::ServerGone(
                "server did not prepare the statement".into(),
            ));
        };
        self.remember_server_statement(Arc::clone(&statement.key), prepared.server_id)
            .await?;
        Ok(Ok(prepared.server_id))
    }

    /// Reads a response churnstile asked for itself; the client sees none of it.
    async fn swallow(
        &mut self,
        expect: Expect,
        client_caps: u32,
    ) -> Result<(Effects, BytesMut), Ending> {
        let Some(conn) = self.conn() else {
            return Err(Ending::ServerGone("no server connection attached".into()));
        };
        let mut relay = ResponseRelay::new(expect, conn.capabilities, client_caps, conn.status, 1);
        let mut out = BytesMut::new();
        loop {
            let (header, packet) = conn
                .io
                .read_packet()
                .await
                .map_err(|e| Ending::ServerGone(e.to_string()))?;
            out.clear();
            match relay.feed(header, &packet, &mut out) {
                Ok(Step::Done) => {
                    self.in_flight = false;
                    return Ok((relay.effects, out));
                }
                Ok(Step::More) => {}
                Ok(Step::LocalInfile) | Err(_) => {
                    return Err(Ending::ServerGone(
                        "unexpected reply to churnstile's own command".into(),
                    ));
                }
            }
        }
    }

    async fn execute(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let Some(id) = statement_id(payload) else {
            return self.malformed(reply, COM_STMT_EXECUTE).await;
        };
        let Some(statement) = self.statements.get(id).cloned() else {
            return self
                .unknown_statement(reply, id, "mysqld_stmt_execute")
                .await;
        };
        if !self.attached(reply).await? {
            return Ok(());
        }
        let server_id = match self.server_statement(&statement).await? {
            Ok(server_id) => server_id,
            Err(error) => return self.send_err_packet(reply, &error).await,
        };
        let (packet, bound_types) = rewrite_execute(payload, server_id, &statement);
        if let Some(types) = bound_types
            && let Some(stored) = self.statements.get_mut(id)
        {
            stored.param_types = Some(types);
        }
        self.send_to_server(&packet).await?;
        let effects = self.relay(Expect::Execute, reply).await?;
        self.holds.long_data.remove(&id);
        if effects.cursor_opened {
            self.holds.cursors.insert(id);
        }
        Ok(())
    }

    async fn unknown_statement(
        &mut self,
        reply: u8,
        id: u32,
        function: &str,
    ) -> Result<(), Ending> {
        self.send_error(
            reply,
            errors::UNKNOWN_STMT_HANDLER,
            format!("Unknown prepared statement handler ({id}) given to {function}"),
        )
        .await
    }

    /// COM_STMT_SEND_LONG_DATA has no reply; problems surface at execute.
    async fn send_long_data(&mut self, payload: &[u8]) -> Result<(), Ending> {
        let Some(id) = statement_id(payload) else {
            return Ok(());
        };
        let Some(statement) = self.statements.get(id).cloned() else {
            return Ok(());
        };
        if self.attach().await?.is_err() {
            return Ok(());
        }
        let Ok(server_id) = self.server_statement(&statement).await? else {
            return Ok(());
        };
        let mut packet = BytesMut::from(payload);
        packet[1..5].copy_from_slice(&server_id.to_le_bytes());
        self.send_to_server(&packet).await?;
        // No response comes.
        self.in_flight = false;
        self.holds.long_data.insert(id);
        Ok(())
    }

    /// COM_STMT_CLOSE has no reply. The server's statement stays for other
    /// clients; a cursor or long data left on it is reset.
    async fn close_statement(&mut self, payload: &[u8]) -> Result<(), Ending> {
        let Some(id) = statement_id(payload) else {
            return Ok(());
        };
        let Some(statement) = self.statements.remove(id) else {
            return Ok(());
        };
        let had_state = self.holds.cursors.remove(&id) | self.holds.long_data.remove(&id);
        if had_state {
            self.reset_on_server(&statement).await?;
        }
        Ok(())
    }

    /// COM_STMT_RESET for the server's copy of `statement`, if it has one.
    async fn reset_on_server(&mut self, statement: &ClientStatement) -> Result<(), Ending> {
        let client_caps = self.client.capabilities;
        let Some(conn) = self.conn() else {
            return Ok(());
        };
        let Some(server_id) = conn.statements.lookup(&statement.key) else {
            return Ok(());
        };
        let mut packet = [0u8; 5];
        packet[0] = COM_STMT_RESET;
        packet[1..].copy_from_slice(&server_id.to_le_bytes());
        self.send_to_server(&packet).await?;
        self.swallow(Expect::Single, client_caps).await.map(drop)
    }

    async fn reset_statement(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let Some(id) = statement_id(payload) else {
            return self.malformed(reply, COM_STMT_RESET).await;
        };
        let Some(statement) = self.statements.get(id).cloned() else {
            return self.unknown_statement(reply, id, "mysqld_stmt_reset").await;
        };
        let server_id = self
            .conn()
            .and_then(|conn| conn.statements.lookup(&statement.key));
        self.holds.cursors.remove(&id);
        self.holds.long_data.remove(&id);
        match server_id {
            Some(server_id) => {
                let mut packet = BytesMut::from(payload);
                packet[1..5].copy_from_slice(&server_id.to_le_bytes());
                self.send_to_server(&packet).await?;
                self.relay(Expect::Single, reply).await.map(drop)
            }
            // Nothing of it is on a server connection: nothing to reset.
            None => self.send_ok(reply).await,
        }
    }

    async fn fetch(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let Some(id) = statement_id(payload) else {
            return self.malformed(reply, COM_STMT_FETCH).await;
        };
        let server_id = match self.statements.get(id).cloned() {
            Some(statement) if self.holds.cursors.contains(&id) => self
                .conn()
                .and_then(|conn| conn.statements.lookup(&statement.key)),
            _ => None,
        };
        let Some(server_id) = server_id else {
            return self
                .send_error(
                    reply,
                    NO_OPEN_CURSOR,
                    format!("The statement ({id}) has no open cursor."),
                )
                .await;
        };
        let mut packet = BytesMut::from(payload);
        packet[1..5].copy_from_slice(&server_id.to_le_bytes());
        self.send_to_server(&packet).await?;
        let effects = self.relay(Expect::Fetch, reply).await?;
        let exhausted = effects
            .status
            .is_some_and(|s| s & status::LAST_ROW_SENT != 0);
        if exhausted || effects.error.is_some() {
            self.holds.cursors.remove(&id);
        }
        Ok(())
    }

    /// The client's session starts over: churnstile's view of it and, if
    /// attached, the server connection.
    async fn reset_connection(&mut self, reply: u8) -> Result<(), Ending> {
        self.forget_session_state();
        let schema = self.state.schema.clone();
        if let Some(conn) = self.conn() {
            conn.reset()
                .await
                .map_err(|e| Ending::ServerGone(e.to_string()))?;
            conn.state.schema = schema;
        }
        self.send_ok(reply).await
    }

    /// Forgets everything the client set, keeping its current schema.
    fn forget_session_state(&mut self) {
        let schema = self.state.schema.clone();
        self.state = SessionState {
            schema,
            ..self.initial.clone()
        };
        self.statements.clear();
        self.pins.clear();
        self.holds = Holds::default();
    }

    async fn set_option(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let option = payload.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let wanted = match option {
            Some(MULTI_STATEMENTS_ON) => true,
            Some(MULTI_STATEMENTS_OFF) => false,
            _ => return self.malformed(reply, COM_SET_OPTION).await,
        };
        // An attached server connection takes the setting now: states move
        // only on attach, and the next query may be the multi-statement one
        // this option is for (mysqli's multi_query sends exactly that).
        let refused = match self.conn() {
            Some(conn) if conn.state.multi_statements != wanted => {
                let moves = Transition {
                    multi_statements: Some(wanted),
                    ..Transition::default()
                };
                match conn.apply(&moves).await {
                    Ok(Ok(())) => {
                        conn.state.multi_statements = wanted;
                        None
                    }
                    Ok(Err(error)) => Some(error),
                    Err(error) => return Err(Ending::ServerGone(error.to_string())),
                }
            }
            _ => None,
        };
        if let Some(error) = refused {
            return self.send_err_packet(reply, &error).await;
        }
        self.state.multi_statements = wanted;
        let status = self.status();
        let mut out = BytesMut::new();
        if self.client.capabilities & capability::DEPRECATE_EOF != 0 {
            OkPacket {
                header: super::wire::response::EOF_HEADER,
                status,
                ..OkPacket::default()
            }
            .encode(&mut out, self.client.capabilities);
        } else {
            Eof {
                warnings: 0,
                status,
            }
            .encode(&mut out);
        }
        self.io
            .send(reply, &out)
            .await
            .map_err(|_| Ending::ClientGone)?;
        Ok(())
    }

    async fn kill(&mut self, reply: u8, kill: Kill) -> Result<(), Ending> {
        match self.service.clients.kill(&self.client.user, kill).await {
            Ok(()) => self.send_ok(reply).await,
            Err(error) => self.send_err_packet(reply, &error).await,
        }
    }

    /// COM_CHANGE_USER: a new login on the same connection. The old
    /// session's server connection is cleaned and returned first.
    async fn change_user(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
        let Some(request) = ChangeUser::decode(payload, self.client.capabilities) else {
            return self.malformed(reply, COM_CHANGE_USER).await;
        };
        self.return_server_after_reset().await;
        let config = self.service.config.load_full();
        let user_config = config.users.get(&request.user);
        let secret = user_config.and_then(|user| user.secret.as_ref());
        let plugin = match (secret, request.plugin.as_deref()) {
            (Some(ClientSecret::MysqlNative(_)), _) => NATIVE_PASSWORD,
            (_, Some(CACHING_SHA2_PASSWORD)) => CACHING_SHA2_PASSWORD,
            (_, Some(NATIVE_PASSWORD)) => NATIVE_PASSWORD,
            _ => config.general.mysql_auth_plugin.name(),
        };
        let nonce = auth::new_scramble();
        let mut switch = BytesMut::new();
        AuthSwitchRequest {
            plugin: plugin.to_owned(),
            data: nonce.to_vec(),
        }
        .encode(&mut switch);
        self.io
            .send(reply, &switch)
            .await
            .map_err(|_| Ending::ClientGone)?;
        let (header, response) = self
            .io
            .read_packet()
            .await
            .map_err(|_| Ending::ClientGone)?;
        let seq = header.seq.wrapping_add(1);
        if user_config.is_none() {
            let denied = ErrPacket::new(
                errors::ACCESS_DENIED,
                login::access_denied(&request.user, &self.peer.host, !response.is_empty()),
            );
            self.send_err_packet(seq, &denied).await?;
            return Err(Ending::ChangeUserFailed);
        }
        let attempt = Attempt {
            user: &request.user,
            secret,
            plugin,
            response: &response,
            nonce: &nonce,
            seq,
            peer_host: &self.peer.host,
            secure_transport: self.peer.secure_transport,
        };
        let seq = match login::authenticate(&mut self.io, &self.service, &config, attempt).await {
            Ok(seq) => seq,
            Err((error, seq)) => {
                if let login::LoginError::Refused(packet) = error {
                    self.send_err_packet(seq, &packet).await?;
                }
                return Err(Ending::ChangeUserFailed);
            }
        };
        let database =
            match login::choose_database(&config, request.database.as_deref(), &request.user) {
                Ok(database) => database,
                Err(login::LoginError::Refused(packet)) => {
                    self.send_err_packet(seq, &packet).await?;
                    return Err(Ending::ClientGone);
                }
                Err(_) => return Err(Ending::ClientGone),
            };
        let Some(db) = config.databases.get(&database) else {
            return Err(Ending::ClientGone);
        };
        self.settings = db.pool.clone();
        self.pool_key = (database.clone(), request.user.clone(), self.pool_key.2);
        self.initial = SessionState::baseline(Some(db.dbname.clone()));
        self.initial.multi_statements =
            self.client.capabilities & capability::MULTI_STATEMENTS != 0;
        if let Some(charset) = request.charset {
            self.client.charset = charset;
        }
        self.charset_known = self.client.charset == 45;
        self.client.user = request.user.clone();
        self.client.database = database;
        self.state = self.initial.clone();
        self.forget_session_state();
        // A new login: a new entry in the admin console's registry, whose
        // kill switch the session watches from now on.
        self.live = self.service.registry.logged_in(
            crate::metrics::PROTOCOL_MYSQL,
            &self.client.database,
            &self.client.user,
            &self.client.program_name,
            &self.io.stream,
        );
        self.handle.killed = self.live.kill_switch();
        self.service
            .clients
            .relogged(self.id, &request.user, self.handle.killed.clone());
        self.send_ok(seq).await
    }
}

/// The statement id after the command byte.
fn statement_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// COM_STMT_EXECUTE with the server's statement id and the parameter types
/// always bound (the server connection may never have seen them). Returns
/// the packet and the types the client bound in it, if it did.
fn rewrite_execute(
    payload: &[u8],
    server_id: u32,
    statement: &ClientStatement,
) -> (BytesMut, Option<Bytes>) {
    let mut packet = BytesMut::from(payload);
    packet[1..5].copy_from_slice(&server_id.to_le_bytes());
    let params = usize::from(statement.params);
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
        Some(0) => match &statement.param_types {
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

/// A decoded COM_CHANGE_USER.
struct ChangeUser {
    user: String,
    database: Option<String>,
    charset: Option<u8>,
    plugin: Option<String>,
}

impl ChangeUser {
    fn decode(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
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
