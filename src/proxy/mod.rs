//! The running proxy, whichever protocol its clients speak: the
//! configuration in force (one snapshot both protocols read, swapped whole
//! on RELOAD), the registries of clients and server connections, the
//! shutdown signal, and each protocol's service with its pools. The
//! listeners hand every accepted connection here, and it goes to the
//! protocol its listener speaks. The core knows no protocol's wire format.

mod pools;
mod reload;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Protocol};
use crate::mysql::service::MySqlService;
use crate::postgres::ConsoleLogin;
use crate::postgres::service::PgService;
use crate::registry::{ClientRegistry, ServerRegistry};
use crate::stream::Stream;
use crate::tls::TlsContexts;

pub use pools::PoolEntry;
pub use reload::{CHANGEABLE, ReloadError};
pub use tls::{TlsSetupError, build_tls};

/// Shared state of the running proxy.
pub struct Proxy {
    /// The configuration in force; both protocols' services hold it too.
    pub config: Arc<ArcSwap<Config>>,
    /// The TLS configurations built from it, rebuilt on RELOAD.
    tls: Arc<ArcSwap<TlsContexts>>,
    /// The `--config` file, which RELOAD re-reads.
    config_file: Option<PathBuf>,
    /// Cancelled when a shutdown starts: listeners stop accepting.
    pub draining: CancellationToken,
    /// Cancelled when sessions must end: each does once its client is
    /// between transactions.
    pub shutdown: CancellationToken,
    /// Logged-in clients and open server connections of both protocols.
    pub clients: Arc<ClientRegistry>,
    pub servers: Arc<ServerRegistry>,
    pub postgres: Arc<PgService>,
    pub mysql: Arc<MySqlService>,
}

impl Proxy {
    /// Builds every pool of both protocols. Must run inside a Tokio
    /// runtime (each pool starts its janitor). `tls` was built from
    /// `config`; `config_file` is where `config` came from, for RELOAD.
    pub fn new(config: Config, tls: TlsContexts, config_file: Option<PathBuf>) -> Self {
        let config = Arc::new(ArcSwap::from_pointee(config));
        let tls = Arc::new(ArcSwap::from_pointee(tls));
        let shutdown = CancellationToken::new();
        let clients = Arc::new(ClientRegistry::default());
        let observe = &config.load().general.observe;
        clients.set_logging(observe.log_connections, observe.log_disconnections);
        let servers = Arc::new(ServerRegistry::default());
        let postgres = Arc::new(PgService::new(
            Arc::clone(&config),
            shutdown.clone(),
            Arc::clone(&clients),
            Arc::clone(&servers),
            Arc::clone(&tls),
        ));
        let mysql = Arc::new(MySqlService::new(
            Arc::clone(&config),
            shutdown.clone(),
            Arc::clone(&clients),
            Arc::clone(&servers),
            &tls.load(),
        ));
        Proxy {
            config,
            tls,
            config_file,
            draining: CancellationToken::new(),
            shutdown,
            clients,
            servers,
            postgres,
            mysql,
        }
    }

    /// Serves one accepted client in `protocol` until it closes; returns it
    /// instead when it logged in to the admin console.
    pub async fn serve(
        &self,
        protocol: Protocol,
        stream: Stream,
        peer: String,
    ) -> Option<ConsoleLogin> {
        match protocol {
            Protocol::Postgres => {
                crate::postgres::serve(Arc::clone(&self.postgres), stream, peer).await
            }
            Protocol::Mysql => {
                crate::mysql::serve(Arc::clone(&self.mysql), stream, peer).await;
                None
            }
        }
    }

    /// Tells a client over `max_client_conn` so, in its protocol's words,
    /// and closes it.
    pub async fn refuse_too_many(protocol: Protocol, stream: Stream) {
        match protocol {
            Protocol::Postgres => crate::postgres::refuse_too_many(stream).await,
            Protocol::Mysql => crate::mysql::refuse_too_many(stream).await,
        }
    }

    /// The configured TCP upstreams of both protocols, as (`host`,
    /// `port`), each once.
    pub fn tcp_upstreams(&self) -> Vec<(String, u16)> {
        let mut upstreams: Vec<(String, u16)> = (self.config.load().databases.values())
            .filter(|db| !db.host.starts_with('/'))
            .map(|db| (db.host.clone(), db.port))
            .collect();
        upstreams.sort();
        upstreams.dedup();
        upstreams
    }

    /// Closes every pool: idle server connections now, busy ones when
    /// they are given back.
    pub fn close_pools(&self) {
        self.postgres.close_pools();
        self.mysql.close_pools();
    }
}
