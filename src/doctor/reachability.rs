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
use super::login_target::{LoginCheck, LoginFailure};
use super::report::{Finding, Severity};

/// Logins in flight at once: quick for a handful of pools, and a config
/// with hundreds does not take a server's connection slots all at once.
const CONCURRENT_LOGINS: usize = 16;

/// The outcome of one login (`databases` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct DatabaseLogin {
    database: String,
    user: String,
    /// `postgres` or `mysql`.
    protocol: &'static str,
    /// `host:port` or the Unix socket path.
    upstream: String,
    dbname: String,
    upstream_user: String,
    ok: bool,
    /// How long connecting and logging in took, when it worked.
    login_ms: Option<u64>,
    error: Option<String>,
}

/// Runs the checks, [`CONCURRENT_LOGINS`] at a time; results come back in
/// the checks' order.
pub(super) async fn check_logins(checks: &[LoginCheck]) -> (Vec<DatabaseLogin>, Vec<Finding>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_LOGINS));
    let mut running = JoinSet::new();
    for (index, check) in checks.iter().cloned().enumerate() {
        let slots = Arc::clone(&slots);
        running.spawn(async move {
            // Never closed, so a permit always comes.
            let _slot = slots.acquire_owned().await;
            let started = Instant::now();
            let outcome =
                tokio::time::timeout(check.timeout, check.target.log_in(check.tls.as_ref()))
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
    use crate::doctor::login_target::LoginTarget;
    use crate::postgres::backend as postgres;
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
            tls: None,
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
}
