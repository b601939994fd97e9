//! Counts of clients pinned to their server connection, by reason and right
//! now, for operators (and the metrics endpoint) to see which application
//! habits defeat transaction pooling. Each protocol names its own reasons
//! (its labels); the counting is the same for both.

use std::sync::atomic::{AtomicU64, Ordering};

/// Times a client became pinned, per reason label, and clients pinned now.
#[derive(Debug)]
pub struct PinCounters {
    counts: Box<[(&'static str, AtomicU64)]>,
    pinned_now: AtomicU64,
}

/// One client counted as pinned now, until dropped.
#[derive(Debug)]
pub struct PinnedClient<'a>(&'a PinCounters);

impl Drop for PinnedClient<'_> {
    fn drop(&mut self) {
        self.0.pinned_now.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PinCounters {
    /// Counters for every reason a protocol pins for, each shown from zero.
    pub fn new(labels: impl IntoIterator<Item = &'static str>) -> Self {
        PinCounters {
            counts: labels
                .into_iter()
                .map(|label| (label, AtomicU64::new(0)))
                .collect(),
            pinned_now: AtomicU64::new(0),
        }
    }

    /// A client became pinned for the reason labelled `label`.
    pub fn pinned(&self, label: &'static str) {
        if let Some((_, count)) = self.counts.iter().find(|(known, _)| *known == label) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Times clients became pinned, per reason label.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        (self.counts.iter()).map(|(label, count)| (*label, count.load(Ordering::Relaxed)))
    }

    /// Counts a client as pinned for as long as the result is kept.
    pub fn hold(&self) -> PinnedClient<'_> {
        self.pinned_now.fetch_add(1, Ordering::Relaxed);
        PinnedClient(self)
    }

    /// Clients pinned now.
    pub fn pinned_now(&self) -> u64 {
        self.pinned_now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_now_counts_held_clients_until_dropped() {
        let counters = PinCounters::new(["listen"]);
        counters.pinned("listen");
        let first = counters.hold();
        let second = counters.hold();
        assert_eq!(counters.pinned_now(), 2);
        drop(first);
        assert_eq!(counters.pinned_now(), 1);
        drop(second);
        assert_eq!(counters.pinned_now(), 0);
        assert_eq!(counters.counts().collect::<Vec<_>>(), [("listen", 1)]);
    }
}
