//! PostgreSQL protocol support: everything churnstile needs to speak the
//! PostgreSQL wire protocol to clients and upstream servers.

pub mod auth;
