//! The SHOW commands: tables built from the pools' counters (PostgreSQL
//! and MySQL pools alike), the registry of clients and server connections,
//! and the configuration in force. Column names follow PgBouncer's, so its
//! tooling reads them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::command::{HELP, Listing};
use super::settings::{config_settings, default_config, pool_mode_name};
use super::show_state;
use super::table::{Kind, Table, num, text};
use super::time::utc;
use crate::config::Config;
use crate::observe::{upstream_label, upstream_time_wait};
use crate::pool::PoolStatsSnapshot;
use crate::proxy::{CHANGEABLE, Proxy};
use crate::registry::ClientState;

/// The table for `listing`.
pub(super) async fn show(proxy: &Proxy, listing: Listing) -> Table {
    match listing {
        Listing::Pools => pools(proxy),
        Listing::Clients => clients(proxy),
        Listing::Servers => servers(proxy),
        Listing::Stats => stats(proxy),
        Listing::Churn => {
            let time_wait = upstream_time_wait(proxy.tcp_upstreams()).await;
            churn(proxy, &time_wait)
        }
        Listing::Databases => databases(proxy),
        Listing::Config => config(proxy),
        Listing::Version => version(),
        Listing::State => show_state::state(proxy),
        Listing::Lists => show_state::lists(proxy),
        Listing::Fds => show_state::fds(),
        Listing::DnsHosts => show_state::dns_hosts(),
        Listing::DnsZones => show_state::dns_zones(),
        Listing::Help => help(),
    }
}

/// One pool as the SHOW commands list it, of either protocol (a MySQL
/// pool's FOUND_ROWS variants counted together).
struct PoolView {
    database: String,
    user: String,
    stats: PoolStatsSnapshot,
    paused: bool,
    /// Clients that logged in to it since start.
    logins: u64,
    /// Clients connected to it now.
    clients: usize,
}

/// Every (database, user), its pools' counters added up (a MySQL one has
/// two pools), ordered by (database, user).
fn pool_views(proxy: &Proxy) -> Vec<PoolView> {
    let logins = proxy.clients.logins();
    let mut connected: HashMap<(String, String), usize> = HashMap::new();
    for client in proxy.clients.list() {
        *connected
            .entry((client.database.clone(), client.user.clone()))
            .or_default() += 1;
    }
    let mut views: BTreeMap<(String, String), PoolView> = BTreeMap::new();
    for pool in proxy.pools() {
        let key = (pool.database.to_owned(), pool.user.to_owned());
        let view = views.entry(key.clone()).or_insert_with(|| PoolView {
            database: key.0.clone(),
            user: key.1.clone(),
            stats: PoolStatsSnapshot::default(),
            paused: true,
            logins: logins.get(&key).copied().unwrap_or(0),
            clients: connected.get(&key).copied().unwrap_or(0),
        });
        view.stats = view.stats.merged(&pool.control.stats());
        view.paused &= pool.control.is_paused();
    }
    views.into_values().collect()
}

fn pools(proxy: &Proxy) -> Table {
    let config = proxy.config.load();
    let mut table = Table::new(&[
        ("database", Kind::Text),
        ("user", Kind::Text),
        ("cl_active", Kind::Int),
        ("cl_waiting", Kind::Int),
        ("cl_active_cancel_req", Kind::Int),
        ("cl_waiting_cancel_req", Kind::Int),
        ("sv_active", Kind::Int),
        ("sv_active_cancel", Kind::Int),
        ("sv_being_canceled", Kind::Int),
        ("sv_idle", Kind::Int),
        ("sv_used", Kind::Int),
        ("sv_tested", Kind::Int),
        ("sv_login", Kind::Int),
        ("maxwait", Kind::Int),
        ("maxwait_us", Kind::Int),
        ("pool_mode", Kind::Text),
        ("load_balance_hosts", Kind::Text),
    ]);
    for view in pool_views(proxy) {
        let stats = view.stats;
        let mode = config
            .databases
            .get(&view.database)
            .map_or("", |db| pool_mode_name(db.pool.pool_mode));
        table.push(vec![
            text(&view.database),
            text(&view.user),
            num(view.clients.saturating_sub(stats.waiting)),
            num(stats.waiting),
            // Cancel requests are relayed at once, never queued in a pool.
            num(0),
            num(0),
            num(stats.in_use),
            num(0),
            num(0),
            num(stats.open.saturating_sub(stats.in_use)),
            num(0),
            num(0),
            num(stats.opening),
            num(stats.longest_wait.as_secs()),
            num(stats.longest_wait.subsec_micros()),
            text(mode),
            // One host per database: nothing to balance.
            None,
        ]);
    }
    table
}

