//! The validated configuration churnstile runs with: listeners, pool defaults,
//! databases and users. Loading and validation live in `load.rs`; the
//! zero-config `--upstream URL` form is built in `url.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::tls::TlsVersions;

/// Everything churnstile needs to run, after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: ListenConfig,
    pub general: GeneralConfig,
    /// Pool settings every database inherits unless it overrides them.
    pub pool: PoolSettings,
    pub databases: BTreeMap<String, DatabaseConfig>,
    pub users: BTreeMap<String, UserConfig>,
}

impl Config {
    /// Where the PostgreSQL Unix socket is opened: `unix_socket_dir`, when
    /// PostgreSQL is served at all (a TCP listener or a database speaks it).
    pub fn postgres_socket_dir(&self) -> Option<&Path> {
        let serves_postgres = !self.listen.postgres.is_empty()
            || (self.databases.values()).any(|db| db.protocol == Protocol::Postgres);
        (self.listen.unix_socket_dir.as_deref()).filter(|_| serves_postgres)
    }

    /// Whether any listener, TCP or Unix, of either protocol is configured.
    pub(super) fn has_listeners(&self) -> bool {
        !self.listen.postgres.is_empty()
            || self.postgres_socket_dir().is_some()
            || !self.listen.mysql.is_empty()
            || self.listen.mysql_unix_socket.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    /// TCP addresses that speak the PostgreSQL protocol.
    pub postgres: Vec<SocketAddr>,
    /// Directory for the Unix socket `.s.PGSQL.<port>`; `None` disables it.
    pub unix_socket_dir: Option<PathBuf>,
    /// Port number in the Unix socket's file name (what `psql -p` expects).
    pub unix_socket_port: u16,
    /// TCP addresses that speak the MySQL protocol.
    pub mysql: Vec<SocketAddr>,
    /// Path of the Unix socket that speaks the MySQL protocol; `None` disables it.
    pub mysql_unix_socket: Option<PathBuf>,
}

/// PgBouncer's listening port, churnstile's too.
const DEFAULT_LISTEN_PORT: u16 = 6432;

/// ProxySQL listens on 6033; 3307 is what operators reach for next to a
/// MySQL on 3306.
pub(crate) const DEFAULT_MYSQL_LISTEN_PORT: u16 = 3307;

impl ListenConfig {
    /// The MySQL Unix socket in `dir` when none is configured:
    /// `churnstile-mysql-<port>.sock`, the first MySQL listener's port
    /// (unless it asks for an ephemeral one) or 3307.
    pub(super) fn default_mysql_socket(dir: &Path, mysql: &[SocketAddr]) -> PathBuf {
        let port = (mysql.first().map(SocketAddr::port))
            .filter(|&port| port != 0)
            .unwrap_or(DEFAULT_MYSQL_LISTEN_PORT);
        dir.join(format!("churnstile-mysql-{port}.sock"))
    }

