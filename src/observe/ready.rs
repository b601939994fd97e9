//! Readiness, for `GET /readyz` (a Kubernetes readiness probe, a load
//! balancer's health check): churnstile is ready while it accepts clients
//! and every database is reachable or still within its retry budget. A
//! database is out of budget once [`FAILURE_BUDGET`] connects in a row
//! failed with none succeeding, the last within [`FAILURE_WINDOW`]; read
//! from the pools' counters, so no probe opens a connection upstream.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proxy::Proxy;

/// Failed connects in a row, without a success, that make a database
/// count as unreachable.
const FAILURE_BUDGET: u64 = 3;
/// How long after its last failed connect a database counts as
/// unreachable: when no client asks for it, no connect is tried, and the
/// probe must not keep churnstile out of service for ever.
const FAILURE_WINDOW: Duration = Duration::from_secs(30);

/// One database's connects as last seen by a probe.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Connects {
    opened: u64,
    failures: u64,
    /// Failures seen since the last probe that saw a connect succeed.
    failed_in_a_row: u64,
    /// When a probe last saw new failures.
    last_failure: Option<Instant>,
}

impl Connects {
    /// Takes the pools' totals now. When connects both failed and
    /// succeeded since the last look, the success counts: the database
    /// answers.
    fn observe(&mut self, opened: u64, failures: u64, now: Instant) {
        let (new_opens, new_failures) = (
            opened.saturating_sub(self.opened),
            failures.saturating_sub(self.failures),
        );
        (self.opened, self.failures) = (opened, failures);
        if new_opens > 0 {
            self.failed_in_a_row = 0;
        } else if new_failures > 0 {
            self.failed_in_a_row += new_failures;
            self.last_failure = Some(now);
        }
    }

    /// Why the database counts as unreachable at `now`, if it does.
    fn unreachable(&self, now: Instant) -> Option<String> {
        let last = self.last_failure?;
        let ago = now.duration_since(last);
        (self.failed_in_a_row >= FAILURE_BUDGET && ago < FAILURE_WINDOW).then(|| {
            format!(
                "{} connects failed in a row, none succeeded since; the last {}s ago",
                self.failed_in_a_row,
                ago.as_secs()
            )
        })
    }
}

/// What `/readyz` answers from; keeps what earlier probes saw.
pub(super) struct Readiness {
    proxy: Arc<Proxy>,
    seen: Mutex<BTreeMap<String, Connects>>,
}

impl Readiness {
    pub(super) fn new(proxy: Arc<Proxy>) -> Self {
        Readiness {
            proxy,
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// `Ok` when ready; otherwise one line saying why not.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.proxy.draining.is_cancelled() {
            return Err("draining: shutting down, new clients are refused".to_owned());
        }
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for pool in self.proxy.pools() {
            let stats = pool.control.stats();
            let total = totals.entry(pool.database).or_default();
            total.0 += stats.opened;
            total.1 += stats.connect_failures;
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut unreachable = None;
        for (database, (opened, failures)) in totals {
            let connects = seen.entry(database.clone()).or_default();
            connects.observe(opened, failures, now);
            if unreachable.is_none() {
                unreachable = (connects.unreachable(now))
                    .map(|why| format!("database {database:?} unreachable: {why}"));
            }
        }
        unreachable.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_use_up_the_budget_and_a_success_restores_it() {
        let start = Instant::now();
        let mut connects = Connects::default();
        connects.observe(1, 0, start);
        connects.observe(1, 2, start);
        assert_eq!(connects.unreachable(start), None, "within the budget");
        connects.observe(1, 3, start + Duration::from_secs(2));
        assert_eq!(
            connects
                .unreachable(start + Duration::from_secs(5))
                .as_deref(),
            Some("3 connects failed in a row, none succeeded since; the last 3s ago")
        );
        connects.observe(2, 4, start + Duration::from_secs(6));
        assert_eq!(connects.failed_in_a_row, 0, "a success counts");
        assert_eq!(connects.unreachable(start + Duration::from_secs(6)), None);
    }

    #[test]
    fn old_failures_stop_counting_after_the_window() {
        let start = Instant::now();
        let mut connects = Connects::default();
        connects.observe(0, 5, start);
        assert!(connects.unreachable(start).is_some());
        assert_eq!(connects.unreachable(start + FAILURE_WINDOW), None);
    }
}
