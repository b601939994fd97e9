//! Starting the metrics endpoint on a listener the server bound: install
//! the Prometheus recorder, serve scrapes and the health and readiness
//! probes, and sample the host in the background.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::derived;
use super::host::{self, HostTargets};
use super::http::{self, Pages};
use super::ready::Readiness;
use crate::metrics::{
    BUILD_INFO, CLIENT_SESSION_SECONDS, POOL_WAIT_SECONDS, TRANSACTION_SECONDS, describe_all,
};
use crate::proxy::Proxy;

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
    #[error("metrics: {0}")]
    Build(#[from] BuildError),
    #[error("metrics: a metrics recorder is already installed in this process")]
    RecorderTaken,
    #[error("metrics_listen: cannot read the bound address: {0}")]
    Address(std::io::Error),
}

/// What the endpoint reports on.
pub struct MetricsSources {
    pub proxy: Arc<Proxy>,
    /// The `max_client_conn` permits; those taken are connected clients.
    pub client_slots: Arc<Semaphore>,
    pub max_clients: usize,
    /// The bound TCP listeners of both protocols.
    pub listeners: Vec<SocketAddr>,
}

/// Installs the recorder and serves `GET /metrics`, `/healthz` and
/// `/readyz` on `listener` (bound by the server with the other listeners,
/// so that a taken port fails the start) for as long as the process runs.
/// Once per process.
pub fn start(listener: TcpListener, sources: MetricsSources) -> Result<SocketAddr, MetricsError> {
    let local_addr = listener.local_addr().map_err(MetricsError::Address)?;
    let handle = install_recorder()?;
    let targets = HostTargets {
        upstreams: sources.proxy.tcp_upstreams(),
        listeners: sources.listeners.clone(),
    };
    host::spawn(targets, handle.clone());
    let pages = Endpoint {
        readiness: Readiness::new(Arc::clone(&sources.proxy)),
        sources,
        handle,
    };
    tokio::spawn(http::serve(listener, Arc::new(pages)));
    Ok(local_addr)
}

/// The pages, from the running proxy.
struct Endpoint {
    sources: MetricsSources,
    handle: PrometheusHandle,
    readiness: Readiness,
}

impl Pages for Endpoint {
    fn metrics(&self) -> String {
        derived::record(&self.sources);
        self.handle.render()
    }

    fn readiness(&self) -> Result<(), String> {
        self.readiness.check()
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
