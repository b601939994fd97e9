//! What tests ask a running `PgServer`: clients for the test roles, and
//! counts of sessions and backends to check what a proxy did upstream.

use tokio_postgres::Client;

use super::{HOST, PgServer};
use crate::support::credentials::{APP_DB, PG_SUPERUSER, PG_USERS, PgUser};
use crate::support::pg_client;

impl PgServer {
    /// A tokio-postgres connection string for 127.0.0.1.
    pub fn connection_string(&self, user: &str, password: &str, db: &str) -> String {
        pg_client::connection_string(HOST, self.port, user, password, db)
    }

    /// A `postgres://` URL for `user`, with its password, and `app` on
    /// 127.0.0.1: what churnstile's `--upstream` takes.
    pub fn url(&self, user: PgUser) -> String {
        format!(
            "postgres://{}:{}@{HOST}:{}/{APP_DB}",
            user.name, user.password, self.port
        )
    }

    /// Connects directly (not through a proxy) with these credentials.
    pub async fn try_client(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        pg_client::connect(&self.connection_string(user, password, db)).await
    }

    /// Connects directly as `user`, with its password from `PG_USERS`
    /// (none for `postgres` and roles not listed there). Panics on failure.
    pub async fn client(&self, user: &str, db: &str) -> Client {
        let password = PG_USERS
            .iter()
            .find(|known| known.name == user)
            .map_or("", |known| known.password);
        self.try_client(user, password, db)
            .await
            .unwrap_or_else(|e| panic!("connecting to PostgreSQL as {user} to {db}: {e}"))
    }

    /// Runs `sql` as the superuser in database `postgres` and returns the one
    /// integer it selects (smallint, integer or bigint). Opens a session of
    /// its own.
    pub async fn query_i64(&self, sql: &str) -> i64 {
        let client = self.client(PG_SUPERUSER, "postgres").await;
        pg_client::query_i64(&client, sql).await
    }

    /// Sessions ever opened to `db`, from `pg_stat_database.sessions`
    /// (PostgreSQL 14+), including the harness's own.
    ///
    /// Cumulative statistics lag: a backend reports its session when it is
    /// first idle or when it exits, and may defer that by up to a second or
    /// longer under contention. Poll for the value you expect, or use
    /// [`PgServer::connections_authorized`], which is exact.
    pub async fn sessions_opened(&self, db: &str) -> i64 {
        let client = self.client(PG_SUPERUSER, "postgres").await;
        let row = client
            .query_one(
                "SELECT coalesce(sessions, 0) FROM pg_stat_database WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap_or_else(|e| panic!("reading pg_stat_database for {db}: {e}"));
        row.get(0)
    }

    /// Backends connected right now to `db` as `user` (pg_stat_activity,
    /// which is current, unlike the cumulative statistics).
    pub async fn backends(&self, db: &str, user: &str) -> i64 {
        let client = self.client(PG_SUPERUSER, "postgres").await;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
                &[&db, &user],
            )
            .await
            .unwrap_or_else(|e| panic!("reading pg_stat_activity for {user}@{db}: {e}"));
        row.get(0)
    }

    /// Sessions `user` has opened to `db` since the server first started,
    /// counted from the server log's `connection authorized` lines
    /// (`log_connections`). Exact as soon as the login has completed.
    pub fn connections_authorized(&self, db: &str, user: &str) -> usize {
        let user_field = format!("user={user}");
        let db_field = format!("database={db}");
        self.log()
            .lines()
            .filter_map(|line| {
                line.split_once("connection authorized: ")
                    .map(|(_, rest)| rest)
            })
            .filter(|fields| {
                let mut fields = fields.split_whitespace();
                fields.next() == Some(user_field.as_str())
                    && fields.next() == Some(db_field.as_str())
            })
            .count()
    }
}
