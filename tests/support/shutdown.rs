//! Watching churnstile stop: clients whose connection task reports the
//! FATAL that ended them, the listener refusing, and the process's exit.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_postgres::Client;

use super::credentials::{APP_DB, MD5_USER};
use super::pg_client::{self, ConnectionTask, sqlstate};
use super::postgres::PgServer;
use super::proxy::Proxy;
use super::wait::{poll_until, until_equal};

/// Bound on anything that should happen at once.
pub const PROMPTLY: Duration = Duration::from_secs(5);
/// The SQLSTATE of FATAL "terminating connection due to administrator command".
pub const ADMIN_SHUTDOWN: &str = "57P01";

/// Connects through the proxy keeping the connection task's outcome, which
/// is where tokio-postgres reports a FATAL sent to an idle client.
pub async fn connect_watched(proxy: &Proxy) -> (Client, ConnectionTask) {
    let connection_string = proxy.connection_string(MD5_USER.name, MD5_USER.password, APP_DB);
    timeout(PROMPTLY, pg_client::connect_watched(&connection_string))
        .await
        .expect("login through churnstile finishes promptly")
        .unwrap_or_else(|e| panic!("login through churnstile: {e}"))
}

/// The SQLSTATE of the error that ended a connection.
pub async fn ending_sqlstate(connection: ConnectionTask) -> String {
    let ended = timeout(PROMPTLY, connection)
        .await
        .expect("the connection ends promptly")
        .unwrap();
    let error = ended.expect_err("the connection ended with an error from the proxy");
    sqlstate(&error).to_owned()
}

/// Waits for churnstile to exit (blocking this worker thread only); its
/// exit code, or `None` if it still runs after `limit`.
pub fn wait_exit(proxy: &mut Proxy, limit: Duration) -> Option<i32> {
    tokio::task::block_in_place(|| proxy.wait_exit(limit)).map(super::child::exit_code)
}

/// Polls until connecting to `port` is refused: the listener is closed.
pub async fn wait_refused(port: u16) {
    poll_until(
        &format!("port {port} refusing connections"),
        PROMPTLY,
        async || match TcpStream::connect(("127.0.0.1", port)).await {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => Ok(()),
            // Queued while the listener closed: the next try is refused.
            Err(error) if error.kind() == ErrorKind::ConnectionReset => Err("a connection reset"),
            Err(error) => panic!("connecting to {port}: {error}"),
            Ok(_) => Err("a connection accepted"),
        },
    )
    .await;
}

/// Polls until `md5_user` has `expected` backends in `app` on the server.
pub async fn wait_backends(pg: &PgServer, expected: i64) {
    until_equal("upstream backends", PROMPTLY, expected, async || {
        pg.backends(APP_DB, MD5_USER.name).await
    })
    .await;
}

/// churnstile exits 0 within [`PROMPTLY`] and its server connections to
/// `pg` are gone.
pub async fn assert_clean_exit(proxy: &mut Proxy, pg: &PgServer) {
    assert_eq!(
        wait_exit(proxy, PROMPTLY),
        Some(0),
        "stderr:\n{}",
        proxy.stderr()
    );
    wait_backends(pg, 0).await;
}
