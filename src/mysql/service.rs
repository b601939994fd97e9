//! Everything a MySQL client connection needs from the running proxy: the
//! pools (one per database, user and FOUND_ROWS setting), connection ids,
//! the registry `KILL` looks clients up in, churnstile's RSA key for
//! caching_sha2_password, and the collation names of handshake character
//! sets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::auth::{AuthError, ServerKey};
use super::backend::UpstreamTarget;
use super::connector::MyConnector;
use super::kill::KillRegistry;
use super::wire::errors;
use super::wire::packet::write_packet;
use super::wire::response::ErrPacket;
use crate::config::{Config, Protocol};
use crate::pool::{Pool, PoolLimits, PoolStatsSnapshot};
use crate::registry::{ClientRegistry, ServerRegistry};
use crate::server::frontend::Frontend;
use crate::stream::Stream;

/// Pool of server connections for one (database, user).
pub(crate) type MyPool = Pool<MyConnector>;

/// (database, user, client asked for FOUND_ROWS): the flag changes what
/// UPDATE reports, and is fixed per server connection at login.
pub(crate) type PoolKey = (String, String, bool);

/// Shared state of the MySQL side of the proxy.
pub struct MySqlService {
    pub(super) config: ArcSwap<Config>,
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
        config: Arc<Config>,
        shutdown: CancellationToken,
        registry: Arc<ClientRegistry>,
        servers: Arc<ServerRegistry>,
    ) -> Self {
        let mut pools = HashMap::new();
        let mysql_databases =
            (config.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Mysql);
        for (db_name, db) in mysql_databases {
            for (user_name, user) in &config.users {
                for found_rows in [false, true] {
                    let target = Arc::new(UpstreamTarget::for_pool(db, user, found_rows));
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
            config: ArcSwap::new(config),
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

    /// Each (database, user) with its pools' counters merged over the
    /// FOUND_ROWS variants.
    pub(crate) fn pool_stats(&self) -> BTreeMap<(String, String), PoolStatsSnapshot> {
        let mut merged: BTreeMap<(String, String), PoolStatsSnapshot> = BTreeMap::new();
        for ((database, user, _), pool) in &self.pools {
            let key = (database.clone(), user.clone());
            let stats = pool.stats();
            let entry = merged.entry(key).or_default();
            *entry = entry.merged(&stats);
        }
        merged
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

    /// Clients that logged in to (database, user) since start.
    pub(crate) fn logins(&self, database: &str, user: &str) -> u64 {
        self.registry
            .logins()
            .get(&(database.to_owned(), user.to_owned()))
            .copied()
            .unwrap_or(0)
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

    /// Puts a reloaded configuration in force for new logins; a changed
    /// password must be proven in full again.
    pub(crate) fn swap_config(&self, config: Arc<Config>) {
        lock(&self.sha2_cache).clear();
        self.config.store(config);
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

impl Frontend for MySqlService {
    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn serve(self: Arc<Self>, stream: Stream, peer: String) -> impl Future<Output = ()> + Send {
        super::serve(self, stream, peer)
    }

    /// MySQL refuses with an ERR packet in place of the greeting.
    async fn refuse_too_many(mut stream: Stream) {
        use tokio::io::AsyncWriteExt;
        let mut payload = bytes::BytesMut::new();
        ErrPacket::new(
            errors::TOO_MANY_CONNECTIONS,
            "Too many connections (max_client_conn)",
        )
        .encode(&mut payload);
        let mut out = bytes::BytesMut::new();
        write_packet(&mut out, 0, &payload);
        let _ = stream.write_all(&out).await;
    }
}
