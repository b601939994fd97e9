//! Loading a TOML configuration file into a validated [`Config`]: walks the
//! sections, fills in PgBouncer's defaults, checks the rules that span
//! several keys, and reports every mistake with its file, line and column.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeTable;

use super::error::{ConfigError, ConfigErrors, Diagnostics};
use super::observe::{OBSERVE_KEYS, read_observability};
use super::password::read_password;
use super::pool::{POOL_KEYS, read_pool_settings};
use super::secret::parse_client_secret;
use super::section::Section;
use super::tcp::{TCP_KEYS, read_tcp};
use super::tls::{
    CLIENT_TLS_KEYS, DATABASE_TLS_KEYS, SERVER_TLS_KEYS, read_client_tls, read_server_tls,
};
use super::types::{
    AuthType, ClientSecret, Config, DEFAULT_MYSQL_LISTEN_PORT, DatabaseConfig, GeneralConfig,
    ListenConfig, PoolMode, PoolSettings, Protocol, UserConfig,
};
use super::userlist::{AUTH_FILE_KEY, read_auth_file};

const SECTIONS: &[&str] = &["listen", "general", "pool", "databases", "users"];
const LISTEN_KEYS: &[&str] = &[
    "postgres",
    "unix_socket_dir",
    "unix_socket_port",
    "mysql",
    "mysql_unix_socket",
];
const GENERAL_KEYS: &[&str] = &[
    "auth_type",
    "max_client_conn",
    "shutdown_timeout",
    "worker_threads",
    "mysql_auth_plugin",
    "so_reuseport",
    AUTH_FILE_KEY,
];
const DATABASE_KEYS: &[&str] = &[
    "protocol",
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "password_file",
];
const USER_KEYS: &[&str] = &[
    "password",
    "password_file",
    "upstream_user",
    "upstream_password",
    "upstream_password_file",
];

const DEFAULT_HOST: &str = "127.0.0.1";

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, &origin),
        Err(error) => Err(ConfigError {
            file: origin,
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read the configuration file: {error}"),
        }
        .into()),
    }
}

/// Parses and validates configuration text; `origin` names it in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let mut diagnostics = Diagnostics::new(origin, text);
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            diagnostics.error(span, "", format!("TOML syntax error: {}", error.message()));
            return Err(diagnostics.into_errors());
        }
    };
    let config = read_config(&Section::root(&document), origin, &mut diagnostics);
    diagnostics.finish(config)
}

fn read_config(root: &Section, origin: &str, diagnostics: &mut Diagnostics) -> Config {
    root.reject_unknown_keys(SECTIONS, "section", diagnostics);
    let listen_section = root.section("listen", diagnostics);
    let mut listen = match &listen_section {
        Some(section) => read_listen(section, diagnostics),
        None => ListenConfig::default(),
    };
    let general_section = root.section("general", diagnostics);
    let auth_type = read_auth_type(general_section.as_ref(), diagnostics);
    let mut general = match &general_section {
        Some(section) => read_general(section, diagnostics),
        None => GeneralConfig::default(),
    };
    general.auth_type = auth_type.unwrap_or(general.auth_type);
    let pool = match root.section("pool", diagnostics) {
        Some(section) => {
            let allowed = [POOL_KEYS, SERVER_TLS_KEYS].concat();
            section.reject_unknown_keys(&allowed, "key", diagnostics);
            let mut pool = read_pool_settings(&section, &PoolSettings::default(), diagnostics);
            pool.server_tls =
                read_server_tls(&section, &pool.server_tls, SERVER_TLS_KEYS, diagnostics);
            pool
        }
        None => PoolSettings::default(),
    };
    let databases = read_databases(root, &pool, diagnostics);
    derive_listeners(&mut listen, listen_section.as_ref(), &databases);
    let mut users = read_auth_file(general_section.as_ref(), origin, auth_type, diagnostics);
    // [users] wins over the auth_file: it can also say upstream_user.
    users.extend(read_users(root, auth_type, diagnostics));
    if let Some(section) = &general_section {
        general.observe = read_observability(section, &users, diagnostics);
    }
    let config = Config {
        listen,
        general,
        pool,
        databases,
        users,
    };
    if !config.has_listeners() {
        let span = (listen_section.as_ref())
            .map(|section| {
                section
                    .value_span("postgres")
                    .unwrap_or_else(|| section.span())
            })
            .unwrap_or(0..0);
        diagnostics.error(
            span,
            "listen",
            "no listeners, so no client could connect: set [listen] postgres \
             (PostgreSQL TCP addresses), unix_socket_dir, mysql (MySQL TCP addresses) \
             or mysql_unix_socket",
        );
    }
    config
}

/// Listeners follow the databases unless `[listen]` names them: PostgreSQL
/// ones when a database speaks PostgreSQL (or none is configured yet),
/// MySQL ones when a database speaks MySQL.
fn derive_listeners(
    listen: &mut ListenConfig,
    section: Option<&Section>,
    databases: &BTreeMap<String, DatabaseConfig>,
) {
    let speaks = |protocol| databases.values().any(|db| db.protocol == protocol);
    let only_mysql = !databases.is_empty() && !speaks(Protocol::Postgres);
    if only_mysql && !section.is_some_and(|section| section.has("postgres")) {
        listen.postgres.clear();
    }
    add_mysql_listener_defaults(listen, section, speaks(Protocol::Mysql));
}

