//! What a failed upstream login means for the pool's clients and what to
//! check, in the terms of the database's protocol: SQLSTATEs and
//! pg_hba.conf for PostgreSQL, MySQL error codes and grants for MySQL.

use std::time::Duration;

use super::login_target::{LoginCheck, LoginFailure};
use crate::mysql::backend as mysql;
use crate::postgres::backend as postgres;
use crate::postgres::wire::messages::sqlstate;

/// What a failed login means for clients, and where to look.
pub(super) fn advice(check: &LoginCheck, error: &LoginFailure) -> (String, String) {
    match error {
        LoginFailure::Postgres(error) => postgres_advice(check, error),
        LoginFailure::Mysql(error) => mysql_advice(check, error),
    }
}

/// Nothing listens there: clients get `client_error`; `probe` is the
/// command that checks the server by hand.
fn unreachable(check: &LoginCheck, client_error: &str, probe: &str) -> (String, String) {
    (
        format!(
            "churnstile cannot open a connection there: clients of this database get \
             {client_error}"
        ),
        format!(
            "check that the server runs and listens there (`{probe}`), host and port in \
             [databases.{}], and firewalls on the way",
            check.database
        ),
    )
}

/// No answer within `server_connect_timeout`.
fn timed_out(limit: Duration, client_error: &str) -> (String, String) {
    (
        format!(
            "no answer within server_connect_timeout ({limit:?}): clients of this database \
             get {client_error} after waiting that long"
        ),
        "a firewall that drops packets looks like this; otherwise the server is overloaded \
         or out of connections (see its log)"
            .to_owned(),
    )
}

/// A server without TLS under a mode that requires it.
fn tls_refused(
    sslmode: &str,
    client_error: &str,
    turn_on: &str,
    database: &str,
) -> (String, String) {
    (
        format!(
            "the server does not do TLS and server_tls_sslmode = \"{sslmode}\" requires it: \
             clients of this database get {client_error}"
        ),
        format!(
            "{turn_on}, or set server_tls_sslmode = \"prefer\" in [databases.{database}] if \
             plaintext is acceptable"
        ),
    )
}

/// A TLS handshake with the server that fails, usually its certificate.
fn tls_failed(sslmode: &str, reason: &str, client_error: &str, host: &str) -> (String, String) {
    (
        format!(
            "the TLS handshake fails under server_tls_sslmode = \"{sslmode}\" ({reason}): \
             clients of this database get {client_error}"
        ),
        format!(
            "for a certificate error, check server_tls_ca_file holds the CA that issued the \
             server's certificate and, under verify-full, that the certificate names {host:?}"
        ),
    )
}

fn postgres_advice(check: &LoginCheck, error: &postgres::UpstreamError) -> (String, String) {
    let target = &check.target;
    let database = &check.database;
    let user = &check.user;
    match error {
        postgres::UpstreamError::Connect { .. } => unreachable(
            check,
            "SQLSTATE 08006",
            &format!("pg_isready -h {} -p {}", target.host(), target.port()),
        ),
        postgres::UpstreamError::Timeout(limit) => timed_out(*limit, "SQLSTATE 08006"),
        postgres::UpstreamError::Rejected(fields) => {
            let meaning = format!(
                "the server refuses churnstile's login: clients get SQLSTATE {} (\"upstream \
                 server: ...\")",
                fields.code
            );
            let action = match fields.code.as_str() {
                sqlstate::INVALID_PASSWORD => format!(
                    "check upstream_password in [users.{user}] against role {:?}'s password on \
                     the server",
                    target.user()
                ),
                sqlstate::INVALID_CATALOG_NAME => format!(
                    "check dbname in [databases.{database}]: the server has no database {:?}",
                    target.dbname()
                ),
                sqlstate::INVALID_AUTHORIZATION => format!(
                    "check that role {:?} exists and that the server's pg_hba.conf lets it in \
                     from this host (upstream_user in [users.{user}])",
                    target.user()
                ),
                _ => "see the server's log for why it refused".to_owned(),
            };
            (meaning, action)
        }
        postgres::UpstreamError::TlsRefused { sslmode, .. } => tls_refused(
            sslmode,
            "SQLSTATE 08006",
            "turn ssl on in the server's postgresql.conf",
            database,
        ),
        postgres::UpstreamError::TlsHandshake {
            sslmode, reason, ..
        } => tls_failed(sslmode, reason, "SQLSTATE 08006", target.host()),
        postgres::UpstreamError::PasswordMissing(_) => (
            "the server asks for a password and churnstile has none for this user".to_owned(),
            format!("set upstream_password in [users.{user}]"),
        ),
        postgres::UpstreamError::UnsupportedAuth(_)
        | postgres::UpstreamError::Protocol(_)
        | postgres::UpstreamError::Io(_) => (
            "the login broke off: clients of this database get an error instead of a session"
                .to_owned(),
            format!(
                "check that {} is a PostgreSQL server and its pg_hba.conf method is trust, \
                 password, md5 or scram-sha-256",
                target.describe()
            ),
        ),
    }
}

