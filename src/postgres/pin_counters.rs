//! Counts of clients pinned to their server connection, per reason, for
//! operators (and the metrics endpoint) to see which application habits
//! defeat transaction pooling.

use std::sync::atomic::{AtomicU64, Ordering};

use super::sql::PinReason;

/// Times a client became pinned, per reason.
#[derive(Debug, Default)]
pub struct PinCounters {
    counts: [AtomicU64; PinReason::ALL.len()],
}

impl PinCounters {
    pub fn pinned(&self, reason: PinReason) {
        self.counts[index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, reason: PinReason) -> u64 {
        self.counts[index(reason)].load(Ordering::Relaxed)
    }
}

fn index(reason: PinReason) -> usize {
    PinReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}
