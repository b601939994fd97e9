//! Everything a PostgreSQL client connection needs from the running proxy:
//! the pools (one per database and user), the cancel registry, the derived
//! SCRAM verifiers, and the handles the core shares with it (the
//! configuration in force, the registries, the shutdown signal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::auth::scram_verifier_from_password;
use super::backend::UpstreamTarget;
use super::cancel::CancelRegistry;
use super::connector::PgConnector;
use super::prepared::StatementRegistry;
use super::sql::PinReason;
use super::state::Settings;
use crate::config::{
    AuthType, ClientSecret, Config, DatabaseConfig, Protocol, ScramVerifier, UserConfig,
};
use crate::pool::{PinCounters, Pool, PoolIdentity, PoolLimits, PoolSet, Wanted};
use crate::registry::{ClientRegistry, ServerRegistry};
use crate::tls::TlsContexts;

/// Pool of server connections for one (database, user).
pub type PgPool = Pool<PgConnector>;

/// Shared state of the PostgreSQL side of the proxy.
pub struct PgService {
    /// The configuration in force, shared with the core, which swaps it
    /// whole on RELOAD.
    pub config: Arc<ArcSwap<Config>>,
    /// One pool per (database, user), rebuilt where a reload changes it.
    pools: PoolSet<(String, String), PoolIdentity<UpstreamTarget>, PgConnector>,
    /// Verifiers derived once from plaintext secrets, for SCRAM logins.
    pub(super) derived_verifiers: ArcSwap<HashMap<String, ScramVerifier>>,
    pub cancels: Arc<CancelRegistry>,
    pub shutdown: CancellationToken,
    /// Prepared statements shared by all clients (transaction pooling).
    pub statements: StatementRegistry,
    pub pin_counters: PinCounters,
    /// Startup settings as the server normalises them, per pool, so a
    /// reconnecting client needs no extra round trip to learn them.
    normalized: Mutex<HashMap<SettingsKey, Settings>>,
    /// Logged-in clients and open server connections, for the admin console.
    pub clients: Arc<ClientRegistry>,
    servers: Arc<ServerRegistry>,
    /// TLS for clients and upstream, shared with the core, which swaps it
    /// whole on RELOAD.
    pub(super) tls: Arc<ArcSwap<TlsContexts>>,
}

type SettingsKey = (String, String, Vec<(String, String)>);

/// Entries kept in the normalised-settings cache before it starts over.
const NORMALIZED_CACHE_LIMIT: usize = 1024;

impl PgService {
    /// Builds a pool for every (database, user) pair. Must run inside a
    /// Tokio runtime (each pool starts its janitor).
    pub fn new(
        config: Arc<ArcSwap<Config>>,
        shutdown: CancellationToken,
        clients: Arc<ClientRegistry>,
        servers: Arc<ServerRegistry>,
        tls: Arc<ArcSwap<TlsContexts>>,
    ) -> Self {
        let snapshot = config.load_full();
        let pools = PoolSet::new(wanted_pools(&snapshot, &servers, &tls));
        PgService {
            derived_verifiers: ArcSwap::from_pointee(derive_verifiers(&snapshot)),
            config,
            pools,
            cancels: Arc::default(),
            shutdown,
            statements: StatementRegistry::default(),
            pin_counters: PinCounters::new(PinReason::ALL.map(PinReason::as_str)),
            normalized: Mutex::default(),
            clients,
            servers,
            tls,
        }
    }

    /// Puts a reloaded configuration's pools and secrets in force, before
    /// the core hands the configuration to new sessions: pools of removed
    /// or changed databases and users close as their clients let go.
    pub fn reload(&self, config: &Config) {
        self.pools
            .reconcile(wanted_pools(config, &self.servers, &self.tls));
        self.derived_verifiers
            .store(Arc::new(derive_verifiers(config)));
    }

    /// The pool of (database, user) in force now.
    pub fn pool(&self, database: &str, user: &str) -> Option<PgPool> {
        self.pools.get(&(database.to_owned(), user.to_owned()))
    }

    /// The server's normalised form of these startup settings, if known.
    pub fn normalized_settings(
        &self,
        database: &str,
        user: &str,
        startup: &[(String, String)],
    ) -> Option<Settings> {
        if startup.is_empty() {
            return Some(Settings::new());
        }
        let cache = self.normalized.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(database.to_owned(), user.to_owned(), startup.to_vec()))
            .cloned()
    }

    pub fn remember_settings(
        &self,
        database: &str,
        user: &str,
        startup: &[(String, String)],
        normalized: Settings,
    ) {
        let mut cache = self.normalized.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= NORMALIZED_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(
            (database.to_owned(), user.to_owned(), startup.to_vec()),
            normalized,
        );
    }

    /// Every pool in force, by (database, user).
    pub fn pools(&self) -> Vec<((String, String), PgPool)> {
        self.pools.all()
    }

    /// Closes every pool: idle server connections now, busy ones on release.
    pub fn close_pools(&self) {
        self.pools.close_all();
    }
}

/// A pool for every PostgreSQL database and user of `config`.
fn wanted_pools(
    config: &Config,
    servers: &Arc<ServerRegistry>,
    tls: &Arc<ArcSwap<TlsContexts>>,
) -> Vec<Wanted<(String, String), PoolIdentity<UpstreamTarget>, PgConnector>> {
    let databases = (config.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Postgres);
    let mut wanted = Vec::new();
    for (db_name, db) in databases {
        for (user_name, user) in &config.users {
            let target = upstream_target(db, user);
            let key = (db_name.clone(), user_name.clone());
            let connector = PgConnector {
                target: Arc::new(target.clone()),
                pool_name: key.clone(),
                servers: Arc::clone(servers),
                tls: Arc::clone(tls),
            };
            wanted.push(Wanted {
                key,
                identity: PoolIdentity {
                    target,
                    mode: db.pool.pool_mode,
                },
                limits: PoolLimits::from(&db.pool),
                connector,
            });
        }
    }
    wanted
}

/// SCRAM verifiers for users whose secret is plaintext, when logins use SCRAM.
fn derive_verifiers(config: &Config) -> HashMap<String, ScramVerifier> {
    if config.general.auth_type != AuthType::ScramSha256 {
        return HashMap::new();
    }
    config
        .users
        .iter()
        .filter_map(|(name, user)| match &user.secret {
            Some(ClientSecret::Plain(password)) => {
                Some((name.clone(), scram_verifier_from_password(password)))
            }
            _ => None,
        })
        .collect()
}

pub fn upstream_target(db: &DatabaseConfig, user: &UserConfig) -> UpstreamTarget {
    let (login, password) = db.upstream_login(user);
    UpstreamTarget {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone(),
        user: login.to_owned(),
        password: password.map(str::to_owned),
    }
}