fn mysql_advice(check: &LoginCheck, error: &mysql::UpstreamError) -> (String, String) {
    let target = &check.target;
    let database = &check.database;
    let user = &check.user;
    match error {
        mysql::UpstreamError::Connect { .. } => unreachable(
            check,
            "MySQL error 1105",
            &format!(
                "mariadb-admin -h {} -P {} ping",
                target.host(),
                target.port()
            ),
        ),
        mysql::UpstreamError::Timeout(limit) => timed_out(*limit, "MySQL error 1105"),
        mysql::UpstreamError::TlsRefused { sslmode, .. } => tls_refused(
            sslmode,
            "MySQL error 1105",
            "give the server ssl_cert and ssl_key",
            database,
        ),
        mysql::UpstreamError::TlsHandshake {
            sslmode, reason, ..
        } => tls_failed(sslmode, reason, "MySQL error 1105", target.host()),
        mysql::UpstreamError::Rejected(packet) => {
            let meaning = format!(
                "the server refuses churnstile's login: clients get its error {} ({})",
                packet.code, packet.sql_state
            );
            let account = target.user();
            let action = match packet.code {
                1045 => format!(
                    "check the password for {account:?}: upstream_password in [users.{user}], \
                     or password in [databases.{database}] when it logs in as one account"
                ),
                1049 => format!(
                    "check dbname in [databases.{database}]: the server has no database {:?}",
                    target.dbname()
                ),
                // MariaDB says 1044 for a database that does not exist as
                // well, to an account that could not use it anyway.
                1044 => format!(
                    "check dbname in [databases.{database}]: the server has no database {:?} \
                     or does not let {account:?} use it (GRANT ... ON `{}`.* TO ...)",
                    target.dbname(),
                    target.dbname()
                ),
                1130 => format!(
                    "the server has no account {account:?} for churnstile's host: create one for \
                     this host (or '%') on the server"
                ),
                1040 => "the server is out of connections: raise its max_connections or lower \
                         default_pool_size across churnstile's pools"
                    .to_owned(),
                1129 => "the server blocked churnstile's host after connection errors: run \
                         `mariadb-admin flush-hosts` there and raise max_connect_errors"
                    .to_owned(),
                _ => "see the server's error log for why it refused".to_owned(),
            };
            (meaning, action)
        }
        mysql::UpstreamError::Io(_)
        | mysql::UpstreamError::Malformed(_)
        | mysql::UpstreamError::Unsupported(_) => (
            "the login broke off: clients of this database get an error instead of a session"
                .to_owned(),
            format!(
                "check that {} is a MySQL or MariaDB server and that {:?} logs in with \
                 mysql_native_password or caching_sha2_password",
                target.describe(),
                target.user()
            ),
        ),
    }
}
