//! Whether churnstile can reach each configured database and log in there
//! as each configured user: the very login its pools make (PostgreSQL or
//! MySQL), within the database's `server_connect_timeout`, several pairs at
//! a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::login_advice::advice;
use super::report::{Finding, Severity};
use crate::config::{Config, Protocol};
use crate::mysql::backend as mysql;
use crate::postgres::backend as postgres;
use crate::postgres::service::upstream_target;

/// Logins in flight at once: quick for a handful of pools, and a config
/// with hundreds does not take a server's connection slots all at once.
const CONCURRENT_LOGINS: usize = 16;

/// Where a pool logs in, and with which protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginTarget {
    Postgres(Arc<postgres::UpstreamTarget>),
    Mysql(Arc<mysql::UpstreamTarget>),
}

impl LoginTarget {
    pub fn describe(&self) -> String {
        match self {
            LoginTarget::Postgres(target) => target.describe(),
            LoginTarget::Mysql(target) => target.describe(),
        }
    }

    pub fn host(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.host,
            LoginTarget::Mysql(target) => &target.host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            LoginTarget::Postgres(target) => target.port,
            LoginTarget::Mysql(target) => target.port,
        }
    }

    pub fn dbname(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.dbname,
            LoginTarget::Mysql(target) => &target.dbname,
        }
    }

    pub fn user(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.user,
            LoginTarget::Mysql(target) => &target.user,
        }
    }

    fn protocol(&self) -> &'static str {
        match self {
            LoginTarget::Postgres(_) => crate::metrics::PROTOCOL_POSTGRES,
            LoginTarget::Mysql(_) => crate::metrics::PROTOCOL_MYSQL,
        }
    }

    /// Logs in and leaves again at once.
    async fn log_in(&self) -> Result<(), LoginFailure> {
        match self {
            LoginTarget::Postgres(target) => {
                postgres::ServerConn::connect(target).await?.terminate();
            }
            LoginTarget::Mysql(target) => mysql::ServerConn::connect(target).await?.quit(),
        }
        Ok(())
    }

    /// The failure of a login that took longer than `limit`.
    fn timed_out(&self, limit: Duration) -> LoginFailure {
        match self {
            LoginTarget::Postgres(_) => postgres::UpstreamError::Timeout(limit).into(),
            LoginTarget::Mysql(_) => mysql::UpstreamError::Timeout(limit).into(),
        }
    }
}

/// Why a login failed, in its protocol's terms.
#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    #[error(transparent)]
    Postgres(#[from] postgres::UpstreamError),
    #[error(transparent)]
    Mysql(#[from] mysql::UpstreamError),
}

/// One (database, user) pool's upstream login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCheck {
    pub database: String,
    pub user: String,
    pub target: LoginTarget,
    pub timeout: Duration,
}

impl LoginCheck {
    /// One check per (database, user) pair, as churnstile builds its pools.
    pub fn for_config(config: &Config) -> Vec<LoginCheck> {
        let mut checks = Vec::new();
        for (database, db) in &config.databases {
            for (user, user_config) in &config.users {
                let target = match db.protocol {
                    Protocol::Postgres => {
                        LoginTarget::Postgres(Arc::new(upstream_target(db, user_config)))
                    }
                    Protocol::Mysql => LoginTarget::Mysql(Arc::new(
                        mysql::UpstreamTarget::for_pool(db, user_config, false),
                    )),
                };
                checks.push(LoginCheck {
                    database: database.clone(),
                    user: user.clone(),
                    target,
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
    /// `postgres` or `mysql`.
    pub protocol: &'static str,
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
            let outcome = tokio::time::timeout(check.timeout, check.target.log_in())
                .await
                .unwrap_or_else(|_| Err(check.target.timed_out(check.timeout)))
                .map(|()| started.elapsed());
            (index, outcome)
        });
    }
    let mut outcomes: Vec<(usize, Result<Duration, LoginFailure>)> = Vec::new();
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

fn judge(check: &LoginCheck, outcome: Result<Duration, LoginFailure>) -> (DatabaseLogin, Finding) {
    let target = &check.target;
    let upstream = target.describe();
    let subject = format!("database {} as {}", check.database, check.user);
    let mut login = DatabaseLogin {
        database: check.database.clone(),
        user: check.user.clone(),
        protocol: target.protocol(),
        upstream: upstream.clone(),
        dbname: target.dbname().to_owned(),
        upstream_user: target.user().to_owned(),
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
                    target.dbname(),
                    target.user(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check_on(port: u16) -> LoginCheck {
        LoginCheck {
            database: "app".into(),
            user: "app_user".into(),
            target: LoginTarget::Postgres(Arc::new(postgres::UpstreamTarget {
                host: "127.0.0.1".into(),
                port,
                dbname: "appdb".into(),
                user: "app_role".into(),
                password: Some("secret".into()),
            })),
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
                    c.target.dbname(),
                    c.target.user(),
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
        assert_eq!(checks[0].target.port(), 5433);
        assert_eq!(checks[2].timeout, Duration::from_secs(3));
        let LoginTarget::Postgres(bob) = &checks[1].target else {
            panic!("a PostgreSQL database: {:?}", checks[1].target);
        };
        assert_eq!(bob.password.as_deref(), Some("b"));
    }
}
