//! Making a server connection fit for the next client after one leaves: end
//! what is in flight (cancel, CopyFail, Sync), ROLLBACK an open transaction,
//! run `server_reset_query`. If that cannot finish in time the connection is
//! closed instead, so no client ever inherits another's state. Under
//! transaction pooling a connection that needed the reset query is probed
//! again, so the next client moves its settings from what is really there.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::backend::{ServerConn, UpstreamError};
use super::probe::probe_server;
use super::session::Session;
use super::sides::Attached;
use super::state::{ReportedParams, Settings, apply_settings_query};
use crate::pool::CloseReason;

/// Bound on making one server connection clean again.
pub(super) const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a server connection was closed instead of reused.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResetError {
    #[error("the client left in the middle of a message")]
    MidMessage,
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("reset query {query:?} failed: {message} (SQLSTATE {code})")]
    ResetQueryFailed {
        query: String,
        code: String,
        message: String,
    },
    #[error("server still not idle after reset (transaction status '{0}')")]
    NotIdle(char),
}

/// Brings `conn` back to idle with no session state, within [`RESET_TIMEOUT`].
/// `mid_message` says the client stopped partway through a message, which
/// the server would wait for forever. After a reset query, `restore` (the
/// departed client's settings) is applied again and recorded in
/// `conn.applied`, to be moved away as a difference by the next client.
pub(super) async fn clean_for_reuse(
    conn: &mut ServerConn,
    mid_message: bool,
    reset_query: &str,
    restore: &Settings,
) -> Result<(), ResetError> {
    if mid_message {
        return Err(ResetError::MidMessage);
    }
    match tokio::time::timeout(RESET_TIMEOUT, clean(conn, reset_query, restore)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(RESET_TIMEOUT).into()),
    }
}

async fn clean(
    conn: &mut ServerConn,
    reset_query: &str,
    restore: &Settings,
) -> Result<(), ResetError> {
    finish_in_flight(conn).await?;
    if conn.state.tx_status != b'I' {
        conn.simple_query("ROLLBACK", RESET_TIMEOUT).await?;
    }
    if !reset_query.is_empty() {
        // The settings to restore travel in the same write as the reset:
        // no extra round trip, and a next client with the same startup
        // settings finds them in place.
        let restoring = apply_settings_query(
            &restore
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>(),
        );
        let mut out = BytesMut::new();
        for query in std::iter::once(reset_query).chain(restoring.as_deref()) {
            frontend::query(query, &mut out).map_err(UpstreamError::from)?;
            conn.state.note_sent(b'Q');
        }
        conn.send(&out).await?;
        conn.statements.clear();
        conn.applied.clear();
        if let Some(error) = conn.drain(RESET_TIMEOUT).await? {
            return Err(ResetError::ResetQueryFailed {
                query: reset_query.to_owned(),
                code: error.code,
                message: error.message,
            });
        }
        if restoring.is_some() {
            conn.applied = restore.clone();
        }
    }
    if conn.state.is_idle() {
        Ok(())
    } else {
        Err(ResetError::NotIdle(conn.state.tx_status as char))
    }
}

/// Ends whatever the departed client left running and reads to the last
/// ReadyForQuery owed.
async fn finish_in_flight(conn: &mut ServerConn) -> Result<(), ResetError> {
    if conn.state.pending_ready == 0 && !conn.state.unsynced && !conn.state.copy_in {
        return Ok(());
    }
    let mut out = BytesMut::new();
    if conn.state.copy_in {
        frontend::copy_fail("client disconnected during COPY", &mut out)
            .map_err(UpstreamError::from)?;
        conn.state.note_sent(b'f');
    } else if conn.state.pending_ready > 0 {
        // A long query (pg_sleep, a runaway report) must not hold the reset.
        conn.send_cancel().await.map_err(UpstreamError::from)?;
    }
    if conn.state.unsynced {
        frontend::sync(&mut out);
        conn.state.note_sent(b'S');
    }
    conn.send(&out).await?;
    conn.drain(RESET_TIMEOUT).await?;
    Ok(())
}

impl Session<'_> {
    /// Makes the server connection clean for the next client. In session
    /// mode (or when the client was pinned) that includes
    /// `server_reset_query`; otherwise the client's settings stay and are
    /// moved away as a difference by the next client.
    pub(super) async fn give_back(&mut self, mut server: Attached, mid_message: bool) {
        // Under pooling, what the client left behind is known unless it
        // left mid-way through statements that may have changed it.
        let full_reset = !self.pooling()
            || !self.client.pins.is_empty()
            || self.client.needs_probe
            || !server.queue.is_empty();
        let reset_query = if full_reset {
            self.settings.server_reset_query.as_str()
        } else {
            ""
        };
        // Session mode puts the departed client's startup settings back after
        // the reset, so a client reconnecting with the same ones needs no
        // round trip. Under pooling the reset is followed by a resync that
        // learns the connection's state from the server, so nothing is put
        // back: a custom setting restored there would be invisible to it.
        let restore = if self.pooling() {
            Settings::new()
        } else {
            self.client.settings.clone()
        };
        // The client has gone: letting go of its copy of the reported
        // parameters spares the reset's ParameterStatus messages a copy of
        // the map they change.
        self.client.seen_params = ReportedParams::default();
        let conn = server.pooled.conn();
        let cleaned = clean_for_reuse(conn, mid_message, reset_query, &restore).await;
        let resynced = match (&cleaned, full_reset && self.pooling()) {
            (Ok(()), true) => self.resync(conn).await,
            _ => Ok(()),
        };
        match cleaned.map_err(|e| e.to_string()).and(resynced) {
            Ok(()) => server.pooled.release(),
            Err(error) => {
                tracing::info!(%error, "closing server connection instead of reusing it");
                server.pooled.discard(CloseReason::ResetFailure);
            }
        }
    }

    /// After a reset under transaction pooling, learns what the server
    /// connection really holds now.
    async fn resync(&self, conn: &mut ServerConn) -> Result<(), String> {
        let probe = probe_server(conn, &BTreeSet::new()).await?;
        if probe.pins.is_empty() {
            conn.applied = probe.settings;
            Ok(())
        } else {
            Err("session state survived the reset query".into())
        }
    }
}
