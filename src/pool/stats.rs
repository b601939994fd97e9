//! Counters one pool keeps about itself: the raw material of churn-versus-reuse
//! metrics and of the tests that prove upstream connections stay bounded.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counters of one pool; cheap to update from any task.
#[derive(Debug, Default)]
pub struct PoolStats {
    opened: AtomicU64,
    connect_failures: AtomicU64,
    closed: AtomicU64,
    checkouts: AtomicU64,
    wait_timeouts: AtomicU64,
    open: AtomicUsize,
    waiting: AtomicUsize,
}

/// A point-in-time copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatsSnapshot {
    /// Server connections opened since start.
    pub opened: u64,
    /// Attempts to open a server connection that failed.
    pub connect_failures: u64,
    /// Server connections closed since start.
    pub closed: u64,
    /// Server connections handed to clients; each beyond `opened` is a reuse.
    pub checkouts: u64,
    /// Clients that gave up after `query_wait_timeout`.
    pub wait_timeouts: u64,
    /// Server connections open now, idle or in use.
    pub open: usize,
    /// Clients waiting for a server connection now.
    pub waiting: usize,
}

impl PoolStats {
    pub(super) fn connection_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connection_closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn checked_out(&self) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn wait_timed_out(&self) {
        self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn wait_started(&self) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn wait_ended(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn open_now(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> PoolStatsSnapshot {
        PoolStatsSnapshot {
            opened: self.opened.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            wait_timeouts: self.wait_timeouts.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}
