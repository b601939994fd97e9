//! PAUSE and RESUME for one pool: while paused, clients that reach the head
//! of the line wait (in line, so first come first served still holds when
//! the pool resumes), idle server connections are closed and connections
//! given back are closed too, so the pool drains to nothing.

use tokio::sync::watch;

use std::sync::Arc;

use super::{CloseReason, Connector, Pool, PoolLimits, PoolStatsSnapshot};

/// Whether a pool hands out connections; starts open.
#[derive(Debug)]
pub(super) struct PauseGate {
    paused: watch::Sender<bool>,
}

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate {
            paused: watch::Sender::new(false),
        }
    }
}

impl PauseGate {
    pub(super) fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    fn set(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Returns at once when the pool is not paused, else when it resumes.
    pub(super) async fn passed(&self) {
        let mut receiver = self.paused.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = receiver.wait_for(|paused| !paused).await;
    }
}

impl<C: Connector> Pool<C> {
    /// Stops handing out connections and closes the idle ones; connections
    /// in use are closed when their clients give them back, and clients
    /// keeping one between transactions are asked for it.
    pub fn pause(&self) {
        self.shared.pause.set(true);
        self.shared.demand.raise();
        let drained: Vec<_> = self.shared.idle().drain(..).collect();
        for slot in drained {
            self.shared.close(slot, CloseReason::Paused);
        }
    }

    /// Lets waiting clients proceed, in the order they came.
    pub fn resume(&self) {
        self.shared.pause.set(false);
    }

    pub fn is_paused(&self) -> bool {
        self.shared.pause.is_paused()
    }
}

/// What the admin console, the metrics and RELOAD do to a pool and read
/// from it, whichever protocol the pool serves.
pub trait PoolControl: Send + Sync {
    fn pause(&self);
    fn resume(&self);
    fn close_idle(&self);
    fn is_paused(&self) -> bool;
    fn stats(&self) -> PoolStatsSnapshot;
    fn limits(&self) -> Arc<PoolLimits>;
    fn set_limits(&self, limits: PoolLimits);
}

impl<C: Connector> PoolControl for Pool<C> {
    fn pause(&self) {
        Pool::pause(self);
    }

    fn resume(&self) {
        Pool::resume(self);
    }

    fn close_idle(&self) {
        Pool::close_idle(self);
    }

    fn is_paused(&self) -> bool {
        Pool::is_paused(self)
    }

    fn stats(&self) -> PoolStatsSnapshot {
        Pool::stats(self)
    }

    fn limits(&self) -> Arc<PoolLimits> {
        Pool::limits(self)
    }

    fn set_limits(&self, limits: PoolLimits) {
        Pool::set_limits(self, limits);
    }
}
