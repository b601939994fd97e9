//! Metric names and recording helpers in one place. Events that only the
//! hot path sees (accepts, refused logins, session ends) are recorded as
//! they happen; everything a pool or the registry already counts is copied
//! into the recorder when /metrics is scraped, so it costs nothing until
//! then; host gauges come from /proc on a timer. With no metrics endpoint
//! configured, no recorder is installed and the helpers do nothing.

mod derived;
mod endpoint;
mod host;
pub(crate) mod http;
mod names;

pub use endpoint::{MetricsEndpoint, MetricsError, MetricsSources};
pub use names::*;

use std::time::Duration;

/// A client connection was accepted on a listener.
pub fn client_accepted() {
    metrics::counter!(CLIENT_CONNECTIONS_ACCEPTED).increment(1);
}

/// A client connection was refused before login (`reason`: a short label
/// such as `max_client_conn`).
pub fn client_rejected(reason: &'static str) {
    metrics::counter!(CLIENT_CONNECTIONS_REJECTED, "reason" => reason).increment(1);
}

/// A client was refused during startup or login with this SQLSTATE.
pub fn login_refused(sqlstate: &'static str) {
    metrics::counter!(CLIENT_LOGIN_FAILURES, "sqlstate" => sqlstate).increment(1);
}

/// A logged-in client left after `lifetime`.
pub fn client_session_ended(database: &str, lifetime: Duration) {
    metrics::histogram!(CLIENT_SESSION_SECONDS, "database" => database.to_owned())
        .record(lifetime.as_secs_f64());
}
