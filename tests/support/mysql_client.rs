//! mysql_async clients for MySQL tests: connection options for churnstile's
//! MySQL listener (TCP or Unix socket) that send nothing a test did not ask
//! for, connecting with a bound, and the small questions tests ask through
//! a client (one value, the server's connection id, an error's code).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Conn, Opts, OptsBuilder};

use super::credentials::{APP_DB, MySqlProxyUser};
use super::proxy::Proxy;

const HOST: &str = "127.0.0.1";
/// Bound on a login, so a hang fails the test instead of stalling it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Options with the settings mysql_async would otherwise look up with a
/// query of its own given, and without its switch to the server's Unix
/// socket (`@@socket` names MariaDB's, which would bypass churnstile).
fn base_opts(user: &str, password: &str, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .max_allowed_packet(Some(64 * 1024 * 1024))
        .wait_timeout(Some(28_800))
}

/// Options for `127.0.0.1:port` as `user` with `password`, in `db`.
pub fn tcp_opts(port: u16, user: &str, password: &str, db: Option<&str>) -> OptsBuilder {
    base_opts(user, password, db)
        .ip_or_hostname(HOST)
        .tcp_port(port)
}

/// Options for churnstile's MySQL TCP listener as `user`, in `app`.
pub fn proxy_opts(proxy: &Proxy, user: MySqlProxyUser) -> OptsBuilder {
    tcp_opts(proxy.mysql_port(), user.name, user.password, Some(APP_DB))
}

/// Options for churnstile's MySQL Unix socket (`Proxy::mysql_socket`) as
/// `user`, in `app`.
pub fn proxy_socket_opts(proxy: &Proxy, user: MySqlProxyUser) -> OptsBuilder {
    let socket = proxy.mysql_socket();
    base_opts(user.name, user.password, Some(APP_DB)).socket(Some(socket.display().to_string()))
}

/// Connects; panics if that takes over 20 s.
pub async fn try_connect(opts: impl Into<Opts>) -> Result<Conn, mysql_async::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.into()))
        .await
        .unwrap_or_else(|_| panic!("a MySQL login took over {CONNECT_TIMEOUT:?}"))
}

/// Connects to churnstile's MySQL listener as `user`; panics, with
/// churnstile's stderr, if that fails.
pub async fn connect(proxy: &Proxy, user: MySqlProxyUser) -> Conn {
    try_connect(proxy_opts(proxy, user))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "logging in through churnstile as {}: {e}; stderr:\n{}",
                user.name,
                proxy.stderr()
            )
        })
}

/// The MySQL error code of an error the server or churnstile sent; panics,
/// naming the error, on any other.
pub fn error_code(error: &mysql_async::Error) -> u16 {
    match error {
        mysql_async::Error::Server(server) => server.code,
        other => panic!("not an error from the server: {other:?}"),
    }
}

/// The message of an error the server or churnstile sent.
pub fn error_message(error: &mysql_async::Error) -> &str {
    match error {
        mysql_async::Error::Server(server) => &server.message,
        other => panic!("not an error from the server: {other:?}"),
    }
}

/// Runs `sql`, dropping its result; panics naming the statement on error.
pub async fn query_drop(conn: &mut Conn, sql: &str) {
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `sql`, which selects one value, and returns it as text ("NULL" for
/// NULL); panics on error or when no row comes.
pub async fn scalar(conn: &mut Conn, sql: &str) -> String {
    first_row(conn, sql).await.swap_remove(0)
}

/// Runs `sql` and returns its first row's values as text ("NULL" for
/// NULL); panics on error or when no row comes.
pub async fn first_row(conn: &mut Conn, sql: &str) -> Vec<String> {
    let row: Option<mysql_async::Row> = conn
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let row = row.unwrap_or_else(|| panic!("{sql}: no row"));
    row.unwrap().into_iter().map(text).collect()
}

/// A value as the text protocol would show it; "NULL" for NULL.
pub fn text(value: mysql_async::Value) -> String {
    match value {
        mysql_async::Value::NULL => "NULL".to_owned(),
        mysql_async::Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        other => other.as_sql(true),
    }
}

/// The upstream server's id for the connection serving `conn` now.
pub async fn server_connection_id(conn: &mut Conn) -> u64 {
    scalar(conn, "SELECT CONNECTION_ID()")
        .await
        .parse()
        .expect("CONNECTION_ID() is a number")
}

/// COM_CHANGE_USER to `user` with `password`, keeping the database.
pub async fn change_user(conn: &mut Conn, user: &str, password: &str) -> mysql_async::Result<()> {
    conn.change_user(
        ChangeUserOpts::new()
            .with_user(Some(user.to_owned()))
            .with_pass(Some(password.to_owned())),
    )
    .await
}
