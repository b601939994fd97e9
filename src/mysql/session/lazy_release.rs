//! MySQL's part of lazy release between transactions under transaction
//! pooling (the policy itself is the pool's, `pool::Lease`): waiting for
//! the client's next command while keeping the connection, where its KILLs
//! go, and what the registry shows. A connection is kept only when clean
//! (no command in flight, no transaction open, nothing pinned or held; see
//! `release_if_done`).

use super::{Ending, Session, Stops, sleep_until_or_forever};
use crate::pool::{CloseReason, KeepOrGiveBack, Lease};

impl Session {
    /// Keeps the clean, idle server connection or gives it back now, as
    /// the pool's lease decides.
    pub(super) async fn keep_or_give_back(&mut self) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        if server.keep_or_give_back() == KeepOrGiveBack::GiveBack {
            self.detach().await.release();
            return;
        }
        let thread_id = server.conn().thread_id;
        self.live
            .idle_keeping(i32::try_from(thread_id).unwrap_or(i32::MAX));
        // Nothing runs there for a KILL QUERY to stop: none is sent (it
        // would cost an upstream connection) until the client's next command.
        *self.handle.serving.lock().await = None;
    }

    /// True while the client keeps its connection idle between transactions.
    pub(super) fn keeps_idle(&self) -> bool {
        self.server.as_ref().is_some_and(Lease::is_kept)
    }

    /// The client sends a command that needs the connection it kept.
    pub(super) async fn reuse_kept(&mut self) {
        if let Some(server) = self.server.as_mut() {
            server.reuse_kept();
            self.mark_serving().await;
        }
    }

    /// While the client keeps its connection and has sent nothing: waits
    /// for the client's next bytes, giving the connection back meanwhile
    /// if the pool wants it or its kept deadline passes, and closing it if
    /// the server sends anything (an error before it closes, or its end).
    /// Returns once the client has sent something or the connection is
    /// gone; the session's own endings (shutdown, kill, idle timeout) end
    /// the wait with that ending.
    pub(super) async fn wait_keeping(&mut self, stops: &Stops<'_>) -> Result<(), Ending> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let Some(wanted_back) = server.wanted_back() else {
            return Ok(());
        };
        let server_io = &mut server.conn().io;
        tokio::select! {
            () = stops.shutdown.cancelled() => Err(Ending::Shutdown),
            () = stops.killed.cancelled() => Err(Ending::Killed),
            () = sleep_until_or_forever(stops.idle_deadline) => {
                Err(Ending::IdleTimeout(stops.idle_limit.unwrap_or_default()))
            }
            () = wanted_back => {
                self.give_back_kept().await;
                Ok(())
            }
            _ = server_io.fill() => {
                self.drop_kept().await;
                Ok(())
            }
            read = self.io.fill() => read.map_err(|_| Ending::ClientGone),
        }
    }

    /// Gives the kept connection back to the pool, once kills in flight
    /// for the client have been delivered: it may be another client's next.
    async fn give_back_kept(&mut self) {
        self.detach().await.release();
    }

    /// The server sent something while the client kept its connection
    /// idle: it is closed, as an idle one in the pool found unhealthy
    /// would be, and the client's next command gets another.
    async fn drop_kept(&mut self) {
        self.detach().await.discard(CloseReason::Error);
    }
}
