//! Starting the metrics endpoint: install the Prometheus recorder, bind the
//! listener (a taken address names its owner, like the PostgreSQL
//! listeners), serve scrapes and sample the host in the background.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::host::{self, HostTargets};
use super::names::{
    BUILD_INFO, CLIENT_SESSION_SECONDS, POOL_WAIT_SECONDS, TRANSACTION_SECONDS, describe_all,
};
use super::{derived, http};
use crate::mysql::service::MySqlService;
use crate::postgres::service::PgService;
use crate::server::bind::{BindError, bind_tcp};

/// Buckets of the client session duration histogram, in seconds, from
/// 1 ms to 1 h: dense at the short end, where a churning client (a PHP
/// request, a CGI script) connects, runs a query or two and leaves.
const SESSION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// Buckets of the pool wait and transaction histograms, in seconds: 100 µs
/// (an idle connection handed over at once) to a minute.
const SHORT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics_listen: {0}")]
    Bind(#[from] BindError),
    #[error("metrics: {0}")]
    Build(#[from] BuildError),
    #[error("metrics: a metrics recorder is already installed in this process")]
    RecorderTaken,
}

/// What the endpoint reports on.
pub struct MetricsSources {
    pub service: Arc<PgService>,
    pub mysql: Arc<MySqlService>,
    /// The `max_client_conn` permits; those taken are connected clients.
    pub client_slots: Arc<Semaphore>,
    pub max_clients: usize,
    /// The bound PostgreSQL TCP listeners.
    pub listeners: Vec<SocketAddr>,
}

/// The metrics endpoint's listener, bound with the others so that it is
/// there as soon as churnstile accepts clients.
pub struct MetricsEndpoint {
    listener: TcpListener,
    pub local_addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Binds `addr`. Must be called inside a Tokio runtime.
    pub fn bind(addr: SocketAddr) -> Result<MetricsEndpoint, MetricsError> {
        let listener = bind_tcp(addr)?;
        let local_addr = listener.local_addr().unwrap_or(addr);
        Ok(MetricsEndpoint {
            listener,
            local_addr,
        })
    }

    /// Installs the recorder and serves `GET /metrics` for as long as the
    /// process runs. Once per process.
    pub fn start(self, sources: MetricsSources) -> Result<SocketAddr, MetricsError> {
        let handle = install_recorder()?;
        let targets = HostTargets {
            upstreams: sources.service.tcp_upstreams(),
            listeners: sources.listeners.clone(),
        };
        host::spawn(targets, handle.clone());
        let render = Arc::new(move || {
            derived::record(&sources);
            handle.render()
        });
        tokio::spawn(http::serve(self.listener, render));
        Ok(self.local_addr)
    }
}

fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(CLIENT_SESSION_SECONDS.to_owned()),
            SESSION_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(POOL_WAIT_SECONDS.to_owned()), SHORT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TRANSACTION_SECONDS.to_owned()), SHORT_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderTaken)?;
    describe_all();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}
