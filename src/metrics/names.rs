//! Every metric churnstile exports: its name and, in `describe_all`, the
//! help text Prometheus shows. The README's metrics table mirrors this file.

/// Client TCP/Unix connections accepted on the listeners (counter).
pub const CLIENT_CONNECTIONS_ACCEPTED: &str = "churnstile_client_connections_accepted_total";
/// Accepts that failed for lack of file descriptors (counter).
pub const ACCEPTS_FD_EXHAUSTED: &str = "churnstile_accepts_fd_exhausted_total";
/// Client connections refused before login, by `reason` (counter).
pub const CLIENT_CONNECTIONS_REJECTED: &str = "churnstile_client_connections_rejected_total";
/// Startups and logins refused, by `sqlstate` (counter).
pub const CLIENT_LOGIN_FAILURES: &str = "churnstile_client_login_failures_total";
/// Clients that logged in, by `database` and `user` (counter).
pub const CLIENT_LOGINS: &str = "churnstile_client_logins_total";
/// How long logged-in clients stayed, by `database` (histogram).
pub const CLIENT_SESSION_SECONDS: &str = "churnstile_client_session_seconds";
/// Client connections open now, logged in or not (gauge).
pub const CLIENTS_CONNECTED: &str = "churnstile_clients_connected";
/// Logged-in clients per pool by `state`: active, waiting, idle (gauge).
pub const POOL_CLIENTS: &str = "churnstile_pool_clients";
/// Server connections per pool by `state`: active, idle, login (gauge).
pub const SERVER_CONNECTIONS: &str = "churnstile_server_connections";
/// Server connections opened, per pool (counter).
pub const SERVER_OPENED: &str = "churnstile_server_connections_opened_total";
/// Server connections closed, per pool (counter).
pub const SERVER_CLOSED: &str = "churnstile_server_connections_closed_total";
/// Failed attempts to open a server connection, per pool (counter).
pub const SERVER_CONNECT_FAILURES: &str = "churnstile_server_connect_failures_total";
/// Server connections handed to clients, per pool (counter).
pub const POOL_CHECKOUTS: &str = "churnstile_pool_checkouts_total";
/// Clients that waited past query_wait_timeout, per pool (counter).
pub const POOL_WAIT_TIMEOUTS: &str = "churnstile_pool_wait_timeouts_total";
/// Time clients spent waiting for a server connection, per pool (counter).
pub const POOL_WAIT_MICROSECONDS: &str = "churnstile_pool_wait_microseconds_total";
/// How long the longest-waiting client has waited so far, per pool (gauge).
pub const POOL_MAX_WAIT_SECONDS: &str = "churnstile_pool_max_wait_seconds";
/// default_pool_size, per pool (gauge).
pub const POOL_SIZE: &str = "churnstile_pool_size";
/// 1 while a pool is paused from the admin console (gauge).
pub const POOL_PAUSED: &str = "churnstile_pool_paused";
/// Client logins per server connection opened, per pool (gauge).
pub const POOL_REUSE_RATIO: &str = "churnstile_pool_reuse_ratio";
/// Client logins per server connection opened, all pools (gauge).
pub const REUSE_RATIO: &str = "churnstile_reuse_ratio";
/// Times a client was pinned to its server connection, by `reason` (counter).
pub const CLIENT_PINS: &str = "churnstile_client_pins_total";
/// Host sockets in TIME_WAIT toward each upstream, by `upstream` (gauge).
pub const UPSTREAM_TIME_WAIT: &str = "churnstile_upstream_time_wait_sockets";
/// Host sockets in TIME_WAIT on each listener, by `listener` (gauge).
pub const LISTENER_TIME_WAIT: &str = "churnstile_listener_time_wait_sockets";
/// Size of net.ipv4.ip_local_port_range (gauge).
pub const EPHEMERAL_PORTS: &str = "churnstile_ephemeral_ports";
/// Ephemeral ports some TCP socket on the host holds (gauge).
pub const EPHEMERAL_PORTS_USED: &str = "churnstile_ephemeral_ports_used";
/// File descriptors churnstile has open (gauge).
pub const OPEN_FDS: &str = "churnstile_open_fds";
/// churnstile's RLIMIT_NOFILE soft limit (gauge).
pub const MAX_FDS: &str = "churnstile_max_fds";
/// 1, labelled with the running `version` (gauge).
pub const BUILD_INFO: &str = "churnstile_build_info";

/// Gives every metric its help text.
pub(super) fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CLIENT_CONNECTIONS_ACCEPTED,
        "Client connections accepted on the listeners."
    );
    describe_counter!(
        CLIENT_CONNECTIONS_REJECTED,
        "Client connections refused before login, by reason."
    );
    describe_counter!(
        CLIENT_LOGIN_FAILURES,
        "Client startups and logins refused, by SQLSTATE sent."
    );
    describe_counter!(CLIENT_LOGINS, "Clients that logged in, per pool.");
    describe_histogram!(
        CLIENT_SESSION_SECONDS,
        metrics::Unit::Seconds,
        "How long logged-in clients stayed connected."
    );
    describe_gauge!(
        CLIENTS_CONNECTED,
        "Client connections open now, logged in or not."
    );
    describe_gauge!(
        POOL_CLIENTS,
        "Logged-in clients per pool: active (holding a server connection), waiting, idle."
    );
    describe_gauge!(
        SERVER_CONNECTIONS,
        "Server connections per pool: active (lent to a client), idle, login (being opened)."
    );
    describe_counter!(
        SERVER_OPENED,
        "Server connections opened (upstream connects that succeeded)."
    );
    describe_counter!(SERVER_CLOSED, "Server connections closed.");
    describe_counter!(
        SERVER_CONNECT_FAILURES,
        "Attempts to open a server connection that failed or timed out."
    );
    describe_counter!(POOL_CHECKOUTS, "Server connections handed to clients.");
    describe_counter!(
        POOL_WAIT_TIMEOUTS,
        "Clients that waited past query_wait_timeout."
    );
    describe_counter!(
        POOL_WAIT_MICROSECONDS,
        "Time clients spent waiting for a server connection, in microseconds."
    );
    describe_gauge!(
        POOL_MAX_WAIT_SECONDS,
        "How long the client waiting longest has waited so far."
    );
    describe_gauge!(
        POOL_SIZE,
        "Most server connections the pool may open (default_pool_size)."
    );
    describe_gauge!(
        POOL_PAUSED,
        "1 while the pool is paused from the admin console."
    );
    describe_gauge!(
        POOL_REUSE_RATIO,
        "Client logins per server connection opened."
    );
    describe_gauge!(
        REUSE_RATIO,
        "Client logins per server connection opened, over all pools."
    );
    describe_counter!(
        CLIENT_PINS,
        "Times a client was pinned to its server connection, by reason."
    );
    describe_gauge!(
        UPSTREAM_TIME_WAIT,
        "Sockets on this host in TIME_WAIT toward the upstream (refreshed every 5 s)."
    );
    describe_gauge!(
        LISTENER_TIME_WAIT,
        "Sockets on this host in TIME_WAIT on the listener's address (refreshed every 5 s)."
    );
    describe_gauge!(EPHEMERAL_PORTS, "Ports in net.ipv4.ip_local_port_range.");
    describe_gauge!(
        EPHEMERAL_PORTS_USED,
        "Ports of the ephemeral range held by a TCP socket on this host."
    );
    describe_gauge!(OPEN_FDS, "File descriptors churnstile has open.");
    describe_gauge!(MAX_FDS, "churnstile's RLIMIT_NOFILE soft limit.");
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which churnstile runs."
    );
}
