//! tokio-postgres clients for tests: connection strings, connecting with the
//! connection task already running, and the small questions tests ask
//! through a client (one value, the backend's PID, an error's SQLSTATE).

use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A running connection task; it ends with the error that closed the
/// connection, such as a FATAL churnstile sent to an idle client.
pub type ConnectionTask = JoinHandle<Result<(), tokio_postgres::Error>>;

/// A key/value connection string; `host` may be an IP or a Unix socket
/// directory. Without TLS, with a 10 s TCP connect timeout.
pub fn connection_string(host: &str, port: u16, user: &str, password: &str, db: &str) -> String {
    format!(
        "host={} port={port} user={} password={} dbname={} connect_timeout=10 sslmode=disable",
        quote(host),
        quote(user),
        quote(password),
        quote(db)
    )
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Connects and spawns the connection task on the current tokio runtime.
/// Errors of an established connection surface on the client's next call.
pub async fn connect(connection_string: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls).await?;
    tokio::spawn(async move {
        // Reported to the client as a closed connection; nothing to add here.
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects and spawns the connection task, handing back the task: to see
/// the error that ended the connection, or to abort it so the socket closes
/// without a Terminate, as when a client process dies.
pub async fn connect_watched(
    connection_string: &str,
) -> Result<(Client, ConnectionTask), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

/// The SQLSTATE of an error the server (or churnstile) reported; panics on
/// any other error.
pub fn sqlstate(error: &tokio_postgres::Error) -> &str {
    error
        .as_db_error()
        .unwrap_or_else(|| panic!("not an error from the server: {error}"))
        .code()
        .code()
}

/// Runs one simple query that selects one value and returns it as text
/// ("NULL" for NULL).
pub async fn scalar(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The PID of the server backend serving `client`'s session.
pub async fn backend_pid(client: &Client) -> i32 {
    scalar(client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .expect("pg_backend_pid() is an integer")
}

/// Runs `sql` and returns the one integer it selects (smallint, integer or
/// bigint), such as a `count(*)`.
pub async fn query_i64(client: &Client, sql: &str) -> i64 {
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    match row.columns().first().map(|column| column.type_().clone()) {
        Some(Type::INT8) => row.get::<_, i64>(0),
        Some(Type::INT4) => row.get::<_, i32>(0).into(),
        Some(Type::INT2) => row.get::<_, i16>(0).into(),
        other => panic!("{sql}: selects {other:?}, not an integer; cast it to bigint"),
    }
}
