//! Between transactions under transaction pooling: the client gives its
//! server connection back when the pool wants it, and otherwise keeps it,
//! idle, until the pool does (lazy release), as PostgreSQL clients do.
//! Giving it back and checking it out again after every statement costs
//! more than a short statement itself when nobody else is waiting.
//!
//! A kept connection is clean exactly as a released one is: no command in
//! flight, no transaction open, nothing pinned or held, the client's
//! session state on it. The pool wants it back when a client waits in line
//! or the pool pauses, shrinks or closes; it also goes back, unasked, when
//! it outlives `server_lifetime` or has been idle `server_idle_timeout`, as
//! in the pool it would be closed.

use std::pin::Pin;
use std::sync::Arc;

use tokio::time::{Instant, Sleep};

use super::{Ending, Session, Stops, sleep_until_or_forever};
use crate::pool::CloseReason;

impl Session {
    /// Keeps the clean, idle server connection unless the pool wants it
    /// back or it has outlived `server_lifetime`, in which case it goes
    /// back now. Returns when a kept connection must go back even unasked.
    pub(super) async fn keep_or_give_back(&mut self) -> Option<Instant> {
        let wanted =
            (self.service.pool(&self.pool_key)).is_none_or(|pool| pool.wants_connections_back());
        let server = self.server.as_mut()?;
        if wanted || server.is_expired() {
            self.detach().await.release();
            return None;
        }
        self.kept_idle = true;
        let deadline = server.keep_idle();
        let thread_id = server.conn().thread_id;
        self.live
            .idle_keeping(i32::try_from(thread_id).unwrap_or(i32::MAX));
        // Nothing runs there for a KILL QUERY to stop: none is sent (it
        // would cost an upstream connection) until the client's next command.
        *self.handle.serving.lock().await = None;
        Some(Instant::from_std(deadline))
    }

    /// The client sends a command that needs the connection it kept.
    pub(super) async fn reuse_kept(&mut self) {
        if let Some(server) = self.server.as_mut() {
            self.kept_idle = false;
            server.reuse_kept();
            self.mark_serving().await;
        }
    }

    /// While the client keeps its connection and has sent nothing: waits
    /// for the client's next bytes, giving the connection back meanwhile
    /// if the pool wants it or `kept_until` passes, and closing it if the
    /// server sends anything (an error before it closes, or its end).
    /// Returns once the client has sent something or the connection is
    /// gone; the session's own endings (shutdown, kill, idle timeout) end
    /// the wait with that ending.
    pub(super) async fn wait_keeping(
        &mut self,
        kept_until: Pin<&mut Sleep>,
        stops: &Stops<'_>,
    ) -> Result<(), Ending> {
        let service = Arc::clone(&self.service);
        let wanted_back = async {
            match service.pool(&self.pool_key) {
                Some(pool) => pool.connection_wanted_back().await,
                None => std::future::ready(()).await,
            }
        };
        let Some(server) = self.server.as_mut() else {
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
            () = kept_until => {
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
        self.kept_idle = false;
        self.detach().await.release();
    }

    /// The server sent something while the client kept its connection
    /// idle: it is closed, as an idle one in the pool found unhealthy
    /// would be, and the client's next command gets another.
    async fn drop_kept(&mut self) {
        self.kept_idle = false;
        self.detach().await.discard(CloseReason::Error);
    }
}