    /// The Unix socket port when none is configured: the first TCP
    /// listener's port (unless it asks for an ephemeral port), else 6432.
    pub(super) fn default_unix_socket_port(postgres: &[SocketAddr]) -> u16 {
        postgres
            .first()
            .map(SocketAddr::port)
            .filter(|&port| port != 0)
            .unwrap_or(DEFAULT_LISTEN_PORT)
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            postgres: vec![SocketAddr::from(([127, 0, 0, 1], DEFAULT_LISTEN_PORT))],
            unix_socket_dir: Some(PathBuf::from("/tmp")),
            unix_socket_port: DEFAULT_LISTEN_PORT,
            mysql: Vec::new(),
            mysql_unix_socket: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneralConfig {
    /// How clients prove who they are.
    pub auth_type: AuthType,
    /// Client connections accepted at once, over all databases.
    pub max_client_conn: usize,
    /// How long SIGTERM waits for clients, or SIGINT for their transactions,
    /// to finish before closing them.
    pub shutdown_timeout: Duration,
    /// Threads that run client sessions. One (the default) serves a
    /// sidecar best: no cross-thread wake-ups on every message.
    pub worker_threads: usize,
    /// The authentication plugin churnstile's greeting names to MySQL clients.
    pub mysql_auth_plugin: MysqlAuthPlugin,
    /// SO_REUSEPORT on TCP listeners, so several churnstiles can share a
    /// port (PgBouncer's `so_reuseport`).
    pub so_reuseport: bool,
    pub observe: Observability,
    /// TLS between clients and churnstile, for both protocols.
    pub client_tls: ClientTls,
    /// Keepalive and user timeout of upstream connections and listeners.
    pub tcp: super::TcpSettings,
}

/// Metrics endpoint, admin console access and what is logged how.
#[derive(Debug, Clone, PartialEq)]
pub struct Observability {
    /// Where to serve Prometheus metrics over HTTP; `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Users (from `[users]`) who may open the admin console.
    pub admin_users: Vec<String>,
    /// Users (from `[users]`) who may open the console to SHOW only.
    pub stats_users: Vec<String>,
    pub log_format: LogFormat,
    /// A line per client login (PgBouncer's `log_connections`).
    pub log_connections: bool,
    /// A line per client that leaves, with how long it stayed and why.
    pub log_disconnections: bool,
    /// How often each database's `stats:` line is written; zero writes none.
    pub stats_period: Duration,
    /// A line per error churnstile itself sends a client.
    pub log_pooler_errors: bool,
}

impl Default for Observability {
    fn default() -> Self {
        Observability {
            metrics_listen: None,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            log_format: LogFormat::Text,
            log_connections: true,
            log_disconnections: true,
            stats_period: Duration::from_secs(60),
            log_pooler_errors: true,
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            auth_type: AuthType::Md5,
            max_client_conn: 100,
            shutdown_timeout: Duration::from_secs(30),
            worker_threads: 1,
            mysql_auth_plugin: MysqlAuthPlugin::NativePassword,
            so_reuseport: false,
            observe: Observability::default(),
            client_tls: ClientTls::default(),
            tcp: super::TcpSettings::default(),
        }
    }
}

/// Client authentication method, PgBouncer's `auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    /// No password asked; the user must still exist in `[users]`.
    Trust,
    /// MD5 challenge when the stored secret allows it, SCRAM when the stored
    /// secret is a SCRAM verifier (as PgBouncer does).
    Md5,
    /// SCRAM-SHA-256 always.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// The spelling used in the configuration file.
impl std::fmt::Display for AuthType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthType::Trust => "trust",
            AuthType::Md5 => "md5",
            AuthType::ScramSha256 => "scram-sha-256",
        })
    }
}

/// MySQL authentication plugins churnstile verifies clients with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum MysqlAuthPlugin {
    /// Every MySQL and MariaDB client speaks it.
    #[serde(rename = "mysql_native_password")]
    NativePassword,
    /// MySQL 8's default; full authentication uses churnstile's RSA key.
    #[serde(rename = "caching_sha2_password")]
    CachingSha2Password,
}

impl MysqlAuthPlugin {
    pub fn name(self) -> &'static str {
        match self {
            MysqlAuthPlugin::NativePassword => "mysql_native_password",
            MysqlAuthPlugin::CachingSha2Password => "caching_sha2_password",
        }
    }
}

/// How long a client keeps a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

/// `max_packet_size` unless configured: 64 MiB. PostgreSQL accepts
/// messages up to 1 GiB - 1 and PgBouncer's default is 2 GiB - 1, but a
/// pooler holds a message it inspects in memory, so that limit would let
/// each client make churnstile hold a gigabyte. 64 MiB still passes the
/// large multi-row INSERTs and bytea parameters applications send.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 64 << 20;

/// The largest `max_packet_size`: PostgreSQL's own message limit.
pub const MAX_MAX_PACKET_SIZE: usize = (1 << 30) - 1;

