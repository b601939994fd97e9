//! Every metric churnstile exports: its name and, in `describe_all`, the
//! help text Prometheus shows. The README's metrics table mirrors this file.

/// Client TCP/Unix connections accepted on the listeners (counter).
pub const CLIENT_CONNECTIONS: &str = "churnstile_client_connections_total";
/// Accepts that failed for lack of file descriptors (counter).
pub const ACCEPTS_FD_EXHAUSTED: &str = "churnstile_accepts_fd_exhausted_total";
/// Client connections refused or ended by churnstile, by `reason` (counter).
pub const CLIENT_CONNECTIONS_REJECTED: &str = "churnstile_client_connections_rejected_total";
/// Startups and logins refused, by `sqlstate` (counter).
pub const CLIENT_LOGIN_FAILURES: &str = "churnstile_client_login_failures_total";
/// TLS sessions started, by `protocol`, `leg` (client, server) and
/// `version` (counter).
pub const TLS_HANDSHAKES: &str = "churnstile_tls_handshakes_total";
/// TLS handshakes that failed, by `protocol`, `leg` and `reason` (counter).
pub const TLS_HANDSHAKE_FAILURES: &str = "churnstile_tls_handshake_failures_total";
/// Clients that logged in, per pool (counter).
pub const CLIENT_LOGINS: &str = "churnstile_client_logins_total";
/// How long logged-in clients stayed, per pool (histogram).
pub const CLIENT_SESSION_SECONDS: &str = "churnstile_client_session_seconds";
/// Client connections open now, logged in or not (gauge).
pub const CLIENTS_CONNECTED: &str = "churnstile_clients_connected";
/// Logged-in clients per pool by `state`: active, waiting, idle (gauge).
pub const POOL_CLIENTS: &str = "churnstile_pool_clients";
/// Upstream connections per pool by `state`: active, idle, login (gauge).
pub const UPSTREAM_CONNECTIONS: &str = "churnstile_upstream_connections";
/// Upstream connects per pool, by `result`: ok, error (counter).
pub const UPSTREAM_OPENED: &str = "churnstile_upstream_connections_opened_total";
/// Upstream connections closed per pool, by `reason` (counter).
pub const UPSTREAM_CLOSED: &str = "churnstile_upstream_connections_closed_total";
/// Server connections handed to clients, per pool (counter).
pub const POOL_CHECKOUTS: &str = "churnstile_pool_checkouts_total";
/// Clients that waited past query_wait_timeout, per pool (counter).
pub const POOL_WAIT_TIMEOUTS: &str = "churnstile_pool_wait_timeouts_total";
/// Time from asking the pool for a server connection to having one, per
/// pool (histogram).
pub const POOL_WAIT_SECONDS: &str = "churnstile_pool_wait_seconds";
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
/// Transactions finished, per pool (counter).
pub const TRANSACTIONS: &str = "churnstile_transactions_total";
/// Queries (simple queries and Executes), per pool (counter).
pub const QUERIES: &str = "churnstile_queries_total";
/// How long transactions took, per pool (histogram).
pub const TRANSACTION_SECONDS: &str = "churnstile_transaction_seconds";
/// Bytes read from clients, per pool (counter).
pub const CLIENT_BYTES_RECEIVED: &str = "churnstile_client_bytes_received_total";
/// Bytes written to clients, per pool (counter).
pub const CLIENT_BYTES_SENT: &str = "churnstile_client_bytes_sent_total";
/// Times a client was pinned to its server connection, by `reason` (counter).
pub const CLIENT_PINS: &str = "churnstile_client_pins_total";
/// Clients pinned to their server connection now (gauge).
pub const CLIENTS_PINNED: &str = "churnstile_clients_pinned";
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
pub fn describe_all() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CLIENT_CONNECTIONS,
        "Client connections accepted on the listeners."
    );
    describe_counter!(
        ACCEPTS_FD_EXHAUSTED,
        "Accepts that failed because churnstile ran out of file descriptors."
    );
    describe_counter!(
        CLIENT_CONNECTIONS_REJECTED,
        "Client connections refused or ended by churnstile, by reason: max_client_conn, login_failure, query_wait_timeout, upstream_down, upstream_error, shutdown."
    );
    describe_counter!(
        CLIENT_LOGIN_FAILURES,
        "Client startups and logins refused, by SQLSTATE sent."
    );
    describe_counter!(CLIENT_LOGINS, "Clients that logged in, per pool.");
    describe_counter!(
        TLS_HANDSHAKES,
        "TLS sessions started, by protocol, leg (client, server) and TLS version."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by protocol, leg (client, server) and reason."
    );
    describe_histogram!(
        CLIENT_SESSION_SECONDS,
        metrics::Unit::Seconds,
        "How long logged-in clients stayed connected; short lifetimes are churn."
    );
    describe_gauge!(
        CLIENTS_CONNECTED,
        "Client connections open now, logged in or not."
    );
    describe_gauge!(
        POOL_CLIENTS,
        "Logged-in clients per pool: active (in a transaction, or holding a server connection for the session), waiting, idle (between transactions, possibly keeping a server connection)."
    );
    describe_gauge!(
        UPSTREAM_CONNECTIONS,
        "Upstream connections per pool: active (lent to a client, including one kept between transactions), idle, login (being opened)."
    );
    describe_counter!(
        UPSTREAM_OPENED,
        "Upstream connects, by result: ok, or error (failed or timed out)."
    );
    describe_counter!(
        UPSTREAM_CLOSED,
        "Upstream connections closed, by reason: lifetime, idle, error, reset_failure, abandoned, paused, shutdown."
    );
    describe_counter!(POOL_CHECKOUTS, "Server connections handed to clients.");
    describe_counter!(
        POOL_WAIT_TIMEOUTS,
        "Clients that waited past query_wait_timeout."
    );
    describe_histogram!(
        POOL_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Time from asking the pool for a server connection to having one (waiting in line, and opening one when none is idle)."
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
        TRANSACTIONS,
        "Transactions finished, explicit or single-statement."
    );
    describe_counter!(
        QUERIES,
        "Queries sent: simple queries and extended-protocol Executes."
    );
    describe_histogram!(
        TRANSACTION_SECONDS,
        metrics::Unit::Seconds,
        "How long transactions took, from the first message to the ReadyForQuery that ends them."
    );
    describe_counter!(
        CLIENT_BYTES_RECEIVED,
        metrics::Unit::Bytes,
        "Bytes read from clients."
    );
    describe_counter!(
        CLIENT_BYTES_SENT,
        metrics::Unit::Bytes,
        "Bytes written to clients."
    );
    describe_counter!(
        CLIENT_PINS,
        "Times a client was pinned to its server connection, by reason."
    );
    describe_gauge!(
        CLIENTS_PINNED,
        "Clients pinned to their server connection now (transaction and statement pooling)."
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
