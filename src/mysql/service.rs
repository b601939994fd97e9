//! Everything a MySQL client connection needs from the running proxy: the
//! pools (one per database, user and FOUND_ROWS setting), connection ids,
//! the registry `KILL` looks clients up in, churnstile's RSA key for
//! caching_sha2_password, and the collation names of handshake character
//! sets.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::auth::{AuthError, ServerKey};
use super::backend::UpstreamTarget;
use super::connector::MyConnector;
use super::kill::KillRegistry;
use super::sql::PinReason;
use crate::config::{Config, Protocol};
use crate::pool::{PinCounters, Pool, PoolIdentity, PoolLimits, PoolSet, Wanted};
use crate::registry::{ClientRegistry, ServerRegistry};
use crate::tls::TlsContexts;

/// Pool of server connections for one (database, user).
pub(crate) type MyPool = Pool<MyConnector>;

/// (database, user, client asked for FOUND_ROWS): the flag changes what
/// UPDATE reports, and is fixed per server connection at login.
pub(crate) type PoolKey = (String, String, bool);

/// Shared state of the MySQL side of the proxy.
pub struct MySqlService {
    /// The configuration in force, shared with the core, which swaps it
    /// whole on RELOAD.
    pub(crate) config: Arc<ArcSwap<Config>>,
    /// One pool per (database, user, FOUND_ROWS), rebuilt where a reload
    /// changes it.
    pools: PoolSet<PoolKey, Identity, MyConnector>,
    servers: Arc<ServerRegistry>,
    pub(crate) shutdown: CancellationToken,
    next_connection_id: AtomicU32,
    pub(super) clients: KillRegistry,
    /// Times clients became pinned, per reason.
    pub(crate) pin_counters: PinCounters,
    /// Logged-in clients of both protocols, for the admin console, login
    /// counts and KILL of a database.
    pub(super) registry: Arc<ClientRegistry>,
    rsa_key: OnceCell<Arc<ServerKey>>,
    /// Users who passed caching_sha2_password full authentication.
    sha2_cache: Mutex<HashSet<String>>,
    /// Character set and collation names by handshake collation id, as the
    /// upstream server names them (`None`: the server does not know it).
    collations: Mutex<HashMap<u8, Option<(String, String)>>>,
}

impl MySqlService {
    /// Builds the pools. Must run inside a Tokio runtime.
    pub(crate) fn new(
        config: Arc<ArcSwap<Config>>,
        shutdown: CancellationToken,
        registry: Arc<ClientRegistry>,
        servers: Arc<ServerRegistry>,
        tls: &TlsContexts,
    ) -> Self {
        let pools = PoolSet::new(wanted_pools(&config.load(), &servers, tls));
        MySqlService {
            config,
            pools,
            servers,
            shutdown,
            next_connection_id: AtomicU32::new(1),
            clients: KillRegistry::default(),
            pin_counters: PinCounters::new(PinReason::ALL.map(PinReason::label)),
            registry,
            rsa_key: OnceCell::new(),
            sha2_cache: Mutex::default(),
            collations: Mutex::default(),
        }
    }

    /// The pool of `key` in force now.
    pub(super) fn pool(&self, key: &PoolKey) -> Option<MyPool> {
        self.pools.get(key)
    }

    /// Every pool with its (database, user, found_rows).
    pub(crate) fn pools(&self) -> Vec<(PoolKey, MyPool)> {
        self.pools.all()
    }

    /// A connection id no connected client has (ids wrap after 2^32 - 1).
    pub(super) fn new_connection_id(&self) -> u32 {
        loop {
            let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 && !self.clients.contains(id) {
                return id;
            }
        }
    }

    /// The RSA key pair for caching_sha2_password, generated on first use
    /// away from the async threads.
    pub(super) async fn rsa_key(&self) -> Result<Arc<ServerKey>, AuthError> {
        self.rsa_key
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(ServerKey::generate)
                    .await
                    .unwrap_or_else(|_| ServerKey::generate())
                    .map(Arc::new)
            })
            .await
            .cloned()
    }

    pub(super) fn sha2_cached(&self, user: &str) -> bool {
        lock(&self.sha2_cache).contains(user)
    }

    pub(super) fn sha2_remember(&self, user: &str) {
        lock(&self.sha2_cache).insert(user.to_owned());
    }

    /// The known names of a handshake collation id, if it was looked up.
    pub(super) fn collation(&self, id: u8) -> Option<Option<(String, String)>> {
        lock(&self.collations).get(&id).cloned()
    }

    pub(super) fn remember_collation(&self, id: u8, names: Option<(String, String)>) {
        lock(&self.collations).insert(id, names);
    }

    /// Puts a reloaded configuration's pools in force, before the core
    /// hands the configuration to new sessions (pools of removed or changed
    /// databases and users close as their clients let go); a changed
    /// password must be proven in full again.
    pub(crate) fn reload(&self, config: &Config, tls: &TlsContexts) {
        self.pools
            .reconcile(wanted_pools(config, &self.servers, tls));
        lock(&self.sha2_cache).clear();
    }

    /// Closes every pool (at shutdown): idle server connections now, busy
    /// ones on release.
    pub(crate) fn close_pools(&self) {
        self.pools.close_all();
    }
}

/// A pool's identity across a reload: its upstream without the TLS
/// configuration (rebuilt at every reload, so never equal), and the TLS
/// mode, so that a changed mode replaces the pool while new certificate
/// files alone reach it at its next replacement.
type Identity = (PoolIdentity<UpstreamTarget>, Option<&'static str>);

/// Two pools (without and with FOUND_ROWS) for every MySQL database and
/// user of `config`.
fn wanted_pools(
    config: &Config,
    servers: &Arc<ServerRegistry>,
    tls: &TlsContexts,
) -> Vec<Wanted<PoolKey, Identity, MyConnector>> {
    let databases = (config.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Mysql);
    let mut wanted = Vec::new();
    for (db_name, db) in databases {
        for (user_name, user) in &config.users {
            for found_rows in [false, true] {
                let upstream_tls = tls.upstream(db_name).cloned();
                let sslmode = upstream_tls.as_ref().map(|tls| tls.sslmode);
                let target = UpstreamTarget::for_pool(db, user, found_rows, upstream_tls);
                let compared = UpstreamTarget {
                    tls: None,
                    ..target.clone()
                };
                let connector = MyConnector {
                    target: Arc::new(target),
                    pool_name: (db_name.clone(), user_name.clone()),
                    servers: Arc::clone(servers),
                };
                wanted.push(Wanted {
                    key: (db_name.clone(), user_name.clone(), found_rows),
                    identity: (
                        PoolIdentity {
                            target: compared,
                            mode: db.pool.pool_mode,
                        },
                        sslmode,
                    ),
                    limits: PoolLimits::from(&db.pool),
                    connector,
                });
            }
        }
    }
    wanted
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