/// PgBouncer's pool settings, with PgBouncer's names and meanings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub pool_mode: PoolMode,
    /// Most server connections per (database, user) pool.
    pub default_pool_size: usize,
    /// Server connections kept open even when idle.
    pub min_pool_size: usize,
    /// Close a server connection older than this when it is released;
    /// zero means each server connection serves one client only.
    pub server_lifetime: Duration,
    /// Close a server connection idle for longer; `None` never.
    pub server_idle_timeout: Option<Duration>,
    /// A client waiting longer than this for a server connection gets an
    /// error; `None` waits forever.
    pub query_wait_timeout: Option<Duration>,
    /// Close a client idle (between queries) for longer; `None` never.
    pub client_idle_timeout: Option<Duration>,
    /// A client must finish logging in within this; `None` never.
    pub client_login_timeout: Option<Duration>,
    /// Limit for opening and logging in one server connection.
    pub server_connect_timeout: Duration,
    /// Sent before a server connection goes back to the pool; empty disables.
    pub server_reset_query: String,
    /// Protocol-level prepared statements kept per server connection under
    /// transaction and statement pooling (least recently used ones closed).
    pub max_prepared_statements: usize,
    /// What to do when a client creates state that cannot move between
    /// server connections (LISTEN, session advisory locks, temp tables...).
    pub pin_policy: PinPolicy,
    /// TLS between churnstile and the database's servers.
    pub server_tls: ServerTls,
    /// Largest client message churnstile holds whole, in bytes (the
    /// messages it rewrites or analyses under transaction and statement
    /// pooling, and a first message before a server is attached); a client
    /// declaring a larger one gets 08P01 before its body is read.
    pub max_packet_size: usize,
}

/// Transaction pooling's answer to session state that cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPolicy {
    /// Keep the client on its server connection until the state is gone.
    Pin,
    /// Refuse the statement with an error naming it and the reason.
    Reject,
}

/// PgBouncer's defaults.
impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_mode: PoolMode::Session,
            default_pool_size: 20,
            min_pool_size: 0,
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Some(Duration::from_secs(600)),
            query_wait_timeout: Some(Duration::from_secs(120)),
            client_idle_timeout: None,
            client_login_timeout: Some(Duration::from_secs(60)),
            server_connect_timeout: Duration::from_secs(15),
            server_reset_query: "DISCARD ALL".to_owned(),
            max_prepared_statements: 200,
            pin_policy: PinPolicy::Pin,
            server_tls: ServerTls::default(),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

/// `client_tls_sslmode`: what churnstile asks of clients, PgBouncer's
/// meanings. One certificate serves PostgreSQL and MySQL clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// No TLS; a client asking for it is told no.
    #[default]
    Disable,
    /// TLS when the client asks (PgBouncer treats `allow` like `prefer`).
    Allow,
    /// TLS when the client asks.
    Prefer,
    /// Plaintext clients are refused.
    Require,
    /// TLS with a client certificate issued by `client_tls_ca_file`.
    VerifyCa,
    /// As `verify-ca` (the certificate is checked the same way).
    VerifyFull,
}

impl ClientTlsMode {
    /// Whether clients may use TLS at all.
    pub fn offers_tls(self) -> bool {
        self != ClientTlsMode::Disable
    }

    /// Whether a plaintext client is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            ClientTlsMode::Require | ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
        )
    }

    /// Whether clients must present a certificate issued by `client_tls_ca_file`.
    pub fn verifies_client_certificates(self) -> bool {
        matches!(self, ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull)
    }

    /// The spelling used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Prefer => "prefer",
            ClientTlsMode::Require => "require",
            ClientTlsMode::VerifyCa => "verify-ca",
            ClientTlsMode::VerifyFull => "verify-full",
        }
    }
}

/// `server_tls_sslmode`: how churnstile connects to a database's servers,
/// libpq's meanings. For MySQL they are ssl-mode's DISABLED, PREFERRED,
/// REQUIRED, VERIFY_CA and VERIFY_IDENTITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    Disable,
    /// TLS when the server offers it, without checking its certificate.
    #[default]
    Prefer,
    /// TLS or no connection, without checking the certificate.
    Require,
    /// TLS with a certificate issued by `server_tls_ca_file`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must be for the host name.
    VerifyFull,
}

impl ServerTlsMode {
    /// Whether churnstile asks the server for TLS.
    pub fn asks_for_tls(self) -> bool {
        self != ServerTlsMode::Disable
    }

    /// Whether a server that cannot do TLS is an error.
    pub fn requires_tls(self) -> bool {
        !matches!(self, ServerTlsMode::Disable | ServerTlsMode::Prefer)
    }

