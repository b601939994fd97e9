//! Metric names and recording helpers in one place, for every part of
//! churnstile to record through. Events that only the hot path sees
//! (accepts, refusals, session ends) are recorded as they happen; wait and
//! transaction times go to histograms through handles a session looks up
//! once. Everything a pool or the registry already counts is copied into
//! the recorder at scrape time by `observe/`, which also renders and serves
//! the metrics. With no metrics endpoint configured, no recorder is
//! installed and the helpers do nothing.

mod names;

pub use names::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Histogram;

/// The `protocol` label of every per-pool metric.
pub const PROTOCOL_POSTGRES: &str = "postgres";
pub const PROTOCOL_MYSQL: &str = "mysql";

/// The labels of a PostgreSQL pool's metrics.
fn pool_labels(database: &str, user: &str) -> [(&'static str, String); 3] {
    protocol_pool_labels(PROTOCOL_POSTGRES, database, user)
}

/// The labels of a pool's metrics.
pub fn protocol_pool_labels(
    protocol: &str,
    database: &str,
    user: &str,
) -> [(&'static str, String); 3] {
    [
        ("database", database.to_owned()),
        ("user", user.to_owned()),
        ("protocol", protocol.to_owned()),
    ]
}

/// A client connection was accepted on a listener.
pub fn client_accepted() {
    metrics::counter!(CLIENT_CONNECTIONS).increment(1);
}

/// Accepts that failed for lack of descriptors (EMFILE, ENFILE) since start,
/// counted whether or not a recorder is installed yet.
static FD_EXHAUSTED_ACCEPTS: AtomicU64 = AtomicU64::new(0);

/// An accept failed for lack of descriptors; returns how many have since
/// start.
pub fn accept_fd_exhausted() -> u64 {
    FD_EXHAUSTED_ACCEPTS.fetch_add(1, Ordering::Relaxed) + 1
}

/// How many accepts failed for lack of descriptors since start, over all
/// listeners.
pub fn fd_exhausted_accepts() -> u64 {
    FD_EXHAUSTED_ACCEPTS.load(Ordering::Relaxed)
}

/// Why churnstile refused a client or ended its session for want of a
/// server connection: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `max_client_conn` clients were connected already.
    MaxClientConn,
    /// Startup or authentication failed.
    LoginFailure,
    /// No server connection became free within `query_wait_timeout`.
    QueryWaitTimeout,
    /// The upstream could not be reached within `query_wait_timeout`.
    UpstreamDown,
    /// The upstream refused or failed the connection.
    UpstreamError,
    /// The pool is closing.
    Shutdown,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MaxClientConn => "max_client_conn",
            Rejection::LoginFailure => "login_failure",
            Rejection::QueryWaitTimeout => "query_wait_timeout",
            Rejection::UpstreamDown => "upstream_down",
            Rejection::UpstreamError => "upstream_error",
            Rejection::Shutdown => "shutdown",
        }
    }
}

/// A client was refused, or its session ended, for `reason`.
pub fn client_rejected(reason: Rejection) {
    metrics::counter!(CLIENT_CONNECTIONS_REJECTED, "reason" => reason.as_str()).increment(1);
}

/// A client was refused during startup or login with this SQLSTATE.
pub fn login_refused(sqlstate: &'static str) {
    client_rejected(Rejection::LoginFailure);
    metrics::counter!(CLIENT_LOGIN_FAILURES, "sqlstate" => sqlstate).increment(1);
}

/// A TLS session started on `leg` ("client": a client's to churnstile,
/// "server": churnstile's to a server) with `version` (`TLSv1.3`).
pub fn tls_handshake_done(protocol: &'static str, leg: &'static str, version: &'static str) {
    metrics::counter!(TLS_HANDSHAKES, "protocol" => protocol, "leg" => leg, "version" => version)
        .increment(1);
}

/// A TLS handshake on `leg` failed, for `reason` (`handshake`, `no_alpn`,
/// `refused_by_server`).
pub fn tls_handshake_failed(protocol: &'static str, leg: &'static str, reason: &'static str) {
    metrics::counter!(TLS_HANDSHAKE_FAILURES, "protocol" => protocol, "leg" => leg, "reason" => reason)
        .increment(1);
}

/// A logged-in client left after `lifetime`.
pub fn client_session_ended(protocol: &str, database: &str, user: &str, lifetime: Duration) {
    metrics::histogram!(
        CLIENT_SESSION_SECONDS,
        &protocol_pool_labels(protocol, database, user)
    )
    .record(lifetime.as_secs_f64());
}

/// One session's handles on its pool's histograms, looked up once when
/// the session starts so that recording costs no lookup or allocation.
#[derive(Clone)]
pub struct PoolHistograms {
    pub wait_seconds: Histogram,
    pub transaction_seconds: Histogram,
}

impl PoolHistograms {
    pub fn new(database: &str, user: &str) -> Self {
        let labels = pool_labels(database, user);
        PoolHistograms {
            wait_seconds: metrics::histogram!(POOL_WAIT_SECONDS, &labels),
            transaction_seconds: metrics::histogram!(TRANSACTION_SECONDS, &labels),
        }
    }
}
