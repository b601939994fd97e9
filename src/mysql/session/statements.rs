//! The prepared-statement commands (COM_STMT_*). The client's statement
//! ids are churnstile's; each server connection prepares a statement the
//! first time a client runs it there, under the server's own id, and keeps
//! it for every client with the same text and schema. A cursor or long
//! data holds the connection until the statement is fetched, executed,
//! reset or closed.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::commands::statement_id;
use super::{Ending, Session};
use crate::mysql::prepared::{ClientStatement, statement_key};
use crate::mysql::relay::{Effects, Expect, ResponseRelay, Step};
use crate::mysql::wire::command::*;
use crate::mysql::wire::command_payload::rewrite_execute;
use crate::mysql::wire::errors::{self, ErrorCode};
use crate::mysql::wire::flags::status;
use crate::mysql::wire::response::ErrPacket;

/// ER_STMT_HAS_NO_OPEN_CURSOR.
const NO_OPEN_CURSOR: ErrorCode = ErrorCode {
    code: 1421,
    sql_state: "HY000",
};

impl Session {
    pub(super) async fn prepare(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
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

    pub(super) async fn execute(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
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
        let (packet, bound_types) = rewrite_execute(
            payload,
            server_id,
            statement.params,
            statement.param_types.as_ref(),
        );
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
    pub(super) async fn send_long_data(&mut self, payload: &[u8]) -> Result<(), Ending> {
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
    pub(super) async fn close_statement(&mut self, payload: &[u8]) -> Result<(), Ending> {
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

    pub(super) async fn reset_statement(
        &mut self,
        reply: u8,
        payload: &[u8],
    ) -> Result<(), Ending> {
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

    pub(super) async fn fetch(&mut self, reply: u8, payload: &[u8]) -> Result<(), Ending> {
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
}
