//! tokio-postgres clients for tests: connection strings and connecting with
//! the connection task already running.

use tokio_postgres::{Client, NoTls};

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
