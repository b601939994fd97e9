//! Everything a PostgreSQL client connection needs from the running proxy:
//! the pools (one per database and user), the cancel registry, the derived
//! SCRAM verifiers, and the shutdown signal. `serve` takes one accepted
//! connection from its first byte to its close.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::auth::scram_verifier_from_password;
use super::backend::UpstreamTarget;
use super::cancel::CancelRegistry;
use super::connector::PgConnector;
use super::login::{self, challenge_for};
use super::pin_counters::PinCounters;
use super::prepared::StatementRegistry;
use super::session;
use super::startup::{self, Opening, Startup, StartupError};
use super::state::Settings;
use super::wire::messages::sqlstate;
use crate::admin::ADMIN_DATABASE;
use crate::config::{
    AuthType, ClientSecret, Config, DatabaseConfig, Protocol, ScramVerifier, UserConfig,
};
use crate::mysql::service::MySqlService;
use crate::pool::{Pool, PoolLimits};
use crate::registry::{ClientRegistry, ServerRegistry};
use crate::server::frontend::Frontend;
use crate::stream::Stream;

/// Pool of server connections for one (database, user).
pub type PgPool = Pool<PgConnector>;

/// Shared state of the PostgreSQL side of the proxy.
pub struct PgService {
    /// Swapped whole by the admin console's RELOAD.
    pub config: ArcSwap<Config>,
    pools: HashMap<(String, String), PgPool>,
    /// Verifiers derived once from plaintext secrets, for SCRAM logins.
    derived_verifiers: ArcSwap<HashMap<String, ScramVerifier>>,
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
    pub servers: Arc<ServerRegistry>,
    /// The `--config` file, which RELOAD re-reads.
    pub config_file: Option<PathBuf>,
    /// The MySQL side, which the admin console's RELOAD updates too.
    pub mysql: OnceLock<Arc<MySqlService>>,
}

type SettingsKey = (String, String, Vec<(String, String)>);

/// Entries kept in the normalised-settings cache before it starts over.
const NORMALIZED_CACHE_LIMIT: usize = 1024;

impl PgService {
    /// Builds a pool for every (database, user) pair. Must run inside a
    /// Tokio runtime (each pool starts its janitor).
    pub fn new(config: Arc<Config>, shutdown: CancellationToken) -> Self {
        let mut pools = HashMap::new();
        let servers = Arc::new(ServerRegistry::default());
        let postgres_databases =
            (config.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Postgres);
        for (db_name, db) in postgres_databases {
            for (user_name, user) in &config.users {
                let connector = PgConnector {
                    target: Arc::new(upstream_target(db, user)),
                    pool_name: (db_name.clone(), user_name.clone()),
                    servers: Arc::clone(&servers),
                };
                let pool = Pool::new(connector, PoolLimits::from(&db.pool));
                pools.insert((db_name.clone(), user_name.clone()), pool);
            }
        }
        PgService {
            derived_verifiers: ArcSwap::from_pointee(derive_verifiers(&config)),
            config: ArcSwap::new(config),
            pools,
            cancels: Arc::default(),
            shutdown,
            statements: StatementRegistry::default(),
            pin_counters: PinCounters::default(),
            normalized: Mutex::default(),
            clients: Arc::default(),
            servers,
            config_file: None,
            mysql: OnceLock::new(),
        }
    }

    /// Puts a reloaded configuration in force for new logins and sessions.
    pub fn swap_config(&self, config: Arc<Config>) {
        self.derived_verifiers
            .store(Arc::new(derive_verifiers(&config)));
        self.config.store(config);
    }

