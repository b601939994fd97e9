//! Counts of clients pinned to their server connection, per reason and
//! right now, for operators (and the metrics endpoint) to see which
//! application habits defeat transaction pooling.

use std::sync::atomic::{AtomicU64, Ordering};

use super::sql::PinReason;

/// Times a client became pinned, per reason, and clients pinned now.
#[derive(Debug, Default)]
pub struct PinCounters {
    counts: [AtomicU64; PinReason::ALL.len()],
    pinned_now: AtomicU64,
}

/// One client counted as pinned now, until dropped.
#[derive(Debug)]
pub(super) struct PinnedClient<'a>(&'a PinCounters);

impl Drop for PinnedClient<'_> {
    fn drop(&mut self) {
        self.0.pinned_now.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PinCounters {
    pub(super) fn pinned(&self, reason: PinReason) {
        self.counts[index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, reason: PinReason) -> u64 {
        self.counts[index(reason)].load(Ordering::Relaxed)
    }

    /// Counts a client as pinned for as long as the result is kept.
    pub(super) fn hold(&self) -> PinnedClient<'_> {
        self.pinned_now.fetch_add(1, Ordering::Relaxed);
        PinnedClient(self)
    }

    /// Clients pinned now.
    pub(crate) fn pinned_now(&self) -> u64 {
        self.pinned_now.load(Ordering::Relaxed)
    }
}

fn index(reason: PinReason) -> usize {
    PinReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_now_counts_held_clients_until_dropped() {
        let counters = PinCounters::default();
        counters.pinned(PinReason::ALL[0]);
        let first = counters.hold();
        let second = counters.hold();
        assert_eq!(counters.pinned_now(), 2);
        drop(first);
        assert_eq!(counters.pinned_now(), 1);
        drop(second);
        assert_eq!(counters.pinned_now(), 0);
        assert_eq!(counters.count(PinReason::ALL[0]), 1);
    }
}