fn read_listen(section: &Section, diagnostics: &mut Diagnostics) -> ListenConfig {
    section.reject_unknown_keys(LISTEN_KEYS, "key", diagnostics);
    let defaults = ListenConfig::default();
    let postgres = read_addresses(section, "postgres", diagnostics).unwrap_or(defaults.postgres);
    let mysql = read_addresses(section, "mysql", diagnostics).unwrap_or_default();
    let mysql_unix_socket = section
        .string("mysql_unix_socket", diagnostics)
        .map(|path| path.into_inner())
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let unix_socket_dir = match section.string("unix_socket_dir", diagnostics) {
        Some(dir) if dir.get_ref().is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir.into_inner())),
        None => defaults.unix_socket_dir,
    };
    let unix_socket_port = section
        .port("unix_socket_port", diagnostics)
        .unwrap_or_else(|| ListenConfig::default_unix_socket_port(&postgres));
    ListenConfig {
        postgres,
        unix_socket_dir,
        unix_socket_port,
        mysql,
        mysql_unix_socket,
    }
}

/// With a MySQL database configured, MySQL clients get 127.0.0.1:3307 and
/// a Unix socket next to PostgreSQL's unless `[listen]` says otherwise;
/// without one, no MySQL port is taken.
fn add_mysql_listener_defaults(
    listen: &mut ListenConfig,
    section: Option<&Section>,
    serves_mysql: bool,
) {
    let has = |key| section.is_some_and(|section| section.has(key));
    if !serves_mysql {
        return;
    }
    if !has("mysql") {
        listen.mysql = vec![SocketAddr::from((
            [127, 0, 0, 1],
            DEFAULT_MYSQL_LISTEN_PORT,
        ))];
    }
    if !has("mysql_unix_socket")
        && let Some(dir) = &listen.unix_socket_dir
    {
        listen.mysql_unix_socket = Some(ListenConfig::default_mysql_socket(dir, &listen.mysql));
    }
}

/// The addresses under `key`; `None` when absent or when any is invalid
/// (each reported where it stands).
fn read_addresses(
    section: &Section,
    key: &str,
    diagnostics: &mut Diagnostics,
) -> Option<Vec<SocketAddr>> {
    let mut all_valid = true;
    let mut addresses = Vec::new();
    for (index, address) in section.strings(key, diagnostics)?.iter().enumerate() {
        match address.get_ref().parse::<SocketAddr>() {
            Ok(parsed) => addresses.push(parsed),
            Err(_) => {
                all_valid = false;
                diagnostics.error(
                    address.span(),
                    format!("{}[{index}]", section.field(key)),
                    format!(
                        "{:?} is not an IP address and port such as \"127.0.0.1:6432\" \
                         or \"[::1]:6432\"; host names are not resolved here",
                        address.get_ref()
                    ),
                );
            }
        }
    }
    all_valid.then_some(addresses)
}

/// `None` when `auth_type` is present but invalid (already reported), so
/// checks that depend on it are skipped rather than guessed.
fn read_auth_type(section: Option<&Section>, diagnostics: &mut Diagnostics) -> Option<AuthType> {
    let default = GeneralConfig::default().auth_type;
    match section {
        Some(section) if section.has("auth_type") => section.choice("auth_type", diagnostics),
        _ => Some(default),
    }
}

fn read_general(section: &Section, diagnostics: &mut Diagnostics) -> GeneralConfig {
    let allowed = [GENERAL_KEYS, OBSERVE_KEYS, CLIENT_TLS_KEYS, TCP_KEYS].concat();
    section.reject_unknown_keys(&allowed, "key", diagnostics);
    let mut general = GeneralConfig::default();
    if let Some(count) = section.count("max_client_conn", 1, diagnostics) {
        general.max_client_conn = count.into_inner();
    }
    if let Some(timeout) = section.seconds("shutdown_timeout", diagnostics) {
        general.shutdown_timeout = timeout.into_inner();
    }
    if let Some(threads) = section.count("worker_threads", 1, diagnostics) {
        general.worker_threads = threads.into_inner();
    }
    if let Some(plugin) = section.choice("mysql_auth_plugin", diagnostics) {
        general.mysql_auth_plugin = plugin;
    }
    general.client_tls = read_client_tls(section, diagnostics);
    general.tcp = read_tcp(section, diagnostics);
    if let Some(on) = section.boolean("so_reuseport", diagnostics) {
        general.so_reuseport = on;
    }
    general
}

