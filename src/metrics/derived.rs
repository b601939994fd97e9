//! Metrics copied, at scrape time, from what the pools, the client registry
//! and the pin counters already count: exact, and free between scrapes.
//! Per-pool series carry `database`, `user` and `protocol` labels.

use std::collections::HashMap;

use super::names::*;
use super::{MetricsSources, PROTOCOL_MYSQL, pool_labels, protocol_pool_labels};
use crate::pool::CloseReason;
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
        let labels = pool_labels(database, user);
        let with = |key: &'static str, value: &'static str| {
            let [database, user, protocol] = labels.clone();
            [database, user, protocol, (key, value.to_owned())]
        };
        metrics::counter!(CLIENT_LOGINS, &labels).absolute(served);
        metrics::counter!(UPSTREAM_OPENED, &with("result", "ok")).absolute(stats.opened);
        metrics::counter!(UPSTREAM_OPENED, &with("result", "error"))
            .absolute(stats.connect_failures);
        for reason in CloseReason::ALL {
            metrics::counter!(UPSTREAM_CLOSED, &with("reason", reason.as_str()))
                .absolute(stats.closed_for(reason));
        }
        metrics::counter!(POOL_CHECKOUTS, &labels).absolute(stats.checkouts);
        metrics::counter!(POOL_WAIT_TIMEOUTS, &labels).absolute(stats.wait_timeouts);
        metrics::gauge!(POOL_MAX_WAIT_SECONDS, &labels).set(stats.longest_wait.as_secs_f64());
        metrics::gauge!(POOL_SIZE, &labels).set(pool.limits().max_size as f64);
        metrics::gauge!(POOL_PAUSED, &labels).set(if pool.is_paused() { 1.0 } else { 0.0 });
        metrics::gauge!(POOL_REUSE_RATIO, &labels).set(ratio(served, stats.opened));
        let traffic = stats.traffic;
        metrics::counter!(TRANSACTIONS, &labels).absolute(traffic.transactions);
        metrics::counter!(QUERIES, &labels).absolute(traffic.queries);
        metrics::counter!(CLIENT_BYTES_RECEIVED, &labels).absolute(traffic.bytes_received);
        metrics::counter!(CLIENT_BYTES_SENT, &labels).absolute(traffic.bytes_sent);
        let idle = stats.open.saturating_sub(stats.in_use);
        for (state, count) in [
            ("active", stats.in_use),
            ("idle", idle),
            ("login", stats.opening),
        ] {
            metrics::gauge!(UPSTREAM_CONNECTIONS, &with("state", state)).set(count as f64);
        }
        let [active, waiting, idle] = states
            .get(&(database.as_str(), user.as_str()))
            .copied()
            .unwrap_or_default();
        for (state, count) in [("active", active), ("waiting", waiting), ("idle", idle)] {
            metrics::gauge!(POOL_CLIENTS, &with("state", state)).set(count as f64);
        }
    }
    let (mysql_served, mysql_opened) = record_mysql(sources, &states);
    metrics::gauge!(REUSE_RATIO).set(ratio(all_served + mysql_served, all_opened + mysql_opened));

    for reason in PinReason::ALL {
        let count = service.pin_counters.count(reason);
        metrics::counter!(CLIENT_PINS, "reason" => reason.as_str()).absolute(count);
    }
    metrics::gauge!(CLIENTS_PINNED).set(service.pin_counters.pinned_now() as f64);
}

/// MySQL pools, summed over the FOUND_ROWS variants of each (database,
/// user), with their clients by state (`states`: active, waiting, idle);
/// returns (clients served, upstream connections opened).
fn record_mysql(
    sources: &MetricsSources,
    states: &HashMap<(&str, &str), [usize; 3]>,
) -> (u64, u64) {
    let mut sizes: HashMap<(&str, &str), usize> = HashMap::new();
    let mut paused: HashMap<(&str, &str), bool> = HashMap::new();
    for ((database, user, _), pool) in sources.mysql.pools() {
        let key = (database.as_str(), user.as_str());
        *sizes.entry(key).or_default() += pool.limits().max_size;
        *paused.entry(key).or_insert(true) &= pool.is_paused();
    }
    let (mut all_served, mut all_opened) = (0, 0);
    for ((database, user), stats) in sources.mysql.pool_stats() {
        let (database, user) = (database.as_str(), user.as_str());
        let served = sources.mysql.logins(database, user);
        let opened = stats.opened;
        all_served += served;
        all_opened += opened;
        let labels = protocol_pool_labels(PROTOCOL_MYSQL, database, user);
        let with = |key: &'static str, value: &'static str| {
            let [database, user, protocol] = labels.clone();
            [database, user, protocol, (key, value.to_owned())]
        };
        metrics::counter!(CLIENT_LOGINS, &labels).absolute(served);
        metrics::counter!(UPSTREAM_OPENED, &with("result", "ok")).absolute(opened);
        metrics::counter!(UPSTREAM_OPENED, &with("result", "error"))
            .absolute(stats.connect_failures);
        for reason in CloseReason::ALL {
            metrics::counter!(UPSTREAM_CLOSED, &with("reason", reason.as_str()))
                .absolute(stats.closed_for(reason));
        }
        metrics::counter!(POOL_CHECKOUTS, &labels).absolute(stats.checkouts);
        metrics::counter!(POOL_WAIT_TIMEOUTS, &labels).absolute(stats.wait_timeouts);
        metrics::gauge!(POOL_MAX_WAIT_SECONDS, &labels).set(stats.longest_wait.as_secs_f64());
        metrics::gauge!(POOL_SIZE, &labels).set(sizes[&(database, user)] as f64);
        let is_paused = paused.get(&(database, user)).copied().unwrap_or(false);
        metrics::gauge!(POOL_PAUSED, &labels).set(if is_paused { 1.0 } else { 0.0 });
        metrics::gauge!(POOL_REUSE_RATIO, &labels).set(ratio(served, opened));
        for (state, count) in [
            ("active", stats.in_use),
            ("idle", stats.open.saturating_sub(stats.in_use)),
            ("login", stats.opening),
        ] {
            metrics::gauge!(UPSTREAM_CONNECTIONS, &with("state", state)).set(count as f64);
        }
        let [active, waiting, idle] = states.get(&(database, user)).copied().unwrap_or_default();
        for (state, count) in [("active", active), ("waiting", waiting), ("idle", idle)] {
            metrics::gauge!(POOL_CLIENTS, &with("state", state)).set(count as f64);
        }
    }
    (all_served, all_opened)
}
