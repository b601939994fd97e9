//! What one upstream login check is: the (database, user) pair, where its
//! pool logs in and with which protocol ([`LoginTarget`]), and why a login
//! failed ([`LoginFailure`]). `reachability.rs` runs the checks and
//! `login_advice.rs` explains the failures; both import this file.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Protocol};
use crate::mysql::backend as mysql;
use crate::postgres::backend as postgres;
use crate::postgres::service::upstream_target;
use crate::tls::UpstreamTls;

/// Where a pool logs in, and with which protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LoginTarget {
    Postgres(Arc<postgres::UpstreamTarget>),
    Mysql(Arc<mysql::UpstreamTarget>),
}

impl LoginTarget {
    pub(super) fn describe(&self) -> String {
        match self {
            LoginTarget::Postgres(target) => target.describe(),
            LoginTarget::Mysql(target) => target.describe(),
        }
    }

    pub(super) fn host(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.host,
            LoginTarget::Mysql(target) => &target.host,
        }
    }

    pub(super) fn port(&self) -> u16 {
        match self {
            LoginTarget::Postgres(target) => target.port,
            LoginTarget::Mysql(target) => target.port,
        }
    }

    pub(super) fn dbname(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.dbname,
            LoginTarget::Mysql(target) => &target.dbname,
        }
    }

    pub(super) fn user(&self) -> &str {
        match self {
            LoginTarget::Postgres(target) => &target.user,
            LoginTarget::Mysql(target) => &target.user,
        }
    }

    pub(super) fn protocol(&self) -> &'static str {
        match self {
            LoginTarget::Postgres(_) => crate::metrics::PROTOCOL_POSTGRES,
            LoginTarget::Mysql(_) => crate::metrics::PROTOCOL_MYSQL,
        }
    }

    /// Logs in (over TLS when `tls` says so, as the pool would) and
    /// leaves again at once.
    pub(super) async fn log_in(&self, tls: Option<&UpstreamTls>) -> Result<(), LoginFailure> {
        match self {
            LoginTarget::Postgres(target) => {
                postgres::ServerConn::connect(target, tls)
                    .await?
                    .terminate();
            }
            LoginTarget::Mysql(target) => mysql::ServerConn::connect(target).await?.quit(),
        }
        Ok(())
    }

    /// The failure of a login that took longer than `limit`.
    pub(super) fn timed_out(&self, limit: Duration) -> LoginFailure {
        match self {
            LoginTarget::Postgres(_) => postgres::UpstreamError::Timeout(limit).into(),
            LoginTarget::Mysql(_) => mysql::UpstreamError::Timeout(limit).into(),
        }
    }
}

/// Why a login failed, in its protocol's terms.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginFailure {
    #[error(transparent)]
    Postgres(#[from] postgres::UpstreamError),
    #[error(transparent)]
    Mysql(#[from] mysql::UpstreamError),
}

/// One (database, user) pool's upstream login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCheck {
    pub(super) database: String,
    pub(super) user: String,
    pub(super) target: LoginTarget,
    pub(super) timeout: Duration,
    /// TLS as the pool would use it; `None` for plaintext.
    pub(super) tls: Option<UpstreamTls>,
}

impl LoginCheck {
    /// One check per (database, user) pair, as churnstile builds its pools.
    pub(super) fn for_config(config: &Config) -> Vec<LoginCheck> {
        // The loader already read every TLS file; should one have gone bad
        // since, the logins are checked without TLS and say so.
        let tls = crate::proxy::build_tls(config).unwrap_or_default();
        let mut checks = Vec::new();
        for (database, db) in &config.databases {
            for (user, user_config) in &config.users {
                let target = match db.protocol {
                    Protocol::Postgres => {
                        LoginTarget::Postgres(Arc::new(upstream_target(db, user_config)))
                    }
                    Protocol::Mysql => {
                        LoginTarget::Mysql(Arc::new(mysql::UpstreamTarget::for_pool(
                            db,
                            user_config,
                            false,
                            tls.upstream(database).cloned(),
                        )))
                    }
                };
                checks.push(LoginCheck {
                    database: database.clone(),
                    user: user.clone(),
                    target,
                    timeout: db.pool.server_connect_timeout,
                    tls: tls.upstream(database).cloned(),
                });
            }
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
