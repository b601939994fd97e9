//! Running the proxy: check descriptor limits and listen ports, bind every
//! listener first (so a taken port fails fast with its owner named), start
//! the pools and accept loops, then on SIGTERM or SIGINT stop accepting, let
//! clients finish up to `shutdown_timeout`, send Terminate upstream and
//! return.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;

use super::accept::{Listener, accept_loop};
use super::bind::{BindError, bind_tcp, bind_unix, bind_unix_path};
use super::limits;
use crate::config::{Config, Protocol};
use crate::observe::{self, MetricsError, MetricsSources};
use crate::proxy::{Proxy, TlsSetupError, build_tls};

/// Why the proxy could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(
        "nothing to listen on: [listen] has no postgres or mysql addresses and no Unix sockets"
    )]
    NoListeners,
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("metrics_listen: {0}")]
    MetricsBind(BindError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// Runs until SIGTERM or SIGINT and a graceful shutdown.
/// `config_file` is where `config` came from, for the admin console's RELOAD.
pub async fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), RunError> {
    // Certificates and keys first: a bad file is one line naming it.
    let tls = build_tls(&config)?;
    // Bind first: a taken address is one error line, without warnings before it.
    let metrics = (config.general.observe.metrics_listen)
        .map(bind_tcp)
        .transpose()
        .map_err(RunError::MetricsBind)?;
    let Bound {
        postgres: listeners,
        mysql: mysql_listeners,
        socket_files,
    } = bind_all(&config)?;
    limits::check_at_startup(&config);
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;

    let proxy = Arc::new(Proxy::new(config.clone(), tls, config_file));
    let max_clients = config.general.max_client_conn;
    let client_slots = Arc::new(Semaphore::new(max_clients));
    if let Some(listener) = metrics {
        let sources = MetricsSources {
            proxy: Arc::clone(&proxy),
            client_slots: Arc::clone(&client_slots),
            max_clients,
            listeners: (listeners.iter().chain(&mysql_listeners))
                .filter_map(Listener::tcp_addr)
                .collect(),
        };
        let addr = observe::start(listener, sources)?;
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    let by_protocol = (listeners.into_iter().map(|l| (l, Protocol::Postgres)))
        .chain(mysql_listeners.into_iter().map(|l| (l, Protocol::Mysql)));
    for (listener, protocol) in by_protocol {
        tokio::spawn(accept_loop(
            listener,
            protocol,
            Arc::clone(&proxy),
            Arc::clone(&client_slots),
        ));
    }
    tracing::info!(
        listen = ?config.listen.postgres,
        mysql = ?config.listen.mysql,
        unix_sockets = ?socket_files,
        databases = config.databases.len(),
        "churnstile is accepting clients"
    );

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!(timeout = ?config.general.shutdown_timeout, "shutting down: no new clients; waiting for clients to finish");
    proxy.shutdown.cancel();
    let all_clients_gone = client_slots.acquire_many(max_clients as u32);
    if tokio::time::timeout(config.general.shutdown_timeout, all_clients_gone)
        .await
        .is_err()
    {
        tracing::warn!("shutdown_timeout passed with clients still connected; closing them");
    }
    proxy.close_pools();
    for path in socket_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Every bound listener, by protocol, and the Unix socket files to remove.
struct Bound {
    postgres: Vec<Listener>,
    mysql: Vec<Listener>,
    socket_files: Vec<PathBuf>,
}

/// Binds every configured listener, failing on the first that cannot be.
fn bind_all(config: &Config) -> Result<Bound, RunError> {
    let listen = &config.listen;
    let mut bound = Bound {
        postgres: Vec::new(),
        mysql: Vec::new(),
        socket_files: Vec::new(),
    };
    for addr in &listen.postgres {
        bound.postgres.push(Listener::Tcp(bind_tcp(*addr)?));
    }
    if let Some(dir) = &listen.unix_socket_dir
        && (!listen.postgres.is_empty()
            || (config.databases.values()).any(|db| db.protocol == Protocol::Postgres))
    {
        let (listener, path) = bind_unix(dir, listen.unix_socket_port)?;
        bound.postgres.push(Listener::Unix(listener));
        bound.socket_files.push(path);
    }
    for addr in &listen.mysql {
        bound.mysql.push(Listener::Tcp(bind_tcp(*addr)?));
    }
    if let Some(path) = &listen.mysql_unix_socket {
        bound.mysql.push(Listener::Unix(bind_unix_path(path)?));
        bound.socket_files.push(path.clone());
    }
    if bound.postgres.is_empty() && bound.mysql.is_empty() {
        return Err(RunError::NoListeners);
    }
    Ok(bound)
}
