//! Whether churnstile can reach each configured database and log in there
//! as each configured user: the very login its pools make, within the
//! database's `server_connect_timeout`, several pairs at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::report::{Finding, Severity};
use crate::config::{Config, Protocol};
use crate::postgres::backend::{ServerConn, UpstreamError, UpstreamTarget};
use crate::postgres::messages::sqlstate;
use crate::postgres::service::upstream_target;

/// Logins in flight at once: quick for a handful of pools, and a config
/// with hundreds does not take a server's connection slots all at once.
const CONCURRENT_LOGINS: usize = 16;

/// One (database, user) pool's upstream login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCheck {
    pub database: String,
    pub user: String,
    pub target: Arc<UpstreamTarget>,
    pub timeout: Duration,
}

impl LoginCheck {
    /// One check per (database, user) pair, as churnstile builds its pools.
    pub fn for_config(config: &Config) -> Vec<LoginCheck> {
        let mut checks = Vec::new();
        // MySQL upstreams are not logged in to by the doctor yet.
        let postgres =
            (config.databases.iter()).filter(|(_, db)| db.protocol == Protocol::Postgres);
        for (database, db) in postgres {
            for (user, user_config) in &config.users {
                checks.push(LoginCheck {
                    database: database.clone(),
                    user: user.clone(),
                    target: Arc::new(upstream_target(db, user_config)),
                    timeout: db.pool.server_connect_timeout,
                });
            }
        }
        checks
    }
}

/// The outcome of one login (`databases` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseLogin {
    pub database: String,
    pub user: String,
    /// `host:port` or the Unix socket path.
    pub upstream: String,
    pub dbname: String,
    pub upstream_user: String,
    pub ok: bool,
    /// How long connecting and logging in took, when it worked.
    pub login_ms: Option<u64>,
    pub error: Option<String>,
}

/// Runs the checks, [`CONCURRENT_LOGINS`] at a time; results come back in
/// the checks' order.
pub async fn check_logins(checks: &[LoginCheck]) -> (Vec<DatabaseLogin>, Vec<Finding>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_LOGINS));
    let mut running = JoinSet::new();
    for (index, check) in checks.iter().cloned().enumerate() {
        let slots = Arc::clone(&slots);
        running.spawn(async move {
            // Never closed, so a permit always comes.
            let _slot = slots.acquire_owned().await;
            let started = Instant::now();
            let login = tokio::time::timeout(check.timeout, ServerConn::connect(&check.target))
                .await
                .unwrap_or(Err(UpstreamError::Timeout(check.timeout)));
            let outcome = login.map(|conn| {
                conn.terminate();
                started.elapsed()
            });
            (index, outcome)
        });
    }
    let mut outcomes: Vec<(usize, Result<Duration, UpstreamError>)> = Vec::new();
    while let Some(done) = running.join_next().await {
        // A check that panicked has no outcome to report; none is expected.
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes
        .into_iter()
        .map(|(index, outcome)| judge(&checks[index], outcome))
        .unzip()
}

fn judge(check: &LoginCheck, outcome: Result<Duration, UpstreamError>) -> (DatabaseLogin, Finding) {
    let target = &check.target;
    let upstream = target.describe();
    let subject = format!("database {} as {}", check.database, check.user);
    let mut login = DatabaseLogin {
        database: check.database.clone(),
        user: check.user.clone(),
        upstream: upstream.clone(),
        dbname: target.dbname.clone(),
        upstream_user: target.user.clone(),
        ok: false,
        login_ms: None,
        error: None,
    };
    let error = match outcome {
        Ok(took) => {
            login.ok = true;
            login.login_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            let finding = Finding {
                severity: Severity::Ok,
                check: "database.login",
                subject,
                summary: format!(
                    "logged in at {upstream} (database {}, user {}) in {} ms",
                    target.dbname,
                    target.user,
                    took.as_millis()
                ),
                meaning: "churnstile can open server connections for this pool".to_owned(),
                action: "nothing to do".to_owned(),
            };
            return (login, finding);
        }
        Err(error) => error,
    };
    login.error = Some(error.to_string());
    let (meaning, action) = advice(check, &error);
    let finding = Finding {
        severity: Severity::Problem,
        check: "database.login",
        subject,
        summary: error.to_string(),
        meaning,
        action,
    };
    (login, finding)
}

