//! PostgreSQL's part of lazy release between transactions under transaction
//! and statement pooling (the policy itself is the pool's, `pool::Lease`):
//! when a connection is clean enough to keep (nothing in flight, no
//! transaction open, the client's session state learned from the server,
//! nothing pinned), where its cancels go, and what the registry shows.

use super::{Ending, Session, cancel_target};
use crate::pool::{CloseReason, KeepOrGiveBack};

impl Session<'_> {
    /// Once nothing is in flight and no transaction is open: learns what
    /// session state the client now has (when its statements may have
    /// changed it), then keeps the server connection or gives it back as
    /// the pool's lease decides. A pinned client keeps its connection
    /// regardless, outside lazy release.
    pub(super) async fn release_when_idle(&mut self) -> Result<(), Ending> {
        if !self.pooling() {
            return Ok(());
        }
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        if server.pooled.is_kept()
            || !server.queue.is_empty()
            || !server.conn().state.is_idle()
            || !self.client.scanner.at_boundary()
        {
            return Ok(());
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
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        if !pinned && server.pooled.keep_or_give_back() == KeepOrGiveBack::GiveBack {
            self.give_back_kept().await;
            return Ok(());
        }
        if probed {
            // It stays here, and so do its cancels: a late one finds the
            // server idle (PostgreSQL ignores it) or the client's own next
            // query, as on a direct connection.
            self.cancel.attach(Some(cancel_target(server.conn()))).await;
        }
        if !pinned {
            self.live.idle_keeping(server.conn().key.process_id);
        }
        Ok(())
    }

    /// The client sends a query again on the connection it kept.
    pub(super) fn reuse_kept(&mut self) {
        if let Some(server) = self.server.as_mut() {
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