fn read_databases(
    root: &Section,
    pool: &PoolSettings,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, DatabaseConfig> {
    let mut databases = BTreeMap::new();
    let no_databases = "no [databases] defined; add at least one, \
                        e.g. [databases.app] with host, port and dbname";
    let Some(section) = root.section("databases", diagnostics) else {
        if !root.has("databases") {
            diagnostics.error(root.span(), "databases", no_databases);
        }
        return databases;
    };
    if section.entries().next().is_none() {
        diagnostics.error(section.span(), "databases", no_databases);
    }
    for (name, value) in section.entries() {
        if !value.get_ref().is_table() {
            diagnostics.error(
                value.span(),
                section.field(name.get_ref()),
                format!(
                    "expected a table such as [databases.{0}] with host, port and dbname, \
                     found {1}; PgBouncer's \"host=... dbname=...\" strings are not accepted",
                    name.get_ref(),
                    value.get_ref().type_str()
                ),
            );
            continue;
        }
        if name.get_ref().is_empty() {
            diagnostics.error(name.span(), section.field(""), "database name is empty");
        }
        if let Some(database) = section.child(name.get_ref(), value, diagnostics) {
            let config = read_database(&database, name.get_ref(), pool, diagnostics);
            databases.insert(name.get_ref().to_string(), config);
        }
    }
    databases
}

fn read_database(
    section: &Section,
    name: &str,
    pool: &PoolSettings,
    diagnostics: &mut Diagnostics,
) -> DatabaseConfig {
    let allowed = [DATABASE_KEYS, POOL_KEYS, DATABASE_TLS_KEYS].concat();
    section.reject_unknown_keys(&allowed, "key", diagnostics);
    let protocol = section
        .choice("protocol", diagnostics)
        .unwrap_or(Protocol::Postgres);
    let host = non_empty_string(
        section,
        "host",
        "host is empty; give an IP address, a host name, or a Unix socket directory starting with '/'",
        diagnostics,
    )
    .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let port = section
        .port("port", diagnostics)
        .unwrap_or_else(|| protocol.default_port());
    let dbname = non_empty_string(
        section,
        "dbname",
        "dbname is empty; leave it out to use the database's own name",
        diagnostics,
    )
    .unwrap_or_else(|| name.to_owned());
    let user = non_empty_string(
        section,
        "user",
        "user is empty; leave it out to log in upstream as each client's upstream_user",
        diagnostics,
    );
    let password = read_password(section, "password", "password_file", diagnostics);
    if let Some(password) = &password
        && user.is_none()
    {
        diagnostics.error(
            password.span(),
            section.field("password"),
            "password without user; it is the forced user's upstream password, \
             so give user too (or set upstream_password in [users.NAME])",
        );
    }
    let mut pool = read_pool_settings(section, pool, diagnostics);
    pool.server_tls = read_server_tls(section, &pool.server_tls, DATABASE_TLS_KEYS, diagnostics);
    if protocol == Protocol::Mysql && pool.pool_mode == PoolMode::Statement {
        diagnostics.error(
            section
                .value_span("pool_mode")
                .unwrap_or_else(|| section.span()),
            section.field("pool_mode"),
            "pool_mode = \"statement\" is PostgreSQL only; MySQL databases pool by \
             \"session\" or \"transaction\"",
        );
    }
    DatabaseConfig {
        protocol,
        host,
        port,
        dbname,
        user,
        password: password.map(Spanned::into_inner),
        pool,
    }
}

fn read_users(
    root: &Section,
    auth_type: Option<AuthType>,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, UserConfig> {
    let mut users = BTreeMap::new();
    let Some(section) = root.section("users", diagnostics) else {
        return users;
    };
    for (name, value) in section.entries() {
        if name.get_ref().is_empty() {
            diagnostics.error(name.span(), section.field(""), "user name is empty");
        }
        if let Some(user) = section.child(name.get_ref(), value, diagnostics) {
            let config = read_user(&user, name.get_ref(), auth_type, diagnostics);
            users.insert(name.get_ref().to_string(), config);
        }
    }
    users
}

fn read_user(
    section: &Section,
    name: &str,
    auth_type: Option<AuthType>,
    diagnostics: &mut Diagnostics,
) -> UserConfig {
    section.reject_unknown_keys(USER_KEYS, "key", diagnostics);
    let password = read_password(section, "password", "password_file", diagnostics);
    let secret = password.as_ref().and_then(|password| {
        parse_client_secret(password.get_ref())
            .map_err(|message| {
                diagnostics.error(password.span(), section.field("password"), message)
            })
            .ok()
    });
    match (auth_type, &secret) {
        (Some(auth_type), None)
            if auth_type != AuthType::Trust
                && !section.has("password")
                && !section.has("password_file") =>
        {
            diagnostics.error(
                section.span(),
                section.field("password"),
                format!(
                    "missing; auth_type = \"{auth_type}\" needs a password for every user \
                     (or set auth_type = \"trust\" in [general])"
                ),
            );
        }
        (_, Some(ClientSecret::Plain(plain))) if plain.is_empty() => {
            diagnostics.error(
                password.as_ref().map_or(section.span(), |p| p.span()),
                section.field("password"),
                "password is empty; clients cannot log in with an empty password \
                 (leave password out and use auth_type = \"trust\" instead)",
            );
        }
        (Some(AuthType::ScramSha256), Some(ClientSecret::Md5(_))) => {
            diagnostics.error(
                password.as_ref().map_or(section.span(), |p| p.span()),
                section.field("password"),
                "an md5 secret cannot be checked with auth_type = \"scram-sha-256\"; \
                 give the plaintext password or the SCRAM-SHA-256 verifier from pg_authid, \
                 or use auth_type = \"md5\"",
            );
        }
        _ => {}
    }
    let upstream_user = non_empty_string(
        section,
        "upstream_user",
        "upstream_user is empty; leave it out to log in upstream as the user's own name",
        diagnostics,
    )
    .unwrap_or_else(|| name.to_owned());
    let upstream_password = read_password(
        section,
        "upstream_password",
        "upstream_password_file",
        diagnostics,
    )
    .map(Spanned::into_inner)
    .or_else(|| match &secret {
        Some(ClientSecret::Plain(password)) => Some(password.clone()),
        _ => None,
    });
    UserConfig {
        secret,
        upstream_user,
        upstream_password,
    }
}

/// A string that must not be empty when given; `None` when absent or wrong.
fn non_empty_string(
    section: &Section,
    key: &str,
    empty_message: &str,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    let value = section.string(key, diagnostics)?;
    if value.get_ref().is_empty() {
        diagnostics.error(value.span(), section.field(key), empty_message);
        return None;
    }
    Some(value.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::types::PoolMode;

    fn errors(text: &str) -> Vec<String> {
        match parse_str(text, "c.toml") {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// Asserts `text` fails with exactly one error, starting with `expected`.
    fn assert_one_error(text: &str, expected: &str) {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(expected),
            "{}\ndoes not start with\n{expected}",
            errors[0]
        );
    }

    const APP: &str = "[databases.app]\n";

    #[test]
    fn full_config_round_trip() {
        let text = r#"
[listen]
postgres = ["127.0.0.1:6432", "[::1]:7432"]
unix_socket_dir = "/run/churnstile"
unix_socket_port = 6000

[general]
auth_type = "scram-sha-256"
max_client_conn = 500
shutdown_timeout = 2.5

[pool]
pool_mode = "transaction"
default_pool_size = 30
min_pool_size = 2
server_lifetime = 1800
server_idle_timeout = 0
query_wait_timeout = 10
client_idle_timeout = 300
client_login_timeout = 0
server_connect_timeout = 5
server_reset_query = ""

[databases.app]
protocol = "postgres"
host = "/var/run/postgresql"
port = 5433
dbname = "app_production"
pool_mode = "session"
default_pool_size = 10

[users.alice]
password = "secret"
upstream_user = "app_owner"
upstream_password = "other"
"#;
        let pool = PoolSettings {
            pool_mode: PoolMode::Transaction,
            default_pool_size: 30,
            min_pool_size: 2,
            server_lifetime: Duration::from_secs(1800),
            server_idle_timeout: None,
            query_wait_timeout: Some(Duration::from_secs(10)),
            client_idle_timeout: Some(Duration::from_secs(300)),
            client_login_timeout: None,
            server_connect_timeout: Duration::from_secs(5),
            server_reset_query: String::new(),
            ..PoolSettings::default()
        };
        let expected = Config {
            listen: ListenConfig {
                postgres: vec![
                    "127.0.0.1:6432".parse().unwrap(),
                    "[::1]:7432".parse().unwrap(),
                ],
                unix_socket_dir: Some(PathBuf::from("/run/churnstile")),
                unix_socket_port: 6000,
                mysql: Vec::new(),
                mysql_unix_socket: None,
            },
            general: GeneralConfig {
                auth_type: AuthType::ScramSha256,
                max_client_conn: 500,
                shutdown_timeout: Duration::from_millis(2500),
                worker_threads: 1,
                ..GeneralConfig::default()
            },
            pool: pool.clone(),
            databases: BTreeMap::from([(
                "app".to_owned(),
                DatabaseConfig {
                    protocol: Protocol::Postgres,
                    host: "/var/run/postgresql".to_owned(),
                    port: 5433,
                    dbname: "app_production".to_owned(),
                    user: None,
                    password: None,
                    pool: PoolSettings {
                        pool_mode: PoolMode::Session,
                        default_pool_size: 10,
                        ..pool
                    },
                },
            )]),
            users: BTreeMap::from([(
                "alice".to_owned(),
                UserConfig {
                    secret: Some(ClientSecret::Plain("secret".to_owned())),
                    upstream_user: "app_owner".to_owned(),
                    upstream_password: Some("other".to_owned()),
                },
            )]),
        };
        assert_eq!(parse_str(text, "c.toml"), Ok(expected));
    }

    #[test]
    fn missing_sections_and_keys_get_defaults() {
        let config = parse_str(
            "[databases.app]\n[users.alice]\npassword = \"pw\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(config.listen, ListenConfig::default());
        assert_eq!(config.general, GeneralConfig::default());
        assert_eq!(config.pool, PoolSettings::default());
        assert_eq!(
            config.databases["app"],
            DatabaseConfig {
                protocol: Protocol::Postgres,
                host: "127.0.0.1".to_owned(),
                port: 5432,
                dbname: "app".to_owned(),
                user: None,
                password: None,
                pool: PoolSettings::default(),
            }
        );
        assert_eq!(
            config.users["alice"],
            UserConfig {
                secret: Some(ClientSecret::Plain("pw".to_owned())),
                upstream_user: "alice".to_owned(),
                upstream_password: Some("pw".to_owned()),
            }
        );
    }

    #[test]
    fn pgbouncer_defaults() {
        let pool = PoolSettings::default();
        assert_eq!(pool.pool_mode, PoolMode::Session);
        assert_eq!(pool.default_pool_size, 20);
        assert_eq!(pool.min_pool_size, 0);
        assert_eq!(pool.server_lifetime, Duration::from_secs(3600));
        assert_eq!(pool.server_idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(pool.query_wait_timeout, Some(Duration::from_secs(120)));
        assert_eq!(pool.client_idle_timeout, None);
        assert_eq!(pool.client_login_timeout, Some(Duration::from_secs(60)));
        assert_eq!(pool.server_connect_timeout, Duration::from_secs(15));
        assert_eq!(pool.server_reset_query, "DISCARD ALL");
        let general = GeneralConfig::default();
        assert_eq!(general.auth_type, AuthType::Md5);
        assert_eq!(general.max_client_conn, 100);
        assert_eq!(general.shutdown_timeout, Duration::from_secs(30));
        let listen = ListenConfig::default();
        assert_eq!(listen.postgres, ["127.0.0.1:6432".parse().unwrap()]);
        assert_eq!(listen.unix_socket_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(listen.unix_socket_port, 6432);
    }

    #[test]
    fn unix_socket_port_follows_the_first_tcp_port() {
        let text = "[listen]\npostgres = [\"0.0.0.0:7000\", \"0.0.0.0:8000\"]\n[general]\nauth_type = \"trust\"\n[databases.app]\n";
        let config = parse_str(text, "c.toml").unwrap();
        assert_eq!(config.listen.unix_socket_port, 7000);
        let text = "[listen]\npostgres = []\n[general]\nauth_type = \"trust\"\n[databases.app]\n";
        let config = parse_str(text, "c.toml").unwrap();
        assert_eq!(config.listen.unix_socket_port, 6432);
        let text =
            "[listen]\nunix_socket_dir = \"\"\n[general]\nauth_type = \"trust\"\n[databases.app]\n";
        assert_eq!(
            parse_str(text, "c.toml").unwrap().listen.unix_socket_dir,
            None
        );
    }

    #[test]
    fn databases_override_pool_keys_and_inherit_the_rest() {
        let text = "[general]\nauth_type = \"trust\"\n\
                    [pool]\npool_mode = \"transaction\"\ndefault_pool_size = 50\nserver_lifetime = 60\n\
                    [databases.a]\npool_mode = \"statement\"\nclient_idle_timeout = 9\n\
                    [databases.b]\n";
        let config = parse_str(text, "c.toml").unwrap();
        let a = &config.databases["a"].pool;
        assert_eq!(a.pool_mode, PoolMode::Statement);
        assert_eq!(a.client_idle_timeout, Some(Duration::from_secs(9)));
        assert_eq!(a.default_pool_size, 50);
        assert_eq!(a.server_lifetime, Duration::from_secs(60));
        assert_eq!(config.databases["b"].pool, config.pool);
    }

    #[test]
    fn upstream_password_defaults_only_from_plaintext() {
        let text = "[databases.app]\n[users.a]\npassword = \"md53175bce1d3201d16594cebf9d7eb3f9d\"\n\
                    [users.b]\npassword = \"md53175bce1d3201d16594cebf9d7eb3f9d\"\nupstream_password = \"x\"\n";
        let config = parse_str(text, "c.toml").unwrap();
        assert!(matches!(
            config.users["a"].secret,
            Some(ClientSecret::Md5(_))
        ));
        assert_eq!(config.users["a"].upstream_password, None);
        assert_eq!(config.users["b"].upstream_password.as_deref(), Some("x"));
    }

    #[test]
    fn every_mistake_is_reported_at_its_position() {
        let text = r#"[listen]
postgres = ["127.0.0.1:6432", "localhost:6432"]
[general]
auth_type = "kerberos"
max_client_conn = 0
[pool]
pool_sise = 10
[databases.app]
port = 70000
host = ""
[users.alice]
password = "md5abc"
"#;
        assert_eq!(
            errors(text),
            [
                "c.toml:2:31: listen.postgres[1]: \"localhost:6432\" is not an IP address and port such as \"127.0.0.1:6432\" or \"[::1]:6432\"; host names are not resolved here",
                "c.toml:4:13: general.auth_type: unknown variant `kerberos`, expected one of `trust`, `md5`, `scram-sha-256`",
                "c.toml:5:19: general.max_client_conn: must be at least 1, got 0",
                "c.toml:7:1: pool.pool_sise: unknown key; allowed keys: pool_mode, default_pool_size, min_pool_size, server_lifetime, server_idle_timeout, query_wait_timeout, client_idle_timeout, client_login_timeout, server_connect_timeout, server_reset_query, max_prepared_statements, pin_policy, max_packet_size, server_tls_sslmode, server_tls_ca_file, server_tls_cert_file, server_tls_key_file, server_tls_protocols",
                "c.toml:9:8: databases.app.port: port must be between 1 and 65535, got 70000",
                "c.toml:10:8: databases.app.host: host is empty; give an IP address, a host name, or a Unix socket directory starting with '/'",
                "c.toml:12:12: users.alice.password: md5 secret must be \"md5\" followed by 32 hex digits, found 3",
            ]
        );
    }

    #[test]
    fn syntax_error_has_its_own_position() {
        assert_one_error(
            "[listen]\npostgres = [\"a\"\n[general]\n",
            "c.toml:3:1: TOML syntax error: ",
        );
        assert_one_error(
            "[pool]\nx = 1\n[pool]\n",
            "c.toml:3:2: TOML syntax error: duplicate key",
        );
    }

    #[test]
    fn empty_file_has_no_databases() {
        assert_one_error("", "c.toml:1:1: databases: no [databases] defined");
        assert_one_error(
            "[databases]\n",
            "c.toml:1:1: databases: no [databases] defined",
        );
    }

    #[test]
    fn unknown_sections_and_keys() {
        assert_one_error(
            "[server]\n[databases.app]\n",
            "c.toml:1:2: server: unknown section; allowed sections: listen, general, pool, databases, users",
        );
        assert_one_error(
            "port = 1\n[databases.app]\n",
            "c.toml:1:1: port: unknown section;",
        );
        assert_one_error(
            "[listen]\naddress = \"x\"\n[databases.app]\n",
            "c.toml:2:1: listen.address: unknown key; allowed keys: postgres, unix_socket_dir, unix_socket_port, mysql, mysql_unix_socket",
        );
        assert_one_error(
            "[general]\nauth = \"md5\"\n[databases.app]\n",
            "c.toml:2:1: general.auth: unknown key; allowed keys: auth_type, max_client_conn, shutdown_timeout, worker_threads, mysql_auth_plugin, so_reuseport, auth_file, metrics_listen, admin_users, stats_users, log_format, log_connections, log_disconnections, stats_period, log_pooler_errors",
        );
        assert_one_error(
            "[databases.app]\nusername = \"x\"\n",
            "c.toml:2:1: databases.app.username: unknown key; allowed keys: protocol, host, port, dbname, user, password, password_file, pool_mode,",
        );
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"x\"\npass = \"x\"\n",
            "c.toml:4:1: users.a.pass: unknown key; allowed keys: password, password_file, upstream_user, upstream_password, upstream_password_file",
        );
    }

    #[test]
    fn wrong_value_types() {
        assert_one_error(
            "[general]\nmax_client_conn = \"10\"\n[databases.app]\n",
            "c.toml:2:19: general.max_client_conn: expected an integer, found string",
        );
        assert_one_error(
            "[listen]\npostgres = \"127.0.0.1:6432\"\n[databases.app]\n",
            "c.toml:2:12: listen.postgres: expected an array of strings, found string",
        );
        assert_one_error(
            "[listen]\npostgres = [6432]\n[databases.app]\n",
            "c.toml:2:13: listen.postgres[0]: expected a string, found integer",
        );
        assert_one_error(
            "listen = 5\n[databases.app]\n",
            "c.toml:1:10: listen: expected a table, found integer",
        );
        assert_one_error(
            "[pool]\nserver_lifetime = \"1h\"\n[databases.app]\n",
            "c.toml:2:19: pool.server_lifetime: expected a number of seconds, found string",
        );
        assert_one_error(
            "[databases]\napp = \"host=localhost dbname=app\"\n",
            "c.toml:2:7: databases.app: expected a table such as [databases.app]",
        );
    }

    #[test]
    fn unknown_enum_values_list_the_allowed_ones() {
        assert_one_error(
            "[pool]\npool_mode = \"txn\"\n[databases.app]\n",
            "c.toml:2:13: pool.pool_mode: unknown variant `txn`, expected one of `session`, `transaction`, `statement`",
        );
        assert_one_error(
            "[databases.app]\nprotocol = \"mssql\"\n",
            "c.toml:2:12: databases.app.protocol: unknown variant `mssql`, expected `postgres` or `mysql`",
        );
    }

    #[test]
    fn mysql_databases_get_port_3306_and_a_listener_on_3307() {
        let text = "[general]\nauth_type = \"trust\"\n[databases.shop]\nprotocol = \"mysql\"\n\
                    user = \"root\"\npassword = \"\"\n";
        let config = parse_str(text, "c.toml").unwrap();
        let shop = &config.databases["shop"];
        assert_eq!((shop.port, shop.user.as_deref()), (3306, Some("root")));
        assert_eq!(shop.password.as_deref(), Some(""));
        assert_eq!(config.listen.mysql, ["127.0.0.1:3307".parse().unwrap()]);
        assert_eq!(
            config.listen.mysql_unix_socket,
            Some(PathBuf::from("/tmp/churnstile-mysql-3307.sock"))
        );
        let text = "[listen]\nmysql = [\"127.0.0.1:3310\"]\nmysql_unix_socket = \"\"\n\
                    [general]\nauth_type = \"trust\"\n[databases.shop]\nprotocol = \"mysql\"\n";
        let listen = parse_str(text, "c.toml").unwrap().listen;
        assert_eq!(listen.mysql, ["127.0.0.1:3310".parse().unwrap()]);
        assert_eq!(listen.mysql_unix_socket, None);
        // No MySQL database, no MySQL port taken.
        let text = "[general]\nauth_type = \"trust\"\n[databases.app]\n";
        let listen = parse_str(text, "c.toml").unwrap().listen;
        assert!(listen.mysql.is_empty() && listen.mysql_unix_socket.is_none());
    }

    #[test]
    fn mysql_refuses_statement_pooling_and_a_password_without_user() {
        assert_one_error(
            "[databases.shop]\nprotocol = \"mysql\"\npool_mode = \"statement\"\n",
            "c.toml:3:13: databases.shop.pool_mode: pool_mode = \"statement\" is PostgreSQL only",
        );
        assert_one_error(
            "[databases.shop]\npassword = \"x\"\n",
            "c.toml:2:12: databases.shop.password: password without user",
        );
    }

    #[test]
    fn invalid_auth_type_does_not_add_guessed_password_errors() {
        assert_one_error(
            "[general]\nauth_type = \"none\"\n[databases.app]\n[users.a]\n",
            "c.toml:2:13: general.auth_type: unknown variant `none`",
        );
    }

    #[test]
    fn durations_must_be_finite_and_not_negative() {
        assert_one_error(
            "[general]\nshutdown_timeout = -1\n[databases.app]\n",
            "c.toml:2:20: general.shutdown_timeout: must be a finite, non-negative number of seconds, got -1",
        );
        assert_one_error(
            "[pool]\nserver_idle_timeout = inf\n[databases.app]\n",
            "c.toml:2:23: pool.server_idle_timeout: must be a finite, non-negative number of seconds, got inf",
        );
        assert_one_error(
            "[databases.app]\nquery_wait_timeout = -0.5\n",
            "c.toml:2:22: databases.app.query_wait_timeout: must be a finite, non-negative",
        );
    }

    #[test]
    fn pool_sizes() {
        assert_one_error(
            "[databases.app]\ndefault_pool_size = 0\n",
            "c.toml:2:21: databases.app.default_pool_size: must be at least 1, got 0",
        );
        assert_one_error(
            "[databases.app]\nmin_pool_size = -1\n",
            "c.toml:2:17: databases.app.min_pool_size: must be at least 0, got -1",
        );
        assert_one_error(
            "[pool]\nmin_pool_size = 5\n[databases.app]\ndefault_pool_size = 3\n[databases.b]\n",
            "c.toml:4:21: databases.app.default_pool_size: min_pool_size (5) is larger than default_pool_size (3)",
        );
        // Reported once, at [pool], not again for every database inheriting it.
        assert_one_error(
            "[pool]\nmin_pool_size = 50\n[databases.app]\n[databases.b]\n",
            "c.toml:2:17: pool.min_pool_size: min_pool_size (50) is larger than default_pool_size (20)",
        );
    }

    #[test]
    fn limits_and_ports() {
        assert_one_error(
            "[general]\nmax_client_conn = -5\n[databases.app]\n",
            "c.toml:2:19: general.max_client_conn: must be at least 1, got -5",
        );
        assert_one_error(
            "[pool]\nserver_connect_timeout = 0.0\n[databases.app]\n",
            "c.toml:2:26: pool.server_connect_timeout: must be greater than 0 seconds",
        );
        assert_one_error(
            "[databases.app]\nport = 0\n",
            "c.toml:2:8: databases.app.port: port must be between 1 and 65535, got 0",
        );
        assert_one_error(
            "[listen]\nunix_socket_port = 65536\n[databases.app]\n",
            "c.toml:2:20: listen.unix_socket_port: port must be between 1 and 65535, got 65536",
        );
        assert_one_error(
            "[listen]\npostgres = [\"127.0.0.1:99999\"]\n[databases.app]\n",
            "c.toml:2:13: listen.postgres[0]: \"127.0.0.1:99999\" is not an IP address and port",
        );
    }

    #[test]
    fn passwords_come_from_files_and_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice.password");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let text = format!(
            "[databases.app]\nuser = \"svc\"\npassword = \"x${{PATH}}x\"\n\
             [users.alice]\npassword_file = \"{}\"\n",
            file.display()
        );
        let config = parse_str(&text, "c.toml").unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(config.databases["app"].password, Some(format!("x{path}x")));
        let alice = &config.users["alice"];
        assert_eq!(
            alice.secret,
            Some(ClientSecret::Plain("from-a-file".to_owned()))
        );
        assert_eq!(alice.upstream_password.as_deref(), Some("from-a-file"));
    }

    #[test]
    fn a_missing_password_file_or_variable_is_reported_where_it_is_named() {
        assert_one_error(
            "[databases.app]\nuser = \"u\"\npassword_file = \"/nonexistent/pw\"\n",
            "c.toml:3:17: databases.app.password_file: cannot read /nonexistent/pw: No such file",
        );
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"${CHURNSTILE_UNSET_VARIABLE}\"\n",
            "c.toml:3:12: users.a.password: environment variable CHURNSTILE_UNSET_VARIABLE \
             is not set (the value reads ${CHURNSTILE_UNSET_VARIABLE})",
        );
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"p\"\npassword_file = \"f\"\n",
            "c.toml:4:17: users.a.password_file: give password or password_file, not both",
        );
    }

    const MYSQL_DB: &str = "[databases.app]\nprotocol = \"mysql\"\n";

    #[test]
    fn a_mysql_only_config_opens_mysql_listeners_only() {
        let config = parse_str(MYSQL_DB, "c.toml").unwrap();
        assert_eq!(config.listen.postgres, []);
        assert_eq!(config.postgres_socket_dir(), None);
        assert_eq!(config.listen.mysql, ["127.0.0.1:3307".parse().unwrap()]);
        assert_eq!(
            config.listen.mysql_unix_socket,
            Some(PathBuf::from("/tmp/churnstile-mysql-3307.sock"))
        );
        let text = format!("[listen]\npostgres = [\"127.0.0.1:7000\"]\n{MYSQL_DB}");
        let config = parse_str(&text, "c.toml").unwrap();
        assert_eq!(
            config.listen.postgres,
            ["127.0.0.1:7000".parse().unwrap()],
            "named listeners stay, for the admin console"
        );
        assert_eq!(config.postgres_socket_dir(), Some(Path::new("/tmp")));
    }

    #[test]
    fn postgres_may_be_empty_while_another_listener_remains() {
        let text = "[listen]\npostgres = []\n[databases.app]\n";
        let config = parse_str(text, "c.toml").unwrap();
        assert_eq!(config.postgres_socket_dir(), Some(Path::new("/tmp")));
        let text = format!("[listen]\npostgres = []\nunix_socket_dir = \"\"\n{MYSQL_DB}");
        let config = parse_str(&text, "c.toml").unwrap();
        assert_eq!(config.listen.mysql, ["127.0.0.1:3307".parse().unwrap()]);
        assert_eq!(config.listen.mysql_unix_socket, None);
        assert_eq!(config.postgres_socket_dir(), None);
    }

    #[test]
    fn no_listener_at_all_is_an_error_naming_the_keys_to_set() {
        let keys = "no listeners, so no client could connect: set [listen] postgres \
                    (PostgreSQL TCP addresses), unix_socket_dir, mysql (MySQL TCP addresses) \
                    or mysql_unix_socket";
        assert_one_error(
            "[listen]\npostgres = []\nunix_socket_dir = \"\"\n[databases.app]\n",
            &format!("c.toml:2:12: listen: {keys}"),
        );
        assert_one_error(
            &format!("[listen]\nmysql = []\nunix_socket_dir = \"\"\n{MYSQL_DB}"),
            &format!("c.toml:1:1: listen: {keys}"),
        );
    }

    #[test]
    fn database_names_and_hosts() {
        assert_one_error(
            "[databases.app]\ndbname = \"\"\n",
            "c.toml:2:10: databases.app.dbname: dbname is empty",
        );
        assert_one_error(
            "[databases.\"my.db\"]\nport = 0\n",
            "c.toml:2:8: databases.\"my.db\".port: port must be between 1 and 65535",
        );
        assert_one_error(
            "[databases.\"\"]\n",
            "c.toml:1:12: databases.\"\": database name is empty",
        );
    }

    #[test]
    fn malformed_secrets_say_what_is_malformed() {
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==\"\n",
            "c.toml:3:12: users.a.password: SCRAM-SHA-256 secret: StoredKey must decode to 32 bytes, found 1",
        );
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"md5zz75bce1d3201d16594cebf9d7eb3f9d\"\n",
            "c.toml:3:12: users.a.password: md5 secret must be \"md5\" followed by 32 hex digits; character 1 or 2",
        );
    }

    #[test]
    fn password_required_unless_trust() {
        assert_one_error(
            "[databases.app]\n[users.a]\nupstream_user = \"b\"\n",
            "c.toml:2:1: users.a.password: missing; auth_type = \"md5\" needs a password for every user",
        );
        assert_one_error(
            "[general]\nauth_type = \"scram-sha-256\"\n[databases.app]\n[users.a]\n",
            "c.toml:4:1: users.a.password: missing; auth_type = \"scram-sha-256\"",
        );
        let config = parse_str(
            "[general]\nauth_type = \"trust\"\n[databases.app]\n[users.a]\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(config.users["a"].secret, None);
        assert_eq!(config.users["a"].upstream_password, None);
    }

    #[test]
    fn empty_password_is_refused() {
        assert_one_error(
            "[databases.app]\n[users.a]\npassword = \"\"\n",
            "c.toml:3:12: users.a.password: password is empty",
        );
    }

    #[test]
    fn scram_cannot_check_an_md5_secret() {
        assert_one_error(
            "[general]\nauth_type = \"scram-sha-256\"\n[databases.app]\n[users.a]\npassword = \"md53175bce1d3201d16594cebf9d7eb3f9d\"\n",
            "c.toml:5:12: users.a.password: an md5 secret cannot be checked with auth_type = \"scram-sha-256\"",
        );
        let scram_with_plain = "[general]\nauth_type = \"scram-sha-256\"\n[databases.app]\n[users.a]\npassword = \"pw\"\n";
        assert!(parse_str(scram_with_plain, "c.toml").is_ok());
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let errors = load_file(Path::new("/nonexistent/churnstile.toml")).unwrap_err();
        assert_eq!(errors.errors.len(), 1);
        let message = errors.to_string();
        assert!(
            message
                .starts_with("/nonexistent/churnstile.toml: cannot read the configuration file: "),
            "{message}"
        );
    }

    #[test]
    fn load_file_reads_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("{APP}[general]\nmax_client_conn = 0\n")).unwrap();
        let errors = load_file(&path).unwrap_err();
        assert_eq!(
            errors.to_string(),
            format!(
                "{}:3:19: general.max_client_conn: must be at least 1, got 0",
                path.display()
            )
        );
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/churnstile.toml");
        let config = load_file(&path).unwrap_or_else(|errors| panic!("{errors}"));
        // The MySQL listeners it shows are the defaults for a configuration
        // with a MySQL database.
        let mut listen = ListenConfig::default();
        add_mysql_listener_defaults(&mut listen, None, true);
        assert_eq!(config.listen, listen);
        assert_eq!(config.databases["test"].protocol, Protocol::Mysql);
        assert_eq!(config.general, GeneralConfig::default());
        assert_eq!(config.pool, PoolSettings::default());
        let database = &config.databases["postgres"];
        assert_eq!((database.host.as_str(), database.port), ("127.0.0.1", 5432));
        assert_eq!(database.dbname, "postgres");
        let user = &config.users["postgres"];
        assert_eq!(
            user.secret,
            Some(ClientSecret::Plain("postgres".to_owned()))
        );
        assert_eq!(user.upstream_user, "postgres");
        assert_eq!(user.upstream_password.as_deref(), Some("postgres"));
    }
}
