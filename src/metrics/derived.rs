//! Metrics copied, at scrape time, from what the pools, the client registry
//! and the pin counters already count: exact, and free between scrapes.

use std::collections::HashMap;

use super::MetricsSources;
use super::names::*;
use crate::postgres::sql::PinReason;
use crate::registry::ClientState;
use crate::server::accept::fd_exhausted_accepts;

fn ratio(served: u64, opened: u64) -> f64 {
    if opened == 0 {
        0.0
    } else {
        served as f64 / opened as f64
    }
}

/// Puts the current counts into the recorder.
pub(super) fn record(sources: &MetricsSources) {
    let service = &sources.service;
    let connected = sources
        .max_clients
        .saturating_sub(sources.client_slots.available_permits());
    metrics::gauge!(CLIENTS_CONNECTED).set(connected as f64);
    metrics::counter!(ACCEPTS_FD_EXHAUSTED).absolute(fd_exhausted_accepts());

    let logins = service.clients.logins();
    let mut states: HashMap<(&str, &str), [usize; 3]> = HashMap::new();
    let clients = service.clients.list();
    for client in &clients {
        let index = match client.state() {
            ClientState::Active => 0,
            ClientState::Waiting => 1,
            ClientState::Idle => 2,
        };
        states
            .entry((client.database.as_str(), client.user.as_str()))
            .or_default()[index] += 1;
    }

    let (mut all_served, mut all_opened) = (0, 0);
    for ((database, user), pool) in service.pools() {
        let stats = pool.stats();
        let served = logins
            .get(&(database.clone(), user.clone()))
            .copied()
            .unwrap_or(0);
        all_served += served;
        all_opened += stats.opened;
        let labels = [("database", database.clone()), ("user", user.clone())];
        let with_state = |state: &'static str| {
            [
                ("database", database.clone()),
                ("user", user.clone()),
                ("state", state.to_owned()),
            ]
        };
        metrics::counter!(CLIENT_LOGINS, &labels).absolute(served);
        metrics::counter!(SERVER_OPENED, &labels).absolute(stats.opened);
        metrics::counter!(SERVER_CLOSED, &labels).absolute(stats.closed);
        metrics::counter!(SERVER_CONNECT_FAILURES, &labels).absolute(stats.connect_failures);
        metrics::counter!(POOL_CHECKOUTS, &labels).absolute(stats.checkouts);
        metrics::counter!(POOL_WAIT_TIMEOUTS, &labels).absolute(stats.wait_timeouts);
        let waited = u64::try_from(stats.wait_time.as_micros()).unwrap_or(u64::MAX);
        metrics::counter!(POOL_WAIT_MICROSECONDS, &labels).absolute(waited);
        metrics::gauge!(POOL_MAX_WAIT_SECONDS, &labels).set(stats.longest_wait.as_secs_f64());
        metrics::gauge!(POOL_SIZE, &labels).set(pool.limits().max_size as f64);
        metrics::gauge!(POOL_PAUSED, &labels).set(if pool.is_paused() { 1.0 } else { 0.0 });
        metrics::gauge!(POOL_REUSE_RATIO, &labels).set(ratio(served, stats.opened));
        let idle = stats.open.saturating_sub(stats.in_use);
        for (state, count) in [
            ("active", stats.in_use),
            ("idle", idle),
            ("login", stats.opening),
        ] {
            metrics::gauge!(SERVER_CONNECTIONS, &with_state(state)).set(count as f64);
        }
        let [active, waiting, idle] = states
            .get(&(database.as_str(), user.as_str()))
            .copied()
            .unwrap_or_default();
        for (state, count) in [("active", active), ("waiting", waiting), ("idle", idle)] {
            metrics::gauge!(POOL_CLIENTS, &with_state(state)).set(count as f64);
        }
    }
    metrics::gauge!(REUSE_RATIO).set(ratio(all_served, all_opened));

    for reason in PinReason::ALL {
        let count = service.pin_counters.count(reason);
        metrics::counter!(CLIENT_PINS, "reason" => reason.as_str()).absolute(count);
    }
}
