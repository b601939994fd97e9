//! Proxy configurations for tests: a working base config pointing at a
//! `PgServer` or a `MariaDbServer`, with each test's own TOML merged over it.

use toml::{Table, Value};

use super::credentials::{
    APP_DB, MD5_USER, MYSQL_APP_USER, MYSQL_OTHER_USER, NATIVE_USER, PLAIN_USER, SCRAM_USER,
    TRUST_USER,
};
use super::mariadb::MariaDbServer;
use super::postgres::PgServer;
use super::proxy::MYSQL_SOCKET;

/// A churnstile config for `server`: listens on `{port}` and `{socket_dir}`
/// (filled in by `Proxy::start`), `auth_type = "md5"`, one database `app`
/// (the server's `app`), and the users `md5_user`, `scram_user` and
/// `plain_user` with their own passwords, logging in upstream as themselves.
///
/// `extra` is TOML merged over that, table by table, so a test states only
/// what it is about:
///
/// ```text
/// pg_proxy_config(&pg, r#"
///     [pool]
///     pool_mode = "transaction"
///     default_pool_size = 2
/// "#)
/// ```
pub fn pg_proxy_config(server: &PgServer, extra: &str) -> String {
    layered_config(&pg_base_config(server), &[extra])
}

/// [`pg_proxy_config`] with `auth_type = "trust"` and `trust_user` (logging
/// in upstream as itself), so a hand-made client logs in without computing
/// a password hash; `extra` is merged over that.
pub fn trust_proxy_config(server: &PgServer, extra: &str) -> String {
    let trust = format!(
        "[general]\n\
         auth_type = \"trust\"\n\
         [users.{name}]\n\
         upstream_user = \"{name}\"\n",
        name = TRUST_USER.name
    );
    layered_config(&pg_base_config(server), &[&trust, extra])
}

/// A churnstile config for MariaDB `server`: a MySQL listener on
/// `{mysql_port}` and `{socket_dir}/mysql.sock` (`Proxy::mysql_socket`; and a PostgreSQL one on
/// `{port}`, which `Proxy::start` waits on too), passwords checked
/// (`auth_type = "md5"`), `pool_mode` with `pool_size` server connections,
/// one MySQL database `app` logging in upstream as `NATIVE_USER`, and the
/// users `MYSQL_APP_USER` and `MYSQL_OTHER_USER`.
pub fn mysql_proxy_config(server: &MariaDbServer, pool_mode: &str, pool_size: usize) -> String {
    mysql_proxy_config_with(server, pool_mode, pool_size, "")
}

/// [`mysql_proxy_config`] with `extra` TOML merged over it, table by table.
pub fn mysql_proxy_config_with(
    server: &MariaDbServer,
    pool_mode: &str,
    pool_size: usize,
    extra: &str,
) -> String {
    let base = format!(
        "[listen]\n\
         postgres = [\"127.0.0.1:{{port}}\"]\n\
         mysql = [\"127.0.0.1:{{mysql_port}}\"]\n\
         unix_socket_dir = \"{{socket_dir}}\"\n\
         mysql_unix_socket = \"{{socket_dir}}/{MYSQL_SOCKET}\"\n\
         \n\
         [general]\n\
         auth_type = \"md5\"\n\
         \n\
         [pool]\n\
         pool_mode = \"{pool_mode}\"\n\
         default_pool_size = {pool_size}\n\
         \n\
         [databases.{APP_DB}]\n\
         protocol = \"mysql\"\n\
         host = \"{host}\"\n\
         port = {port}\n\
         dbname = \"{APP_DB}\"\n\
         user = \"{upstream_user}\"\n\
         password = \"{upstream_password}\"\n",
        host = server.host(),
        port = server.port(),
        upstream_user = NATIVE_USER.name,
        upstream_password = NATIVE_USER.password,
    );
    let users: String = [MYSQL_APP_USER, MYSQL_OTHER_USER]
        .iter()
        .map(|user| {
            format!(
                "\n[users.{}]\npassword = \"{}\"\n",
                user.name, user.password
            )
        })
        .collect();
    layered_config(&(base + &users), &[extra])
}

/// `base` with each of `layers` merged over it in turn.
pub fn layered_config(base: &str, layers: &[&str]) -> String {
    let mut config: Table = base
        .parse()
        .unwrap_or_else(|e| panic!("the harness's base proxy config is not valid TOML: {e}"));
    for layer in layers {
        let overrides: Table = layer
            .parse()
            .unwrap_or_else(|e| panic!("extra proxy config is not valid TOML: {e}\n{layer}"));
        merge(&mut config, overrides);
    }
    toml::to_string(&config).unwrap_or_else(|e| panic!("writing the proxy config: {e}"))
}

pub fn pg_base_config(server: &PgServer) -> String {
    let mut config = format!(
        "[listen]\n\
         postgres = [\"127.0.0.1:{{port}}\"]\n\
         unix_socket_dir = \"{{socket_dir}}\"\n\
         \n\
         [general]\n\
         auth_type = \"md5\"\n\
         \n\
         [databases.{APP_DB}]\n\
         host = \"{host}\"\n\
         port = {port}\n\
         dbname = \"{APP_DB}\"\n",
        host = server.host(),
        port = server.port(),
    );
    for user in [MD5_USER, SCRAM_USER, PLAIN_USER] {
        config.push_str(&format!(
            "\n[users.{name}]\n\
             password = \"{password}\"\n\
             upstream_user = \"{name}\"\n\
             upstream_password = \"{password}\"\n",
            name = user.name,
            password = user.password,
        ));
    }
    config
}

/// Tables merge key by key, recursively; any other value replaces.
fn merge(base: &mut Table, overrides: Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(added)) => merge(existing, added),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
