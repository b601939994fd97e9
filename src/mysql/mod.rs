//! The MySQL/MariaDB side of the proxy: wire codec and authentication.

pub mod auth;
pub mod wire;
