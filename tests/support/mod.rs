//! Test support shared by the integration tests (`mod support;`): throwaway
//! PostgreSQL and MariaDB servers, the churnstile launcher, and helpers:
//! tokio-postgres clients (`pg_client`), a hand-made wire protocol client
//! (`raw_pg`), the admin console (`admin_console`), the metrics endpoint
//! (`metrics_endpoint`), mysql_async clients (`mysql_client`), a hand-made
//! MySQL protocol client (`raw_mysql`), a throwaway certificate authority (`test_pki`), TLS clients
//! (`tls_client`) and
//! bounded polling (`wait`).
//!
//! Every server and proxy is a child process that the kernel kills if the
//! test process dies, and that `Drop` stops and cleans up otherwise.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

pub mod admin_console;
pub mod child;
pub mod churn_client;
pub mod credentials;
pub mod mariadb;
pub mod metrics_endpoint;
pub mod mysql_client;
pub mod os_account;
pub mod pg_client;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod proxy_config;
pub mod raw_mysql;
pub mod raw_pg;
pub mod shutdown;
pub mod temp_dirs;
/// The unit tests' throwaway CA, shared rather than copied.
#[path = "../../src/tls/test_pki.rs"]
pub mod test_pki;
pub mod tls_client;
pub mod wait;

// Re-exports so tests write `support::PgServer`; each binary uses some.
#[allow(unused_imports)]
pub use {
    credentials::*,
    mariadb::MariaDbServer,
    ports::free_port,
    postgres::PgServer,
    proxy::{ProcessExit, Proxy},
    proxy_config::{
        mysql_proxy_config, mysql_proxy_config_with, pg_proxy_config, trust_proxy_config,
    },
    rustix::process::Signal,
};
