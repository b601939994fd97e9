//! churnstile: a connection-pooling proxy for PostgreSQL and MySQL/MariaDB
//! that keeps upstream
//! connections (and TIME_WAIT sockets) bounded however fast clients churn,
//! and diagnoses why hosts run out of ports.

pub mod admin;
pub mod config;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod import;
pub mod keywords;
pub mod logging;
pub mod metrics;
pub mod mysql;
pub mod observe;
pub mod pool;
pub mod postgres;
pub mod proxy;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod stream;
pub mod tls;
pub mod top;