const CONNECTION_COLUMNS: &[(&str, Kind)] = &[
    ("type", Kind::Text),
    ("user", Kind::Text),
    ("database", Kind::Text),
    ("state", Kind::Text),
    ("addr", Kind::Text),
    ("port", Kind::Int),
    ("local_addr", Kind::Text),
    ("local_port", Kind::Int),
    ("connect_time", Kind::Text),
    ("request_time", Kind::Text),
    ("wait", Kind::Int),
    ("wait_us", Kind::Int),
    ("link", Kind::Text),
    ("remote_pid", Kind::Int),
    ("tls", Kind::Text),
    ("application_name", Kind::Text),
    ("id", Kind::Int),
];

/// `link` of a client is the backend PID of the server connection it
/// holds; `id` is churnstile's own client number.
fn clients(proxy: &Proxy) -> Table {
    let mut table = Table::new(CONNECTION_COLUMNS);
    for client in proxy.clients.list() {
        let state = client.state();
        let waited = match state {
            ClientState::Waiting => client.changed_at().elapsed().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        table.push(vec![
            text("C"),
            text(&client.user),
            text(&client.database),
            text(state.as_str()),
            text(&client.peer.addr),
            num(client.peer.port),
            text(&client.local.addr),
            num(client.local.port),
            text(utc(client.connected_at)),
            text(utc(client.changed_at())),
            num(waited.as_secs()),
            num(waited.subsec_micros()),
            text(
                client
                    .server_pid()
                    .map(|pid| pid.to_string())
                    .unwrap_or_default(),
            ),
            num(0),
            text(client.tls.unwrap_or("")),
            text(&client.application_name),
            num(client.id),
        ]);
    }
    table
}

/// `link` of a server connection is the id of the client holding it;
/// `remote_pid` is its backend PID; `id` is that PID too.
fn servers(proxy: &Proxy) -> Table {
    let mut table = Table::new(CONNECTION_COLUMNS);
    let holders: HashMap<(String, String, i32), _> = proxy
        .clients
        .list()
        .into_iter()
        .filter_map(|client| {
            let pid = client.server_pid()?;
            Some(((client.database.clone(), client.user.clone(), pid), client))
        })
        .collect();
    for server in proxy.servers.list() {
        let holder = holders.get(&(
            server.database.clone(),
            server.user.clone(),
            server.backend_pid,
        ));
        table.push(vec![
            text("S"),
            text(&server.user),
            text(&server.database),
            text(if holder.is_some() { "active" } else { "idle" }),
            text(&server.upstream.addr),
            num(server.upstream.port),
            text(&server.local.addr),
            num(server.local.port),
            text(utc(server.connected_at)),
            text(utc(
                holder.map_or(server.connected_at, |client| client.changed_at())
            )),
            num(0),
            num(0),
            text(
                holder
                    .map(|client| client.id.to_string())
                    .unwrap_or_default(),
            ),
            num(server.backend_pid),
            text(server.tls.unwrap_or("")),
            text(""),
            num(server.backend_pid),
        ]);
    }
    table
}

fn ratio(served: u64, opened: u64) -> String {
    let ratio = if opened == 0 {
        0.0
    } else {
        served as f64 / opened as f64
    };
    format!("{ratio:.2}")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// PgBouncer's columns where churnstile counts the same thing (times in
/// µs; `avg_xact_time` per transaction, `avg_wait_time` per assignment),
/// then churnstile's own churn counters.
fn stats(proxy: &Proxy) -> Table {
    let mut table = Table::new(&[
        ("database", Kind::Text),
        ("total_server_assignment_count", Kind::Int),
        ("total_xact_count", Kind::Int),
        ("total_query_count", Kind::Int),
        ("total_received", Kind::Int),
        ("total_sent", Kind::Int),
        ("total_xact_time", Kind::Int),
        ("total_wait_time", Kind::Int),
        ("avg_xact_time", Kind::Int),
        ("avg_wait_time", Kind::Int),
        ("total_client_logins", Kind::Int),
        ("total_server_connections", Kind::Int),
        ("total_server_connect_failures", Kind::Int),
        ("total_wait_timeouts", Kind::Int),
        ("reuse_ratio", Kind::Float),
    ]);
    let mut per_database: BTreeMap<String, [u64; 12]> = BTreeMap::new();
    for view in pool_views(proxy) {
        let stats = view.stats;
        let traffic = stats.traffic;
        let add = [
            stats.checkouts,
            traffic.transactions,
            traffic.queries,
            traffic.bytes_received,
            traffic.bytes_sent,
            micros(traffic.transaction_time),
            micros(stats.wait_time),
            view.logins,
            stats.opened,
            stats.connect_failures,
            stats.wait_timeouts,
            0,
        ];
        let totals = per_database.entry(view.database).or_default();
        for (total, value) in totals.iter_mut().zip(add) {
            *total += value;
        }
    }
    for (database, totals) in per_database {
        let [
            assignments,
            transactions,
            queries,
            received,
            sent,
            xact_time,
            wait_time,
            logins,
            opened,
            failures,
            timeouts,
            _,
        ] = totals;
        table.push(vec![
            text(&database),
            num(assignments),
            num(transactions),
            num(queries),
            num(received),
            num(sent),
            num(xact_time),
            num(wait_time),
            num(xact_time.checked_div(transactions).unwrap_or(0)),
            num(wait_time.checked_div(assignments).unwrap_or(0)),
            num(logins),
            num(opened),
            num(failures),
            num(timeouts),
            num(ratio(logins, opened)),
        ]);
    }
    table
}

/// Churn against reuse per pool: clients that logged in, upstream
/// connections opened for them, and the TIME_WAIT sockets on this host
/// toward the pool's upstream (`time_wait`, from `time_wait_by_upstream`;
/// pools of one database share it).
fn churn(proxy: &Proxy, time_wait_by_upstream: &HashMap<String, usize>) -> Table {
    let config = proxy.config.load();
    let mut table = Table::new(&[
        ("database", Kind::Text),
        ("user", Kind::Text),
        ("client_connects", Kind::Int),
        ("upstream_connects", Kind::Int),
        ("upstream_connect_failures", Kind::Int),
        ("reuse_ratio", Kind::Float),
        ("upstream", Kind::Text),
        ("time_wait", Kind::Int),
    ]);
    for view in pool_views(proxy) {
        let upstream = config
            .databases
            .get(&view.database)
            .map(|db| upstream_label(&db.host, db.port))
            .unwrap_or_default();
        let time_wait = time_wait_by_upstream.get(&upstream).copied().unwrap_or(0);
        table.push(vec![
            text(&view.database),
            text(&view.user),
            num(view.logins),
            num(view.stats.opened),
            num(view.stats.connect_failures),
            num(ratio(view.logins, view.stats.opened)),
            text(upstream),
            num(time_wait),
        ]);
    }
    table
}

fn databases(proxy: &Proxy) -> Table {
    let config: &Config = &proxy.config.load();
    let mut table = Table::new(&[
        ("name", Kind::Text),
        ("host", Kind::Text),
        ("port", Kind::Int),
        ("database", Kind::Text),
        ("pool_size", Kind::Int),
        ("min_pool_size", Kind::Int),
        ("reserve_pool", Kind::Int),
        ("server_lifetime", Kind::Int),
        ("pool_mode", Kind::Text),
        ("max_connections", Kind::Int),
        ("current_connections", Kind::Int),
        ("paused", Kind::Int),
        ("disabled", Kind::Int),
    ]);
    let views = pool_views(proxy);
    for (name, db) in &config.databases {
        let pools: Vec<&PoolView> = views.iter().filter(|view| &view.database == name).collect();
        let open: usize = pools.iter().map(|view| view.stats.open).sum();
        let paused = !pools.is_empty() && pools.iter().all(|view| view.paused);
        table.push(vec![
            text(name),
            text(&db.host),
            num(db.port),
            text(&db.dbname),
            num(db.pool.default_pool_size),
            num(db.pool.min_pool_size),
            num(0),
            num(db.pool.server_lifetime.as_secs()),
            text(pool_mode_name(db.pool.pool_mode)),
            num(0),
            num(open),
            num(u8::from(paused)),
            num(0),
        ]);
    }
    table
}

fn config(proxy: &Proxy) -> Table {
    let mut table = Table::new(&[
        ("key", Kind::Text),
        ("value", Kind::Text),
        ("default", Kind::Text),
        ("changeable", Kind::Text),
    ]);
    let current = config_settings(&proxy.config.load());
    let defaults: HashMap<&str, String> = config_settings(&default_config()).into_iter().collect();
    for (key, value) in current {
        let changeable = if CHANGEABLE.contains(&key) {
            "yes"
        } else {
            "no"
        };
        let default = defaults.get(key).cloned().unwrap_or_default();
        table.push(vec![
            text(key),
            text(value),
            text(default),
            text(changeable),
        ]);
    }
    table
}

fn version() -> Table {
    let mut table = Table::new(&[("version", Kind::Text)]);
    table.push(vec![text(format!(
        "churnstile {}",
        env!("CARGO_PKG_VERSION")
    ))]);
    table
}

fn help() -> Table {
    let mut table = Table::new(&[("command", Kind::Text), ("description", Kind::Text)]);
    for (command, description) in HELP {
        table.push(vec![text(*command), text(*description)]);
    }
    table
}
