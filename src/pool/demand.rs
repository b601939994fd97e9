//! Demand for lent connections. A client may keep its server connection
//! between transactions (lazy release) for as long as nobody else needs
//! it; the pool tells such holders when it wants connections back: a client
//! has to wait in line for one, or the pool shrinks, pauses or closes.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::{Connector, Pool};

/// Who is waiting in line for a permit, and the signal that wakes holders.
#[derive(Debug, Default)]
pub(super) struct Demand {
    /// Clients (and shrinks) waiting in line for a permit.
    waiting: AtomicUsize,
    raised: Notify,
}

/// One place in line, counted until dropped (served, timed out or abandoned).
pub(super) struct InLine<'a>(&'a Demand);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Demand {
    /// Counts a client waiting in line and wakes one holder: one waiter
    /// needs one connection back, not all of them.
    pub(super) fn wait_in_line(&self) -> InLine<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.raised.notify_one();
        InLine(self)
    }

    /// Wakes every holder, for a pool that pauses, shrinks or closes.
    pub(super) fn raise(&self) {
        self.raised.notify_waiters();
    }

    pub(super) fn anyone_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

impl<C: Connector> Pool<C> {
    /// True when a client keeping its connection between transactions must
    /// give it back now: someone waits in line for a permit (and the pool
    /// has none left, or it would have been served), or the pool is
    /// shrinking, paused, winding down or closing.
    pub fn wants_connections_back(&self) -> bool {
        let shared = &self.shared;
        shared.demand.anyone_waiting()
            || shared.pause.is_paused()
            || shared.is_winding_down()
            || shared.permits.is_closed()
    }

    /// Completes once [`Pool::wants_connections_back`] is true.
    pub async fn connection_wanted_back(&self) {
        loop {
            let mut raised = pin!(self.shared.demand.raised.notified());
            // Registered before looking, so a signal in between is not lost.
            raised.as_mut().enable();
            if self.wants_connections_back() {
                return;
            }
            raised.await;
        }
    }
}
