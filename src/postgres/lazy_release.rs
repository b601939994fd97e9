//! Between transactions under transaction and statement pooling: the
//! client gives its server connection back when the pool wants it, and
//! otherwise keeps it, idle, until the pool does (lazy release). Giving it
//! back and checking it out again at every transaction costs more than the
//! transaction itself when nobody else is waiting.
//!
//! A kept connection is clean exactly as a released one is: nothing in
//! flight, no transaction open, the client's session state learned from the
//! server, nothing pinned. The pool wants it back when a client waits in
//! line or the pool pauses, shrinks or closes; it also goes back, unasked,
//! when it outlives `server_lifetime` or has been idle `server_idle_timeout`,
//! as in the pool it would be closed.

use tokio::time::Instant;

use super::session::{Ending, Session, cancel_target};
use crate::pool::CloseReason;

impl Session<'_> {
    /// Once nothing is in flight and no transaction is open: learns what
    /// session state the client now has (when its statements may have
    /// changed it), then gives the server connection back if the pool wants
    /// it or it has outlived `server_lifetime`, and keeps it otherwise. A
    /// pinned client keeps its connection regardless. Returns when a
    /// connection it starts to keep must go back even unasked.
    pub(super) async fn release_when_idle(&mut self) -> Result<Option<Instant>, Ending> {
        if !self.pooling() {
            return Ok(None);
        }
        let Some(server) = self.server.as_mut() else {
            return Ok(None);
        };
        if server.kept_idle
            || !server.queue.is_empty()
            || !server.conn().state.is_idle()
            || !self.client.scanner.at_boundary()
        {
            return Ok(None);
        }
        let probed = self.client.needs_probe;
        if probed {
            // The client runs nothing now: a late cancel of its last query
            // must not stop churnstile's own.
            self.cancel.attach(None).await;
            self.probe().await?;
        }
        self.note_pinned();
        let pinned = !self.client.pins.is_empty();
        let wanted = self.pool.is_some_and(|pool| pool.wants_connections_back());
        let Some(server) = self.server.as_mut() else {
            return Ok(None);
        };
        if !pinned && (wanted || server.pooled.is_expired()) {
            self.give_back_kept().await;
            return Ok(None);
        }
        if probed {
            // It stays here, and so do its cancels: a late one finds the
            // server idle (PostgreSQL ignores it) or the client's own next
            // query, as on a direct connection.
            self.cancel.attach(Some(cancel_target(server.conn()))).await;
        }
        if pinned {
            return Ok(None);
        }
        server.kept_idle = true;
        let deadline = server.pooled.keep_idle();
        self.live.idle_keeping(server.conn().key.process_id);
        Ok(Some(Instant::from_std(deadline)))
    }

    /// The client sends a query again on the connection it kept.
    pub(super) fn reuse_kept(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.kept_idle = false;
            server.pooled.reuse_kept();
            self.live.active(server.conn().key.process_id);
        }
    }

    /// Gives the clean, idle server connection back to the pool, once
    /// cancels in flight for the client have been delivered: it may be
    /// another client's next.
    pub(super) async fn give_back_kept(&mut self) {
        self.cancel.attach(None).await;
        if let Some(server) = self.server.take() {
            server.pooled.release();
            self.live.idle();
        }
    }

    /// The server sent something (a FATAL before closing, EOF) while the
    /// client kept it idle: the connection is closed, as an idle one in the
    /// pool would be found unhealthy, and the client's next query gets
    /// another.
    pub(super) async fn drop_kept(&mut self) {
        self.cancel.attach(None).await;
        if let Some(server) = self.server.take() {
            server.pooled.discard(CloseReason::Error);
            self.live.idle();
        }
    }
}
