//! Running the proxy: check descriptor limits and listen ports, bind every
//! listener first (so a taken port fails fast with its owner named), start
//! the pools and accept loops, answer signals, then on SIGTERM or SIGINT
//! stop accepting, let clients (SIGTERM) or their transactions (SIGINT)
//! finish up to `shutdown_timeout`, send Terminate upstream and return.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::accept::{Listener, accept_loop};
use super::bind::{BindError, bind_tcp, bind_unix, bind_unix_path};
use super::limits;
use super::notify::Notifier;
use super::signals::{Shutdown, Signals};
use crate::config::{Config, Protocol};
use crate::observe::{self, MetricsError, MetricsSources};
use crate::proxy::{Proxy, TlsSetupError, build_tls};

/// Why the proxy could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(
        "nothing to listen on: set [listen] postgres, unix_socket_dir, mysql or mysql_unix_socket"
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
    crate::stream::use_tcp_settings(config.general.tcp);
    // Bind first: a taken address is one error line, without warnings before it.
    let reuse_port = config.general.so_reuseport;
    let metrics = (config.general.observe.metrics_listen)
        .map(|addr| bind_tcp(addr, reuse_port))
        .transpose()
        .map_err(RunError::MetricsBind)?;
    let Bound {
        postgres: listeners,
        mysql: mysql_listeners,
        socket_files,
    } = bind_all(&config)?;
    limits::check_at_startup(&config);
    let mut signals = Signals::install().map_err(RunError::Signal)?;

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
        tracing::info!(%addr, "serving Prometheus metrics at /metrics, probes at /healthz and /readyz");
    }
    spawn_accept_loops(listeners, mysql_listeners, &proxy, &client_slots);
    observe::stats_log::spawn(Arc::clone(&proxy));
    tracing::info!(
        listen = ?config.listen.postgres,
        mysql = ?config.listen.mysql,
        unix_sockets = ?socket_files,
        databases = config.databases.len(),
        "churnstile is accepting clients"
    );
    let notifier = Arc::new(Notifier::from_env());
    notifier.ready();
    notifier.spawn_watchdog();
    serve_signals_then_drain(&proxy, &mut signals, &notifier, &client_slots, max_clients).await;
    proxy.close_pools();
    for path in socket_files {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// One accept loop per listener, in the listener's protocol.
fn spawn_accept_loops(
    postgres: Vec<Listener>,
    mysql: Vec<Listener>,
    proxy: &Arc<Proxy>,
    client_slots: &Arc<Semaphore>,
) {
    let by_protocol = (postgres.into_iter().map(|l| (l, Protocol::Postgres)))
        .chain(mysql.into_iter().map(|l| (l, Protocol::Mysql)));
    for (listener, protocol) in by_protocol {
        tokio::spawn(accept_loop(
            listener,
            protocol,
            Arc::clone(proxy),
            Arc::clone(client_slots),
        ));
    }
}

/// Answers SIGHUP, SIGUSR1 and SIGUSR2 until SIGTERM or SIGINT, then
/// drains; a second SIGTERM or SIGINT cuts the drain short.
async fn serve_signals_then_drain(
    proxy: &Proxy,
    signals: &mut Signals,
    notifier: &Notifier,
    client_slots: &Semaphore,
    max_clients: usize,
) {
    let reload = || {
        notifier.reloading();
        reload_on_signal(proxy);
        notifier.ready();
    };
    let how = signals.until_shutdown(proxy, &reload).await;
    notifier.stopping();
    tokio::select! {
        () = drain(proxy, how, client_slots, max_clients) => {}
        _ = signals.until_shutdown(proxy, &reload) => {
            tracing::warn!("second SIGTERM or SIGINT: exiting now");
        }
    }
}

/// SIGHUP: the admin console's RELOAD, which logs what it applied and what
/// needs a restart; a file with errors changes nothing and is logged.
fn reload_on_signal(proxy: &Proxy) {
    if let Err(error) = proxy.reload() {
        tracing::error!(%error, "SIGHUP: configuration not reloaded");
    }
}

/// Stops accepting and waits, up to `shutdown_timeout`, until every client
/// has gone: for SIGTERM as long as they stay; for SIGINT each is ended
/// (PostgreSQL: FATAL 57P01, MySQL: ERR 1053) as soon as it is between
/// transactions.
async fn drain(proxy: &Proxy, how: Shutdown, client_slots: &Semaphore, max_clients: usize) {
    let timeout = proxy.config.load().general.shutdown_timeout;
    proxy.draining.cancel();
    match how {
        Shutdown::WaitForClients => {
            tracing::info!(
                ?timeout,
                "SIGTERM: shutting down once every client has disconnected; no new clients, idle server connections closed"
            );
            for pool in proxy.pools() {
                pool.control.close_idle();
            }
        }
        Shutdown::WaitForServers => {
            tracing::info!(
                ?timeout,
                "SIGINT: shutting down once transactions finish; no new clients"
            );
            proxy.shutdown.cancel();
        }
    }
    let all_clients_gone = client_slots.acquire_many(max_clients as u32);
    if tokio::time::timeout(timeout, all_clients_gone)
        .await
        .is_err()
    {
        tracing::warn!("shutdown_timeout passed with clients still connected; closing them");
    }
    proxy.shutdown.cancel();
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
    let reuse_port = config.general.so_reuseport;
    let mut bound = Bound {
        postgres: Vec::new(),
        mysql: Vec::new(),
        socket_files: Vec::new(),
    };
    for addr in &listen.postgres {
        bound
            .postgres
            .push(Listener::Tcp(bind_tcp(*addr, reuse_port)?));
    }
    if let Some(dir) = config.postgres_socket_dir() {
        let (listener, path) = bind_unix(dir, listen.unix_socket_port)?;
        bound.postgres.push(Listener::Unix(listener));
        bound.socket_files.push(path);
    }
    for addr in &listen.mysql {
        bound
            .mysql
            .push(Listener::Tcp(bind_tcp(*addr, reuse_port)?));
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