    /// The spelling used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        }
    }

    /// MySQL's name for the same mode (`--ssl-mode`).
    pub fn mysql_name(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "DISABLED",
            ServerTlsMode::Prefer => "PREFERRED",
            ServerTlsMode::Require => "REQUIRED",
            ServerTlsMode::VerifyCa => "VERIFY_CA",
            ServerTlsMode::VerifyFull => "VERIFY_IDENTITY",
        }
    }
}

/// The `client_tls_*` keys of `[general]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientTls {
    pub sslmode: ClientTlsMode,
    /// churnstile's certificate (chain, leaf first) and its private key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The CA that issues client certificates (`verify-ca`, `verify-full`).
    pub ca_file: Option<PathBuf>,
    pub protocols: TlsVersions,
}

/// The `server_tls_*` keys of `[pool]`; a database may override the mode
/// and the CA file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerTls {
    pub sslmode: ServerTlsMode,
    /// CAs a server's certificate must chain to; `None` is the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// A client certificate churnstile presents to servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub protocols: TlsVersions,
}

/// Wire protocol a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

impl Protocol {
    /// The port upstream servers of this protocol listen on unless told otherwise.
    pub(super) fn default_port(self) -> u16 {
        match self {
            Protocol::Postgres => 5432,
            Protocol::Mysql => 3306,
        }
    }

    /// The label metrics and the admin console use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

/// One `[databases.NAME]` entry: the name clients ask for, mapped upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// Database name on the upstream server.
    pub dbname: String,
    /// PgBouncer's forced user: every client of this database logs in
    /// upstream as this user instead of its own `upstream_user`.
    pub user: Option<String>,
    /// Password for the forced `user`.
    pub password: Option<String>,
    /// The global `[pool]` settings with this database's overrides applied.
    pub pool: PoolSettings,
}

impl DatabaseConfig {
    /// Who `user`'s clients log in upstream as, and with what password:
    /// the database's forced `user` when it has one.
    pub fn upstream_login<'a>(&'a self, user: &'a UserConfig) -> (&'a str, Option<&'a str>) {
        match &self.user {
            Some(forced) => (forced, self.password.as_deref()),
            None => (&user.upstream_user, user.upstream_password.as_deref()),
        }
    }
}

/// One `[users.NAME]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UserConfig {
    /// What the client must present; `None` only with `auth_type = "trust"`.
    pub secret: Option<ClientSecret>,
    /// User name churnstile logs in with upstream.
    pub upstream_user: String,
    /// Password churnstile logs in with upstream, when the server asks.
    pub upstream_password: Option<String>,
}

/// A client secret in one of the forms PostgreSQL itself stores.
#[derive(Clone, PartialEq)]
pub enum ClientSecret {
    Plain(String),
    /// `md5` followed by 32 hex digits of md5(password || user).
    Md5([u8; 16]),
    Scram(ScramVerifier),
    /// `*` followed by 40 hex digits of SHA1(SHA1(password)), as MySQL's
    /// `mysql.user` keeps it for mysql_native_password.
    MysqlNative([u8; 20]),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ClientSecret::Plain(_) => "plain",
            ClientSecret::Md5(_) => "md5",
            ClientSecret::Scram(_) => "scram-sha-256",
            ClientSecret::MysqlNative(_) => "mysql_native_password",
        };
        write!(f, "ClientSecret({kind}, redacted)")
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// The database name that opens the admin console; never a pool.
pub const ADMIN_DATABASE: &str = "churnstile";

/// PgBouncer's name for its console, answered too so PgBouncer's tools and
/// exporters connect unchanged; never a pool either.
pub const PGBOUNCER_ADMIN_DATABASE: &str = "pgbouncer";

/// Whether connecting to `database` opens the admin console.
pub fn is_admin_database(database: &str) -> bool {
    database == ADMIN_DATABASE || database == PGBOUNCER_ADMIN_DATABASE
}

impl Observability {
    /// Whether `user` may open the admin console (to change or to look).
    pub fn may_open_console(&self, user: &str) -> bool {
        self.admin_users
            .iter()
            .chain(&self.stats_users)
            .any(|u| u == user)
    }
}
