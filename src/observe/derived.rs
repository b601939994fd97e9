//! Metrics copied, at scrape time, from what the pools, the client registry
//! and the pin counters already count: exact, and free between scrapes.
//! Per-pool series carry `database`, `user` and `protocol` labels; a MySQL
//! (database, user)'s pools with and without FOUND_ROWS are one series.

use std::collections::{BTreeMap, HashMap};

use super::MetricsSources;
use crate::metrics::*;
use crate::pool::{CloseReason, PoolStatsSnapshot};
use crate::registry::ClientState;

fn ratio(served: u64, opened: u64) -> f64 {
    if opened == 0 {
        0.0
    } else {
        served as f64 / opened as f64
    }
}

/// One (protocol, database, user): its pools added up.
#[derive(Default)]
struct PoolTotals {
    stats: PoolStatsSnapshot,
    size: usize,
    paused: bool,
}

/// Puts the current counts into the recorder.
pub(super) fn record(sources: &MetricsSources) {
    let proxy = &sources.proxy;
    let connected = sources
        .max_clients
        .saturating_sub(sources.client_slots.available_permits());
    metrics::gauge!(CLIENTS_CONNECTED).set(connected as f64);
    metrics::counter!(ACCEPTS_FD_EXHAUSTED).absolute(fd_exhausted_accepts());

    let logins = proxy.clients.logins();
    let mut states: HashMap<(String, String), [usize; 3]> = HashMap::new();
    for client in proxy.clients.list() {
        let index = match client.state() {
            ClientState::Active => 0,
            ClientState::Waiting => 1,
            ClientState::Idle => 2,
        };
        states
            .entry((client.database.clone(), client.user.clone()))
            .or_default()[index] += 1;
    }

    let mut totals: BTreeMap<(&str, String, String), PoolTotals> = BTreeMap::new();
    for pool in proxy.pools() {
        let key = (
            pool.protocol,
            pool.database.to_owned(),
            pool.user.to_owned(),
        );
        let entry = totals.entry(key).or_insert_with(|| PoolTotals {
            paused: true,
            ..PoolTotals::default()
        });
        entry.stats = entry.stats.merged(&pool.control.stats());
        entry.size += pool.control.limits().max_size;
        entry.paused &= pool.control.is_paused();
    }
    let (mut all_served, mut all_opened) = (0, 0);
    for ((protocol, database, user), pool) in totals {
        let key = (database, user);
        let served = logins.get(&key).copied().unwrap_or(0);
        all_served += served;
        all_opened += pool.stats.opened;
        let clients = states.get(&key).copied().unwrap_or_default();
        record_pool(protocol, &key.0, &key.1, &pool, served, clients);
    }
    metrics::gauge!(REUSE_RATIO).set(ratio(all_served, all_opened));

    // PostgreSQL's series carry no protocol label, as they always have.
    let pins = &proxy.postgres.pin_counters;
    for (reason, count) in pins.counts() {
        metrics::counter!(CLIENT_PINS, "reason" => reason).absolute(count);
    }
    metrics::gauge!(CLIENTS_PINNED).set(pins.pinned_now() as f64);
    for (reason, count) in proxy.mysql.pin_counters.counts() {
        metrics::counter!(CLIENT_PINS, "reason" => reason, "protocol" => PROTOCOL_MYSQL)
            .absolute(count);
    }
}

/// One (database, user)'s series: `served` clients logged in since start,
/// `clients` connected now by state (active, waiting, idle).
fn record_pool(
    protocol: &str,
    database: &str,
    user: &str,
    pool: &PoolTotals,
    served: u64,
    clients: [usize; 3],
) {
    let stats = &pool.stats;
    let labels = protocol_pool_labels(protocol, database, user);
    let with = |key: &'static str, value: &'static str| {
        let [database, user, protocol] = labels.clone();
        [database, user, protocol, (key, value.to_owned())]
    };
    metrics::counter!(CLIENT_LOGINS, &labels).absolute(served);
    metrics::counter!(UPSTREAM_OPENED, &with("result", "ok")).absolute(stats.opened);
    metrics::counter!(UPSTREAM_OPENED, &with("result", "error")).absolute(stats.connect_failures);
    for reason in CloseReason::ALL {
        metrics::counter!(UPSTREAM_CLOSED, &with("reason", reason.as_str()))
            .absolute(stats.closed_for(reason));
    }
    metrics::counter!(POOL_CHECKOUTS, &labels).absolute(stats.checkouts);
    metrics::counter!(POOL_WAIT_TIMEOUTS, &labels).absolute(stats.wait_timeouts);
    metrics::gauge!(POOL_MAX_WAIT_SECONDS, &labels).set(stats.longest_wait.as_secs_f64());
    metrics::gauge!(POOL_SIZE, &labels).set(pool.size as f64);
    metrics::gauge!(POOL_PAUSED, &labels).set(if pool.paused { 1.0 } else { 0.0 });
    metrics::gauge!(POOL_REUSE_RATIO, &labels).set(ratio(served, stats.opened));
    let traffic = stats.traffic;
    metrics::counter!(TRANSACTIONS, &labels).absolute(traffic.transactions);
    metrics::counter!(QUERIES, &labels).absolute(traffic.queries);
    metrics::counter!(CLIENT_BYTES_RECEIVED, &labels).absolute(traffic.bytes_received);
    metrics::counter!(CLIENT_BYTES_SENT, &labels).absolute(traffic.bytes_sent);
    for (state, count) in [
        ("active", stats.in_use),
        ("idle", stats.open.saturating_sub(stats.in_use)),
        ("login", stats.opening),
    ] {
        metrics::gauge!(UPSTREAM_CONNECTIONS, &with("state", state)).set(count as f64);
    }
    let [active, waiting, idle] = clients;
    for (state, count) in [("active", active), ("waiting", waiting), ("idle", idle)] {
        metrics::gauge!(POOL_CLIENTS, &with("state", state)).set(count as f64);
    }
}
