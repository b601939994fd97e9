//! The zero-config sidecar form: the flags and one or more upstream URLs
//! become a full [`Config`], one database per URL (named by its database)
//! and one user per URL user, so no file is needed. A URL without a
//! password takes it from `PGPASSWORD` (postgres://) or `MYSQL_PWD`
//! (mysql://), as those clients do, so it stays off the command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::types::{
    AuthType, ClientSecret, Config, DatabaseConfig, GeneralConfig, ListenConfig, PoolMode,
    PoolSettings, Protocol, UserConfig,
};
use super::url::{UpstreamUrl, UrlError};

/// The zero-config flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// `--listen`: PostgreSQL clients, or MySQL ones when every upstream
    /// is MySQL.
    pub listen: SocketAddr,
    /// `--upstream` (and `--upstream-file`, `CHURNSTILE_UPSTREAM`).
    pub upstreams: Vec<String>,
    pub mysql_listen: Option<SocketAddr>,
    pub unix_socket_dir: Option<PathBuf>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub max_client_conn: Option<usize>,
    pub admin_user: Option<String>,
}

impl Sidecar {
    /// Zero-config flags with only `--listen` and one `--upstream`.
    pub fn new(listen: SocketAddr, upstream: &str) -> Sidecar {
        Sidecar {
            listen,
            upstreams: vec![upstream.to_owned()],
            mysql_listen: None,
            unix_socket_dir: None,
            pool_mode: None,
            pool_size: None,
            max_client_conn: None,
            admin_user: None,
        }
    }
}

/// Why the zero-config flags make no configuration. Messages never
/// repeat a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    #[error("--upstream: {0}")]
    Url(#[from] UrlError),
    #[error("--pool-size must be at least 1")]
    ZeroPoolSize,
    #[error("--max-client-conn must be at least 1")]
    ZeroMaxClientConn,
    #[error("two --upstream URLs name the database {0:?}; each URL is one database, by its name")]
    DuplicateDatabase(String),
    #[error("the --upstream URLs give user {0:?} different passwords; one user has one password")]
    ConflictingPasswords(String),
    #[error(
        "some --upstream URLs have a password and some not; clients are either all checked \
         (md5) or all trusted, so give every URL a password or none"
    )]
    MixedPasswords,
    #[error(
        "the upstreams mix postgres:// and mysql://: --listen serves PostgreSQL, so give \
         --mysql-listen ADDR for the MySQL clients"
    )]
    MysqlListenNeeded,
    #[error("--mysql-listen is given but no --upstream is mysql://")]
    MysqlListenUnused,
    #[error("--admin-user {0:?} is not the user of any --upstream URL")]
    UnknownAdminUser(String),
}

/// The configuration the flags describe; `env` reads `PGPASSWORD` and
/// `MYSQL_PWD` for URLs without a password.
pub fn sidecar_config(
    flags: &Sidecar,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, SidecarError> {
    let pool = pool_settings(flags)?;
    let mut databases = BTreeMap::new();
    let mut users: BTreeMap<String, UserConfig> = BTreeMap::new();
    let mut with_password = 0;
    for upstream in &flags.upstreams {
        let mut url = UpstreamUrl::parse(upstream)?;
        url.password = url
            .password
            .or_else(|| password_from_env(url.protocol, env));
        with_password += usize::from(url.password.is_some());
        let user = UserConfig {
            secret: url.password.clone().map(ClientSecret::Plain),
            upstream_user: url.user.clone(),
            upstream_password: url.password,
        };
        match users.get(&url.user) {
            Some(known) if *known != user => {
                return Err(SidecarError::ConflictingPasswords(url.user));
            }
            _ => users.insert(url.user, user),
        };
        let database = DatabaseConfig {
            protocol: url.protocol,
            host: url.host,
            port: url.port,
            dbname: url.dbname.clone(),
            user: None,
            password: None,
            pool: PoolSettings {
                server_tls: url.tls,
                ..pool.clone()
            },
        };
        if databases.insert(url.dbname.clone(), database).is_some() {
            return Err(SidecarError::DuplicateDatabase(url.dbname));
        }
    }
    let auth_type = match with_password {
        0 => AuthType::Trust,
        n if n == flags.upstreams.len() => AuthType::Md5,
        _ => return Err(SidecarError::MixedPasswords),
    };
    let mut general = GeneralConfig {
        auth_type,
        max_client_conn: flags
            .max_client_conn
            .unwrap_or(GeneralConfig::default().max_client_conn),
        ..GeneralConfig::default()
    };
    if let Some(admin) = &flags.admin_user {
        if !users.contains_key(admin) {
            return Err(SidecarError::UnknownAdminUser(admin.clone()));
        }
        general.observe.admin_users = vec![admin.clone()];
    }
    Ok(Config {
        listen: listeners(flags, &databases)?,
        general,
        pool,
        databases,
        users,
    })
}

fn pool_settings(flags: &Sidecar) -> Result<PoolSettings, SidecarError> {
    if flags.max_client_conn == Some(0) {
        return Err(SidecarError::ZeroMaxClientConn);
    }
    let mut pool = PoolSettings::default();
    if let Some(mode) = flags.pool_mode {
        pool.pool_mode = mode;
    }
    if let Some(size) = flags.pool_size {
        if size == 0 {
            return Err(SidecarError::ZeroPoolSize);
        }
        pool.default_pool_size = size;
    }
    Ok(pool)
}

/// The password the protocol's own clients read from the environment.
fn password_from_env(protocol: Protocol, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let name = match protocol {
        Protocol::Postgres => "PGPASSWORD",
        Protocol::Mysql => "MYSQL_PWD",
    };
    env(name).filter(|password| !password.is_empty())
}

/// `--listen` serves PostgreSQL when any upstream speaks it, else MySQL;
/// `--mysql-listen` serves MySQL; `--unix-socket-dir` adds the sockets.
fn listeners(
    flags: &Sidecar,
    databases: &BTreeMap<String, DatabaseConfig>,
) -> Result<ListenConfig, SidecarError> {
    let speaks = |protocol| databases.values().any(|db| db.protocol == protocol);
    let postgres = if speaks(Protocol::Postgres) {
        vec![flags.listen]
    } else {
        Vec::new()
    };
    let mysql = match (speaks(Protocol::Mysql), flags.mysql_listen) {
        (true, Some(addr)) => vec![addr],
        (true, None) if postgres.is_empty() => vec![flags.listen],
        (true, None) => return Err(SidecarError::MysqlListenNeeded),
        (false, Some(_)) => return Err(SidecarError::MysqlListenUnused),
        (false, None) => Vec::new(),
    };
    let mysql_unix_socket = (flags.unix_socket_dir.as_deref())
        .filter(|_| !mysql.is_empty())
        .map(|dir| ListenConfig::default_mysql_socket(dir, &mysql));
    Ok(ListenConfig {
        unix_socket_port: ListenConfig::default_unix_socket_port(&postgres),
        postgres,
        unix_socket_dir: flags.unix_socket_dir.clone(),
        mysql,
        mysql_unix_socket,
    })
}

#[cfg(test)]
mod tests;
