//! What the session does with each command a client sends: dispatched by
//! command byte, forwarded to the attached server connection (attaching
//! one first), or answered by churnstile itself (COM_PING while idle,
//! COM_SET_OPTION, KILL, COM_RESET_CONNECTION). Prepared statements have
//! `statements.rs`, COM_CHANGE_USER `change_user.rs`.

use bytes::{Bytes, BytesMut};

use super::{Ending, Holds, Session};
use crate::config::PinPolicy;
use crate::mysql::relay::{Effects, Expect};
use crate::mysql::sql::{self, Kill};
use crate::mysql::state::{SessionState, Transition};
use crate::mysql::wire::command::*;
use crate::mysql::wire::errors;
use crate::mysql::wire::flags::capability;
use crate::mysql::wire::packet::write_packet;
use crate::mysql::wire::response::{EOF_HEADER, Eof, OkPacket};

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
            COM_PING if self.server.is_none() || self.keeps_idle() => self.send_ok(reply).await,
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

    pub(super) async fn malformed(&mut self, reply: u8, command: u8) -> Result<(), Ending> {
        self.send_error(
            reply,
            errors::UNKNOWN_ERROR,
            format!("malformed {} packet", name(command)),
        )
        .await
    }

    /// Attaches a server connection, or tells the client why none came.
    /// `Ok(false)`: the client got an error and the command is over.
    pub(super) async fn attached(&mut self, reply: u8) -> Result<bool, Ending> {
        match self.attach().await? {
            Ok(()) => Ok(true),
            Err(packet) => {
                self.send_err_packet(reply, &packet).await?;
                Ok(false)
            }
        }
    }

    /// Sends the command as it is and relays the response.
    pub(super) async fn forward(
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

    pub(super) async fn send_to_server(&mut self, payload: &[u8]) -> Result<(), Ending> {
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
                    self.service.pin_counters.pinned(reason.label());
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
    pub(super) fn forget_session_state(&mut self) {
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
                header: EOF_HEADER,
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
}

/// The statement id after the command byte.
pub(super) fn statement_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