    pub fn pool(&self, database: &str, user: &str) -> Option<&PgPool> {
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

    pub fn pools(&self) -> impl Iterator<Item = (&(String, String), &PgPool)> {
        self.pools.iter()
    }

    /// The configured TCP upstreams, as (`host`, `port`), each once.
    pub fn tcp_upstreams(&self) -> Vec<(String, u16)> {
        let mut upstreams: Vec<(String, u16)> = self
            .config
            .load()
            .databases
            .values()
            .filter(|db| !db.host.starts_with('/'))
            .map(|db| (db.host.clone(), db.port))
            .collect();
        upstreams.sort();
        upstreams.dedup();
        upstreams
    }

    /// Closes every pool: idle server connections now, busy ones on release.
    pub fn close_pools(&self) {
        for pool in self.pools.values() {
            pool.close();
        }
    }

    /// Serves one client connection until it closes.
    pub async fn serve(self: Arc<Self>, mut stream: Stream, peer: String) {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let login_timeout = self.config.load().pool.client_login_timeout;
        let login = async {
            match startup::read_opening(&mut stream, &mut buf).await? {
                Opening::Cancel {
                    process_id,
                    secret_key,
                } => {
                    self.cancels.cancel(process_id, secret_key).await;
                    Ok(None)
                }
                Opening::Startup(startup) => {
                    self.log_in(&mut stream, &mut buf, startup).await.map(Some)
                }
            }
        };
        let outcome = match login_timeout {
            Some(limit) => tokio::time::timeout(limit, login)
                .await
                .unwrap_or_else(|_| {
                    Err(StartupError::Refused {
                        code: sqlstate::PROTOCOL_VIOLATION,
                        message: format!(
                            "client did not log in within client_login_timeout ({limit:?})"
                        ),
                    })
                }),
            None => login.await,
        };
        match outcome {
            Ok(Some(startup)) if startup.database == ADMIN_DATABASE => {
                crate::admin::serve(&self, stream, buf, &peer).await;
            }
            Ok(Some(startup)) => {
                let application_name = startup
                    .params
                    .iter()
                    .find(|(name, _)| name == "application_name")
                    .map_or("", |(_, value)| value.as_str());
                let client = self.clients.logged_in(
                    crate::metrics::PROTOCOL_POSTGRES,
                    &startup.database,
                    &startup.user,
                    application_name,
                    &stream,
                );
                // KILL ends the session where it stands; dropping it closes
                // the server connection it holds.
                tokio::select! {
                    () = session::run(&self, stream, buf, startup, &peer, &client) => {}
                    () = client.killed() => tracing::info!(%peer, "client killed from the admin console"),
                }
            }
            Ok(None) | Err(StartupError::Closed) | Err(StartupError::Io(_)) => {}
            Err(StartupError::Refused { code, message }) => {
                tracing::debug!(%peer, %code, reason = %message, "client login refused");
                crate::metrics::login_refused(code);
                startup::send_fatal(&mut stream, code, &message).await;
            }
        }
    }

    /// Authenticates the client and checks its database exists; a client
    /// that fails here never touches an upstream connection.
    async fn log_in(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        startup: Startup,
    ) -> Result<Startup, StartupError> {
        let refused = |code, message: String| StartupError::Refused { code, message };
        let config = self.config.load_full();
        let verifiers = self.derived_verifiers.load_full();
        let user: &UserConfig = config.users.get(&startup.user).ok_or_else(|| {
            refused(
                sqlstate::INVALID_AUTHORIZATION,
                format!("role \"{}\" does not exist", startup.user),
            )
        })?;
        let challenge = challenge_for(
            config.general.auth_type,
            user.secret.as_ref(),
            verifiers.get(&startup.user),
        )
        .ok_or_else(|| {
            refused(
                sqlstate::INVALID_PASSWORD,
                format!(
                    "password authentication failed for user \"{}\"",
                    startup.user
                ),
            )
        })?;
        login::authenticate(stream, buf, &startup.user, challenge)
            .await
            .map_err(|error| match error {
                login::LoginError::Closed => StartupError::Closed,
                login::LoginError::Io(io) => StartupError::Io(io),
                other => refused(other.sqlstate(), other.to_string()),
            })?;
        if startup.database == ADMIN_DATABASE {
            return if config.general.observe.admin_users.contains(&startup.user) {
                Ok(startup)
            } else {
                Err(refused(
                    sqlstate::INVALID_AUTHORIZATION,
                    format!(
                        "user \"{}\" may not use the admin console (not in [general] admin_users)",
                        startup.user
                    ),
                ))
            };
        }
        if !config.databases.contains_key(&startup.database) {
            return Err(refused(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{}\" does not exist", startup.database),
            ));
        }
        Ok(startup)
    }
}

impl Frontend for PgService {
    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn serve(self: Arc<Self>, stream: Stream, peer: String) -> impl Future<Output = ()> + Send {
        PgService::serve(self, stream, peer)
    }

    fn refuse_too_many(stream: Stream) -> impl Future<Output = ()> + Send {
        startup::refuse_connection(
            stream,
            sqlstate::TOO_MANY_CONNECTIONS,
            "no more connections allowed (max_client_conn)",
        )
    }
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
