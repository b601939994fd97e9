//! churnstile: a connection-pooling proxy for PostgreSQL that keeps upstream
//! connections (and TIME_WAIT sockets) bounded however fast clients churn.

pub mod config;
pub mod doctor;
pub mod server;
