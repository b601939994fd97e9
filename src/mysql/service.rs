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
use crate::config::{Config, Protocol};
use crate::pool::{Pool, PoolLimits};
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
    pools: HashMap<PoolKey, MyPool>,
    pub(crate) shutdown: CancellationToken,
    next_connection_id: AtomicU32,
    pub(super) clients: KillRegistry,
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
        let mut pools = HashMap::new();
        let snapshot = config.load_full();
        let mysql_databases =
            (snapshot.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Mysql);
        for (db_name, db) in mysql_databases {
            for (user_name, user) in &snapshot.users {
                for found_rows in [false, true] {
                    let tls = tls.upstream(db_name).cloned();
                    let target = Arc::new(UpstreamTarget::for_pool(db, user, found_rows, tls));
                    let connector = MyConnector {
                        target,
                        pool_name: (db_name.clone(), user_name.clone()),
                        servers: Arc::clone(&servers),
                    };
                    let pool = Pool::new(connector, PoolLimits::from(&db.pool));
                    pools.insert((db_name.clone(), user_name.clone(), found_rows), pool);
                }
            }
        }
        MySqlService {
            config,
            pools,
            shutdown,
            next_connection_id: AtomicU32::new(1),
            clients: KillRegistry::default(),
            registry,
            rsa_key: OnceCell::new(),
            sha2_cache: Mutex::default(),
            collations: Mutex::default(),
        }
    }

    pub(super) fn pool(&self, key: &PoolKey) -> Option<&MyPool> {
        self.pools.get(key)
    }

    /// Every pool with its (database, user, found_rows).
    pub(crate) fn pools(&self) -> impl Iterator<Item = (&PoolKey, &MyPool)> {
        self.pools.iter()
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

    /// After the core put a reloaded configuration in force: a changed
    /// password must be proven in full again.
    pub(crate) fn reloaded(&self) {
        lock(&self.sha2_cache).clear();
    }

    /// Closes every idle server connection (at shutdown).
    pub(crate) fn close_pools(&self) {
        for pool in self.pools.values() {
            pool.close();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
