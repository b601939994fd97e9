//! Observing the running proxy from outside: the Prometheus endpoint
//! (`/metrics` over a small HTTP/1.1 loop, with the `/healthz` and
//! `/readyz` probes), the series copied from the
//! pools and registries at scrape time, and host gauges sampled from /proc
//! (TIME_WAIT per upstream and listener, ephemeral ports, descriptors),
//! which the admin console's SHOW CHURN reads too; and the periodic
//! `stats:` log line per database.

mod derived;
mod endpoint;
mod host;
pub(crate) mod http;
mod ready;
pub mod stats_log;

pub use endpoint::{MetricsError, MetricsSources, start};
pub use host::{upstream_label, upstream_time_wait};
