//! Relaying the response to the command just sent to the server, through
//! the sans-IO `ResponseRelay`: a LOAD DATA LOCAL file goes from the client
//! to the server on the way, a client that closes mid-query gets its query
//! killed, and what the response told (status, variables, schema,
//! LAST_INSERT_ID, state that cannot move) becomes the session's.

use super::{Ending, Session};
use crate::mysql::backend::ServerConn;
use crate::mysql::packet_stream::PacketStream;
use crate::mysql::relay::{Effects, Expect, ResponseRelay, Step};
use crate::mysql::sql::{Kill, PinReason};
use crate::mysql::state::{self, COLLATION_VARIABLE, SessionState};
use crate::mysql::wire::flags::{capability, status};

impl Session {
    /// Relays the response to the command just sent to the server,
    /// including a LOAD DATA LOCAL file from the client; returns what the
    /// response told.
    pub(super) async fn relay(
        &mut self,
        expect: Expect,
        client_seq: u8,
    ) -> Result<Effects, Ending> {
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
            self.service
                .pin_counters
                .pinned(PinReason::ServerState.label());
        }
        if flags & status::AUTOCOMMIT == 0 && flags & status::IN_TRANS == 0 {
            if pooling && self.pins.insert(PinReason::Autocommit) {
                self.service
                    .pin_counters
                    .pinned(PinReason::Autocommit.label());
            }
        } else if flags & status::AUTOCOMMIT != 0 {
            self.pins.remove(&PinReason::Autocommit);
        }
        Ok(effects)
    }

    /// Records the values `names` have on the attached server connection
    /// as the client's and the connection's, where the server's report is
    /// not what a statement left behind.
    pub(super) async fn reread_variables(&mut self, names: &[&str]) -> Result<(), Ending> {
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