/// What a failed login means for clients, and where to look.
fn advice(check: &LoginCheck, error: &UpstreamError) -> (String, String) {
    let target = &check.target;
    let database = &check.database;
    let user = &check.user;
    match error {
        UpstreamError::Connect { .. } => (
            "churnstile cannot open a connection there: clients of this database get SQLSTATE \
             08006"
                .to_owned(),
            format!(
                "check that the server runs and listens there (`pg_isready -h {} -p {}`), \
                 host and port in [databases.{database}], and firewalls on the way",
                target.host, target.port
            ),
        ),
        UpstreamError::Timeout(limit) => (
            format!(
                "no answer within server_connect_timeout ({limit:?}): clients of this database \
                 get SQLSTATE 08006 after waiting that long"
            ),
            "a firewall that drops packets looks like this; otherwise the server is overloaded \
             or out of connections (see its log)"
                .to_owned(),
        ),
        UpstreamError::Rejected(fields) => {
            let meaning = format!(
                "the server refuses churnstile's login: clients get SQLSTATE {} (\"upstream \
                 server: ...\")",
                fields.code
            );
            let action = match fields.code.as_str() {
                sqlstate::INVALID_PASSWORD => format!(
                    "check upstream_password in [users.{user}] against role {:?}'s password on \
                     the server",
                    target.user
                ),
                sqlstate::INVALID_CATALOG_NAME => format!(
                    "check dbname in [databases.{database}]: the server has no database {:?}",
                    target.dbname
                ),
                sqlstate::INVALID_AUTHORIZATION => format!(
                    "check that role {:?} exists and that the server's pg_hba.conf lets it in \
                     from this host (upstream_user in [users.{user}])",
                    target.user
                ),
                _ => "see the server's log for why it refused".to_owned(),
            };
            (meaning, action)
        }
        UpstreamError::PasswordMissing(_) => (
            "the server asks for a password and churnstile has none for this user".to_owned(),
            format!("set upstream_password in [users.{user}]"),
        ),
        UpstreamError::UnsupportedAuth(_) | UpstreamError::Protocol(_) | UpstreamError::Io(_) => (
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check_on(port: u16) -> LoginCheck {
        LoginCheck {
            database: "app".into(),
            user: "app_user".into(),
            target: Arc::new(UpstreamTarget {
                host: "127.0.0.1".into(),
                port,
                dbname: "appdb".into(),
                user: "app_role".into(),
                password: Some("secret".into()),
            }),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        // Bound but not listening: connections to it are refused.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        let (logins, findings) = check_logins(&[check_on(port)]).await;
        assert_eq!(logins.len(), 1);
        let login = &logins[0];
        assert!(!login.ok);
        assert_eq!(login.upstream, format!("127.0.0.1:{port}"));
        assert_eq!(login.upstream_user, "app_role");
        assert!(
            login
                .error
                .as_deref()
                .unwrap()
                .contains("Connection refused"),
            "{login:?}"
        );
        let finding = &findings[0];
        assert_eq!(finding.severity, Severity::Problem);
        assert_eq!(finding.subject, "database app as app_user");
        assert!(finding.meaning.contains("08006"));
        assert!(
            finding
                .action
                .contains(&format!("pg_isready -h 127.0.0.1 -p {port}"))
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts (the kernel does) but never answers the startup packet.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut check = check_on(listener.local_addr().unwrap().port());
        check.timeout = Duration::from_millis(200);
        let (logins, findings) = check_logins(&[check]).await;
        assert_eq!(
            logins[0].error.as_deref(),
            Some("upstream server did not finish within 200ms")
        );
        assert!(
            findings[0]
                .meaning
                .contains("server_connect_timeout (200ms)")
        );
    }

    #[test]
    fn one_check_per_database_and_user() {
        let config = crate::config::parse_str(
            r#"
            [databases.app]
            port = 5433
            [databases.reports]
            dbname = "reporting"
            server_connect_timeout = 3
            [users.alice]
            password = "a"
            [users.bob]
            password = "b"
            upstream_user = "robert"
            "#,
            "test.toml",
        )
        .unwrap();
        let checks = LoginCheck::for_config(&config);
        let pairs: Vec<(&str, &str, &str, &str)> = checks
            .iter()
            .map(|c| {
                (
                    c.database.as_str(),
                    c.user.as_str(),
                    c.target.dbname.as_str(),
                    c.target.user.as_str(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("app", "alice", "app", "alice"),
                ("app", "bob", "app", "robert"),
                ("reports", "alice", "reporting", "alice"),
                ("reports", "bob", "reporting", "robert"),
            ]
        );
        assert_eq!(checks[0].target.port, 5433);
        assert_eq!(checks[2].timeout, Duration::from_secs(3));
        assert_eq!(checks[1].target.password.as_deref(), Some("b"));
    }
}
