//! SHOW tables PgBouncer's tools ask for that describe the process rather
//! than the pools: STATE, LISTS, and FDS, DNS_HOSTS and DNS_ZONES, which churnstile
//! answers with PgBouncer's columns and no rows (it hands no descriptors
//! over on restart and keeps no DNS cache), so scripts that read them by
//! position or name keep working.

use super::table::{Kind, Table, num, text};
use crate::proxy::Proxy;

/// SHOW STATE: `active`, `paused` and `suspended` as yes/no, as PgBouncer.
pub(super) fn state(proxy: &Proxy) -> Table {
    let pools = proxy.pools();
    let paused = !pools.is_empty() && pools.iter().all(|pool| pool.control.is_paused());
    let yes_no = |flag: bool| text(if flag { "yes" } else { "no" });
    let mut table = Table::new(&[("key", Kind::Text), ("value", Kind::Text)]);
    table.push(vec![text("active"), yes_no(!paused)]);
    table.push(vec![text("paused"), yes_no(paused)]);
    table.push(vec![text("suspended"), yes_no(false)]);
    table
}

/// SHOW LISTS: PgBouncer's `list`/`items` rows, counted from the
/// configuration and the registries; the lists churnstile does not keep
/// (free slabs, DNS) are 0.
pub(super) fn lists(proxy: &Proxy) -> Table {
    let config = proxy.config.load();
    let pools = proxy.pools().len();
    let counts = [
        ("databases", config.databases.len()),
        ("users", config.users.len()),
        ("pools", pools),
        ("free_clients", 0),
        ("used_clients", proxy.clients.list().len()),
        ("login_clients", 0),
        ("free_servers", 0),
        ("used_servers", proxy.servers.list().len()),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    let mut table = Table::new(&[("list", Kind::Text), ("items", Kind::Int)]);
    for (list, items) in counts {
        table.push(vec![text(list), num(items)]);
    }
    table
}

/// SHOW FDS: the descriptors an online restart would hand over; none.
pub(super) fn fds() -> Table {
    Table::new(&[
        ("fd", Kind::Int),
        ("task", Kind::Text),
        ("user", Kind::Text),
        ("database", Kind::Text),
        ("addr", Kind::Text),
        ("port", Kind::Int),
        ("cancel", Kind::Int),
        ("link", Kind::Int),
        ("client_encoding", Kind::Text),
        ("std_strings", Kind::Text),
        ("datestyle", Kind::Text),
        ("timezone", Kind::Text),
        ("password", Kind::Text),
        ("scram_client_key", Kind::Text),
        ("scram_server_key", Kind::Text),
    ])
}

/// SHOW DNS_HOSTS: host names in the DNS cache; churnstile keeps none.
pub(super) fn dns_hosts() -> Table {
    Table::new(&[
        ("hostname", Kind::Text),
        ("ttl", Kind::Int),
        ("addrs", Kind::Text),
    ])
}

/// SHOW DNS_ZONES: DNS zones watched for changes; none.
pub(super) fn dns_zones() -> Table {
    Table::new(&[
        ("zonename", Kind::Text),
        ("serial", Kind::Int),
        ("count", Kind::Int),
    ])
}
